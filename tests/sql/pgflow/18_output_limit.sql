-- A map step whose tasks' outputs add up to more than one jsonb value can hold (256 MB): the
-- last completion fails the step and the run with a clear message instead of failing with 54000
-- at every try and leaving the run started for ever.
BEGIN;
SELECT plan(6);
\ir helpers/common.psql

SELECT pgflow.create_flow('big_out');
SELECT pgflow.add_step('big_out', 'm', step_type => 'map');
SELECT pgflow.start_flow('big_out', '[1, 2, 3]', '00000000-0000-0000-0000-00000000d001');
SELECT count(*) FROM pg_temp.start_step('00000000-0000-0000-0000-00000000d001', 'm');

-- 3 x 90 MB of output (a JSON string of 90,000,000 characters each).
SELECT count(*) FROM generate_series(0, 1) i,
    LATERAL pgflow.complete_task('00000000-0000-0000-0000-00000000d001', 'm', i, to_jsonb(repeat('x', 90000000)));
SELECT lives_ok(
    $$SELECT pgflow.complete_task('00000000-0000-0000-0000-00000000d001', 'm', 2, to_jsonb(repeat('x', 90000000)))$$,
    'the last completion does not raise');
SELECT is((SELECT status FROM pgflow.step_tasks
           WHERE run_id = '00000000-0000-0000-0000-00000000d001' AND step_slug = 'm' AND task_index = 2), 'completed', 'its task is completed');
SELECT is((pg_temp.ss('00000000-0000-0000-0000-00000000d001', 'm')).status, 'failed', 'the step failed');
SELECT is((pg_temp.ss('00000000-0000-0000-0000-00000000d001', 'm')).error_message,
          '[OUTPUT_TOO_LARGE] Map step m: the outputs of its tasks add up to more than jsonb allows (256 MB)',
          'with a message that says why');
SELECT is((pg_temp.run('00000000-0000-0000-0000-00000000d001')).status, 'failed', 'the run failed');
SELECT is(pg_temp.queued_ids('big_out'), '{}'::bigint[], 'no message is left in the queue');

SELECT * FROM finish();
ROLLBACK;
