-- pause_run and resume_run: bad input, a paused run hands out no task (external workers,
-- start_tasks, executors), started tasks finish and are recorded while dependents wait, in the
-- middle of a DAG and of a map step; retries while paused; a run finishing while paused; cancel
-- of a paused run.
BEGIN;
SELECT plan(47);
\ir helpers/common.psql

SELECT pgflow.create_flow('px', max_attempts => 3, base_delay => 0);
SELECT pgflow.add_step('px', 'a');
SELECT pgflow.add_step('px', 'b', ARRAY['a']);
SELECT pgflow.add_step('px', 'c', ARRAY['b']);

CREATE FUNCTION pg_temp.statuses(p_run uuid) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(ss.step_slug || ' ' || ss.status, ', ' ORDER BY s.step_index)
    FROM pgflow.step_states ss JOIN pgflow.steps s USING (flow_slug, step_slug) WHERE ss.run_id = p_run
$$;
CREATE FUNCTION pg_temp.visible(p_queue text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    EXECUTE format('SELECT count(*)::int FROM pgmq.%I WHERE vt <= clock_timestamp()', 'q_' || p_queue) INTO n;
    RETURN n;
END;
$$;

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.pause_run(NULL)$$, '22004', 'run_id must not be NULL', 'pause_run(NULL) is 22004');
SELECT throws_ok($$SELECT pgflow.resume_run(NULL)$$, '22004', 'run_id must not be NULL', 'resume_run(NULL) is 22004');
SELECT throws_ok($$SELECT pgflow.pause_run('00000000-0000-0000-0000-00000000dead')$$, 'P0002',
                 'run 00000000-0000-0000-0000-00000000dead does not exist', 'pause_run of an unknown run is P0002');
SELECT throws_ok($$SELECT pgflow.resume_run('00000000-0000-0000-0000-00000000dead')$$, 'P0002',
                 'run 00000000-0000-0000-0000-00000000dead does not exist', 'resume_run of an unknown run is P0002');

---------------------------------------------------------------------------------------------------
-- A paused run hands out nothing; resume shows its task again
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('px', '{}', '00000000-0000-0000-0000-0000000d0001');
SELECT is(pg_temp.visible('px'), 1, 'the root task''s message is visible');
SELECT is((SELECT status FROM pgflow.pause_run('00000000-0000-0000-0000-0000000d0001')), 'started',
          'pause_run returns the run, started as clients of the contract see it');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000d0001'), 'paused', 'run_status says paused');
SELECT is(pg_temp.visible('px'), 0, 'its queued task''s message is hidden');
SELECT is((SELECT count(*)::int FROM pgmq.read('px', 30, 10)), 0, 'a worker reading the queue gets nothing');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000d0001', 'a')), 0,
          'start_tasks with the message id hands out nothing');
SELECT is((SELECT status FROM pgflow.pause_run('00000000-0000-0000-0000-0000000d0001')), 'started',
          'pausing again is harmless');
SELECT is((SELECT status FROM pgflow.resume_run('00000000-0000-0000-0000-0000000d0001')), 'started',
          'resume_run returns the run');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000d0001'), 'started', 'run_status says started again');
SELECT is(pg_temp.visible('px'), 1, 'the message is visible again');
SELECT throws_ok($$SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0001')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000d0001 is not paused', 'resuming a run that is not paused is 55000');

---------------------------------------------------------------------------------------------------
-- In the middle of a DAG: a started task finishes while paused; its dependent waits for resume
---------------------------------------------------------------------------------------------------
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000d0001', 'a', '"A"');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000d0001', 'b')), 1, 'b''s task starts');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0001');
SELECT is((SELECT status FROM pgflow.complete_task('00000000-0000-0000-0000-0000000d0001', 'b', 0, '"B"')), 'completed',
          'a task started before the pause completes while paused');
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000d0001'), 'a completed, b completed, c created',
          'its step completed; the dependent did not start');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000d0001' AND step_slug = 'c'), 0,
          'the dependent has no task yet');
SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0001');
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000d0001'), 'a completed, b completed, c started',
          'resume starts the dependent');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000d0001', 'c', '"C"');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000d0001'),
          'completed {"c": "C"}', 'the run completes after resume');

---------------------------------------------------------------------------------------------------
-- In the middle of a map step
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('pm');
SELECT pgflow.add_step('pm', 'm', step_type => 'map');
SELECT pgflow.add_step('pm', 'after', ARRAY['m']);
SELECT pgflow.start_flow('pm', '[1, 2, 3, 4]', '00000000-0000-0000-0000-0000000d0002');
SELECT is((SELECT count(*)::int FROM pgflow.start_tasks('pm',
              ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000d0002'
                    AND task_index < 2), pg_temp.worker())), 2, 'two of the map''s four tasks start');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0002');
SELECT is((SELECT count(*)::int FROM generate_series(0, 1) i,
           LATERAL pgflow.complete_task('00000000-0000-0000-0000-0000000d0002', 'm', i, to_jsonb(i * 10))), 2,
          'both complete while paused');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000d0002', 'm')), 0,
          'the other two are not handed out');
SELECT is(pg_temp.visible('pm'), 0, 'their messages are hidden');
SELECT is((SELECT remaining_tasks FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000d0002' AND step_slug = 'm'), 2,
          'the map step counts the two completions');
SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0002');
SELECT is(pg_temp.visible('pm'), 2, 'after resume the two messages are visible');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-0000000d0002', 'm', '[0, 10, 20, 30]');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000d0002', 'after', '"done"');
SELECT is((SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000d0002'), 'completed',
          'the map run completes');
SELECT is((SELECT output FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000d0002' AND step_slug = 'm'),
          '[0, 10, 20, 30]'::jsonb, 'with the outputs of all four tasks, in order');

---------------------------------------------------------------------------------------------------
-- A retry while paused waits for resume
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('px', '{}', '00000000-0000-0000-0000-0000000d0003');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000d0003', 'a');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0003');
SELECT is((SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-0000000d0003', 'a', 0, 'flaky')), 'queued',
          'a failed attempt while paused is recorded, and the task goes back to the queue');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000d0003', 'a')), 0,
          'it is not handed out while paused');
SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0003');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000d0003', 'a')), 1,
          'after resume it is handed out again');
SELECT is((SELECT status || ' ' || attempts_count FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000d0003'),
          'started 2', 'for its second attempt');

---------------------------------------------------------------------------------------------------
-- Finished while paused; finished and cancelled runs
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('pf');
SELECT pgflow.add_step('pf', 'only');
SELECT pgflow.start_flow('pf', '{}', '00000000-0000-0000-0000-0000000d0004');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000d0004', 'only');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0004');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000d0004', 'only', 0, '1');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000d0004'), 'completed',
          'a run whose last task completes while paused completes');
SELECT throws_ok($$SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0004')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000d0004 is already completed: only a started run can be paused',
                 'pausing a completed run is 55000');
SELECT throws_ok($$SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0004')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000d0004 is already completed: only a started run can be resumed',
                 'resuming a completed run is 55000');
SELECT pgflow.start_flow('pf', '{}', '00000000-0000-0000-0000-0000000d0005');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0005');
SELECT is((SELECT status FROM pgflow.cancel_run('00000000-0000-0000-0000-0000000d0005')), 'failed', 'a paused run can be cancelled');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000d0005'), 'cancelled', 'and is cancelled');
SELECT throws_ok($$SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0005')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000d0005 is already cancelled: only a started run can be paused',
                 'pausing a cancelled run is 55000');

---------------------------------------------------------------------------------------------------
-- SQL tasks wait in the executors' queue
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('pl');
SELECT pgflow.add_step('pl', 's');
SELECT pgflow.set_sql_handler('pl', 's', 'SELECT 42');
SELECT pgflow.start_flow('pl', '{}', '00000000-0000-0000-0000-0000000d0006');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0006');
SELECT is(pgflow.run_local_tasks(10), 0, 'executors run no task of a paused run');
SELECT is((SELECT count(*)::int FROM pgflow._local_tasks WHERE run_id = '00000000-0000-0000-0000-0000000d0006'), 1,
          'its task stays in the executors'' queue');
SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0006');
SELECT is(pgflow.run_local_tasks(10), 1, 'after resume they run it');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000d0006'),
          'completed {"s": 42}', 'and the run completes');

---------------------------------------------------------------------------------------------------
-- Timeouts of started tasks still apply while paused; the retry stays held back
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('ptime', max_attempts => 3, base_delay => 0, timeout => 1);
SELECT pgflow.add_step('ptime', 'slow');
SELECT pgflow.start_flow('ptime', '{}', '00000000-0000-0000-0000-0000000d0009');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000d0009', 'slow');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000d0009');
UPDATE pgflow.step_tasks SET queued_at = now() - interval '20 seconds', started_at = now() - interval '10 seconds'
WHERE run_id = '00000000-0000-0000-0000-0000000d0009';
SELECT is(pgflow._fail_timed_out_tasks('0 seconds'), 1, 'the worker''s timeout check fails the paused run''s timed-out attempt');
SELECT is((SELECT status || ' ' || attempts_count || ' ' || error_message FROM pgflow.step_tasks
           WHERE run_id = '00000000-0000-0000-0000-0000000d0009'), 'queued 1 Task timed out after 1 seconds',
          'the attempt counts and the task waits for a retry');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000d0009') || ' ' || pg_temp.visible('ptime'), 'paused 0',
          'the run stays paused and the retry''s message hidden');
SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000d0009');
SELECT is(pg_temp.visible('ptime'), 1, 'resume shows it');

SELECT * FROM finish();
ROLLBACK;
