-- Priorities and idempotent starts: start_run and set_flow_priority, bad input; reads of a flow's
-- queue in priority order, FIFO within a priority; the rule against starvation; the messages of
-- dependent and big map steps carry the run's priority; pool slots go to higher priorities
-- first; plain queues keep pgmq's order; idempotency keys.
BEGIN;
SELECT plan(40);
\ir helpers/common.psql

SELECT pgflow.create_flow('pr', max_attempts => 3, base_delay => 0);
SELECT pgflow.add_step('pr', 'a');
SELECT pgflow.add_step('pr', 'b', ARRAY['a']);

-- Run ids of the next n messages read one at a time from a queue.
CREATE FUNCTION pg_temp.read_order(p_queue text, n int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    got text[] := '{}';
    r record;
BEGIN
    FOR i IN 1..n LOOP
        SELECT * INTO r FROM pgmq.read(p_queue, 30, 1);
        EXIT WHEN NOT FOUND;
        got := got || right(r.message ->> 'run_id', 2);
    END LOOP;
    RETURN array_to_string(got, ' ');
END;
$$;
CREATE FUNCTION pg_temp.run(n int) RETURNS uuid LANGUAGE sql AS $$
    SELECT ('00000000-0000-0000-0000-0000000f00' || lpad(n::text, 2, '0'))::uuid
$$;

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.start_run(NULL, '{}')$$, '22004', 'flow_slug must not be NULL',
                 'start_run without a flow is 22004');
SELECT throws_ok($$SELECT pgflow.start_run('nope', '{}')$$, '42704', 'flow "nope" does not exist',
                 'start_run of an unknown flow is 42704');
SELECT throws_ok($$SELECT pgflow.start_run('pr', '{}', idempotency_key => '')$$, '22023',
                 'idempotency_key must not be empty', 'an empty idempotency key is 22023');
SELECT throws_ok($$SELECT pgflow.set_flow_priority(NULL, 1)$$, '22004', 'flow_slug must not be NULL',
                 'set_flow_priority without a flow is 22004');
SELECT throws_ok($$SELECT pgflow.set_flow_priority('pr', NULL)$$, '22004', 'priority must not be NULL',
                 'set_flow_priority without a priority is 22004');
SELECT throws_ok($$SELECT pgflow.set_flow_priority('nope', 1)$$, '42704', 'flow "nope" does not exist',
                 'set_flow_priority of an unknown flow is 42704');
CREATE ROLE pgflow_t_carol NOSUPERUSER;
GRANT USAGE ON SCHEMA pgflow TO pgflow_t_carol;
SET LOCAL ROLE pgflow_t_carol;
SELECT throws_ok($$SELECT pgflow.set_flow_priority('pr', 9)$$, '42501',
                 'must be the owner of flow "pr" to change its priority',
                 'only the flow''s owner may change its priority');
RESET ROLE;

---------------------------------------------------------------------------------------------------
-- Reads in priority order, FIFO within a priority
---------------------------------------------------------------------------------------------------
SELECT is((SELECT status FROM pgflow.start_run('pr', '{}', run_id => pg_temp.run(1))), 'started',
          'start_run starts a run as start_flow does');
SELECT pgflow.start_run('pr', '{}', 5, run_id => pg_temp.run(2));
SELECT pgflow.start_flow('pr', '{}', pg_temp.run(3));
SELECT pgflow.start_run('pr', '{}', priority => 5, run_id => pg_temp.run(4));
SELECT pgflow.start_run('pr', '{}', priority => -1, run_id => pg_temp.run(5));
SELECT pgflow.start_run('pr', '{}', priority => 10, run_id => pg_temp.run(6));
SELECT is((SELECT string_agg(right(run_id::text, 2) || '=' || priority, ' ' ORDER BY run_id) FROM pgflow._run_options),
          '02=5 04=5 05=-1 06=10', 'runs with a priority other than 0 have it recorded');
SELECT is((SELECT headers FROM pgmq.q_pr WHERE message ->> 'run_id' = pg_temp.run(2)::text),
          '{"x-pgflow-priority": 5}', 'their messages carry it in a header');
SELECT is((SELECT headers FROM pgmq.q_pr WHERE message ->> 'run_id' = pg_temp.run(1)::text), NULL,
          'others have no header, as before');
SELECT is(pg_temp.read_order('pr', 6), '06 02 04 01 03 05',
          'a worker reads the highest priority first, and runs of one priority in the order they were queued');

SELECT pgflow.start_run('pr', '{}', 1, run_id => pg_temp.run(7));
SELECT pgflow.start_run('pr', '{}', 2, run_id => pg_temp.run(8));
SELECT pgflow.start_run('pr', '{}', 3, run_id => pg_temp.run(9));
SELECT is((SELECT string_agg(right(message ->> 'run_id', 2), ' ' ORDER BY message ->> 'run_id')
           FROM pgmq.read('pr', 30, 2)), '08 09', 'a read of two takes the two highest');
SELECT is((SELECT count(*)::int FROM pgmq.read_with_poll('pr', 30, 5, 1, 10)), 1,
          'read_with_poll takes the rest');

---------------------------------------------------------------------------------------------------
-- Dependent steps and big map steps carry the run's priority
---------------------------------------------------------------------------------------------------
SELECT pg_temp.complete_step(pg_temp.run(6), 'a', '1');
SELECT is((SELECT headers ->> 'x-pgflow-priority' FROM pgmq.q_pr
           WHERE message ->> 'run_id' = pg_temp.run(6)::text AND message ->> 'step_slug' = 'b'),
          '10', 'the message of a dependent step carries the run''s priority');
SELECT pgflow.create_flow('prmap');
SELECT pgflow.add_step('prmap', 'm', step_type => 'map');
SELECT pgflow.start_run('prmap', (SELECT jsonb_agg(i) FROM generate_series(1, 1200) i), 4, run_id => pg_temp.run(10));
SELECT pgflow.start_run('prmap', '[1, 2]', run_id => pg_temp.run(11));
SELECT is((SELECT count(*)::int FROM pgmq.q_prmap WHERE headers ->> 'x-pgflow-priority' = '4'), 1200,
          'every message of a big map step carries it');
SELECT is(pg_temp.read_order('prmap', 1), '10', 'and the map''s tasks are read before those of a later run of priority 0');

---------------------------------------------------------------------------------------------------
-- A flow's default priority
---------------------------------------------------------------------------------------------------
SELECT pgflow.set_flow_priority('pr', 3);
SELECT pgflow.start_flow('pr', '{}', pg_temp.run(12));
SELECT pgflow.start_run('pr', '{}', run_id => pg_temp.run(13));
SELECT pgflow.start_run('pr', '{}', 0, run_id => pg_temp.run(14));
SELECT is((SELECT string_agg(right(run_id::text, 2) || '=' || priority, ' ' ORDER BY run_id) FROM pgflow._run_options
           WHERE run_id IN (pg_temp.run(12), pg_temp.run(13), pg_temp.run(14))),
          '12=3 13=3', 'start_flow and start_run without a priority take the flow''s; priority 0 overrides it');
SELECT pgflow.set_flow_priority('pr', 0);

---------------------------------------------------------------------------------------------------
-- The rule against starvation
---------------------------------------------------------------------------------------------------
SELECT pgmq.purge_queue('pr');
SELECT pgflow.start_run('pr', '{}', 0, run_id => pg_temp.run(20));
SELECT pgflow.start_run('pr', '{}', 9, run_id => pg_temp.run(21));
SELECT pgflow.start_run('pr', '{}', 0, run_id => pg_temp.run(22));
UPDATE pgmq.q_pr SET vt = clock_timestamp() - interval '61 seconds'
WHERE message ->> 'run_id' = pg_temp.run(22)::text;
SELECT is(pg_temp.read_order('pr', 3), '22 21 20',
          'a task visible for longer than pgflow.priority_max_wait (60 s) is read before any priority');
SELECT pgflow.start_run('pr', '{}', 0, run_id => pg_temp.run(23));
SELECT pgflow.start_run('pr', '{}', 0, run_id => pg_temp.run(24));
SELECT pgflow.start_run('pr', '{}', 9, run_id => pg_temp.run(25));
SET LOCAL pgflow.priority_max_wait = 1;
SELECT pg_sleep(1.2);
SELECT pgflow.start_run('pr', '{}', 9, run_id => pg_temp.run(26));
SELECT is(pg_temp.read_order('pr', 4), '23 24 25 26',
          'with pgflow.priority_max_wait = 1, tasks that waited a second go first, oldest first, then priorities');
RESET pgflow.priority_max_wait;

---------------------------------------------------------------------------------------------------
-- Executors (run_local_tasks in this session): the rule against starvation, then priorities
---------------------------------------------------------------------------------------------------
CREATE TABLE public.prio_log (seq serial, n int);
SELECT pgflow.create_flow('prsql');
SELECT pgflow.add_step('prsql', 'w');
SELECT pgflow.set_sql_handler('prsql', 'w', $$INSERT INTO public.prio_log (n) VALUES (($2 ->> 'n')::int)$$);
SELECT pgflow.start_run('prsql', '{"n": 1}', 0, run_id => pg_temp.run(50));
SELECT pgflow.start_run('prsql', '{"n": 2}', 3, run_id => pg_temp.run(51));
SELECT pgflow.start_run('prsql', '{"n": 3}', 0, run_id => pg_temp.run(52));
SELECT pgflow.start_run('prsql', '{"n": 4}', 3, run_id => pg_temp.run(53));
UPDATE pgflow._local_tasks SET visible_at = clock_timestamp() - interval '2 minutes' WHERE run_id = pg_temp.run(52);
SELECT pgflow.run_local_tasks(1) FROM generate_series(1, 4);
SELECT is((SELECT string_agg(n::text, ',' ORDER BY seq) FROM public.prio_log), '3,2,4,1',
          'executors take a task waiting longer than pgflow.priority_max_wait first, then higher priorities, FIFO within one');

---------------------------------------------------------------------------------------------------
-- Pool slots go to higher priorities first
---------------------------------------------------------------------------------------------------
SELECT pgmq.purge_queue('pr');
SELECT pgflow.create_pool('prpool', 1);
SELECT pgflow.set_pool('pr', 'prpool');
SELECT pgflow.start_run('pr', '{}', 0, run_id => pg_temp.run(30));
SELECT pgflow.start_run('pr', '{}', 7, run_id => pg_temp.run(31));
SELECT is((SELECT string_agg(right(run_id::text, 2), ' ') FROM pgflow.start_tasks('pr',
             ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id IN (pg_temp.run(30), pg_temp.run(31))
                   ORDER BY message_id), pg_temp.worker())),
          '31', 'start_tasks with messages of two runs gives a pool''s one slot to the higher priority');
SELECT pgflow.set_pool('pr', NULL);
SELECT pgflow.drop_pool('prpool');

---------------------------------------------------------------------------------------------------
-- Plain queues keep pgmq's order, whatever their headers
---------------------------------------------------------------------------------------------------
SELECT pgmq.create('plainq');
SELECT pgmq.send('plainq', '{"n": 1}');
SELECT pgmq.send('plainq', '{"n": 2}', '{"x-pgflow-priority": 9}'::jsonb);
SELECT is((SELECT message ->> 'n' FROM pgmq.read('plainq', 30, 1)), '1', 'a plain queue is read lowest id first');
SELECT hasnt_index('pgmq', 'q_plainq', 'q_plainq_priority_idx', 'and has no priority index');
SELECT has_index('pgmq', 'q_pr', 'q_pr_priority_idx', 'a flow''s queue has one');
SELECT lives_ok($$SELECT pgflow.create_flow('pr')$$, 'create_flow of an existing flow again is harmless');

---------------------------------------------------------------------------------------------------
-- Idempotent starts
---------------------------------------------------------------------------------------------------
SELECT is((SELECT run_id FROM pgflow.start_run('pr', '{"v": 1}', idempotency_key => 'order-1', run_id => pg_temp.run(40))),
          pg_temp.run(40), 'a start with a new key starts a run');
SELECT is((SELECT run_id FROM pgflow.start_run('pr', '{"v": 2}', idempotency_key => 'order-1')),
          pg_temp.run(40), 'a second start with the key returns that run');
SELECT is((SELECT input FROM pgflow.runs WHERE run_id = pg_temp.run(40)), '{"v": 1}',
          'which keeps its own input');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pr' AND input ->> 'v' IS NOT NULL), 1,
          'and no second run exists');
SELECT is((SELECT run_id FROM pgflow.start_run('pr', '{"v": 3}', 2, 'order-1', pg_temp.run(41))), pg_temp.run(40),
          'whatever priority or run id the second start asks for');
SELECT is((SELECT run_id FROM pgflow.start_run('prmap', '[1]', idempotency_key => 'order-1', run_id => pg_temp.run(42))),
          pg_temp.run(42), 'keys are per flow');
SELECT is((SELECT status FROM pgflow.start_run('pr', '{"v": 4}', 6, 'order-2', pg_temp.run(43))), 'started',
          'a key and a priority together');
SELECT is((SELECT priority || ' ' || idempotency_key FROM pgflow._run_options WHERE run_id = pg_temp.run(43)),
          '6 order-2', 'are recorded together');
SELECT pg_temp.complete_step(pg_temp.run(40), 'a', '1');
SELECT pg_temp.complete_step(pg_temp.run(40), 'b', '2');
SELECT is((SELECT status || ' ' || run_id::text FROM pgflow.start_run('pr', '{}', idempotency_key => 'order-1')),
          'completed ' || pg_temp.run(40), 'a completed run keeps its key: starting again returns it, completed');

-- A run deleted without pgflow's pruning frees its key.
DELETE FROM pgflow.step_tasks WHERE run_id = pg_temp.run(40);
DELETE FROM pgflow.step_states WHERE run_id = pg_temp.run(40);
DELETE FROM pgflow.runs WHERE run_id = pg_temp.run(40);
SELECT is((SELECT run_id FROM pgflow.start_run('pr', '{}', idempotency_key => 'order-1', run_id => pg_temp.run(44))),
          pg_temp.run(44), 'once its run is gone, the key starts a new run');
SELECT is((SELECT count(*)::int FROM pgflow._run_options WHERE idempotency_key = 'order-1'), 2,
          'one key row per flow');

-- Pruning and delete_flow_and_data remove the options of the runs they remove.
UPDATE pgflow.runs SET status = 'completed', completed_at = now() - interval '30 days',
                       started_at = now() - interval '30 days'
WHERE run_id = pg_temp.run(43);
SELECT pgflow.prune_data_older_than(make_interval(days => 7));
SELECT is((SELECT count(*)::int FROM pgflow._run_options WHERE run_id = pg_temp.run(43)), 0,
          'pruning a run removes its options');
SELECT pgflow.delete_flow_and_data('prmap');
SELECT is((SELECT count(*)::int FROM pgflow._run_options WHERE flow_slug = 'prmap'), 0,
          'delete_flow_and_data removes the options of the flow''s runs');
SELECT pgflow.set_flow_priority('pr', 2);
SELECT pgflow.delete_flow_and_data('pr');
SELECT is((SELECT count(*)::int FROM pgflow._flow_options), 0, 'and the flow''s own');

SELECT * FROM finish();
ROLLBACK;
