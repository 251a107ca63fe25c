-- Flow concurrency: set_flow_concurrency's bad input; runs over the limit wait (started in
-- pgflow.runs, waiting for run_status, nothing queued); the transaction that ends an active run
-- (completion, failure, cancel) starts the next waiting run, by priority then FIFO; paused runs
-- keep their slot; a waiting run can be cancelled, not paused; raising and removing the limit.
BEGIN;
SELECT plan(33);
\ir helpers/common.psql

SELECT pgflow.create_flow('fc', max_attempts => 1, base_delay => 0);
SELECT pgflow.add_step('fc', 'a');
SELECT pgflow.add_step('fc', 'b', ARRAY['a']);

CREATE FUNCTION pg_temp.run(n int) RETURNS uuid LANGUAGE sql AS $$
    SELECT ('00000000-0000-0000-0000-0000000fc0' || lpad(n::text, 2, '0'))::uuid
$$;
-- Each run of flow fc as NN=status (run_status), in run id order.
CREATE FUNCTION pg_temp.states() RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(right(run_id::text, 2) || '=' || pgflow.run_status(run_id), ' ' ORDER BY run_id)
    FROM pgflow.runs WHERE flow_slug = 'fc'
$$;
CREATE FUNCTION pg_temp.queued_runs() RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(DISTINCT right(t.run_id::text, 2), ' ') FROM pgflow.step_tasks t
    JOIN pgflow.runs r ON r.run_id = t.run_id AND r.status = 'started'
    WHERE t.flow_slug = 'fc' AND t.status = 'queued'
$$;

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.set_flow_concurrency(NULL, 1)$$, '22004', 'flow_slug must not be NULL',
                 'set_flow_concurrency without a flow is 22004');
SELECT throws_ok($$SELECT pgflow.set_flow_concurrency('fc', 0)$$, '22023',
                 'max_active_runs must be at least 1 (NULL: no limit)', 'a limit below 1 is 22023');
SELECT throws_ok($$SELECT pgflow.set_flow_concurrency('nope', 1)$$, '42704', 'flow "nope" does not exist',
                 'an unknown flow is 42704');
CREATE ROLE pgflow_t_dave NOSUPERUSER;
GRANT USAGE ON SCHEMA pgflow TO pgflow_t_dave;
SET LOCAL ROLE pgflow_t_dave;
SELECT throws_ok($$SELECT pgflow.set_flow_concurrency('fc', 1)$$, '42501',
                 'must be the owner of flow "fc" to change its concurrency', 'only the flow''s owner may set it');
RESET ROLE;

---------------------------------------------------------------------------------------------------
-- Runs over the limit wait
---------------------------------------------------------------------------------------------------
SELECT pgflow.set_flow_concurrency('fc', 2);
SELECT is((SELECT status FROM pgflow.start_flow('fc', '{}', pg_temp.run(1))), 'started', 'the first run starts');
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(2));
SELECT is((SELECT status FROM pgflow.start_flow('fc', '{}', pg_temp.run(3))), 'started',
          'a run over the limit is started for clients of the contract');
SELECT pgflow.start_run('fc', '{}', run_id => pg_temp.run(4));
SELECT pgflow.start_run('fc', '{}', priority => 5, run_id => pg_temp.run(5));
SELECT is(pg_temp.states(), '01=started 02=started 03=waiting 04=waiting 05=waiting',
          'run_status says waiting for the runs over the limit');
SELECT is(pg_temp.queued_runs(), '01 02', 'only the active runs have queued tasks');
SELECT is((SELECT count(*)::int FROM pgmq.q_fc), 2, 'and messages');
SELECT is((SELECT string_agg(status, ',') FROM pgflow.step_states WHERE run_id = pg_temp.run(3)), 'created,created',
          'a waiting run''s steps are created, none started');

---------------------------------------------------------------------------------------------------
-- The transaction that ends an active run starts the next waiting one
---------------------------------------------------------------------------------------------------
SELECT pg_temp.complete_step(pg_temp.run(1), 'a', '1');
SELECT is(pg_temp.states(), '01=started 02=started 03=waiting 04=waiting 05=waiting',
          'a step completing frees nothing');
SELECT pg_temp.complete_step(pg_temp.run(1), 'b', '2');
SELECT is(pg_temp.states(), '01=completed 02=started 03=waiting 04=waiting 05=started',
          'a run completing starts the waiting run of the highest priority');
SELECT is(pg_temp.queued_runs(), '02 05', 'whose root task is queued in the same transaction');
SELECT pg_temp.start_step(pg_temp.run(2), 'a');
SELECT pgflow.fail_task(pg_temp.run(2), 'a', 0, 'boom');
SELECT is(pg_temp.states(), '01=completed 02=failed 03=started 04=waiting 05=started',
          'a run failing starts the longest-waiting run of one priority');
SELECT pgflow.cancel_run(pg_temp.run(5));
SELECT is(pg_temp.states(), '01=completed 02=failed 03=started 04=started 05=cancelled',
          'a run cancelled frees its slot');

---------------------------------------------------------------------------------------------------
-- Waiting runs can be cancelled, not paused; paused runs keep their slot
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(6));
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(7));
SELECT throws_ok($$SELECT pgflow.pause_run(pg_temp.run(6))$$, '55000', NULL, 'a waiting run cannot be paused');
SELECT throws_ok($$SELECT pgflow.resume_run(pg_temp.run(6))$$, '55000', NULL, 'nor resumed');
SELECT is((SELECT status FROM pgflow.cancel_run(pg_temp.run(6))), 'failed', 'a waiting run can be cancelled');
SELECT is(pgflow.run_status(pg_temp.run(6)), 'cancelled', 'and is cancelled');
SELECT is(pgflow.run_status(pg_temp.run(7)), 'waiting', 'which frees no slot: the next run still waits');
SELECT pgflow.pause_run(pg_temp.run(3));
SELECT is(pgflow.run_status(pg_temp.run(7)), 'waiting', 'a paused run keeps its slot');
SELECT pg_temp.complete_step(pg_temp.run(4), 'a', '1');
SELECT pg_temp.complete_step(pg_temp.run(4), 'b', '1');
SELECT is(pg_temp.states(), '01=completed 02=failed 03=paused 04=completed 05=cancelled 06=cancelled 07=started',
          'the next run starts when an active one ends');
SELECT pgflow.resume_run(pg_temp.run(3));

---------------------------------------------------------------------------------------------------
-- Raising and removing the limit
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(8));
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(9));
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(10));
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'fc' AND pgflow.run_status(run_id) = 'waiting'), 3,
          'three runs wait behind a limit of 2');
SELECT pgflow.set_flow_concurrency('fc', 3);
SELECT is((SELECT string_agg(right(run_id::text, 2) || '=' || pgflow.run_status(run_id), ' ' ORDER BY run_id)
           FROM pgflow.runs WHERE run_id IN (pg_temp.run(8), pg_temp.run(9), pg_temp.run(10))),
          '08=started 09=waiting 10=waiting', 'raising the limit starts the first waiting run at once');
SELECT pgflow.set_flow_concurrency('fc', 1);
SELECT pgflow.start_flow('fc', '{}', pg_temp.run(11));
SELECT is(pgflow.run_status(pg_temp.run(11)), 'waiting', 'lowering it leaves active runs alone; new ones wait');
SELECT pgflow.set_flow_concurrency('fc', NULL);
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'fc' AND pgflow.run_status(run_id) = 'waiting'), 0,
          'removing the limit starts every waiting run');
SELECT is(pg_temp.queued_runs(), '03 07 08 09 10 11', 'with their tasks queued');
SELECT is((SELECT status FROM pgflow.start_flow('fc', '{}', pg_temp.run(12))), 'started', 'and new runs start');
SELECT is(pgflow.run_status(pg_temp.run(12)), 'started', 'without waiting');

---------------------------------------------------------------------------------------------------
-- A waiting run passed by while a slot is free starts at the next start, or at the worker's round
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('fcl');
SELECT pgflow.add_step('fcl', 'a');
SELECT pgflow.set_flow_concurrency('fcl', 1);
SELECT pgflow.start_flow('fcl', '{}', pg_temp.run(20));
SELECT pgflow.start_flow('fcl', '{}', pg_temp.run(21));
SELECT pgflow.start_flow('fcl', '{}', pg_temp.run(22));
-- The active run ends behind the engine's back: nothing released its slot.
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = pg_temp.run(20);
SELECT pgflow.start_flow('fcl', '{}', pg_temp.run(23));
SELECT is((SELECT string_agg(right(run_id::text, 2) || '=' || pgflow.run_status(run_id), ' ' ORDER BY run_id)
           FROM pgflow.runs WHERE flow_slug = 'fcl'), '20=failed 21=started 22=waiting 23=waiting',
          'a new start gives the free slot to the head of the line, and waits behind it');
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = pg_temp.run(21);
SELECT pgflow._release_waiting_runs();
SELECT is((SELECT string_agg(right(run_id::text, 2) || '=' || pgflow.run_status(run_id), ' ' ORDER BY run_id)
           FROM pgflow.runs WHERE flow_slug = 'fcl'), '20=failed 21=failed 22=started 23=waiting',
          'the background worker''s round starts a waiting run that fits');

---------------------------------------------------------------------------------------------------
-- A waiting run of a flow without steps completes when it starts
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('fcempty');
SELECT pgflow.set_flow_concurrency('fcempty', 1);
SELECT is((SELECT status FROM pgflow.start_flow('fcempty', '{}')), 'completed',
          'a run with nothing to do completes at once');
SELECT is((SELECT status FROM pgflow.start_flow('fcempty', '{}')), 'completed', 'and takes no slot');

SELECT * FROM finish();
ROLLBACK;
