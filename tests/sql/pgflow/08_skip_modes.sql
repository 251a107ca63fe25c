-- Skip modes of when_exhausted and _cascade_force_skip_steps.
BEGIN;
SELECT plan(34);
\ir helpers/common.psql

---------------------------------------------------------------------------------------------------
-- when_exhausted 'skip'
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('sk', 2);
SELECT pgflow.add_step('sk', 'a', when_exhausted => 'skip');
SELECT pgflow.add_step('sk', 'b', ARRAY['a']);
SELECT pgflow.add_step('sk', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('sk', 'other');
SELECT pgflow.start_flow('sk', '{}', '00000000-0000-0000-0000-000000000801');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000801', 'a');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000801', 'a', 0, 'first')$$,
                  $$VALUES ('queued'::text)$$, 'when_exhausted skip still retries while attempts remain');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000801', 'a');
SELECT results_eq($$SELECT status, failed_at, error_message, attempts_count FROM pgflow.fail_task('00000000-0000-0000-0000-000000000801', 'a', 0, 'second')$$,
                  $$VALUES ('failed'::text, now(), 'second'::text, 2)$$, 'exhausted: the task is failed');
SELECT results_eq($$SELECT status, skip_reason, skipped_at, error_message, remaining_tasks, failed_at, completed_at FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000801' AND step_slug = 'a'$$,
                  $$VALUES ('skipped'::text, 'handler_failed'::text, now(), 'second'::text, NULL::int, NULL::timestamptz, NULL::timestamptz)$$,
                  'skip: step skipped with handler_failed, error_message kept, remaining_tasks and failed_at NULL');
SELECT results_eq($$SELECT step_slug, status, remaining_deps, initial_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000801' AND step_slug IN ('b', 'm') ORDER BY step_slug$$,
                  $$VALUES ('b'::text, 'started'::text, 0, 1, NULL::jsonb), ('m', 'completed', 0, 0, '[]')$$,
                  'skip: dependents lose the dependency; the map (deps_count 1) becomes taskless and completes with []; b starts');
SELECT results_eq($$SELECT status, remaining_steps, failed_at FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000801'$$,
                  $$VALUES ('started'::text, 2, NULL::timestamptz)$$, 'skip: run goes on; remaining_steps 4 -> 2 (a skipped, m completed)');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000801', 'a')).message_id = ANY (pg_temp.archived_ids('sk')),
          'the failed task''s message is archived');
SELECT results_eq($$SELECT input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000801', 'b')$$,
                  $$VALUES ('{}'::jsonb)$$, 'the skipped dependency is absent from the dependent''s input');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000801', 'b', 0, '"B"');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000801', 'other', '"O"');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000801'$$,
                  $$VALUES ('completed'::text, '{"b": "B", "m": [], "other": "O"}'::jsonb)$$, 'the run completes with its completed leaves');

-- Skipped map step: sibling tasks' messages archived, late callbacks change nothing.
SELECT pgflow.create_flow('skm', 1);
SELECT pgflow.add_step('skm', 'm', step_type => 'map', when_exhausted => 'skip');
SELECT pgflow.add_step('skm', 'other');
SELECT pgflow.start_flow('skm', '[1, 2, 3, 4]', '00000000-0000-0000-0000-000000000802');
SELECT pgflow.start_tasks('skm', ARRAY[(pg_temp.task('00000000-0000-0000-0000-000000000802', 'm', 0)).message_id,
                                       (pg_temp.task('00000000-0000-0000-0000-000000000802', 'm', 1)).message_id,
                                       (pg_temp.task('00000000-0000-0000-0000-000000000802', 'm', 2)).message_id], pg_temp.worker());
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000802', 'm', 0, '"done"');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000802', 'm', 1, 'item failed')$$,
                  $$VALUES ('failed'::text)$$, 'a map task fails for good');
SELECT results_eq($$SELECT status, skip_reason, remaining_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000802' AND step_slug = 'm'$$,
                  $$VALUES ('skipped'::text, 'handler_failed'::text, NULL::int, NULL::jsonb)$$, 'the map step is skipped');
SELECT results_eq($$SELECT task_index, status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000802' AND step_slug = 'm'
                    ORDER BY task_index$$,
                  $$VALUES (0, 'completed'::text), (1, 'failed'), (2, 'started'), (3, 'queued')$$, 'sibling task rows keep their status');
SELECT is(pg_temp.queued_ids('skm') && pg_temp.task_msgs('00000000-0000-0000-0000-000000000802', 'm'), false,
          'no message of the skipped step remains in the queue (started and queued siblings archived)');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000802', 'other')).message_id = ANY (pg_temp.queued_ids('skm')),
          'the other step''s message is untouched');
SELECT is((SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000802'), 1, 'remaining_steps 2 -> 1');
SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000802', 'm', 2, '"late"')$$,
                  $$VALUES ('started'::text, NULL::jsonb)$$, 'late complete_task of a sibling: row unchanged');
SELECT results_eq($$SELECT status, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000802', 'm', 2, 'late')$$,
                  $$VALUES ('started'::text, NULL::text)$$, 'late fail_task of a sibling: row unchanged');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000802'$$,
                  $$VALUES ('started'::text, 1)$$, 'remaining_steps is not decremented twice');

-- The last remaining step is skipped: the run completes inside fail_task.
SELECT pgflow.create_flow('sk_only', 1);
SELECT pgflow.add_step('sk_only', 'a', when_exhausted => 'skip');
SELECT pgflow.start_flow('sk_only', '{}', '00000000-0000-0000-0000-000000000803');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000803', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000803', 'a', 0, 'gone');
SELECT results_eq($$SELECT status, output, completed_at, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000803'$$,
                  $$VALUES ('completed'::text, NULL::jsonb, now(), 0)$$, 'only step skipped: run completed with output NULL');

-- Skip leads to a dependent whose 'fail' condition is unmet: the run fails.
SELECT pgflow.create_flow('sk_cond', 1);
SELECT pgflow.add_step('sk_cond', 'a', when_exhausted => 'skip');
SELECT pgflow.add_step('sk_cond', 'c', ARRAY['a'], required_input_pattern => '{"a": 1}', when_unmet => 'fail');
SELECT pgflow.add_step('sk_cond', 'z');
SELECT pgflow.start_flow('sk_cond', '{}', '00000000-0000-0000-0000-000000000804');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000804', 'a');
SELECT results_eq($$SELECT status, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000804', 'a', 0, 'x')$$,
                  $$VALUES ('failed'::text, 'x'::text)$$, 'fail_task returns the failed task');
SELECT results_eq($$SELECT step_slug, status, skip_reason, error_message FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000804' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'skipped'::text, 'handler_failed'::text, 'x'::text), ('c', 'failed', NULL, 'Condition not met'),
                           ('z', 'started', NULL, NULL)$$,
                  'the skipped step''s dependent fails its condition');
SELECT results_eq($$SELECT status, failed_at FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000804'$$,
                  $$VALUES ('failed'::text, now())$$, 'and the run fails');
SELECT is(pg_temp.queued_ids('sk_cond'), '{}'::bigint[], 'all messages of the run left the queue');

---------------------------------------------------------------------------------------------------
-- when_exhausted 'skip-cascade'
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('skc', 1);
SELECT pgflow.add_step('skc', 'a', when_exhausted => 'skip-cascade');
SELECT pgflow.add_step('skc', 'b', ARRAY['a']);
SELECT pgflow.add_step('skc', 'c', ARRAY['b']);
SELECT pgflow.add_step('skc', 'x');
SELECT pgflow.start_flow('skc', '{}', '00000000-0000-0000-0000-000000000805');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000805', 'a');
SELECT pgflow.fail_task('00000000-0000-0000-0000-000000000805', 'a', 0, 'cascade me');
SELECT results_eq($$SELECT step_slug, status, skip_reason, error_message, remaining_deps FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000805' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'skipped'::text, 'handler_failed'::text, 'cascade me'::text, 0),
                           ('b', 'skipped', 'dependency_skipped', NULL, 1),
                           ('c', 'skipped', 'dependency_skipped', NULL, 1),
                           ('x', 'started', NULL, NULL, 0)$$,
                  'skip-cascade: dependents skipped with dependency_skipped (remaining_deps untouched)');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000805'$$,
                  $$VALUES ('started'::text, 1)$$, 'remaining_steps 4 -> 1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000805', 'x', '"X"');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000805'$$,
                  $$VALUES ('completed'::text, '{"x": "X"}'::jsonb)$$, 'run completes; the skipped leaf c is omitted');

---------------------------------------------------------------------------------------------------
-- _cascade_force_skip_steps directly
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-00000000ffff', 'a', 'manual')$$, 'P0001',
                 'Run not found: 00000000-0000-0000-0000-00000000ffff', 'unknown run');
SELECT pgflow.create_flow('fs');
SELECT pgflow.add_step('fs', 'a');
SELECT pgflow.add_step('fs', 'b', ARRAY['a']);
SELECT pgflow.add_step('fs', 'done');
SELECT pgflow.start_flow('fs', '{}', '00000000-0000-0000-0000-000000000806');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000806', 'done', '1');
SELECT pgflow.start_flow('fs', '{}', '00000000-0000-0000-0000-000000000807');  -- untouched neighbour
SELECT is(pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-000000000806', 'a', 'manual'), 2,
          'returns the number of steps skipped (a and its dependent b)');
SELECT results_eq($$SELECT step_slug, status, skip_reason, skipped_at, remaining_deps, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000806' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'skipped'::text, 'manual'::text, now(), 0, NULL::int),
                           ('b', 'skipped', 'dependency_skipped', now(), 1, NULL),
                           ('done', 'completed', NULL, NULL, 0, 0)$$,
                  'given reason for the step, dependency_skipped for dependents; remaining_deps untouched');
SELECT results_eq($$SELECT status, remaining_steps, completed_at FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000806'$$,
                  $$VALUES ('started'::text, 0, NULL::timestamptz)$$, 'remaining_steps -= 2; the run is not finalized here');
SELECT results_eq($$SELECT status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000806' AND step_slug = 'a'$$,
                  $$VALUES ('queued'::text)$$, 'the skipped step''s task keeps its status');
SELECT ok((pg_temp.task('00000000-0000-0000-0000-000000000806', 'a')).message_id = ANY (pg_temp.archived_ids('fs'))
          AND NOT (pg_temp.task('00000000-0000-0000-0000-000000000806', 'a')).message_id = ANY (pg_temp.queued_ids('fs')),
          'but its message is archived');
SELECT is(pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-000000000806', 'a', 'manual'), 0,
          'a second call skips nothing (already terminal)');
SELECT is(pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-000000000806', 'done', 'manual'), 0,
          'a completed step is left alone');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000807' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'started'::text), ('b', 'created'), ('done', 'started')$$, 'other runs untouched');

SELECT * FROM finish();
ROLLBACK;
