-- Observability: pgflow.flow_stats, pgflow.failing_and_stalled_tasks and pgflow.explain_run.
-- Times are set by hand (now() is the transaction's), so counts and percentiles are exact.
BEGIN;
SELECT plan(27);
\ir helpers/common.psql

SELECT pgflow.create_flow('obs', max_attempts => 1, timeout => 60);
SELECT pgflow.add_step('obs', 'a');
SELECT pgflow.add_step('obs', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('obs', 'z', ARRAY['m']);
SELECT pgflow.create_flow('obs_limit');
SELECT pgflow.add_step('obs_limit', 'only');
SELECT pgflow.set_flow_concurrency('obs_limit', 1);
SELECT pgflow.create_flow('obs_empty');

-- obs: completed (c1), failed (f1), cancelled (x1), paused (p1), running (r1, r2).
SELECT pgflow.start_flow('obs', '{}', '00000000-0000-0000-0000-0000000000c1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000000c1', 'a', '[1, 2, 3, 4]');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-0000000000c1', 'm', '[1, 2, 3, 4]');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000000c1', 'z', '"done"');
SELECT pgflow.start_flow('obs', '{}', '00000000-0000-0000-0000-0000000000f1');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000f1', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-0000000000f1', 'a', 0, 'boom');
SELECT pgflow.start_flow('obs', '{}', '00000000-0000-0000-0000-0000000000e1');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000000e1');
SELECT pgflow.start_flow('obs', '{}', '00000000-0000-0000-0000-0000000000d1');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000000d1');
SELECT pgflow.start_flow('obs', '{}', '00000000-0000-0000-0000-0000000000a1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000000a1', 'a', '[1, 2, 3]');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000a1', 'm');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000000a1', 'm', 0, '1');
SELECT pgflow.start_flow('obs', '{}', '00000000-0000-0000-0000-0000000000a2');
-- obs_limit: one running, one waiting for the slot.
SELECT pgflow.start_flow('obs_limit', '{}', '00000000-0000-0000-0000-0000000000b1');
SELECT pgflow.start_flow('obs_limit', '{}', '00000000-0000-0000-0000-0000000000b2');

SELECT set_eq($$SELECT pg_get_indexdef(indexrelid) FROM pg_index
                WHERE indexrelid IN ('pgflow.idx_step_tasks_flow_completed'::regclass, 'pgflow.idx_step_tasks_flow_failed'::regclass)$$,
    ARRAY['CREATE INDEX idx_step_tasks_flow_completed ON pgflow.step_tasks USING btree (flow_slug, completed_at) INCLUDE (started_at, queued_at) WHERE (status = ''completed''::text)',
          'CREATE INDEX idx_step_tasks_flow_failed ON pgflow.step_tasks USING btree (flow_slug, failed_at) WHERE (status = ''failed''::text)'],
    'the two indexes of observability: finished tasks of a flow by time');
SELECT columns_are('pgflow', 'flow_stats', ARRAY[
    'flow_slug', 'runs_running', 'runs_paused', 'runs_waiting', 'runs_completed', 'runs_failed', 'runs_cancelled',
    'tasks_completed_last_minute', 'tasks_completed_last_hour', 'tasks_failed_last_minute', 'tasks_failed_last_hour',
    'task_duration_p50', 'task_duration_p95', 'queue_wait_p50', 'queue_wait_p95',
    'tasks_queued', 'tasks_started', 'oldest_queued_age', 'last_error', 'last_error_at'],
    'flow_stats has its columns');
SELECT results_eq(
    $$SELECT flow_slug, runs_running, runs_paused, runs_waiting, runs_completed, runs_failed, runs_cancelled
      FROM pgflow.flow_stats ORDER BY flow_slug$$,
    $$VALUES ('obs', 2::bigint, 1::bigint, 0::bigint, 1::bigint, 1::bigint, 1::bigint),
             ('obs_empty', 0, 0, 0, 0, 0, 0),
             ('obs_limit', 1, 0, 1, 0, 0, 0)$$,
    'runs by status: running, paused, waiting, completed, failed (not cancelled) and cancelled; a flow without runs has zeros');

-- Move the completed tasks of obs in time: six in the last hour (two in the last minute) with
-- durations 1, 2, 3, 4, 4 and 5 s and waits 10, 20, 30, 40, 50 and 50 s; two hours ago (not counted).
UPDATE pgflow.step_tasks t SET queued_at = now() - x.age - x.dur - x.wait, started_at = now() - x.age - x.dur,
                             completed_at = now() - x.age
FROM (VALUES ('c1'::text, 'a', 0, interval '10 seconds', interval '1 second', interval '10 seconds'),
             ('c1', 'm', 0, interval '20 seconds', interval '2 seconds', interval '20 seconds'),
             ('c1', 'm', 1, interval '10 minutes', interval '3 seconds', interval '30 seconds'),
             ('c1', 'm', 2, interval '50 minutes', interval '4 seconds', interval '40 seconds'),
             ('c1', 'm', 3, interval '2 hours', interval '100 seconds', interval '100 seconds'),
             ('c1', 'z', 0, interval '3 hours', interval '100 seconds', interval '100 seconds')) x(run, step, idx, age, dur, wait)
WHERE t.run_id = ('00000000-0000-0000-0000-0000000000' || x.run)::uuid AND t.step_slug = x.step AND t.task_index = x.idx;
-- The running run's completed map task: the fifth one in the last hour, 5 s long, waited 50 s.
UPDATE pgflow.step_tasks SET queued_at = now() - interval '30 minutes 55 seconds', started_at = now() - interval '30 minutes 5 seconds',
                             completed_at = now() - interval '30 minutes'
WHERE run_id = '00000000-0000-0000-0000-0000000000a1' AND status = 'completed' AND step_slug = 'm';
UPDATE pgflow.step_tasks SET queued_at = now() - interval '30 minutes 55 seconds', started_at = now() - interval '30 minutes 5 seconds',
                             completed_at = now() - interval '30 minutes 1 second'
WHERE run_id = '00000000-0000-0000-0000-0000000000a1' AND step_slug = 'a';

SELECT results_eq(
    $$SELECT tasks_completed_last_minute, tasks_completed_last_hour, task_duration_p50, task_duration_p95,
             queue_wait_p50, queue_wait_p95 FROM pgflow.flow_stats WHERE flow_slug = 'obs'$$,
    $$VALUES (2::bigint, 6::bigint, interval '3.5 seconds', interval '4.75 seconds', interval '35 seconds', interval '50 seconds')$$,
    'tasks completed in the last minute and hour, p50 and p95 of duration and queue wait over the last hour');

SELECT results_eq(
    $$SELECT tasks_failed_last_minute, tasks_failed_last_hour, last_error FROM pgflow.flow_stats WHERE flow_slug = 'obs'$$,
    $$VALUES (1::bigint, 1::bigint, 'boom'::text)$$, 'the failed task counts, and its error is the last error');
UPDATE pgflow.step_tasks SET failed_at = now() - interval '2 minutes', queued_at = now() - interval '3 minutes',
                             started_at = now() - interval '150 seconds'
WHERE run_id = '00000000-0000-0000-0000-0000000000f1';
SELECT results_eq(
    $$SELECT tasks_failed_last_minute, tasks_failed_last_hour, last_error_at = now() - interval '2 minutes'
      FROM pgflow.flow_stats WHERE flow_slug = 'obs'$$,
    $$VALUES (0::bigint, 1::bigint, true)$$, 'a failure two minutes ago counts in the hour, not the minute');

-- Queued: a2's a (the paused d1 and the cancelled e1 keep theirs, not counted); started: a1's
-- three map tasks but the completed one.
UPDATE pgflow.step_tasks SET queued_at = now() - interval '10 minutes'
WHERE run_id = '00000000-0000-0000-0000-0000000000a2';
UPDATE pgflow.step_tasks SET queued_at = now() - interval '20 minutes'
WHERE run_id IN ('00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000e1');
SELECT results_eq(
    $$SELECT tasks_queued, tasks_started, oldest_queued_age FROM pgflow.flow_stats WHERE flow_slug = 'obs'$$,
    $$VALUES (1::bigint, 2::bigint, interval '10 minutes')$$,
    'tasks queued in running runs and the age of the oldest; started tasks');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug = 'obs' AND status = 'queued'), 3,
          'the paused and the cancelled run keep a queued task each, which the view leaves out');
SELECT is((SELECT row(tasks_completed_last_hour, tasks_queued, oldest_queued_age, last_error, task_duration_p50)::text
           FROM pgflow.flow_stats WHERE flow_slug = 'obs_empty'), '(0,0,,,)', 'a flow without tasks: zeros and NULLs');


-- failing_and_stalled_tasks: one row per kind of problem.
SELECT pgflow.create_flow('obs_retry', max_attempts => 3, timeout => 60);
SELECT pgflow.add_step('obs_retry', 'a');
SELECT pgflow.add_step('obs_retry', 'slow', timeout => 5);
SELECT pgflow.start_flow('obs_retry', '{}', '00000000-0000-0000-0000-0000000000f2');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000f2', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-0000000000f2', 'a', 0, 'try again');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000f2', 'slow');
UPDATE pgflow.step_tasks SET started_at = now() - interval '6 seconds', queued_at = now() - interval '7 seconds'
WHERE run_id = '00000000-0000-0000-0000-0000000000f2' AND step_slug = 'slow';
INSERT INTO pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at)
VALUES ('00000000-0000-0000-0000-0000000000bb', 'obs', 'silent-worker', now() - interval '2 minutes');
UPDATE pgflow.step_tasks SET last_worker_id = '00000000-0000-0000-0000-0000000000bb'
WHERE run_id = '00000000-0000-0000-0000-0000000000a1' AND step_slug = 'm' AND task_index = 1;
UPDATE pgflow.step_tasks SET permanently_stalled_at = now() - interval '1 minute'
WHERE run_id = '00000000-0000-0000-0000-0000000000a1' AND step_slug = 'm' AND task_index = 2;

SELECT results_eq(
    $$SELECT problem, flow_slug, right(run_id::text, 2), step_slug, task_index, attempts, worker_function, error_message
      FROM pgflow.failing_and_stalled_tasks ORDER BY problem, run_id$$,
    $$VALUES ('failed', 'obs', 'f1', 'a', 0, 1, 'test-worker', 'boom'),
             ('past its timeout', 'obs_retry', 'f2', 'slow', 0, 1, 'test-worker', NULL),
             ('retrying', 'obs_retry', 'f2', 'a', 0, 1, 'test-worker', 'try again'),
             ('stalled for good', 'obs', 'a1', 'm', 2, 1, 'test-worker', NULL),
             ('worker silent', 'obs', 'a1', 'm', 1, 1, 'silent-worker', NULL)$$,
    'failed, retrying, past its timeout, worker silent and stalled for good; healthy tasks are not listed');
SELECT is((SELECT age FROM pgflow.failing_and_stalled_tasks WHERE problem = 'past its timeout'), interval '6 seconds',
          'age: how long the problem has lasted');
UPDATE pgflow.step_tasks SET failed_at = now() - interval '2 days', queued_at = now() - interval '2 days 1 minute',
                             started_at = now() - interval '2 days 30 seconds'
WHERE run_id = '00000000-0000-0000-0000-0000000000f1';
SELECT is((SELECT count(*)::int FROM pgflow.failing_and_stalled_tasks WHERE problem = 'failed'), 0,
          'a task that failed two days ago is no longer listed');

-- explain_run
SELECT results_eq(
    $$SELECT kind, step_slug, task_index, status, attempts, error_message, note
      FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000f1')$$,
    $$VALUES ('run', NULL, NULL, 'failed', NULL, NULL, 'step a failed'),
             ('step', 'a', NULL, 'failed', 1, 'boom', 'failed the run'),
             ('task', 'a', 0, 'failed', 1, 'boom', NULL),
             ('step', 'm', NULL, 'created', NULL, NULL, 'not run'),
             ('step', 'z', NULL, 'created', NULL, NULL, 'not run')$$,
    'a failed run: the step that failed it, its task and error, the steps that never ran');
SELECT results_eq(
    $$SELECT kind, step_slug, task_index, status, note FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000a1')$$,
    $$VALUES ('run', NULL, NULL, 'started', '2 steps to go'),
             ('step', 'a', NULL, 'completed', NULL),
             ('task', 'a', 0, 'completed', NULL),
             ('step', 'm', NULL, 'started', '2 of 3 tasks to go'),
             ('task', 'm', 0, 'completed', NULL),
             ('task', 'm', 1, 'started', NULL),
             ('task', 'm', 2, 'started', 'stalled for good'),
             ('step', 'z', NULL, 'created', 'waits for m')$$,
    'a running run: steps in order, each followed by its tasks; what a step waits for');
SELECT results_eq(
    $$SELECT queue_wait, duration, worker_id, worker_function FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000a1')
      WHERE kind = 'task' AND step_slug = 'm' AND task_index = 0$$,
    $$VALUES (interval '50 seconds', interval '5 seconds', '00000000-0000-0000-0000-0000000000aa'::uuid, 'test-worker')$$,
    'a task: its queue wait, duration and worker');
SELECT is((SELECT duration FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000f2')
           WHERE kind = 'task' AND step_slug = 'slow'), interval '6 seconds', 'a started task: how long it has run so far');
SELECT results_eq(
    $$SELECT kind, status, note FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000e1') WHERE kind = 'run'
      UNION ALL
      SELECT kind, status, note FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000d1') WHERE kind = 'run'
      UNION ALL
      SELECT kind, status, note FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000b2') WHERE kind = 'run'$$,
    $$VALUES ('run', 'cancelled', NULL), ('run', 'paused', '3 steps to go'), ('run', 'waiting', '1 steps to go')$$,
    'cancelled, paused and waiting runs say so');
SELECT results_eq(
    $$SELECT kind, step_slug, task_index, status, attempts, error_message, note
      FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000f2') WHERE step_slug = 'a'$$,
    $$VALUES ('step', 'a', NULL, 'started', 1, NULL, '1 of 1 tasks to go'),
             ('task', 'a', 0, 'queued', 1, 'try again', 'queued again after a failed attempt')$$,
    'a task queued again after a failed attempt keeps its error');
SELECT throws_ok($$SELECT * FROM pgflow.explain_run('00000000-0000-0000-0000-000000000999')$$, 'P0002',
                 'run 00000000-0000-0000-0000-000000000999 does not exist', 'an unknown run: P0002');
SELECT throws_ok($$SELECT * FROM pgflow.explain_run(NULL)$$, 'P0002', 'run <NULL> does not exist', 'NULL: P0002');

-- An observer reads all of it, without a run's input or output.
SELECT pgflow.create_roles();
CREATE ROLE obs_watcher IN ROLE pgflow_observer;
SET LOCAL ROLE obs_watcher;
SELECT is((SELECT runs_completed FROM pgflow.flow_stats WHERE flow_slug = 'obs'), 1::bigint, 'an observer reads flow_stats');
SELECT is((SELECT count(*)::int FROM pgflow.failing_and_stalled_tasks), 4, 'and failing_and_stalled_tasks');
SELECT is((SELECT count(*)::int FROM pgflow.explain_run('00000000-0000-0000-0000-0000000000c1')), 10,
          'and explains a run');
SELECT ok(strpos(pgflow.run_graph('00000000-0000-0000-0000-0000000000c1', 'dot'), 'completed') > 0
          AND strpos(pgflow.flow_graph('obs'), 'map') > 0, 'and draws flows and runs');
SELECT throws_ok($$SELECT input FROM pgflow.runs$$, '42501', NULL, 'but still cannot read inputs');
RESET ROLE;

-- A run that failed keeps its other tasks' statuses: a started sibling is not listed, nor counted.
SELECT pgflow.create_flow('obs_ghost', max_attempts => 1);
SELECT pgflow.add_step('obs_ghost', 'm', step_type => 'map');
SELECT pgflow.start_flow('obs_ghost', '[1, 2]', '00000000-0000-0000-0000-0000000000f3');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000f3', 'm');
SELECT pgflow.fail_task('00000000-0000-0000-0000-0000000000f3', 'm', 0, 'ghost');
UPDATE pgflow.step_tasks SET started_at = now() - interval '2 hours', queued_at = now() - interval '2 hours'
WHERE run_id = '00000000-0000-0000-0000-0000000000f3' AND task_index = 1;
SELECT results_eq(
    $$SELECT (SELECT status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000000f3' AND task_index = 1),
             (SELECT count(*) FROM pgflow.failing_and_stalled_tasks WHERE run_id = '00000000-0000-0000-0000-0000000000f3'),
             (SELECT tasks_started FROM pgflow.flow_stats WHERE flow_slug = 'obs_ghost')$$,
    $$VALUES ('started'::text, 1::bigint, 0::bigint)$$,
    'the failed run''s started sibling: only the failure is listed, nothing counts as started');
SELECT ok(pgflow.is_valid_slug('obs'), 'the fixture flow is valid');
SELECT * FROM finish();
ROLLBACK;
