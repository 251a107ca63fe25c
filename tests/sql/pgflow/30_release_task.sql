-- release_task: a started task goes back to the queue, its attempt not counted; run_input: a
-- run's input for the workers of its flow.
BEGIN;
SELECT plan(16);
\ir helpers/common.psql

SELECT pgflow.create_flow('rel', max_attempts => 2);
SELECT pgflow.add_step('rel', 'a');
SELECT pgflow.add_step('rel', 'b', ARRAY['a']);
SELECT pgflow.start_flow('rel', '{"n": 7}', '00000000-0000-0000-0000-0000000000e1');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000e1', 'a');

INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ('00000000-0000-0000-0000-0000000000bb', 'rel', 'other');
SELECT results_eq(
    $$SELECT status, attempts_count FROM pgflow.release_task('00000000-0000-0000-0000-0000000000e1', 'a', 0,
                                                              '00000000-0000-0000-0000-0000000000bb')$$,
    $$VALUES ('started'::text, 1)$$, 'another worker cannot release the attempt');
SELECT results_eq(
    $$SELECT status, attempts_count, started_at IS NULL, last_worker_id IS NULL
      FROM pgflow.release_task('00000000-0000-0000-0000-0000000000e1', 'a', 0, pg_temp.worker())$$,
    $$VALUES ('queued'::text, 0, true, true)$$,
    'a released task is queued again, its attempt not counted, no worker');
SELECT ok(pg_temp.msg_vt('rel', (pg_temp.task('00000000-0000-0000-0000-0000000000e1', 'a')).message_id) <= clock_timestamp(),
          'its message is visible at once');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000000e1', 'a')), 1,
          'and a worker starts it again');
SELECT is((pg_temp.task('00000000-0000-0000-0000-0000000000e1', 'a')).attempts_count, 1, 'as its first attempt');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000000e1', 'a', 0, '1');
SELECT results_eq(
    $$SELECT status FROM pgflow.release_task('00000000-0000-0000-0000-0000000000e1', 'a', 0, pg_temp.worker())$$,
    $$VALUES ('completed'::text)$$, 'a completed task is left as it is');
SELECT results_eq(
    $$SELECT status, attempts_count FROM pgflow.release_task('00000000-0000-0000-0000-0000000000e1', 'b', 0, pg_temp.worker())$$,
    $$VALUES ('queued'::text, 0)$$, 'so is a queued one');

-- A paused run keeps the released task hidden until it resumes.
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000e1', 'b');
SELECT pgflow.pause_run('00000000-0000-0000-0000-0000000000e1');
SELECT pgflow.release_task('00000000-0000-0000-0000-0000000000e1', 'b', 0, pg_temp.worker());
SELECT is(pg_temp.msg_vt('rel', (pg_temp.task('00000000-0000-0000-0000-0000000000e1', 'b')).message_id), 'infinity',
          'released in a paused run: hidden');
SELECT pgflow.resume_run('00000000-0000-0000-0000-0000000000e1');
SELECT ok(pg_temp.msg_vt('rel', (pg_temp.task('00000000-0000-0000-0000-0000000000e1', 'b')).message_id) <= clock_timestamp(),
          'visible once the run resumes');
SELECT is_empty($$SELECT * FROM pgflow.check_invariants('rel')$$, 'the invariants hold');

-- A task that stalled for good (its message archived) is not released.
SELECT pgflow.start_flow('rel', '{}', '00000000-0000-0000-0000-0000000000e2');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000000e2', 'a');
UPDATE pgflow.step_tasks SET permanently_stalled_at = now() WHERE run_id = '00000000-0000-0000-0000-0000000000e2';
SELECT results_eq(
    $$SELECT status FROM pgflow.release_task('00000000-0000-0000-0000-0000000000e2', 'a', 0, pg_temp.worker())$$,
    $$VALUES ('started'::text)$$, 'a task stalled for good stays as it is');

SELECT is_empty($$SELECT * FROM pgflow.release_task(NULL, 'a', 0, pg_temp.worker())$$, 'NULL arguments: no row');

SELECT is(pgflow.run_input('00000000-0000-0000-0000-0000000000e1'), '{"n": 7}'::jsonb, 'run_input: the run''s input');
SELECT is(pgflow.run_input('00000000-0000-0000-0000-000000000999'), NULL, 'NULL for an unknown run');

-- Workers: only of the flows granted to them.
SELECT pgflow.create_roles();
CREATE ROLE rel_worker IN ROLE pgflow_worker;
SET LOCAL ROLE rel_worker;
SELECT throws_ok($$SELECT pgflow.run_input('00000000-0000-0000-0000-0000000000e1')$$, '42501', NULL,
                 'a worker without the flow: 42501');
RESET ROLE;
SELECT pgflow.grant_flow('rel', 'rel_worker');
SET LOCAL ROLE rel_worker;
SELECT is(pgflow.run_input('00000000-0000-0000-0000-0000000000e1'), '{"n": 7}'::jsonb, 'with it, the input');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
