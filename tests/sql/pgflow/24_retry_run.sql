-- retry_run and run_history: bad input; a failure in the middle of a DAG, run again from where it
-- stopped with completed steps kept; failures in a root map step and in a dependent map step;
-- a rerun of a completed run from a step; a cancelled run retried; the history of attempts.
BEGIN;
SELECT plan(37);
\ir helpers/common.psql

SELECT pgflow.create_flow('rr', max_attempts => 1, base_delay => 0);
SELECT pgflow.add_step('rr', 'a');
SELECT pgflow.add_step('rr', 'b', ARRAY['a']);
SELECT pgflow.add_step('rr', 'c', ARRAY['b']);
SELECT pgflow.add_step('rr', 'd', ARRAY['a']);

CREATE FUNCTION pg_temp.statuses(p_run uuid) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(ss.step_slug || '=' || ss.status, ' ' ORDER BY ss.step_slug)
    FROM pgflow.step_states ss WHERE ss.run_id = p_run
$$;
CREATE FUNCTION pg_temp.fail_step(p_run uuid, p_step text, p_index int) RETURNS void LANGUAGE sql AS $$
    SELECT pg_temp.start_step(p_run, p_step);
    SELECT pgflow.fail_task(p_run, p_step, p_index, 'broke ' || p_step);
$$;

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.retry_run(NULL)$$, '22004', 'run_id must not be NULL', 'retry_run(NULL) is 22004');
SELECT throws_ok($$SELECT pgflow.retry_run('00000000-0000-0000-0000-00000000dead')$$, 'P0002',
                 'run 00000000-0000-0000-0000-00000000dead does not exist', 'an unknown run is P0002');
SELECT pgflow.start_flow('rr', '{"x": 1}', '00000000-0000-0000-0000-0000000aa001');
SELECT throws_ok($$SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa001')$$, '55000',
                 'run 00000000-0000-0000-0000-0000000aa001 is started: only a failed run can be retried, and a completed one from a step',
                 'a started run cannot be retried');
SELECT throws_ok($$SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa001', 'nope')$$, '55000', NULL,
                 'nor rerun from a step');

---------------------------------------------------------------------------------------------------
-- A failure in the middle of a DAG
---------------------------------------------------------------------------------------------------
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa001', 'a', '{"a": 1}');
SELECT pg_temp.fail_step('00000000-0000-0000-0000-0000000aa001', 'b', 0);
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000aa001'), 'a=completed b=failed c=created d=started',
          'b failed the run while d was queued');
SELECT throws_ok($$SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa001', 'nope')$$, '42704',
                 'step "nope" of flow "rr" does not exist', 'an unknown step is 42704');
SELECT is((SELECT status FROM pgflow.retry_run('00000000-0000-0000-0000-0000000aa001')), 'started',
          'retry_run returns the run, started again');
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000aa001'), 'a=completed b=started c=created d=started',
          'the failed step and the unfinished ones run again; the completed step is kept');
SELECT is((SELECT output FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000aa001' AND step_slug = 'a'),
          '{"a": 1}', 'with its output');
SELECT is((SELECT string_agg(step_slug || ':' || status || ':' || attempts_count, ' ' ORDER BY step_slug)
           FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000aa001'),
          'a:completed:1 b:queued:0 d:queued:0', 'their tasks are queued afresh, with no attempt used');
SELECT is((SELECT remaining_steps || ' ' || (failed_at IS NULL) FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa001'),
          '3 true', 'the run has three steps to go and no failure time');
SELECT is((SELECT count(*)::int FROM pgmq.q_rr WHERE message ->> 'run_id' = '00000000-0000-0000-0000-0000000aa001'), 2,
          'and two messages in the queue for workers');
SELECT is((SELECT input FROM pg_temp.start_step('00000000-0000-0000-0000-0000000aa001', 'b')), '{"a": {"a": 1}}',
          'the step run again gets the kept output as input');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000aa001', 'b', 0, '{"b": 2}');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa001', 'c', '{"c": 3}');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa001', 'd', '{"d": 4}');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa001'),
          'completed {"c": {"c": 3}, "d": {"d": 4}}', 'the run completes with a new output');
SELECT is((SELECT string_agg(coalesce(rerun::text, '-') || ' ' || step_slug || ' ' || status || ' ' || attempts_count
                             || coalesce(' ' || error_message, ''), ', ')
           FROM pgflow.run_history('00000000-0000-0000-0000-0000000aa001')),
          '1 b failed 1 broke b, 1 d queued 0, - a completed 1, - b completed 1, - c completed 1, - d completed 1',
          'run_history has the replaced attempts (rerun 1) and the current ones');

---------------------------------------------------------------------------------------------------
-- Rerun from a completed step
---------------------------------------------------------------------------------------------------
SELECT is((SELECT status FROM pgflow.retry_run('00000000-0000-0000-0000-0000000aa001', from_step => 'b')), 'started',
          'a completed run reruns from a step');
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000aa001'), 'a=completed b=started c=created d=completed',
          'that step and those downstream run again; the others keep their outputs');
SELECT is((SELECT output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa001'), NULL,
          'the run has no output until it completes again');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa001', 'b', '{"b": 20}');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa001', 'c', '{"c": 30}');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa001'),
          'completed {"c": {"c": 30}, "d": {"d": 4}}', 'and it completes with the new outputs');
SELECT is((SELECT string_agg(step_slug || ' ' || output::text, ', ' ORDER BY step_slug)
           FROM pgflow.run_history('00000000-0000-0000-0000-0000000aa001') WHERE rerun = 2),
          'b {"b": 2}, c {"c": 3}', 'rerun 2 kept the outputs it replaced');
SELECT is((SELECT string_agg(rerun || ' ' || coalesce(from_step, '-') || ' ' || previous_status, ', ' ORDER BY rerun)
           FROM pgflow._run_reruns WHERE run_id = '00000000-0000-0000-0000-0000000aa001'),
          '1 - failed, 2 b completed', 'each rerun is numbered, with its step and what the run was');

---------------------------------------------------------------------------------------------------
-- Failures in map steps
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('rm', max_attempts => 1, base_delay => 0);
SELECT pgflow.add_step('rm', 'each', step_type => 'map');
SELECT pgflow.add_step('rm', 'sum', ARRAY['each']);
SELECT pgflow.start_flow('rm', '[1, 2, 3]', '00000000-0000-0000-0000-0000000aa002');
SELECT pg_temp.start_step('00000000-0000-0000-0000-0000000aa002', 'each');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000aa002', 'each', 0, '10');
SELECT pgflow.fail_task('00000000-0000-0000-0000-0000000aa002', 'each', 1, 'bad element');
SELECT is((SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa002'), 'failed',
          'a failed map task fails the run');
SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa002');
SELECT is((SELECT initial_tasks || ' ' || status FROM pgflow.step_states
           WHERE run_id = '00000000-0000-0000-0000-0000000aa002' AND step_slug = 'each'), '3 started',
          'the root map step runs again over the run input, all its tasks');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-0000000aa002', 'each', '[10, 20, 30]');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa002', 'sum', '60');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa002'),
          'completed {"sum": 60}', 'and the run completes');
SELECT is((SELECT count(*)::int FROM pgflow.run_history('00000000-0000-0000-0000-0000000aa002') WHERE rerun = 1), 3,
          'the three earlier map tasks are in the history');

SELECT pgflow.create_flow('rdm', max_attempts => 1, base_delay => 0);
SELECT pgflow.add_step('rdm', 'list');
SELECT pgflow.add_step('rdm', 'each', ARRAY['list'], step_type => 'map');
SELECT pgflow.start_flow('rdm', '{}', '00000000-0000-0000-0000-0000000aa003');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa003', 'list', '["p", "q"]');
SELECT pg_temp.fail_step('00000000-0000-0000-0000-0000000aa003', 'each', 0);
SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa003');
SELECT is((SELECT initial_tasks || ' ' || status FROM pgflow.step_states
           WHERE run_id = '00000000-0000-0000-0000-0000000aa003' AND step_slug = 'each'), '2 started',
          'a dependent map step runs again over its kept dependency''s output');
SELECT is((SELECT string_agg(input::text, ' ' ORDER BY task_index)
           FROM pg_temp.start_step('00000000-0000-0000-0000-0000000aa003', 'each')), '"p" "q"',
          'its tasks get the elements');
SELECT throws_ok($$SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa003', 'list')$$, '55000', NULL,
                 'a retried run, started again, cannot be retried until it finishes');

---------------------------------------------------------------------------------------------------
-- A rerun from a step keeps what a skip cascade skipped while its cause stays skipped
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('rsk', max_attempts => 1, base_delay => 0);
SELECT pgflow.add_step('rsk', 'x', required_input_pattern => '{"go": true}', when_unmet => 'skip-cascade');
SELECT pgflow.add_step('rsk', 'z');
SELECT pgflow.add_step('rsk', 'y', ARRAY['x', 'z']);
SELECT pgflow.start_flow('rsk', '{"go": false}', '00000000-0000-0000-0000-0000000aa005');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa005', 'z', '1');
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000aa005') || ' ' ||
          (SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000aa005'),
          'x=skipped y=skipped z=completed completed', 'x''s condition skipped it and, by cascade, y');
SELECT pgflow.retry_run('00000000-0000-0000-0000-0000000aa005', 'z');
SELECT is(pg_temp.statuses('00000000-0000-0000-0000-0000000aa005'), 'x=skipped y=skipped z=started',
          'a rerun from z runs z again; y stays skipped, as x does');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000aa005', 'z', '2');
SELECT is((SELECT r.status || ' ' || ss.output::text FROM pgflow.runs r
           JOIN pgflow.step_states ss ON ss.run_id = r.run_id AND ss.step_slug = 'z'
           WHERE r.run_id = '00000000-0000-0000-0000-0000000aa005'),
          'completed 2', 'and the run completes without y, with z''s new output');

---------------------------------------------------------------------------------------------------
-- A cancelled run, retried
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('rr', '{}', '00000000-0000-0000-0000-0000000aa004');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-0000000aa004');
SELECT is((SELECT status FROM pgflow.retry_run('00000000-0000-0000-0000-0000000aa004')), 'started',
          'a cancelled run can be retried');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-0000000aa004'), 'started', 'it is no longer cancelled');
SELECT is((SELECT count(*)::int FROM pgmq.read('rr', 30, 10) WHERE message ->> 'run_id' = '00000000-0000-0000-0000-0000000aa004'), 1,
          'and its root task is handed out again');
SELECT is((SELECT previous_status FROM pgflow._run_reruns WHERE run_id = '00000000-0000-0000-0000-0000000aa004'),
          'cancelled', 'the rerun says it was cancelled');

---------------------------------------------------------------------------------------------------
-- Pruning removes the history
---------------------------------------------------------------------------------------------------
UPDATE pgflow.runs SET started_at = now() - interval '30 days', completed_at = now() - interval '30 days'
WHERE run_id = '00000000-0000-0000-0000-0000000aa002';
SELECT pgflow.prune_data_older_than(make_interval(days => 7));
SELECT is((SELECT count(*)::int FROM pgflow._task_history WHERE run_id = '00000000-0000-0000-0000-0000000aa002')
          + (SELECT count(*)::int FROM pgflow._run_reruns WHERE run_id = '00000000-0000-0000-0000-0000000aa002'), 0,
          'pruning a run removes its history');
SELECT pgflow.delete_flow_and_data('rr');
SELECT is((SELECT count(*)::int FROM pgflow._task_history WHERE flow_slug = 'rr'), 0,
          'delete_flow_and_data removes the flow''s history');

SELECT * FROM finish();
ROLLBACK;
