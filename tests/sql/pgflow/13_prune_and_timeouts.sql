-- Pruning and the background worker's SQL entry points:
-- prune_data_older_than, _prune_step in batches, _requeue_stalled_tasks(grace),
-- _fail_timed_out_tasks(grace, max_tasks), _worker_tick.
BEGIN;
SELECT plan(63);
\ir helpers/common.psql

CREATE TEMP TABLE clock (name text PRIMARY KEY, at timestamptz);
CREATE FUNCTION pg_temp.tick(n text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO clock VALUES (n, clock_timestamp()) ON CONFLICT (name) DO UPDATE SET at = excluded.at
$$;
-- vt of a message lies within [before + s, after + s]
CREATE FUNCTION pg_temp.vt_delay_is(p_flow text, p_msg bigint, s integer) RETURNS boolean LANGUAGE sql AS $$
    SELECT pg_temp.msg_vt(p_flow, p_msg) BETWEEN (SELECT at FROM clock WHERE name = 'before') + make_interval(secs => s)
                                             AND (SELECT at FROM clock WHERE name = 'after') + make_interval(secs => s)
$$;
-- Starts every queued task of a step with the given worker and completes it with the given output.
CREATE FUNCTION pg_temp.finish_with(p_run uuid, p_step text, p_worker uuid, p_output jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgflow.start_tasks((SELECT flow_slug FROM pgflow.runs WHERE run_id = p_run),
                               ARRAY(SELECT message_id FROM pgflow.step_tasks
                                     WHERE run_id = p_run AND step_slug = p_step AND status = 'queued'), p_worker);
    PERFORM pgflow.complete_task(p_run, p_step, t.task_index, p_output)
    FROM pgflow.step_tasks t WHERE t.run_id = p_run AND t.step_slug = p_step AND t.status = 'started';
END;
$$;
-- Starts every queued task of a run.
CREATE FUNCTION pg_temp.start_run(p_run uuid) RETURNS void LANGUAGE sql AS $$
    SELECT count(*) FROM pgflow.start_tasks((SELECT flow_slug FROM pgflow.runs WHERE run_id = p_run),
                                            ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = p_run AND status = 'queued'),
                                            pg_temp.worker());
$$;
-- Backdates the start of one task (queued_at of the run's tasks goes back one day first).
CREATE FUNCTION pg_temp.started_ago(p_run uuid, p_step text, p_ago interval) RETURNS void LANGUAGE sql AS $$
    UPDATE pgflow.step_tasks SET queued_at = now() - interval '1 day' WHERE run_id = p_run AND queued_at > now() - interval '1 day';
    UPDATE pgflow.step_tasks SET started_at = now() - p_ago WHERE run_id = p_run AND step_slug = p_step;
$$;

---------------------------------------------------------------------------------------------------
-- prune_data_older_than (cutoff = now - 7 days)
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('pr', max_attempts => 1);
SELECT pgflow.add_step('pr', 'a');
SELECT pgflow.add_step('pr', 'b', ARRAY['a']);
SELECT pgflow.create_flow('pr_gone');
SELECT pgflow.add_step('pr_gone', 'a');
SELECT pgmq.create('not_a_flow');
SELECT pg_temp.worker();
INSERT INTO pgflow.workers (worker_id, queue_name, function_name, started_at, last_heartbeat_at) VALUES
    ('00000000-0000-0000-0000-0000000013a1', 'pr', 'fn', now() - interval '9 days', now() - interval '8 days'),
    ('00000000-0000-0000-0000-0000000013a2', 'pr', 'fn', now() - interval '9 days', now() - interval '7 days'),
    ('00000000-0000-0000-0000-0000000013a3', 'pr', 'fn', now() - interval '9 days', now() - interval '1 day');

-- 1301 completed 9 days ago (its messages are archived)
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001301');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000001301', 'a', '1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000001301', 'b', '2');
UPDATE pgflow.runs SET started_at = now() - interval '10 days', completed_at = now() - interval '9 days'
WHERE run_id = '00000000-0000-0000-0000-000000001301';
-- 1302 failed 8 days ago through fail_task (max_attempts 1)
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001302');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000001302', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000001302', 'a', 0, 'boom');
UPDATE pgflow.runs SET started_at = now() - interval '10 days', failed_at = now() - interval '8 days'
WHERE run_id = '00000000-0000-0000-0000-000000001302';
-- 1303 failed 8 days ago while its task was still queued (message still in the queue)
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001303');
UPDATE pgflow.runs SET status = 'failed', started_at = now() - interval '10 days', failed_at = now() - interval '8 days'
WHERE run_id = '00000000-0000-0000-0000-000000001303';
-- 1304 still started, 30 days old, its task started by the stale worker a1
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001304');
SELECT pgflow.start_tasks('pr', pg_temp.task_msgs('00000000-0000-0000-0000-000000001304'), '00000000-0000-0000-0000-0000000013a1');
UPDATE pgflow.runs SET started_at = now() - interval '30 days' WHERE run_id = '00000000-0000-0000-0000-000000001304';
-- 1305 completed one day ago (task a by the stale worker a1)
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001305');
SELECT pg_temp.finish_with('00000000-0000-0000-0000-000000001305', 'a', '00000000-0000-0000-0000-0000000013a1', '1');
SELECT pg_temp.finish_with('00000000-0000-0000-0000-000000001305', 'b', pg_temp.worker(), '2');
UPDATE pgflow.runs SET started_at = now() - interval '2 days', completed_at = now() - interval '1 day'
WHERE run_id = '00000000-0000-0000-0000-000000001305';
-- 1306 completed exactly at the cutoff
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001306');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000001306', 'a', '1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000001306', 'b', '2');
UPDATE pgflow.runs SET started_at = now() - interval '8 days', completed_at = now() - interval '7 days'
WHERE run_id = '00000000-0000-0000-0000-000000001306';
-- 1307 failed one day ago, task still queued
SELECT pgflow.start_flow('pr', '{}', '00000000-0000-0000-0000-000000001307');
UPDATE pgflow.runs SET status = 'failed', started_at = now() - interval '2 days', failed_at = now() - interval '1 day'
WHERE run_id = '00000000-0000-0000-0000-000000001307';
-- 1308 in a flow whose queue is dropped before pruning, completed 9 days ago
SELECT pgflow.start_flow('pr_gone', '{}', '00000000-0000-0000-0000-000000001308');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000001308', 'a', '1');
UPDATE pgflow.runs SET started_at = now() - interval '10 days', completed_at = now() - interval '9 days'
WHERE run_id = '00000000-0000-0000-0000-000000001308';
SELECT pgmq.drop_queue('pr_gone');

-- Archive rows that belong to no run: 8 days old (pruned), exactly 7 days and 6 days old (kept);
-- a queue that is no flow keeps even a 30-day-old archive row.
CREATE TEMP TABLE loose AS
    SELECT n, pgmq.send('pr', jsonb_build_object('loose', n)) AS msg_id FROM generate_series(1, 3) n;
SELECT pgmq.archive('pr', ARRAY(SELECT msg_id FROM loose));
UPDATE pgmq.a_pr a SET archived_at = now() - CASE l.n WHEN 1 THEN interval '8 days' WHEN 2 THEN interval '7 days' ELSE interval '6 days' END
FROM loose l WHERE a.msg_id = l.msg_id;
SELECT pgmq.archive('not_a_flow', pgmq.send('not_a_flow', '{}'));
UPDATE pgmq.a_not_a_flow SET archived_at = now() - interval '30 days';

CREATE TEMP TABLE pruned_msgs AS
    SELECT message_id FROM pgflow.step_tasks
    WHERE run_id IN ('00000000-0000-0000-0000-000000001301', '00000000-0000-0000-0000-000000001302', '00000000-0000-0000-0000-000000001303');
CREATE TEMP TABLE defs_before AS
    SELECT (SELECT count(*) FROM pgflow.flows) AS flows, (SELECT count(*) FROM pgflow.steps) AS steps,
           (SELECT count(*) FROM pgflow.deps) AS deps;
CREATE TEMP TABLE kept_before AS SELECT * FROM pgflow.runs WHERE flow_slug = 'pr' AND run_id IN
    ('00000000-0000-0000-0000-000000001304', '00000000-0000-0000-0000-000000001305', '00000000-0000-0000-0000-000000001306',
     '00000000-0000-0000-0000-000000001307');

SELECT results_eq($$SELECT (SELECT count(*)::int FROM pruned_msgs),
                           (SELECT count(*)::int FROM pruned_msgs WHERE message_id = ANY (pg_temp.queued_ids('pr'))),
                           (SELECT count(*)::int FROM pruned_msgs WHERE message_id = ANY (pg_temp.archived_ids('pr')))$$,
                  $$VALUES (4, 1, 3)$$,
                  'setup: the old runs have 4 messages, 1 still in the queue and 3 archived');

SELECT lives_ok($$SELECT pgflow.prune_data_older_than('7 days')$$, 'prune_data_older_than(7 days) runs (a flow''s queue is dropped)');
SELECT results_eq($$SELECT run_id FROM pgflow.runs WHERE flow_slug IN ('pr', 'pr_gone') ORDER BY run_id$$,
                  $$VALUES ('00000000-0000-0000-0000-000000001304'::uuid), ('00000000-0000-0000-0000-000000001305'),
                           ('00000000-0000-0000-0000-000000001306'), ('00000000-0000-0000-0000-000000001307')$$,
                  'completed/failed runs finished before the cutoff are deleted (also with a dropped queue); the old started run and the runs finished at or after the cutoff stay');
SELECT results_eq($$SELECT (SELECT count(*)::int FROM pgflow.step_states WHERE run_id NOT IN (SELECT run_id FROM pgflow.runs)),
                           (SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id NOT IN (SELECT run_id FROM pgflow.runs))$$,
                  $$VALUES (0, 0)$$, 'no step_states or step_tasks of the deleted runs remain');
SELECT results_eq($$SELECT run_id, count(*)::int FROM pgflow.step_states WHERE flow_slug = 'pr' GROUP BY run_id ORDER BY run_id$$,
                  $$VALUES ('00000000-0000-0000-0000-000000001304'::uuid, 2), ('00000000-0000-0000-0000-000000001305', 2),
                           ('00000000-0000-0000-0000-000000001306', 2), ('00000000-0000-0000-0000-000000001307', 2)$$,
                  'the kept runs keep all their step states');
SELECT results_eq($$SELECT run_id, step_slug, status FROM pgflow.step_tasks WHERE flow_slug = 'pr' ORDER BY run_id, step_slug$$,
                  $$VALUES ('00000000-0000-0000-0000-000000001304'::uuid, 'a'::text, 'started'::text),
                           ('00000000-0000-0000-0000-000000001305', 'a', 'completed'), ('00000000-0000-0000-0000-000000001305', 'b', 'completed'),
                           ('00000000-0000-0000-0000-000000001306', 'a', 'completed'), ('00000000-0000-0000-0000-000000001306', 'b', 'completed'),
                           ('00000000-0000-0000-0000-000000001307', 'a', 'queued')$$,
                  'the kept runs keep all their tasks');
SELECT set_eq($$SELECT * FROM pgflow.runs WHERE flow_slug = 'pr'$$, $$SELECT * FROM kept_before$$, 'the kept runs are unchanged');
SELECT is(pg_temp.queued_ids('pr'),
          pg_temp.task_msgs('00000000-0000-0000-0000-000000001304') || pg_temp.task_msgs('00000000-0000-0000-0000-000000001307'),
          'queue: the old failed run''s queued message is deleted, the kept runs'' messages stay');
SELECT is(pg_temp.archived_ids('pr'),
          pg_temp.task_msgs('00000000-0000-0000-0000-000000001305') || pg_temp.task_msgs('00000000-0000-0000-0000-000000001306')
          || ARRAY(SELECT msg_id FROM loose WHERE n IN (2, 3) ORDER BY msg_id),
          'archive: messages of the deleted runs and rows archived before the cutoff are gone; the rest stays');
SELECT is((SELECT count(*)::int FROM pgmq.a_not_a_flow), 1, 'the archive of a queue that is no flow is untouched');
SELECT results_eq($$SELECT worker_id FROM pgflow.workers ORDER BY worker_id$$,
                  $$VALUES ('00000000-0000-0000-0000-0000000000aa'::uuid), ('00000000-0000-0000-0000-0000000013a2'), ('00000000-0000-0000-0000-0000000013a3')$$,
                  'workers with last_heartbeat_at before the cutoff are deleted (exactly at the cutoff: kept)');
SELECT results_eq($$SELECT run_id, step_slug, last_worker_id FROM pgflow.step_tasks
                    WHERE run_id IN ('00000000-0000-0000-0000-000000001304', '00000000-0000-0000-0000-000000001305') ORDER BY run_id, step_slug$$,
                  $$VALUES ('00000000-0000-0000-0000-000000001304'::uuid, 'a'::text, NULL::uuid),
                           ('00000000-0000-0000-0000-000000001305', 'a', NULL),
                           ('00000000-0000-0000-0000-000000001305', 'b', '00000000-0000-0000-0000-0000000000aa')$$,
                  'kept tasks of a deleted worker get last_worker_id NULL');
SELECT results_eq($$SELECT (SELECT count(*) FROM pgflow.flows), (SELECT count(*) FROM pgflow.steps), (SELECT count(*) FROM pgflow.deps)$$,
                  $$SELECT flows, steps, deps FROM defs_before$$, 'flow, step and dependency definitions are never pruned');
SELECT is(pgflow.prune_data_older_than('7 days')::text, '', 'a second call returns void and has nothing to do');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pr'), 4, 'the kept runs are still there');

---------------------------------------------------------------------------------------------------
-- _prune_step in batches
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('pb');
SELECT pgflow.add_step('pb', 'a');
SELECT pgflow.start_flow('pb', '{}', format('00000000-0000-0000-0000-00000000131%s', i)::uuid) FROM generate_series(1, 5) i;
SELECT pg_temp.complete_step(format('00000000-0000-0000-0000-00000000131%s', i)::uuid, 'a', to_jsonb(i)) FROM generate_series(1, 5) i;
UPDATE pgflow.runs SET started_at = now() - interval '10 days', completed_at = now() - interval '9 days' WHERE flow_slug = 'pb';
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pb' AND status = 'completed'), 5, 'setup: 5 old completed runs');

SELECT is(pgflow._prune_step('7 days', 2), 2, '_prune_step(7 days, 2): first call removes 2 runs');
SELECT results_eq($$SELECT (SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pb'),
                           (SELECT count(*)::int FROM pgflow.step_states WHERE flow_slug = 'pb'),
                           (SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug = 'pb'),
                           cardinality(pg_temp.archived_ids('pb'))$$,
                  $$VALUES (3, 3, 3, 3)$$, 'after the first batch: 3 runs with their states, tasks and archived messages left');
SELECT is(pgflow._prune_step('7 days', 2), 2, 'second call removes 2 runs');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pb'), 1, '1 run left');
SELECT is(pgflow._prune_step('7 days', 2), 1, 'third call removes the last run');
SELECT is(pgflow._prune_step('7 days', 2), 0, 'then 0: the job is finished');
SELECT results_eq($$SELECT (SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pb'),
                           (SELECT count(*)::int FROM pgflow.step_states WHERE flow_slug = 'pb'),
                           (SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug = 'pb'),
                           cardinality(pg_temp.archived_ids('pb')), cardinality(pg_temp.queued_ids('pb')),
                           (SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'pr')$$,
                  $$VALUES (0, 0, 0, 0, 0, 4)$$, 'everything of the old runs is gone; other runs untouched');

---------------------------------------------------------------------------------------------------
-- _requeue_stalled_tasks(grace) and requeue_stalled_tasks() (30 s)
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('rs', timeout => 10);
SELECT pgflow.add_step('rs', s) FROM unnest(ARRAY['s1', 's2', 's3', 's4', 's6']) s;
SELECT pgflow.add_step('rs', 's5', timeout => 1000);
SELECT pgflow.start_flow('rs', '{}', '00000000-0000-0000-0000-000000001321');
SELECT count(*) FROM pgmq.read('rs', 300, 100);
SELECT pg_temp.start_run('00000000-0000-0000-0000-000000001321');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001321', 's1', interval '13 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001321', 's2', interval '11 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001321', 's3', interval '35 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001321', 's4', interval '45 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001321', 's5', interval '13 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001321', 's6', interval '13 seconds');
UPDATE pgflow.step_tasks SET requeued_count = 3 WHERE run_id = '00000000-0000-0000-0000-000000001321' AND step_slug = 's6';

SELECT is(pgflow.requeue_stalled_tasks(), 1, 'requeue_stalled_tasks(): only the task 35 s past the flow timeout (not the one 25 s past)');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000001321' ORDER BY step_slug$$,
                  $$VALUES ('s1'::text, 'started'::text), ('s2', 'started'), ('s3', 'started'), ('s4', 'queued'), ('s5', 'started'), ('s6', 'started')$$,
                  'requeue_stalled_tasks() keeps its 30 s grace');
SELECT pg_temp.tick('before');
SELECT is(pgflow._requeue_stalled_tasks('2 seconds'), 3,
          '_requeue_stalled_tasks(2 s): the tasks more than timeout + 2 s old (flow timeout; step timeout ignored)');
SELECT pg_temp.tick('after');
SELECT results_eq(
    $$SELECT step_slug, status, started_at, last_worker_id, requeued_count, last_requeued_at, attempts_count, permanently_stalled_at
      FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000001321' ORDER BY step_slug$$,
    $$VALUES ('s1'::text, 'queued'::text, NULL::timestamptz, NULL::uuid, 1, now(), 1, NULL::timestamptz),
             ('s2', 'started', now() - interval '11 seconds', '00000000-0000-0000-0000-0000000000aa', 0, NULL, 1, NULL),
             ('s3', 'queued', NULL, NULL, 1, now(), 1, NULL),
             ('s4', 'queued', NULL, NULL, 1, now(), 1, NULL),
             ('s5', 'queued', NULL, NULL, 1, now(), 1, NULL),
             ('s6', 'started', now() - interval '13 seconds', '00000000-0000-0000-0000-0000000000aa', 3, NULL, 1, now())$$,
    'requeued like requeue_stalled_tasks; 1 s past the timeout is within the grace; requeued_count 3 becomes permanently stalled');
SELECT ok((SELECT bool_and(pg_temp.vt_delay_is('rs', message_id, 0)) FROM pgflow.step_tasks
           WHERE run_id = '00000000-0000-0000-0000-000000001321' AND step_slug IN ('s1', 's3', 's5')),
          'the requeued tasks'' messages are visible again (vt = clock)');
SELECT ok(pg_temp.msg_vt('rs', (pg_temp.task('00000000-0000-0000-0000-000000001321', 's2')).message_id) > now() + interval '250 seconds',
          'the message of the task within the grace keeps its vt');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000001321', 's6')).message_id = ANY (pg_temp.archived_ids('rs'))
          AND NOT (pg_temp.task('00000000-0000-0000-0000-000000001321', 's6')).message_id = ANY (pg_temp.queued_ids('rs')),
          'the permanently stalled task''s message is archived');
SELECT is(pgflow._requeue_stalled_tasks('0 seconds'), 1, '_requeue_stalled_tasks(0 s): the task 1 s past the timeout');
SELECT is(pgflow._requeue_stalled_tasks('0 seconds'), 0, 'then nothing');

---------------------------------------------------------------------------------------------------
-- _fail_timed_out_tasks(grace)
---------------------------------------------------------------------------------------------------
-- 'to': max_attempts 3, base_delay 2, flow timeout 100.
SELECT pgflow.create_flow('to', 3, 2, 100);
SELECT pgflow.add_step('to', 'retry_me', timeout => 5);
SELECT pgflow.add_step('to', 'not_yet', timeout => 5);
SELECT pgflow.add_step('to', 'flow_old');
SELECT pgflow.add_step('to', 'flow_young');
SELECT pgflow.add_step('to', 'queued_one', timeout => 5);
SELECT pgflow.add_step('to', 'done', timeout => 5);
SELECT pgflow.add_step('to', 'stuck', timeout => 5);
SELECT pgflow.start_flow('to', '{}', '00000000-0000-0000-0000-000000001331');
SELECT pgflow.start_tasks('to', ARRAY(SELECT message_id FROM pgflow.step_tasks
                                      WHERE run_id = '00000000-0000-0000-0000-000000001331' AND step_slug <> 'queued_one'), pg_temp.worker());
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000001331', 'done', 0, '"ok"');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001331', 'retry_me', interval '10 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001331', 'not_yet', interval '6 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001331', 'flow_old', interval '102 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001331', 'flow_young', interval '100 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001331', 'done', interval '1 hour');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001331', 'stuck', interval '1 hour');
UPDATE pgflow.step_tasks SET requeued_count = 3, permanently_stalled_at = now() - interval '1 minute'
WHERE run_id = '00000000-0000-0000-0000-000000001331' AND step_slug = 'stuck';
-- Exhausted: 'tf' (when_exhausted fail), 'ts' (skip), 'tc' (skip-cascade); max_attempts 1.
SELECT pgflow.create_flow('tf', 1, 0, 60);
SELECT pgflow.add_step('tf', 'a', timeout => 3);
SELECT pgflow.add_step('tf', 'b');
SELECT pgflow.create_flow('ts', 1, 0, 60);
SELECT pgflow.add_step('ts', 'a', timeout => 3, when_exhausted => 'skip');
SELECT pgflow.add_step('ts', 'b', ARRAY['a']);
SELECT pgflow.create_flow('tc', 1, 0, 60);
SELECT pgflow.add_step('tc', 'a', timeout => 3, when_exhausted => 'skip-cascade');
SELECT pgflow.add_step('tc', 'b', ARRAY['a']);
SELECT pgflow.start_flow('tf', '{}', '00000000-0000-0000-0000-000000001332');
SELECT pgflow.start_flow('ts', '{}', '00000000-0000-0000-0000-000000001333');
SELECT pgflow.start_flow('tc', '{}', '00000000-0000-0000-0000-000000001334');
SELECT pg_temp.start_run(r::uuid) FROM unnest(ARRAY['00000000-0000-0000-0000-000000001332', '00000000-0000-0000-0000-000000001333',
                                                    '00000000-0000-0000-0000-000000001334']) r;
SELECT pg_temp.started_ago(r::uuid, 'a', interval '10 seconds')
FROM unnest(ARRAY['00000000-0000-0000-0000-000000001332', '00000000-0000-0000-0000-000000001333', '00000000-0000-0000-0000-000000001334']) r;
CREATE TEMP TABLE queued_one_vt AS
    SELECT pg_temp.msg_vt('to', (pg_temp.task('00000000-0000-0000-0000-000000001331', 'queued_one')).message_id) AS vt;

SELECT pg_temp.tick('before');
SELECT is(pgflow._fail_timed_out_tasks('1 second'), 5,
          '_fail_timed_out_tasks(1 s) fails the 5 started tasks past coalesce(step timeout, flow timeout) + 1 s');
SELECT pg_temp.tick('after');
SELECT results_eq(
    $$SELECT step_slug, status, attempts_count, error_message, started_at, failed_at, completed_at, requeued_count
      FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000001331' ORDER BY step_slug$$,
    $$VALUES ('done'::text, 'completed'::text, 1, NULL::text, now() - interval '1 hour', NULL::timestamptz, now(), 0),
             ('flow_old', 'queued', 1, 'Task timed out after 100 seconds', NULL, NULL, NULL, 0),
             ('flow_young', 'started', 1, NULL, now() - interval '100 seconds', NULL, NULL, 0),
             ('not_yet', 'started', 1, NULL, now() - interval '6 seconds', NULL, NULL, 0),
             ('queued_one', 'queued', 0, NULL, NULL, NULL, NULL, 0),
             ('retry_me', 'queued', 1, 'Task timed out after 5 seconds', NULL, NULL, NULL, 0),
             ('stuck', 'started', 1, NULL, now() - interval '1 hour', NULL, NULL, 3)$$,
    'retry like fail_task(..., ''Task timed out after <timeout> seconds''): queued, attempts kept; tasks within timeout + grace, queued, completed and permanently stalled tasks untouched');
SELECT is((pg_temp.task('00000000-0000-0000-0000-000000001331', 'stuck')).permanently_stalled_at, now() - interval '1 minute',
          'the permanently stalled task keeps its permanently_stalled_at');
SELECT ok(pg_temp.vt_delay_is('to', (pg_temp.task('00000000-0000-0000-0000-000000001331', 'retry_me')).message_id, 4)
          AND pg_temp.vt_delay_is('to', (pg_temp.task('00000000-0000-0000-0000-000000001331', 'flow_old')).message_id, 4),
          'retried messages are delayed by calculate_retry_delay(2, 1) = 4 s');
SELECT is(pg_temp.msg_vt('to', (pg_temp.task('00000000-0000-0000-0000-000000001331', 'queued_one')).message_id), (SELECT vt FROM queued_one_vt),
          'the queued task''s message is not delayed (fail_task is not called for it)');
SELECT results_eq($$SELECT step_slug, status, error_message, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000001331' AND step_slug IN ('retry_me', 'flow_old') ORDER BY step_slug$$,
                  $$VALUES ('flow_old'::text, 'started'::text, NULL::text, 1), ('retry_me', 'started', NULL, 1)$$,
                  'retry: step states stay started, error_message NULL');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000001331'$$,
                  $$VALUES ('started'::text, 6)$$, 'retry: the run goes on');

SELECT results_eq($$SELECT step_slug, status, attempts_count, error_message, failed_at FROM pgflow.step_tasks
                    WHERE run_id = '00000000-0000-0000-0000-000000001332' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'failed'::text, 1, 'Task timed out after 3 seconds'::text, now()),
                           ('b', 'started', 1, NULL, NULL)$$,
                  'exhausted (when_exhausted fail): the task failed with the timeout message; the sibling row keeps its status');
SELECT results_eq($$SELECT step_slug, status, error_message, failed_at FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000001332' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'failed'::text, 'Task timed out after 3 seconds'::text, now()), ('b', 'started', NULL, NULL)$$,
                  'exhausted (fail): the step failed');
SELECT results_eq($$SELECT status, failed_at FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000001332'$$,
                  $$VALUES ('failed'::text, now())$$, 'exhausted (fail): the run failed');
SELECT ok(NOT (pg_temp.queued_ids('tf') && pg_temp.task_msgs('00000000-0000-0000-0000-000000001332'))
          AND pg_temp.task_msgs('00000000-0000-0000-0000-000000001332') <@ pg_temp.archived_ids('tf'),
          'exhausted (fail): all messages of the run are archived');

SELECT results_eq($$SELECT step_slug, status, skip_reason, error_message, remaining_tasks, remaining_deps, failed_at, skipped_at
                    FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000001333' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'skipped'::text, 'handler_failed'::text, 'Task timed out after 3 seconds'::text, NULL::int, 0, NULL::timestamptz, now()),
                           ('b', 'started', NULL, NULL, 1, 0, NULL, NULL)$$,
                  'exhausted (skip): step skipped with handler_failed, the dependent starts');
SELECT results_eq($$SELECT step_slug, status, error_message FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000001333' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'failed'::text, 'Task timed out after 3 seconds'::text), ('b', 'queued', NULL)$$,
                  'exhausted (skip): the task failed, the dependent has a queued task');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000001333'$$,
                  $$VALUES ('started'::text, 1)$$, 'exhausted (skip): the run goes on with one step left');

SELECT results_eq($$SELECT step_slug, status, skip_reason, error_message FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000001334' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'skipped'::text, 'handler_failed'::text, 'Task timed out after 3 seconds'::text),
                           ('b', 'skipped', 'dependency_skipped', NULL)$$,
                  'exhausted (skip-cascade): the step and its dependent are skipped');
SELECT results_eq($$SELECT status, remaining_steps, completed_at, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000001334'$$,
                  $$VALUES ('completed'::text, 0, now(), NULL::jsonb)$$, 'exhausted (skip-cascade): the run completes without output');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000001334', 'a')).message_id = ANY (pg_temp.archived_ids('tc')),
          'exhausted: the failed task''s message is archived');

SELECT is(pgflow._fail_timed_out_tasks('1 second'), 0, 'a second call fails nothing');

-- max_tasks
SELECT pgflow.create_flow('tm', 3, 0, 1);
SELECT pgflow.add_step('tm', s) FROM unnest(ARRAY['a', 'b', 'c']) s;
SELECT pgflow.start_flow('tm', '{}', '00000000-0000-0000-0000-000000001335');
SELECT pg_temp.start_run('00000000-0000-0000-0000-000000001335');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001335', s, interval '10 seconds') FROM unnest(ARRAY['a', 'b', 'c']) s;
SELECT is(pgflow._fail_timed_out_tasks('1 second', 2), 2, 'max_tasks 2: two of three timed-out tasks are failed');
SELECT results_eq($$SELECT status, count(*)::int, sum(attempts_count)::int FROM pgflow.step_tasks
                    WHERE run_id = '00000000-0000-0000-0000-000000001335' GROUP BY status ORDER BY status$$,
                  $$VALUES ('queued'::text, 2, 2), ('started', 1, 1)$$, 'two are queued for retry, one still started');
SELECT is(pgflow._fail_timed_out_tasks(grace => '1 second', max_tasks => 2), 1, 'the next call fails the last one');
SELECT is(pgflow._fail_timed_out_tasks('1 second', 2), 0, 'then 0');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000001335' AND status = 'queued'
                                                      AND error_message = 'Task timed out after 1 seconds'), 3,
          'all three retried with ''Task timed out after 1 seconds''');

---------------------------------------------------------------------------------------------------
-- _worker_tick
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('wt', 3, 0, 20);
SELECT pgflow.add_step('wt', 'short', timeout => 5);
SELECT pgflow.add_step('wt', s) FROM unnest(ARRAY['long', 'long2', 'perm', 'ok']) s;
SELECT pgflow.start_flow('wt', '{}', '00000000-0000-0000-0000-000000001341');
SELECT pg_temp.start_run('00000000-0000-0000-0000-000000001341');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001341', 'short', interval '10 seconds');
SELECT pg_temp.started_ago('00000000-0000-0000-0000-000000001341', s, interval '30 seconds') FROM unnest(ARRAY['long', 'long2', 'perm']) s;
UPDATE pgflow.step_tasks SET requeued_count = 3 WHERE run_id = '00000000-0000-0000-0000-000000001341' AND step_slug = 'perm';

SELECT is(pgflow._worker_tick(1), '{"requeued": 2, "timed_out": 1}'::jsonb,
          '_worker_tick(1) = {"requeued": 2, "timed_out": 1}');
SELECT results_eq($$SELECT step_slug, status, requeued_count, attempts_count, error_message, permanently_stalled_at
                    FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000001341' ORDER BY step_slug$$,
                  $$VALUES ('long'::text, 'queued'::text, 1, 1, NULL::text, NULL::timestamptz),
                           ('long2', 'queued', 1, 1, NULL, NULL),
                           ('ok', 'started', 0, 1, NULL, NULL),
                           ('perm', 'started', 3, 1, NULL, now()),
                           ('short', 'queued', 0, 1, 'Task timed out after 5 seconds', NULL)$$,
                  'the tick requeued the stalled tasks, failed the timed-out one, marked the permanently stalled one');
SELECT is(pgflow._worker_tick(grace_seconds => 1), '{"requeued": 0, "timed_out": 0}'::jsonb,
          'a second tick has nothing to do');

-- A negative retention would prune every finished run, even one that finished a moment ago.
SELECT throws_ok($$SELECT pgflow.prune_data_older_than('-1 day')$$, '22023',
                 'retention interval must not be negative, got -1 days', 'prune_data_older_than refuses a negative interval');
SELECT throws_ok($$SELECT pgflow._prune_step('-5 minutes')$$, '22023',
                 'retention interval must not be negative, got -00:05:00', 'so does the worker''s _prune_step (pgflow.retention)');

---------------------------------------------------------------------------------------------------
-- Contract 2.8: a user's own prune_data_older_than can replace ours
---------------------------------------------------------------------------------------------------
SELECT is((SELECT format('%s -> %s (%s)', pg_get_function_identity_arguments(p.oid), p.prorettype::regtype, l.lanname)
           FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
           WHERE p.oid = 'pgflow.prune_data_older_than'::regproc),
          'retention_interval interval -> void (plpgsql)',
          'prune_data_older_than(retention_interval interval) RETURNS void LANGUAGE plpgsql');
SELECT lives_ok($q$CREATE OR REPLACE FUNCTION pgflow.prune_data_older_than(retention_interval interval)
                  RETURNS void LANGUAGE plpgsql AS $body$
                  BEGIN
                      DELETE FROM pgflow.workers WHERE last_heartbeat_at < now() - retention_interval AND function_name = 'user version';
                  END;
                  $body$$q$, 'CREATE OR REPLACE FUNCTION pgflow.prune_data_older_than(retention_interval interval) RETURNS void LANGUAGE plpgsql succeeds');
SELECT ok((SELECT prosrc LIKE '%user version%' FROM pg_proc WHERE oid = 'pgflow.prune_data_older_than'::regproc),
          'the user''s body replaced ours');

SELECT * FROM finish();
ROLLBACK;
