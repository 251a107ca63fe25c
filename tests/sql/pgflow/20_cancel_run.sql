-- cancel_run and run_status: bad input, a run cancelled while its tasks are queued and while
-- they are started, the run:cancelled event, cancelling twice and finished runs, local SQL
-- tasks, pool slots, and cleanup by delete_flow_and_data and pruning. Executors interrupted
-- in the middle of a handler or a program: tests/executor.sh.
BEGIN;
SELECT plan(36);
\ir helpers/common.psql

CREATE SCHEMA realtime;
CREATE TABLE realtime.sent (id bigserial PRIMARY KEY, payload jsonb, event text, topic text, private boolean);
CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO realtime.sent (payload, event, topic, private) VALUES (payload, event, topic, private);
$$;

SELECT pgflow.create_flow('cx', max_attempts => 1);
SELECT pgflow.add_step('cx', 'a');
SELECT pgflow.add_step('cx', 'b', ARRAY['a']);

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.cancel_run(NULL)$$, '22004', 'run_id must not be NULL',
                 'cancel_run(NULL) is 22004');
SELECT throws_ok($$SELECT pgflow.cancel_run('00000000-0000-0000-0000-00000000dead')$$, 'P0002',
                 'run 00000000-0000-0000-0000-00000000dead does not exist', 'an unknown run is P0002');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-00000000dead'), NULL, 'run_status of an unknown run is NULL');
SELECT is(pgflow.run_status(NULL), NULL, 'run_status(NULL) is NULL');

---------------------------------------------------------------------------------------------------
-- Cancelled while its task is queued
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('cx', '{}', '00000000-0000-0000-0000-0000000c0001');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000c0001'), 'started', 'run_status of a running run: started');
SELECT is((SELECT count(*)::int FROM pgmq.q_cx), 1, 'the root task has a message');
SELECT is((SELECT status FROM pgflow.cancel_run('00000000-0000-0000-0000-0000000c0001')), 'failed',
          'cancel_run returns the run, failed as clients of the contract see it');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000c0001'), 'cancelled', 'run_status says cancelled');
SELECT ok((SELECT failed_at IS NOT NULL AND completed_at IS NULL FROM pgflow.runs
           WHERE run_id = '00000000-0000-0000-0000-0000000c0001'), 'failed_at is set');
SELECT is((SELECT count(*)::int FROM pgmq.q_cx), 0, 'its queued task left the queue');
SELECT is((SELECT count(*)::int FROM pgmq.a_cx), 1, 'its message was archived');
SELECT is((SELECT array_agg(event || ' ' || (payload->>'status') || ' ' || (payload->>'flow_slug')
                            || ' ' || (payload ? 'cancelled_at')::text)
           FROM realtime.sent WHERE topic = 'pgflow:run:00000000-0000-0000-0000-0000000c0001'
                                AND event LIKE 'run:%' AND event <> 'run:started'),
          ARRAY['run:cancelled cancelled cx true'], 'one run:cancelled event, with the time of the cancel');
SELECT is((SELECT status FROM pgflow.cancel_run('00000000-0000-0000-0000-0000000c0001')), 'failed',
          'cancelling again returns the run');
SELECT is((SELECT count(*)::int FROM realtime.sent WHERE event = 'run:cancelled'), 1,
          'cancelling again sends no second event');
SELECT is((SELECT count(*)::int FROM pgflow.start_tasks('cx',
              ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000c0001'),
              pg_temp.worker())), 0, 'start_tasks hands out no task of a cancelled run');

---------------------------------------------------------------------------------------------------
-- Finished runs
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('cx', '{}', '00000000-0000-0000-0000-0000000c0002');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000c0002', 'a', '1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000c0002', 'b', '2');
SELECT throws_ok($$SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000c0002')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000c0002 is already completed: only a started run can be cancelled',
                 'cancelling a completed run is 55000');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000c0002'), 'completed', 'run_status: completed');
SELECT pgflow.start_flow('cx', '{}', '00000000-0000-0000-0000-0000000c0003');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000c0003', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-0000000c0003', 'a', 0, 'boom');
SELECT throws_ok($$SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000c0003')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000c0003 is already failed: only a started run can be cancelled',
                 'cancelling a failed run is 55000');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000c0003'), 'failed', 'run_status: failed');
SELECT is((SELECT count(*)::int FROM pgflow.complete_task('00000000-0000-0000-0000-0000000c0003', 'a', 0, '1')), 1,
          'complete_task on a failed (not cancelled) run still returns the task row, as the contract says');

---------------------------------------------------------------------------------------------------
-- Cancelled while its task is started: the task's calls return nothing and change nothing
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('cx', '{}', '00000000-0000-0000-0000-0000000c0004');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000c0004', 'a');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000c0004');
SELECT is((SELECT count(*)::int FROM pgflow.complete_task('00000000-0000-0000-0000-0000000c0004', 'a', 0, '1')), 0,
          'complete_task of a started task of a cancelled run returns no row');
SELECT is((SELECT count(*)::int FROM pgflow.fail_task('00000000-0000-0000-0000-0000000c0004', 'a', 0, 'late')), 0,
          'fail_task of it returns no row');
SELECT is((SELECT status || ' ' || coalesce(output::text, '-') || ' ' || coalesce(error_message, '-')
           FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000c0004'),
          'started - -', 'the task row is unchanged');
SELECT is((SELECT string_agg(step_slug || ' ' || status, ', ' ORDER BY step_slug) FROM pgflow.step_states
           WHERE run_id = '00000000-0000-0000-0000-0000000c0004'),
          'a started, b created', 'no step completed or failed');
SELECT is((SELECT status || ' ' || remaining_steps || ' ' || coalesce(output::text, '-') FROM pgflow.runs
           WHERE run_id = '00000000-0000-0000-0000-0000000c0004'), 'failed 2 -', 'the run is unchanged');
SELECT is((SELECT count(*)::int FROM pgmq.q_cx), 0, 'the started task''s message was archived too');

---------------------------------------------------------------------------------------------------
-- Local SQL tasks leave the executors' queue and never run
---------------------------------------------------------------------------------------------------
CREATE TABLE public.cx_effects (run_id uuid);
SELECT pgflow.create_flow('cxs');
SELECT pgflow.add_step('cxs', 's');
SELECT pgflow.set_sql_handler('cxs', 's', $$INSERT INTO public.cx_effects VALUES (($2->>'id')::uuid) RETURNING 1$$);
SELECT pgflow.start_flow('cxs', '{"id": "00000000-0000-0000-0000-0000000c0005"}', '00000000-0000-0000-0000-0000000c0005');
SELECT pgflow.start_flow('cxs', '{"id": "00000000-0000-0000-0000-0000000c0006"}', '00000000-0000-0000-0000-0000000c0006');
SELECT is((SELECT count(*)::int FROM pgflow._local_tasks), 2, 'two SQL tasks wait for the executors');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000c0005');
SELECT is((SELECT array_agg(run_id::text) FROM pgflow._local_tasks), ARRAY['00000000-0000-0000-0000-0000000c0006'],
          'the cancelled run''s task left the executors'' queue');
SELECT is(pgflow.run_local_tasks(10), 1, 'run_local_tasks runs only the other run''s task');
SELECT is((SELECT array_agg(run_id::text) FROM public.cx_effects), ARRAY['00000000-0000-0000-0000-0000000c0006'],
          'the cancelled run''s handler never ran');

---------------------------------------------------------------------------------------------------
-- A pool slot held by a started task of the run becomes free
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_pool('cxp', 1);
SELECT pgflow.set_pool('cx', 'cxp');
SELECT pgflow.start_flow('cx', '{}', '00000000-0000-0000-0000-0000000c0007');
SELECT pgflow.start_flow('cx', '{}', '00000000-0000-0000-0000-0000000c0008');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000c0007', 'a')), 1,
          'a task takes the pool''s only slot');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000c0008', 'a')), 0,
          'another run''s task finds the pool full');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000c0007');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000c0008', 'a')), 1,
          'after the cancel the slot is free');
SELECT pgflow.drop_pool('cxp');

---------------------------------------------------------------------------------------------------
-- Cleanup: pruning and delete_flow_and_data remove the control rows
---------------------------------------------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM pgflow._run_control), 4, 'four cancelled runs are recorded');
UPDATE pgflow.runs SET started_at = now() - interval '40 days', failed_at = now() - interval '39 days'
WHERE run_id = '00000000-0000-0000-0000-0000000c0005';
SELECT pgflow.prune_data_older_than(interval '30 days');
SELECT is((SELECT count(*)::int FROM pgflow._run_control WHERE run_id = '00000000-0000-0000-0000-0000000c0005'), 0,
          'pruning a cancelled run removes its control row');
SELECT pgflow.delete_flow_and_data('cx');
SELECT is((SELECT count(*)::int FROM pgflow._run_control), 0, 'delete_flow_and_data removes the flow''s control rows');

SELECT * FROM finish();
ROLLBACK;
