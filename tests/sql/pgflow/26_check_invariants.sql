-- check_invariants: no row for runs in every state that the engine made; one row naming the
-- broken rule for each kind of corruption (each made in a savepoint and rolled back).
BEGIN;
SELECT plan(19);
\ir helpers/common.psql

SELECT pgflow.create_flow('inv', max_attempts => 1);
SELECT pgflow.add_step('inv', 'a');
SELECT pgflow.add_step('inv', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('inv', 'z', ARRAY['m']);
SELECT pgflow.create_flow('inv_sql');
SELECT pgflow.add_step('inv_sql', 's');
SELECT pgflow.set_sql_handler('inv_sql', 's', 'SELECT 1');

-- Runs in every state: queued, started, a big map half done (shards), completed, failed,
-- cancelled, paused; a queued local task.
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a01');
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a02');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000a02', 'a');
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a03');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000a03', 'a', to_jsonb(array_fill(1, ARRAY[40])));
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000a03', 'm');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000a03', 'm', i, '1') FROM generate_series(0, 24) i;
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a04');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000a04', 'a', '[1, 2]');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-000000000a04', 'm', '[1, 2]');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000a04', 'z', '"done"');
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a05');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000a05', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000a05', 'a', 0, 'boom');
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a06');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-000000000a06');
SELECT pgflow.start_flow('inv', '{}', '00000000-0000-0000-0000-000000000a07');
SELECT pgflow.pause_run('00000000-0000-0000-0000-000000000a07');
SELECT pgflow.start_flow('inv_sql', '{}', '00000000-0000-0000-0000-000000000a08');

SELECT is((SELECT array_agg(status ORDER BY run_id) FROM pgflow.runs),
          ARRAY['started', 'started', 'started', 'completed', 'failed', 'failed', 'started', 'started'],
          'runs in every state');
SELECT is_empty('SELECT * FROM pgflow.check_invariants()', 'no violation in runs that the engine made');
SELECT is_empty($$SELECT * FROM pgflow.check_invariants('inv_sql')$$, 'nor in one flow');

-- A dependency skipped by its condition is resolved for its dependent, as a completed one is.
SELECT pgflow.create_flow('inv_cond');
SELECT pgflow.add_step('inv_cond', 'a');
SELECT pgflow.add_step('inv_cond', 'b', required_input_pattern => '{"n": 1}');
SELECT pgflow.add_step('inv_cond', 'z', ARRAY['a', 'b']);
SELECT pgflow.start_flow('inv_cond', '{"n": 2}', '00000000-0000-0000-0000-000000000a09');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000a09', 'a', '1');
SELECT is((SELECT string_agg(step_slug || ':' || status, ' ' ORDER BY step_slug) FROM pgflow.step_states
           WHERE run_id = '00000000-0000-0000-0000-000000000a09') || ' / ' ||
          (SELECT count(*) FROM pgflow.check_invariants('inv_cond')),
          'a:completed b:skipped z:started / 0', 'a step started after one dependency completed and one was skipped: no violation');

-- A step added to a flow after a run of it started is not one of the run's steps.
SELECT pgflow.create_flow('inv_grow');
SELECT pgflow.start_flow('inv_grow', '{}', '00000000-0000-0000-0000-000000000a10');
SELECT pgflow.add_step('inv_grow', 'later');
SELECT is((SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000a10') || ' / ' ||
          (SELECT count(*) FROM pgflow.check_invariants('inv_grow')),
          'completed / 0', 'a run that completed before its flow got a step: no violation');

-- Each corruption is found, with its rule, run and step.
CREATE FUNCTION pg_temp.found(corrupt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    EXECUTE corrupt;
    SELECT string_agg(format('%s %s %s', invariant, right(run_id::text, 3), step_slug), '; '
                      ORDER BY invariant, run_id, step_slug)
      INTO result FROM pgflow.check_invariants();
    RAISE EXCEPTION USING ERRCODE = 'P0999', MESSAGE = coalesce(result, 'nothing');
EXCEPTION WHEN SQLSTATE 'P0999' THEN
    RETURN SQLERRM;  -- the corruption is rolled back with the block
END;
$$;

SELECT is(pg_temp.found($$UPDATE pgflow.step_states SET remaining_tasks = 0
                           WHERE run_id = '00000000-0000-0000-0000-000000000a02' AND step_slug = 'a'$$),
          'step counters a02 a', 'a started step''s remaining_tasks that disagrees with its tasks');
SELECT is(pg_temp.found($$UPDATE pgflow.step_states SET remaining_deps = 0
                           WHERE run_id = '00000000-0000-0000-0000-000000000a01' AND step_slug = 'm'$$),
          'step counters a01 m', 'remaining_deps that disagrees with the completed dependencies');
SELECT is(pg_temp.found($$UPDATE pgflow._step_shards SET remaining = remaining - 1
                           WHERE run_id = '00000000-0000-0000-0000-000000000a03' AND shard = 3$$),
          'step counters a03 m', 'a shard that lost a count');
SELECT is(pg_temp.found($$UPDATE pgflow.step_states SET remaining_tasks = 14
                           WHERE run_id = '00000000-0000-0000-0000-000000000a03' AND step_slug = 'm'$$),
          'step counters a03 m', 'a sharded step''s counter ahead of its shards');
SELECT is(pg_temp.found($$UPDATE pgflow.step_tasks SET status = 'queued', completed_at = NULL, output = NULL
                           WHERE run_id = '00000000-0000-0000-0000-000000000a04' AND step_slug = 'm' AND task_index = 1$$),
          'step counters a04 m; task of a finished step a04 m', 'a completed step with a task that is not');
SELECT is(pg_temp.found($$UPDATE pgflow.runs SET remaining_steps = 1
                           WHERE run_id = '00000000-0000-0000-0000-000000000a04'$$),
          'run counters a04 ', 'a run''s remaining_steps that disagrees with its steps');
SELECT is(pg_temp.found($$UPDATE pgflow.runs SET status = 'started', failed_at = NULL
                           WHERE run_id = '00000000-0000-0000-0000-000000000a05'$$),
          'run counters a05 ', 'a started run with a failed step');
SELECT is(pg_temp.found($$DELETE FROM pgmq.q_inv WHERE msg_id =
                           (pg_temp.task('00000000-0000-0000-0000-000000000a01', 'a')).message_id$$),
          'queued task without a message a01 a', 'a queued task whose message is gone');
SELECT is(pg_temp.found($$SELECT pgmq.send('inv', '{}')$$),
          'message without exactly one task  ', 'a message that belongs to no task');
SELECT is(pg_temp.found($$UPDATE pgflow.step_tasks SET message_id =
                           (pg_temp.task('00000000-0000-0000-0000-000000000a01', 'a')).message_id
                           WHERE run_id = '00000000-0000-0000-0000-000000000a07' AND step_slug = 'a'$$),
          'message without exactly one task  ; message without exactly one task  ',
          'two tasks sharing one message (and the message that one of them lost)');
SELECT is(pg_temp.found($$INSERT INTO pgmq.q_inv (msg_id, vt, message) OVERRIDING SYSTEM VALUE
                           SELECT message_id, now(), '{}' FROM pgflow.step_tasks
                           WHERE run_id = '00000000-0000-0000-0000-000000000a04' AND step_slug = 'z'$$),
          'completed task with a queued message a04 z', 'a completed task whose message is back in the queue');
SELECT is(pg_temp.found($$DELETE FROM pgflow._local_tasks WHERE run_id = '00000000-0000-0000-0000-000000000a08'$$),
          'queued task not in the executors'' queue a08 s', 'a queued SQL task that no executor can find');

-- One snapshot: it is STABLE and runs with a fixed search_path.
SELECT is((SELECT provolatile::text || array_to_string(proconfig, ',') FROM pg_proc
           WHERE oid = 'pgflow.check_invariants(text)'::regprocedure),
          'ssearch_path=pg_catalog, pg_temp', 'STABLE, search_path fixed');
SELECT is_empty('SELECT * FROM pgflow.check_invariants()', 'every corruption was rolled back');

SELECT * FROM finish();
ROLLBACK;
