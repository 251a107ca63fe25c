-- Failures: retries with backoff on the
-- message vt, step-level overrides, exhaustion with when_exhausted 'fail', archiving of the run's
-- queued/started messages, failed-run and late-callback paths.
BEGIN;
SELECT plan(42);
\ir helpers/common.psql

CREATE TEMP TABLE clock (name text PRIMARY KEY, at timestamptz);
CREATE FUNCTION pg_temp.tick(n text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO clock VALUES (n, clock_timestamp()) ON CONFLICT (name) DO UPDATE SET at = excluded.at
$$;
-- vt of a task's message lies within [before + s, after + s]
CREATE FUNCTION pg_temp.vt_delay_is(p_flow text, p_msg bigint, s integer) RETURNS boolean LANGUAGE sql AS $$
    SELECT pg_temp.msg_vt(p_flow, p_msg) BETWEEN (SELECT at FROM clock WHERE name = 'before') + make_interval(secs => s)
                                             AND (SELECT at FROM clock WHERE name = 'after') + make_interval(secs => s)
$$;

SELECT pgflow.create_flow('fr', 3, 3, 60);
SELECT pgflow.add_step('fr', 'a');
SELECT pgflow.add_step('fr', 'b', ARRAY['a']);
SELECT pgflow.add_step('fr', 'c');
SELECT pgflow.start_flow('fr', '{}', '00000000-0000-0000-0000-000000000501');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000501', 'a');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000501', 'c');
UPDATE pgflow.step_states SET error_message = 'stale' WHERE run_id = '00000000-0000-0000-0000-000000000501' AND step_slug = 'a';

---------------------------------------------------------------------------------------------------
-- Retry 1 and 2
---------------------------------------------------------------------------------------------------
SELECT pg_temp.tick('before');
SELECT results_eq(
    $$SELECT * FROM pgflow.fail_task('00000000-0000-0000-0000-000000000501', 'a', 0, 'boom1')$$,
    $$SELECT 'fr'::text, '00000000-0000-0000-0000-000000000501'::uuid, 'a'::text, t.message_id, 0, 'queued'::text, 1,
             'boom1'::text, NULL::jsonb, now(), NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
             '00000000-0000-0000-0000-0000000000aa'::uuid, 0, NULL::timestamptz, NULL::timestamptz
      FROM pgflow.step_tasks t WHERE t.run_id = '00000000-0000-0000-0000-000000000501' AND t.step_slug = 'a'$$,
    'retry: fail_task returns the task queued again, started_at/failed_at NULL, error_message set, attempts_count kept');
SELECT pg_temp.tick('after');
SELECT results_eq($$SELECT status, failed_at, error_message, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000501' AND step_slug = 'a'$$,
                  $$VALUES ('started'::text, NULL::timestamptz, NULL::text, 1)$$,
                  'retry: step stays started, failed_at NULL, error_message cleared to NULL (Q7)');
SELECT results_eq($$SELECT status, failed_at, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000501'$$,
                  $$VALUES ('started'::text, NULL::timestamptz, 3)$$, 'retry: run untouched');
SELECT ok(pg_temp.vt_delay_is('fr', (pg_temp.task('00000000-0000-0000-0000-000000000501', 'a')).message_id, 6),
          'retry 1: message vt = clock + calculate_retry_delay(3, 1) = 6 s');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000501', 'a')).message_id = ANY (pg_temp.queued_ids('fr')),
          'retry: the message stays in the queue');

SELECT results_eq($$SELECT task_index, input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000501', 'a')$$,
                  $$VALUES (0, '{}'::jsonb)$$, 'the retried task can be started again');
SELECT results_eq($$SELECT status, attempts_count, started_at FROM pgflow.step_tasks
                    WHERE run_id = '00000000-0000-0000-0000-000000000501' AND step_slug = 'a'$$,
                  $$VALUES ('started'::text, 2, now())$$, 'second attempt: attempts_count 2');
SELECT pg_temp.tick('before');
SELECT results_eq($$SELECT status, attempts_count, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000501', 'a', 0, 'boom2')$$,
                  $$VALUES ('queued'::text, 2, 'boom2'::text)$$, 'retry 2 (attempts 2 < max 3)');
SELECT pg_temp.tick('after');
SELECT ok(pg_temp.vt_delay_is('fr', (pg_temp.task('00000000-0000-0000-0000-000000000501', 'a')).message_id, 12),
          'retry 2: message vt = clock + 3 * 2^2 = 12 s');

---------------------------------------------------------------------------------------------------
-- Exhaustion (when_exhausted 'fail')
---------------------------------------------------------------------------------------------------
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000501', 'a');
SELECT results_eq($$SELECT status, attempts_count, error_message, failed_at, started_at, completed_at
                    FROM pgflow.fail_task('00000000-0000-0000-0000-000000000501', 'a', 0, 'boom3')$$,
                  $$VALUES ('failed'::text, 3, 'boom3'::text, now(), now(), NULL::timestamptz)$$,
                  'third failure (attempts 3 = max 3): task failed, failed_at now, started_at kept');
SELECT results_eq($$SELECT status, failed_at, error_message, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000501' AND step_slug = 'a'$$,
                  $$VALUES ('failed'::text, now(), 'boom3'::text, 1)$$, 'exhausted: step failed with the error message');
SELECT results_eq($$SELECT status, failed_at, completed_at, remaining_steps, output FROM pgflow.runs
                    WHERE run_id = '00000000-0000-0000-0000-000000000501'$$,
                  $$VALUES ('failed'::text, now(), NULL::timestamptz, 3, NULL::jsonb)$$,
                  'exhausted: run failed, failed_at now, remaining_steps not decremented');
SELECT is(pg_temp.queued_ids('fr') && pg_temp.task_msgs('00000000-0000-0000-0000-000000000501'), false,
          'run failed: no message of the run remains in the queue');
SELECT ok(pg_temp.task_msgs('00000000-0000-0000-0000-000000000501') <@ pg_temp.archived_ids('fr'),
          'run failed: the failed task''s and the started sibling''s messages are archived');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000501' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'failed'::text), ('c', 'started')$$, 'the sibling task row keeps its status');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000501' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'failed'::text), ('b', 'created'), ('c', 'started')$$, 'other step states untouched');

-- Failed run paths
SELECT results_eq($$SELECT status, failed_at, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000501', 'c', 0, 'late error')$$,
                  $$VALUES ('failed'::text, now(), 'late error'::text)$$,
                  'failed run: fail_task on a started task marks it failed');
SELECT results_eq($$SELECT status, error_message FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000501' AND step_slug = 'c'$$,
                  $$VALUES ('started'::text, NULL::text)$$, 'failed run: step state unchanged');
SELECT results_eq($$SELECT status, attempts_count, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000501', 'a', 0, 'again')$$,
                  $$VALUES ('failed'::text, 3, 'boom3'::text)$$, 'failed run: a failed task is returned unchanged');
SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000501', 'c', 0, '"ok"')$$,
                  $$VALUES ('failed'::text, NULL::jsonb)$$, 'failed run: complete_task changes nothing');
SELECT is_empty($$SELECT * FROM pgflow.fail_task('00000000-0000-0000-0000-00000000ffff', 'a', 0, 'x')$$, 'unknown run: empty result');

SELECT pgflow.start_flow('fr', '{}', '00000000-0000-0000-0000-000000000502');
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000502';
SELECT results_eq($$SELECT status, error_message, failed_at FROM pgflow.fail_task('00000000-0000-0000-0000-000000000502', 'a', 0, 'x')$$,
                  $$VALUES ('queued'::text, NULL::text, NULL::timestamptz)$$, 'failed run: a queued task is not changed');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000502', 'a')).message_id = ANY (pg_temp.archived_ids('fr')),
          'failed run: but its message is archived (any status)');

---------------------------------------------------------------------------------------------------
-- fail_task on a merely queued task delays its message
---------------------------------------------------------------------------------------------------
SELECT pgflow.start_flow('fr', '{}', '00000000-0000-0000-0000-000000000503');
SELECT pg_temp.tick('before');
SELECT results_eq($$SELECT status, attempts_count, error_message, failed_at FROM pgflow.fail_task('00000000-0000-0000-0000-000000000503', 'a', 0, 'never started')$$,
                  $$VALUES ('queued'::text, 0, NULL::text, NULL::timestamptz)$$, 'Q6: the queued task is not changed');
SELECT pg_temp.tick('after');
SELECT ok(pg_temp.vt_delay_is('fr', (pg_temp.task('00000000-0000-0000-0000-000000000503', 'a')).message_id, 3),
          'Q6: its message is delayed by calculate_retry_delay(3, 0) = 3 s');
SELECT results_eq($$SELECT status, error_message FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000503' AND step_slug = 'a'$$,
                  $$VALUES ('started'::text, NULL::text)$$, 'Q6: step state unchanged');

-- Retry then success
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000503', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000503', 'a', 0, 'transient');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000503', 'a');
SELECT results_eq($$SELECT status, attempts_count, output, completed_at, failed_at
                    FROM pgflow.complete_task('00000000-0000-0000-0000-000000000503', 'a', 0, '"fine"')$$,
                  $$VALUES ('completed'::text, 2, '"fine"'::jsonb, now(), NULL::timestamptz)$$,
                  'a retried task completes on its second attempt');
SELECT results_eq($$SELECT status, output, error_message FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000503' AND step_slug = 'a'$$,
                  $$VALUES ('completed'::text, '"fine"'::jsonb, NULL::text)$$, 'and its step completes');

-- Late callback: fail_task on a task of a step that is no longer started.
SELECT results_eq($$SELECT status, output, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000503', 'a', 0, 'too late')$$,
                  $$VALUES ('completed'::text, '"fine"'::jsonb, 'transient'::text)$$,
                  'late fail_task on a completed step returns the row unchanged');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000503'$$,
                  $$VALUES ('started'::text, 2)$$, 'and changes nothing in the run');

---------------------------------------------------------------------------------------------------
-- Step-level overrides of max_attempts and base_delay
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('fr2', 5, 1);
SELECT pgflow.add_step('fr2', 'once', max_attempts => 1);
SELECT pgflow.add_step('fr2', 'never', max_attempts => 0);
SELECT pgflow.add_step('fr2', 'slow', base_delay => 10);
SELECT pgflow.add_step('fr2', 'flowdefault');
SELECT pgflow.add_step('fr2', 'nodelay', base_delay => 0);
SELECT pgflow.start_flow('fr2', '{}', '00000000-0000-0000-0000-000000000504');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000504', s) FROM unnest(ARRAY['once', 'never', 'slow', 'flowdefault', 'nodelay']) s;

SELECT pg_temp.tick('before');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000504', 'slow', 0, 'e')$$,
                  $$VALUES ('queued'::text)$$, 'step without max_attempts inherits the flow''s 5: retry');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000504', 'flowdefault', 0, 'e')$$,
                  $$VALUES ('queued'::text)$$, 'flow default step: retry');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000504', 'nodelay', 0, 'e')$$,
                  $$VALUES ('queued'::text)$$, 'base_delay 0 step: retry');
SELECT pg_temp.tick('after');
SELECT ok(pg_temp.vt_delay_is('fr2', (pg_temp.task('00000000-0000-0000-0000-000000000504', 'slow')).message_id, 20),
          'step base_delay 10 overrides the flow''s 1: delay 20 s');
SELECT ok(pg_temp.vt_delay_is('fr2', (pg_temp.task('00000000-0000-0000-0000-000000000504', 'flowdefault')).message_id, 2),
          'flow base_delay 1: delay 2 s');
SELECT ok(pg_temp.vt_delay_is('fr2', (pg_temp.task('00000000-0000-0000-0000-000000000504', 'nodelay')).message_id, 0),
          'base_delay 0: visible again immediately');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000504', 'never', 0, 'zero')$$,
                  $$VALUES ('failed'::text)$$, 'step max_attempts 0: no retry');
SELECT results_eq($$SELECT status, error_message FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000504' AND step_slug = 'never'$$,
                  $$VALUES ('failed'::text, 'zero'::text)$$, 'its step failed');
SELECT results_eq($$SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000504'$$,
                  $$VALUES ('failed'::text)$$, 'and the run failed');
SELECT results_eq($$SELECT status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000504' ORDER BY step_slug$$,
                  $$VALUES ('queued'::text), ('failed'), ('queued'), ('started'), ('queued')$$,
                  'other tasks keep their status (flowdefault, never, nodelay, once, slow)');
SELECT is(pg_temp.queued_ids('fr2') && pg_temp.task_msgs('00000000-0000-0000-0000-000000000504'), false,
          'all messages of the failed run left the queue (queued retries included)');

-- max_attempts 1 in a fresh run
SELECT pgflow.start_flow('fr2', '{}', '00000000-0000-0000-0000-000000000505');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000505', 'once');
SELECT results_eq($$SELECT status, attempts_count FROM pgflow.fail_task('00000000-0000-0000-0000-000000000505', 'once', 0, 'one shot')$$,
                  $$VALUES ('failed'::text, 1)$$, 'step max_attempts 1 overrides the flow''s 5: no retry');

SELECT * FROM finish();
ROLLBACK;
