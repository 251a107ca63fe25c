-- Task execution: start_tasks (eligibility, inputs, flow_input) and
-- complete_task (normal path, dependents, run completion, archiving, idempotency, late callbacks,
-- failed runs).
BEGIN;
SELECT plan(55);
\ir helpers/common.psql

SELECT pgflow.create_flow('tk');
SELECT pgflow.add_step('tk', 'a');
SELECT pgflow.add_step('tk', 'b');
SELECT pgflow.add_step('tk', 'c', ARRAY['a', 'b']);
SELECT pgflow.add_step('tk', 'd', ARRAY['c']);
SELECT pgflow.start_flow('tk', '{"x": 1}', '00000000-0000-0000-0000-000000000401');
SELECT pg_temp.worker();

---------------------------------------------------------------------------------------------------
-- start_tasks
---------------------------------------------------------------------------------------------------
CREATE TEMP TABLE got AS SELECT msg_id, vt FROM pgmq.read('tk', 30, 10);
SELECT is((SELECT count(*)::int FROM got), 2, 'worker reads the two root messages');
SELECT set_eq(
    $$SELECT * FROM pgflow.start_tasks('tk', ARRAY(SELECT msg_id FROM got), pg_temp.worker())$$,
    $$SELECT 'tk'::text AS f, '00000000-0000-0000-0000-000000000401'::uuid AS r, t.step_slug, '{}'::jsonb AS i, t.message_id,
             0 AS ti, '{"x": 1}'::jsonb AS fi
      FROM pgflow.step_tasks t WHERE t.run_id = '00000000-0000-0000-0000-000000000401'$$,
    'start_tasks returns (flow_slug, run_id, step_slug, input {} for a root single step, msg_id, task_index, flow_input = run input)');
SELECT results_eq(
    $$SELECT step_slug, status, attempts_count, started_at, last_worker_id FROM pgflow.step_tasks
      WHERE run_id = '00000000-0000-0000-0000-000000000401' ORDER BY step_slug$$,
    $$VALUES ('a'::text, 'started'::text, 1, now(), '00000000-0000-0000-0000-0000000000aa'::uuid),
             ('b', 'started', 1, now(), '00000000-0000-0000-0000-0000000000aa')$$,
    'claimed tasks: started, attempts_count 1, started_at now, last_worker_id = worker');
SELECT set_eq($$SELECT q.msg_id, q.vt FROM pgmq.q_tk q$$, $$SELECT msg_id, vt FROM got$$,
              'Q1: start_tasks leaves the vt set by the read untouched');
SELECT is_empty($$SELECT * FROM pgflow.start_tasks('tk', ARRAY(SELECT msg_id FROM got), pg_temp.worker())$$,
                'a second start_tasks with the same ids returns nothing (tasks are no longer queued)');
SELECT is((SELECT sum(attempts_count)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000401'), 2,
          'and counts no extra attempt');
SELECT is_empty($$SELECT * FROM pgflow.start_tasks('tk', NULL, pg_temp.worker())$$, 'NULL msg_ids: empty result');
SELECT is_empty($$SELECT * FROM pgflow.start_tasks('tk', '{}', pg_temp.worker())$$, 'empty msg_ids: empty result');
SELECT is_empty($$SELECT * FROM pgflow.start_tasks('tk', ARRAY[999999::bigint], pg_temp.worker())$$, 'unknown ids ignored');

SELECT pgflow.start_flow('tk', '{"x": 2}', '00000000-0000-0000-0000-000000000402');
SELECT is_empty($$SELECT * FROM pgflow.start_tasks('other_flow', pg_temp.task_msgs('00000000-0000-0000-0000-000000000402'), pg_temp.worker())$$,
                'ids of another flow''s tasks are ignored (flow_slug must match)');
SELECT throws_ok($$SELECT * FROM pgflow.start_tasks('tk', pg_temp.task_msgs('00000000-0000-0000-0000-000000000402'),
                                                    '00000000-0000-0000-0000-0000000000bb')$$,
                 '23503', 'insert or update on table "step_tasks" violates foreign key constraint "step_tasks_last_worker_id_fkey"',
                 'a worker missing from pgflow.workers fails the call');
-- Ineligible: run not started, step state not started
UPDATE pgflow.step_states SET status = 'failed', failed_at = now()
WHERE run_id = '00000000-0000-0000-0000-000000000402' AND step_slug = 'a';
SELECT results_eq($$SELECT step_slug FROM pgflow.start_tasks('tk', pg_temp.task_msgs('00000000-0000-0000-0000-000000000402'), pg_temp.worker())$$,
                  $$VALUES ('b'::text)$$, 'a task whose step state is not started is ignored');
SELECT pgflow.start_flow('tk', '{"x": 3}', '00000000-0000-0000-0000-000000000403');
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000403';
SELECT is_empty($$SELECT * FROM pgflow.start_tasks('tk', pg_temp.task_msgs('00000000-0000-0000-0000-000000000403'), pg_temp.worker())$$,
                'tasks of a run that is not started are ignored');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000403' AND status = 'queued'), 2,
          'and stay queued');

---------------------------------------------------------------------------------------------------
-- complete_task: normal path
---------------------------------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'a', 0, '{"r": "A"}')$$,
    $$SELECT 'tk'::text, '00000000-0000-0000-0000-000000000401'::uuid, 'a'::text, t.message_id, 0, 'completed'::text, 1,
             NULL::text, '{"r": "A"}'::jsonb, now(), now(), NULL::timestamptz, now(),
             '00000000-0000-0000-0000-0000000000aa'::uuid, 0, NULL::timestamptz, NULL::timestamptz
      FROM pgflow.step_tasks t WHERE t.run_id = '00000000-0000-0000-0000-000000000401' AND t.step_slug = 'a'$$,
    'complete_task returns the completed step_tasks row (all 17 columns)');
SELECT results_eq(
    $$SELECT status, remaining_tasks, output, completed_at, initial_tasks FROM pgflow.step_states
      WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'a'$$,
    $$VALUES ('completed'::text, 0, '{"r": "A"}'::jsonb, now(), 1)$$,
    'single step completed: remaining_tasks 0, output = task output, completed_at now');
SELECT results_eq(
    $$SELECT status, remaining_deps FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'c'$$,
    $$VALUES ('created'::text, 1)$$, 'dependent: remaining_deps 2 -> 1, still created');
SELECT is((SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000401'), 3,
          'run remaining_steps 4 -> 3');
SELECT ok(NOT (pg_temp.task(('00000000-0000-0000-0000-000000000401'), 'a')).message_id = ANY (pg_temp.queued_ids('tk'))
          AND (pg_temp.task(('00000000-0000-0000-0000-000000000401'), 'a')).message_id = ANY (pg_temp.archived_ids('tk')),
          'the completed task''s message is archived');

SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'b', 0, NULL)$$,
                  $$VALUES ('completed'::text, NULL::jsonb)$$, 'complete_task with SQL NULL output');
SELECT results_eq($$SELECT status, output, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'b'$$,
                  $$VALUES ('completed'::text, NULL::jsonb, 0)$$, 'a single step may complete with output NULL');
SELECT results_eq($$SELECT status, remaining_deps, remaining_tasks, started_at FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'c'$$,
                  $$VALUES ('started'::text, 0, 1, now())$$, 'the dependent with all deps completed is started');
SELECT is((SELECT status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'c'),
          'queued', 'and its task queued');

-- complete_task on a queued task: no change
SELECT results_eq($$SELECT status, output, completed_at FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'c', 0, '"early"')$$,
                  $$VALUES ('queued'::text, NULL::jsonb, NULL::timestamptz)$$, 'completing a queued task changes nothing');
SELECT results_eq($$SELECT status, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'c'$$,
                  $$VALUES ('started'::text, 1)$$, 'the step is unchanged');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000401', 'c')).message_id = ANY (pg_temp.queued_ids('tk')),
          'the queued task''s message stays in the queue');

SELECT results_eq($$SELECT input, flow_input, task_index FROM pg_temp.start_step('00000000-0000-0000-0000-000000000401', 'c')$$,
                  $$VALUES ('{"a": {"r": "A"}, "b": null}'::jsonb, NULL::jsonb, 0)$$,
                  'dependent single step input = {dep: output} of completed deps (run input not merged), flow_input NULL');

-- Unknown run / step / task
SELECT is_empty($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-00000000ffff', 'a', 0, '1')$$, 'unknown run: empty result');
SELECT is_empty($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'zz', 0, '1')$$, 'unknown step: empty result');
SELECT is_empty($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'c', 7, '1')$$, 'unknown task index: empty result');
SELECT results_eq($$SELECT status, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'c'$$,
                  $$VALUES ('started'::text, 1)$$, 'unknown task index changed nothing');

SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'c', 0, '{"c": true}');
SELECT results_eq($$SELECT input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000401', 'd')$$,
                  $$VALUES ('{"c": {"c": true}}'::jsonb)$$, 'next step input');
SELECT results_eq($$SELECT status FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'd', 0, '[1, 2]')$$,
                  $$VALUES ('completed'::text)$$, 'completing the last step');
SELECT results_eq($$SELECT status, output, remaining_steps, completed_at, failed_at FROM pgflow.runs
                    WHERE run_id = '00000000-0000-0000-0000-000000000401'$$,
                  $$VALUES ('completed'::text, '{"d": [1, 2]}'::jsonb, 0, now(), NULL::timestamptz)$$,
                  'run completed: output {leaf: output}, remaining_steps 0, completed_at now');
SELECT is(pg_temp.queued_ids('tk') && pg_temp.task_msgs('00000000-0000-0000-0000-000000000401'), false,
          'no message of the completed run remains in the queue');
SELECT is((SELECT count(*)::int FROM pgmq.a_tk WHERE msg_id = ANY (pg_temp.task_msgs('00000000-0000-0000-0000-000000000401'))), 4,
          'all four messages are archived');

-- Idempotency and late callbacks
SELECT results_eq($$SELECT status, output, completed_at FROM pgflow.complete_task('00000000-0000-0000-0000-000000000401', 'a', 0, '"again"')$$,
                  $$VALUES ('completed'::text, '{"r": "A"}'::jsonb, now())$$,
                  'completing a completed task again returns it unchanged');
SELECT results_eq($$SELECT status, output, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000401' AND step_slug = 'a'$$,
                  $$VALUES ('completed'::text, '{"r": "A"}'::jsonb, 0)$$, 'step output unchanged');
SELECT results_eq($$SELECT status, remaining_steps, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000401'$$,
                  $$VALUES ('completed'::text, 0, '{"d": [1, 2]}'::jsonb)$$, 'run unchanged');

-- Late callback on a step that is no longer started: message archived, row unchanged.
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000402', 'b');  -- already started above; no-op
UPDATE pgflow.step_states SET status = 'skipped', skip_reason = 'condition_unmet', skipped_at = now(), remaining_tasks = NULL
WHERE run_id = '00000000-0000-0000-0000-000000000402' AND step_slug = 'b';
SELECT results_eq($$SELECT status, output, completed_at FROM pgflow.complete_task('00000000-0000-0000-0000-000000000402', 'b', 0, '"late"')$$,
                  $$VALUES ('started'::text, NULL::jsonb, NULL::timestamptz)$$,
                  'late callback on a skipped step: task row returned unchanged');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000402', 'b')).message_id = ANY (pg_temp.archived_ids('tk'))
          AND NOT (pg_temp.task('00000000-0000-0000-0000-000000000402', 'b')).message_id = ANY (pg_temp.queued_ids('tk')),
          'late callback: the task''s message is archived');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000402'$$,
                  $$VALUES ('started'::text, 4)$$, 'late callback: run untouched');
SELECT results_eq($$SELECT status FROM pgflow.complete_task('00000000-0000-0000-0000-000000000402', 'a', 0, '"late"')$$,
                  $$VALUES ('queued'::text)$$, 'late callback on a failed step (queued task): row unchanged');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000402', 'a')).message_id = ANY (pg_temp.archived_ids('tk')),
          'and its message archived');

-- Failed run: nothing changed, nothing archived.
SELECT pgflow.start_flow('tk', '{"x": 4}', '00000000-0000-0000-0000-000000000404');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000404', 'a');
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000404';
SELECT results_eq($$SELECT status, output, completed_at FROM pgflow.complete_task('00000000-0000-0000-0000-000000000404', 'a', 0, '"x"')$$,
                  $$VALUES ('started'::text, NULL::jsonb, NULL::timestamptz)$$, 'failed run: complete_task returns the task unchanged');
SELECT results_eq($$SELECT status, remaining_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000404' AND step_slug = 'a'$$,
                  $$VALUES ('started'::text, 1, NULL::jsonb)$$, 'failed run: step state unchanged');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000404', 'a')).message_id = ANY (pg_temp.queued_ids('tk')),
          'failed run: the message is not archived');

-- Invariant: every message of the flow's queue and archive belongs to exactly one task.
SELECT is((SELECT count(*)::int FROM (SELECT msg_id FROM pgmq.q_tk UNION ALL SELECT msg_id FROM pgmq.a_tk) m
           JOIN pgflow.step_tasks t ON t.flow_slug = 'tk' AND t.message_id = m.msg_id),
          (SELECT count(*)::int FROM pgmq.q_tk) + (SELECT count(*)::int FROM pgmq.a_tk),
          'every enqueued message corresponds to exactly one step_tasks row');

-- _archive_task_message
SELECT pgflow.start_flow('tk', '{}', '00000000-0000-0000-0000-000000000406');
SELECT lives_ok($$SELECT pgflow._archive_task_message(p_run_id => '00000000-0000-0000-0000-000000000406', p_step_slug => 'a', p_task_index => 0)$$,
                '_archive_task_message with named arguments');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000406', 'a')).message_id = ANY (pg_temp.archived_ids('tk'))
          AND NOT (pg_temp.task('00000000-0000-0000-0000-000000000406', 'a')).message_id = ANY (pg_temp.queued_ids('tk')),
          '_archive_task_message archives the task''s message');
SELECT is((pg_temp.task('00000000-0000-0000-0000-000000000406', 'a')).status, 'queued', 'and leaves the task row alone');
UPDATE pgflow.step_tasks SET message_id = NULL WHERE run_id = '00000000-0000-0000-0000-000000000406' AND step_slug = 'b';
SELECT lives_ok($$SELECT pgflow._archive_task_message('00000000-0000-0000-0000-000000000406', 'b', 0)$$,
                'a task without message_id: nothing to archive, no error');
SELECT lives_ok($$SELECT pgflow._archive_task_message('00000000-0000-0000-0000-00000000ffff', 'a', 0)$$, 'unknown task: no error');


-- Transactions: complete_task runs in the caller's transaction.
SAVEPOINT sp;
SELECT pgflow.start_flow('tk', '{}', '00000000-0000-0000-0000-000000000405');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000405', 'a', '1');
ROLLBACK TO SAVEPOINT sp;
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000405'), 0,
          'rolled back with the caller: no run');
SELECT is((SELECT count(*)::int FROM pgmq.q_tk q WHERE q.message ->> 'run_id' = '00000000-0000-0000-0000-000000000405')
          + (SELECT count(*)::int FROM pgmq.a_tk q WHERE q.message ->> 'run_id' = '00000000-0000-0000-0000-000000000405'), 0,
          'rolled back with the caller: no message sent or archived');

SELECT * FROM finish();
ROLLBACK;
