-- Maintenance.
BEGIN;
SELECT plan(29);
\ir helpers/common.psql

---------------------------------------------------------------------------------------------------
-- delete_flow_and_data
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('del');
SELECT pgflow.add_step('del', 'a');
SELECT pgflow.add_step('del', 'b', ARRAY['a']);
SELECT pgflow.create_flow('keep');
SELECT pgflow.add_step('keep', 'a');
SELECT pgflow.start_flow('del', '{}', '00000000-0000-0000-0000-000000000d01');
SELECT pgflow.start_flow('del', '{}', '00000000-0000-0000-0000-000000000d02');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000d01', 'a', '1');
SELECT pgflow.start_flow('keep', '{}', '00000000-0000-0000-0000-000000000d03');
SELECT pgflow.track_worker_function('del-fn');
SELECT pg_temp.worker();

SELECT is(pgflow.delete_flow_and_data('del')::text, '', 'delete_flow_and_data returns void');
SELECT ok(to_regclass('pgmq.q_del') IS NULL AND to_regclass('pgmq.a_del') IS NULL
          AND NOT EXISTS (SELECT 1 FROM pgmq.list_queues() WHERE queue_name = 'del'), 'the flow''s queue is dropped');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug = 'del')
          + (SELECT count(*)::int FROM pgflow.step_states WHERE flow_slug = 'del')
          + (SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'del')
          + (SELECT count(*)::int FROM pgflow.deps WHERE flow_slug = 'del')
          + (SELECT count(*)::int FROM pgflow.steps WHERE flow_slug = 'del')
          + (SELECT count(*)::int FROM pgflow.flows WHERE flow_slug = 'del'), 0,
          'all step_tasks, step_states, runs, deps, steps and the flows row are deleted');
SELECT results_eq($$SELECT (SELECT count(*)::int FROM pgflow.flows WHERE flow_slug = 'keep'),
                           (SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'keep'),
                           (SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug = 'keep'),
                           (SELECT count(*)::int FROM pgmq.q_keep)$$,
                  $$VALUES (1, 1, 1, 1)$$, 'another flow is untouched');
SELECT results_eq($$SELECT (SELECT count(*)::int FROM pgflow.workers), (SELECT count(*)::int FROM pgflow.worker_functions)$$,
                  $$VALUES (1, 1)$$, 'workers and worker_functions untouched');
SELECT pgmq.drop_queue('keep');
SELECT lives_ok($$SELECT pgflow.delete_flow_and_data('keep')$$, 'a flow whose queue is already gone (pgmq 1.13 drop_queue: NOTICE + false)');
SELECT is((SELECT count(*)::int FROM pgflow.flows WHERE flow_slug = 'keep'), 0, 'its data is deleted anyway');
SELECT lives_ok($$SELECT pgflow.delete_flow_and_data('never_existed')$$, 'unknown flow: no error');
SELECT is(pg_temp.session_messages($$SELECT pgflow.create_flow('del_notice')$$, $$SELECT pgflow.delete_flow_and_data('del_notice')$$),
          '{}'::text[], 'delete_flow_and_data raises no notice of its own');
SELECT is(pg_temp.session_messages($$SELECT pgflow.delete_flow_and_data('del_missing')$$),
          ARRAY['NOTICE: 00000: pgmq queue `del_missing` does not exist'], 'missing queue: only pgmq''s NOTICE');
SELECT pgflow.create_flow('del');
SELECT is((SELECT count(*)::int FROM pgmq.list_queues() WHERE queue_name = 'del'), 1, 'the slug can be created again');

---------------------------------------------------------------------------------------------------
-- requeue_stalled_tasks
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('rq', timeout => 10);
SELECT pgflow.add_step('rq', 'fresh');
SELECT pgflow.add_step('rq', 'stalled');
SELECT pgflow.add_step('rq', 'long_step', timeout => 1000);
SELECT pgflow.add_step('rq', 'doomed');
SELECT pgflow.add_step('rq', 'last_chance');
SELECT pgflow.add_step('rq', 'waiting');
SELECT pgflow.add_step('rq', 'dead');
SELECT pgflow.start_flow('rq', '{}', '00000000-0000-0000-0000-000000000d11');
SELECT pgflow.start_flow('rq', '{}', '00000000-0000-0000-0000-000000000d12');
CREATE TEMP TABLE read_msgs AS SELECT msg_id FROM pgmq.read('rq', 300, 100);
SELECT pgflow.start_tasks('rq', ARRAY(SELECT message_id FROM pgflow.step_tasks
                                      WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug <> 'waiting'), pg_temp.worker());
SELECT pgflow.start_tasks('rq', ARRAY(SELECT message_id FROM pgflow.step_tasks
                                      WHERE run_id = '00000000-0000-0000-0000-000000000d12' AND step_slug = 'stalled'), pg_temp.worker());
UPDATE pgflow.step_tasks SET queued_at = now() - interval '1 hour' WHERE flow_slug = 'rq';
UPDATE pgflow.step_tasks SET started_at = now() - interval '40 seconds' WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'fresh';
UPDATE pgflow.step_tasks SET started_at = now() - interval '41 seconds' WHERE flow_slug = 'rq' AND (step_slug = 'stalled' OR run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'long_step');
UPDATE pgflow.step_tasks SET started_at = now() - interval '10 minutes', requeued_count = 3 WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'doomed';
UPDATE pgflow.step_tasks SET started_at = now() - interval '10 minutes', requeued_count = 2 WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'last_chance';
UPDATE pgflow.step_tasks SET started_at = now() - interval '10 minutes', requeued_count = 3,
       permanently_stalled_at = now() - interval '5 minutes' WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'dead';
-- The second run is failed: run status is not considered.
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000d12';
CREATE TEMP TABLE before_requeue AS
    SELECT t.step_slug, t.run_id, t.attempts_count, t.message_id, pg_temp.msg_vt('rq', t.message_id) AS vt
    FROM pgflow.step_tasks t WHERE t.flow_slug = 'rq';
CREATE TEMP TABLE clock AS SELECT clock_timestamp() AS before;

SELECT is(pgflow.requeue_stalled_tasks(), 4,
          'requeues the 4 tasks started more than flow timeout + 30 s ago (step timeout ignored, failed run included)');
ALTER TABLE clock ADD COLUMN after timestamptz;
UPDATE clock SET after = clock_timestamp();
SELECT results_eq(
    $$SELECT t.run_id, t.step_slug, t.status, t.started_at, t.last_worker_id, t.requeued_count, t.last_requeued_at,
             t.attempts_count = b.attempts_count, t.permanently_stalled_at
      FROM pgflow.step_tasks t JOIN before_requeue b USING (run_id, step_slug)
      WHERE (t.run_id = '00000000-0000-0000-0000-000000000d11' AND t.step_slug IN ('stalled', 'long_step', 'last_chance'))
         OR (t.run_id = '00000000-0000-0000-0000-000000000d12' AND t.step_slug = 'stalled')
      ORDER BY t.run_id, t.step_slug$$,
    $$VALUES ('00000000-0000-0000-0000-000000000d11'::uuid, 'last_chance'::text, 'queued'::text, NULL::timestamptz, NULL::uuid, 3, now(), true, NULL::timestamptz),
             ('00000000-0000-0000-0000-000000000d11', 'long_step', 'queued', NULL, NULL, 1, now(), true, NULL),
             ('00000000-0000-0000-0000-000000000d11', 'stalled', 'queued', NULL, NULL, 1, now(), true, NULL),
             ('00000000-0000-0000-0000-000000000d12', 'stalled', 'queued', NULL, NULL, 1, now(), true, NULL)$$,
    'requeued: queued, started_at and last_worker_id NULL, requeued_count + 1, last_requeued_at now, attempts_count untouched');
SELECT ok((SELECT bool_and(pg_temp.msg_vt('rq', b.message_id) BETWEEN c.before AND c.after) FROM before_requeue b, clock c
           WHERE (b.run_id = '00000000-0000-0000-0000-000000000d11' AND b.step_slug IN ('stalled', 'long_step', 'last_chance'))
              OR (b.run_id = '00000000-0000-0000-0000-000000000d12' AND b.step_slug = 'stalled')),
          'requeued tasks'' messages are visible again (vt reset to clock)');
SELECT ok((SELECT bool_and(b.vt > c.after + interval '200 seconds') FROM before_requeue b, clock c
           WHERE (b.run_id = '00000000-0000-0000-0000-000000000d11' AND b.step_slug IN ('stalled', 'long_step', 'last_chance'))
              OR (b.run_id = '00000000-0000-0000-0000-000000000d12' AND b.step_slug = 'stalled')), '(they were invisible before)');
SELECT results_eq($$SELECT status, requeued_count, permanently_stalled_at, started_at = now() - interval '10 minutes'
                    FROM pgflow.step_tasks WHERE step_slug = 'doomed' AND run_id = '00000000-0000-0000-0000-000000000d11'$$,
                  $$VALUES ('started'::text, 3, now(), true)$$,
                  'requeued_count 3: permanently stalled (status stays started, requeued_count unchanged)');
SELECT ok((SELECT message_id FROM before_requeue WHERE step_slug = 'doomed' AND run_id = '00000000-0000-0000-0000-000000000d11')
          = ANY (pg_temp.archived_ids('rq')),
          'Q2: its message is archived (this call also requeued tasks)');
SELECT results_eq($$SELECT step_slug, status, started_at = now() - interval '40 seconds', requeued_count FROM pgflow.step_tasks
                    WHERE step_slug = 'fresh' AND run_id = '00000000-0000-0000-0000-000000000d11'$$,
                  $$VALUES ('fresh'::text, 'started'::text, true, 0)$$,
                  'a task started exactly timeout + 30 s ago is not stalled yet (strictly older required)');
SELECT results_eq($$SELECT status, requeued_count, permanently_stalled_at = now() - interval '5 minutes' FROM pgflow.step_tasks
                    WHERE step_slug = 'dead' AND run_id = '00000000-0000-0000-0000-000000000d11'$$,
                  $$VALUES ('started'::text, 3, true)$$, 'an already permanently stalled task is ignored');
SELECT results_eq($$SELECT status, requeued_count FROM pgflow.step_tasks
                    WHERE step_slug = 'waiting' AND run_id = '00000000-0000-0000-0000-000000000d11'$$,
                  $$VALUES ('queued'::text, 0)$$, 'a queued task is ignored');
SELECT is(pgflow.requeue_stalled_tasks(), 0, 'a second call requeues nothing');
SELECT is((SELECT count(*)::int FROM pgflow.start_tasks('rq',
              ARRAY[(pg_temp.task('00000000-0000-0000-0000-000000000d11', 'stalled')).message_id], pg_temp.worker())), 1,
          'start_tasks claims a requeued task again');
SELECT results_eq($$SELECT attempts_count, last_worker_id FROM pgflow.step_tasks
                    WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'stalled'$$,
                  $$VALUES (2, '00000000-0000-0000-0000-0000000000aa'::uuid)$$,
                  'a requeued task can be started again (attempts_count 2)');
UPDATE pgflow.step_tasks SET status = 'started', started_at = now() - interval '10 minutes' WHERE run_id = '00000000-0000-0000-0000-000000000d11' AND step_slug = 'last_chance';
SELECT is(pgflow.requeue_stalled_tasks(), 0, 'requeued_count 3 reached: not requeued again');
SELECT results_eq($$SELECT status, requeued_count, permanently_stalled_at FROM pgflow.step_tasks
                    WHERE step_slug = 'last_chance' AND run_id = '00000000-0000-0000-0000-000000000d11'$$,
                  $$VALUES ('started'::text, 3, now())$$, 'but permanently stalled');
SELECT is(pg_temp.session_messages('SELECT pgflow.requeue_stalled_tasks()'), '{}'::text[], 'no notices');
SELECT is(pgflow.requeue_stalled_tasks(), 0, 'nothing left');
SELECT results_eq($$SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug = 'rq' AND permanently_stalled_at IS NOT NULL$$,
                  $$VALUES (3)$$, 'three permanently stalled tasks in total');
SELECT is((SELECT count(*)::int FROM pgflow.start_tasks('rq', ARRAY(SELECT message_id FROM pgflow.step_tasks
                                                               WHERE permanently_stalled_at IS NOT NULL), pg_temp.worker())), 0,
          'permanently stalled tasks are never picked again');

SELECT * FROM finish();
ROLLBACK;
