-- Run start: start_flow, start_ready_steps, cascade_complete_taskless_steps,
-- maybe_complete_run; root-map validation and constraint errors; messages and their delay;
-- taskless cascades and their safety limit.
BEGIN;
SELECT plan(55);
\ir helpers/common.psql

SELECT pgflow.create_flow('sf');
SELECT pgflow.add_step('sf', 'zeta');                       -- index 0
SELECT pgflow.add_step('sf', 'alpha');                      -- index 1
SELECT pgflow.add_step('sf', 'join', ARRAY['zeta', 'alpha']);
SELECT pgflow.add_step('sf', 'late', start_delay => 30);

CREATE TEMP TABLE clock AS SELECT clock_timestamp() AS before;
SELECT results_eq(
    $$SELECT * FROM pgflow.start_flow('sf', '{"n": 1}', '00000000-0000-0000-0000-000000000301')$$,
    $$SELECT '00000000-0000-0000-0000-000000000301'::uuid, 'sf'::text, 'started'::text, '{"n": 1}'::jsonb,
             NULL::jsonb, 4, now(), NULL::timestamptz, NULL::timestamptz$$,
    'start_flow returns the runs row: given run_id, started, input, no output, remaining_steps = 4 steps, started_at now');
ALTER TABLE clock ADD COLUMN after timestamptz;
UPDATE clock SET after = clock_timestamp();

SELECT results_eq(
    $$SELECT step_slug, status, remaining_tasks, remaining_deps, created_at = now(), started_at, completed_at, failed_at,
             error_message, initial_tasks, output, skip_reason, skipped_at, flow_slug
      FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000301' ORDER BY step_slug$$,
    $$VALUES ('alpha'::text, 'started'::text, 1, 0, true, now(), NULL::timestamptz, NULL::timestamptz, NULL::text, 1, NULL::jsonb, NULL::text, NULL::timestamptz, 'sf'::text),
             ('join', 'created', NULL, 2, true, NULL, NULL, NULL, NULL, 1, NULL, NULL, NULL, 'sf'),
             ('late', 'started', 1, 0, true, now(), NULL, NULL, NULL, 1, NULL, NULL, NULL, 'sf'),
             ('zeta', 'started', 1, 0, true, now(), NULL, NULL, NULL, 1, NULL, NULL, NULL, 'sf')$$,
    'one step_states row per step: roots started (remaining_tasks = initial_tasks = 1), dependent created with remaining_deps = deps_count');
SELECT results_eq(
    $$SELECT flow_slug, step_slug, task_index, status, attempts_count, error_message, output, queued_at = now(),
             completed_at, failed_at, started_at, last_worker_id, requeued_count, last_requeued_at, permanently_stalled_at,
             message_id IS NOT NULL
      FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000301' ORDER BY step_slug$$,
    $$VALUES ('sf'::text, 'alpha'::text, 0, 'queued'::text, 0, NULL::text, NULL::jsonb, true, NULL::timestamptz,
              NULL::timestamptz, NULL::timestamptz, NULL::uuid, 0, NULL::timestamptz, NULL::timestamptz, true),
             ('sf', 'late', 0, 'queued', 0, NULL, NULL, true, NULL, NULL, NULL, NULL, 0, NULL, NULL, true),
             ('sf', 'zeta', 0, 'queued', 0, NULL, NULL, true, NULL, NULL, NULL, NULL, 0, NULL, NULL, true)$$,
    'one queued task per started step with defaults and a message id; none for the waiting step');
SELECT results_eq(
    $$SELECT q.message, q.headers, q.read_ct FROM pgmq.q_sf q JOIN pgflow.step_tasks t ON t.message_id = q.msg_id
      WHERE t.run_id = '00000000-0000-0000-0000-000000000301' ORDER BY t.step_slug$$,
    $$VALUES ('{"flow_slug": "sf", "run_id": "00000000-0000-0000-0000-000000000301", "step_slug": "alpha", "task_index": 0}'::jsonb, NULL::jsonb, 0),
             ('{"flow_slug": "sf", "run_id": "00000000-0000-0000-0000-000000000301", "step_slug": "late", "task_index": 0}', NULL, 0),
             ('{"flow_slug": "sf", "run_id": "00000000-0000-0000-0000-000000000301", "step_slug": "zeta", "task_index": 0}', NULL, 0)$$,
    'each task''s message_id points to its message {flow_slug, run_id, step_slug, task_index}, headers NULL');
SELECT is((SELECT count(*)::int FROM pgmq.q_sf), 3, 'exactly one message per task');
SELECT ok((SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'alpha')
          < (SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'late')
          AND (SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'late')
          < (SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'zeta'),
          'ready steps are started in step_slug order (alpha, late, zeta), not step_index order');
SELECT ok((SELECT q.vt <= c.after FROM pgmq.q_sf q, clock c
           WHERE q.msg_id = (SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'zeta')),
          'a step without start_delay is visible at once');
SELECT ok((SELECT q.vt >= c.before + interval '30 seconds' AND q.vt <= c.after + interval '30 seconds' FROM pgmq.q_sf q, clock c
           WHERE q.msg_id = (SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'late')),
          'opt_start_delay 30: message visible at clock + 30 s');
SELECT is((SELECT count(*)::int FROM pgmq.read('sf', 30, 10)), 2, 'a worker read gets the two visible messages only');

-- Generated run id, named arguments
SELECT ok((SELECT run_id IS NOT NULL AND run_id <> '00000000-0000-0000-0000-000000000301' FROM pgflow.start_flow('sf', '1')),
          'run_id NULL: a random uuid is generated; input of any JSON type accepted without root maps');
SELECT results_eq($$SELECT flow_slug, input FROM pgflow.start_flow(flow_slug => 'sf', input => '[1]',
                      run_id => '00000000-0000-0000-0000-000000000302')$$,
                  $$VALUES ('sf'::text, '[1]'::jsonb)$$, 'named arguments flow_slug, input, run_id');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'sf'), 3, 'three runs stored');

-- Errors
SELECT throws_ok($$SELECT pgflow.start_flow('sf', NULL)$$, '23502',
                 'null value in column "input" of relation "runs" violates not-null constraint',
                 'SQL NULL input without root maps: not-null error on runs.input');
SELECT throws_ok($$SELECT pgflow.start_flow('nope', '{}')$$, '23503',
                 'insert or update on table "runs" violates foreign key constraint "runs_flow_slug_fkey"', 'unknown flow');
SELECT throws_ok($$SELECT pgflow.start_flow('sf', '{}', '00000000-0000-0000-0000-000000000301')$$, '23505',
                 'duplicate key value violates unique constraint "runs_pkey"', 'duplicate run_id');

---------------------------------------------------------------------------------------------------
-- Root map steps
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('rmf');
SELECT pgflow.add_step('rmf', 'items', step_type => 'map');
SELECT pgflow.add_step('rmf', 'each', ARRAY['items'], step_type => 'map');
SELECT pgflow.add_step('rmf', 'total', ARRAY['each']);

SELECT throws_ok($$SELECT pgflow.start_flow('rmf', NULL)$$, 'P0001',
                 'Flow rmf has root map steps but input is NULL', 'root map, SQL NULL input');
SELECT throws_ok($$SELECT pgflow.start_flow('rmf', '{"a": 1}')$$, 'P0001',
                 'Flow rmf has root map steps but input is not an array (got object)', 'root map, object input');
SELECT throws_ok($$SELECT pgflow.start_flow('rmf', '"s"')$$, 'P0001',
                 'Flow rmf has root map steps but input is not an array (got string)', 'root map, string input');
SELECT throws_ok($$SELECT pgflow.start_flow('rmf', '5')$$, 'P0001',
                 'Flow rmf has root map steps but input is not an array (got number)', 'root map, number input');
SELECT throws_ok($$SELECT pgflow.start_flow('rmf', 'true')$$, 'P0001',
                 'Flow rmf has root map steps but input is not an array (got boolean)', 'root map, boolean input');
SELECT throws_ok($$SELECT pgflow.start_flow('rmf', 'null')$$, 'P0001',
                 'Flow rmf has root map steps but input is not an array (got null)', 'root map, JSON null input');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'rmf'), 0, 'no run stored by the failed calls');

SELECT pgflow.start_flow('rmf', '[10, 20, 30]', '00000000-0000-0000-0000-000000000303');
SELECT results_eq($$SELECT step_slug, status, initial_tasks, remaining_tasks, remaining_deps FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000303' ORDER BY step_slug$$,
                  $$VALUES ('each'::text, 'created'::text, NULL::int, NULL::int, 1),
                           ('items', 'started', 3, 3, 0),
                           ('total', 'created', 1, NULL, 1)$$,
                  'initial_tasks: root map = input length, dependent map NULL (unknown), single 1');
SELECT results_eq($$SELECT task_index, status FROM pgflow.step_tasks
                    WHERE run_id = '00000000-0000-0000-0000-000000000303' ORDER BY message_id$$,
                  $$VALUES (0, 'queued'::text), (1, 'queued'), (2, 'queued')$$,
                  'root map: one task per element, message ids ascend with task_index');
SELECT results_eq($$SELECT q.message ->> 'task_index' FROM pgmq.q_rmf q ORDER BY q.msg_id$$,
                  $$VALUES ('0'), ('1'), ('2')$$, 'messages carry task_index 0..2');

-- Empty root map: taskless cascade at start
SELECT results_eq($$SELECT status, output, remaining_steps, completed_at FROM pgflow.start_flow('rmf', '[]', '00000000-0000-0000-0000-000000000304')$$,
                  $$VALUES ('started'::text, NULL::jsonb, 1, NULL::timestamptz)$$,
                  'empty root map input: total (single) still has to run, so the run is started');
SELECT results_eq($$SELECT step_slug, status, initial_tasks, remaining_tasks, remaining_deps, output,
                           started_at = now(), completed_at = now()
                    FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000304' AND step_slug <> 'total'
                    ORDER BY step_slug$$,
                  $$VALUES ('each'::text, 'completed'::text, 0, 0, 0, '[]'::jsonb, true, true),
                           ('items', 'completed', 0, 0, 0, '[]', true, true)$$,
                  'the empty root map and its dependent map complete with output [] (started_at = completed_at = now)');
SELECT results_eq($$SELECT status, remaining_deps, initial_tasks, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000304' AND step_slug = 'total'$$,
                  $$VALUES ('started'::text, 0, 1, 1)$$, 'the single step after them is started');
SELECT results_eq($$SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000304'$$,
                  $$VALUES (1)$$, 'remaining_steps dropped by the two taskless steps');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000304'), 1,
          'taskless steps have no tasks');
SELECT results_eq($$SELECT input, flow_input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000304', 'total')$$,
                  $$VALUES ('{"each": []}'::jsonb, NULL::jsonb)$$, 'the single step gets the empty map output as input');

-- Only taskless steps: the run completes inside start_flow.
SELECT pgflow.create_flow('rm_only');
SELECT pgflow.add_step('rm_only', 'm1', step_type => 'map');
SELECT pgflow.add_step('rm_only', 'm2', ARRAY['m1'], step_type => 'map');
SELECT results_eq($$SELECT status, output, remaining_steps, completed_at, failed_at FROM pgflow.start_flow('rm_only', '[]')$$,
                  $$VALUES ('completed'::text, '{"m2": []}'::jsonb, 0, now(), NULL::timestamptz)$$,
                  'flow of only taskless maps completes at start; output holds only the leaf');

-- No steps at all
SELECT pgflow.create_flow('empty_flow');
SELECT results_eq($$SELECT status, output, remaining_steps, completed_at FROM pgflow.start_flow('empty_flow', '{"x": 1}')$$,
                  $$VALUES ('completed'::text, NULL::jsonb, 0, now())$$,
                  'a flow without steps completes immediately with output NULL');
SELECT is((SELECT count(*)::int FROM pgflow.step_states s JOIN pgflow.runs r USING (run_id) WHERE r.flow_slug = 'empty_flow'), 0,
          'and has no step states');

-- Safety limit of the taskless cascade: 49 levels work, 50 raise.
DO $$
BEGIN
    PERFORM pgflow.create_flow('chain49');
    PERFORM pgflow.create_flow('chain50');
    PERFORM pgflow.add_step('chain49', 'm0', step_type => 'map');
    PERFORM pgflow.add_step('chain50', 'm0', step_type => 'map');
    FOR i IN 1 .. 49 LOOP
        IF i < 49 THEN
            PERFORM pgflow.add_step('chain49', 'm' || i, ARRAY['m' || (i - 1)], step_type => 'map');
        END IF;
        PERFORM pgflow.add_step('chain50', 'm' || i, ARRAY['m' || (i - 1)], step_type => 'map');
    END LOOP;
END $$;
SELECT results_eq($$SELECT status, output FROM pgflow.start_flow('chain49', '[]')$$,
                  $$VALUES ('completed'::text, '{"m48": []}'::jsonb)$$, 'a chain of 49 empty maps completes');
SELECT throws_ok($$SELECT pgflow.start_flow('chain50', '[]')$$, 'P0001',
                 'Cascade loop exceeded safety limit of 50 iterations', 'a chain of 50 empty maps raises on the 51st pass');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'chain50'), 0, 'and start_flow rolled back');

---------------------------------------------------------------------------------------------------
-- start_ready_steps directly
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('srs');
SELECT pgflow.add_step('srs', 'a');
SELECT pgflow.add_step('srs', 'b', ARRAY['a']);
SELECT pgflow.add_step('srs', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('srs', 'cond', ARRAY['a'], required_input_pattern => '{"never": true}');
SELECT pgflow.start_flow('srs', '{}', '00000000-0000-0000-0000-000000000305');
UPDATE pgflow.step_states SET remaining_deps = 0 WHERE run_id = '00000000-0000-0000-0000-000000000305' AND step_slug <> 'a';
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000305';
SELECT lives_ok($$SELECT pgflow.start_ready_steps('00000000-0000-0000-0000-000000000305')$$, 'start_ready_steps on a failed run');
SELECT is((SELECT count(*)::int FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000305' AND status = 'started'), 1,
          'a failed run: nothing started');
UPDATE pgflow.runs SET status = 'completed', failed_at = NULL, completed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000305';
SELECT pgflow.start_ready_steps('00000000-0000-0000-0000-000000000305');
SELECT is((SELECT count(*)::int FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000305' AND status = 'started'), 1,
          'a completed run: nothing started');
UPDATE pgflow.runs SET status = 'started', completed_at = NULL WHERE run_id = '00000000-0000-0000-0000-000000000305';
SELECT pgflow.start_ready_steps('00000000-0000-0000-0000-000000000305');
SELECT results_eq($$SELECT step_slug, status, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000305' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'started'::text, 1), ('b', 'started', 1), ('cond', 'started', 1), ('m', 'created', NULL::int)$$,
                  'a started run: ready steps started (no condition evaluated); a map of unknown size (initial_tasks NULL) is not');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000305'), 3,
          'one task per newly started step');
UPDATE pgflow.step_states SET initial_tasks = 0 WHERE run_id = '00000000-0000-0000-0000-000000000305' AND step_slug = 'm';
SELECT pgflow.start_ready_steps('00000000-0000-0000-0000-000000000305');
SELECT is((SELECT status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000305' AND step_slug = 'm'),
          'created', 'a taskless step (initial_tasks 0) is not started by start_ready_steps');
SELECT lives_ok($$SELECT pgflow.start_ready_steps('00000000-0000-0000-0000-00000000ffff')$$, 'unknown run: no error');

---------------------------------------------------------------------------------------------------
-- cascade_complete_taskless_steps and maybe_complete_run directly
---------------------------------------------------------------------------------------------------
SELECT is(pgflow.cascade_complete_taskless_steps('00000000-0000-0000-0000-000000000305'), 1,
          'cascade_complete_taskless_steps returns the number of steps completed');
SELECT results_eq($$SELECT status, output, remaining_tasks, started_at = now(), completed_at = now() FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000305' AND step_slug = 'm'$$,
                  $$VALUES ('completed'::text, '[]'::jsonb, 0, true, true)$$, 'the taskless map completed with []');
SELECT is((SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000305'), 3,
          'run remaining_steps decremented by one');
SELECT is(pgflow.cascade_complete_taskless_steps('00000000-0000-0000-0000-000000000305'), 0, 'nothing taskless left: 0');
UPDATE pgflow.runs SET status = 'failed', failed_at = now() WHERE run_id = '00000000-0000-0000-0000-000000000303';
UPDATE pgflow.step_states SET remaining_deps = 0, initial_tasks = 0
WHERE run_id = '00000000-0000-0000-0000-000000000303' AND step_slug = 'each';
SELECT is(pgflow.cascade_complete_taskless_steps('00000000-0000-0000-0000-000000000303'), 1,
          'cascade_complete_taskless_steps does not look at the run status');
SELECT is(pgflow.cascade_complete_taskless_steps('00000000-0000-0000-0000-00000000ffff'), 0, 'unknown run: 0');

-- maybe_complete_run
SELECT pgflow.maybe_complete_run('00000000-0000-0000-0000-000000000301');
SELECT is((SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000301'), 'started',
          'maybe_complete_run: remaining_steps > 0 -> no-op');
UPDATE pgflow.step_states SET status = 'completed', remaining_tasks = 0, completed_at = now(), output = '"Z"'
WHERE run_id = '00000000-0000-0000-0000-000000000301' AND step_slug IN ('zeta', 'join');
UPDATE pgflow.step_states SET status = 'skipped', remaining_tasks = NULL, skip_reason = 'condition_unmet', skipped_at = now()
WHERE run_id = '00000000-0000-0000-0000-000000000301' AND step_slug = 'late';
UPDATE pgflow.runs SET remaining_steps = 0 WHERE run_id = '00000000-0000-0000-0000-000000000301';
SELECT pgflow.maybe_complete_run('00000000-0000-0000-0000-000000000301');
SELECT results_eq($$SELECT status, output, completed_at, failed_at FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000301'$$,
                  $$VALUES ('completed'::text, '{"join": "Z"}'::jsonb, now(), NULL::timestamptz)$$,
                  'remaining_steps 0: completed with {leaf: output} over completed leaves only (skipped leaf omitted, non-leaf zeta omitted)');
UPDATE pgflow.step_states SET status = 'skipped', remaining_tasks = NULL, output = NULL, completed_at = NULL,
       skip_reason = 'condition_unmet', skipped_at = now()
WHERE run_id = '00000000-0000-0000-0000-000000000302';
UPDATE pgflow.runs SET remaining_steps = 0 WHERE run_id = '00000000-0000-0000-0000-000000000302';
SELECT pgflow.maybe_complete_run('00000000-0000-0000-0000-000000000302');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000302'$$,
                  $$VALUES ('completed'::text, NULL::jsonb)$$, 'no completed leaf: output NULL');
SELECT lives_ok($$SELECT pgflow.maybe_complete_run('00000000-0000-0000-0000-000000000302')$$,
                'maybe_complete_run on a completed run is a no-op');
-- The condition is "remaining_steps = 0 and status <> 'completed'" (2.3): a run marked failed
-- directly (without failed_at) and with no remaining step is completed.
UPDATE pgflow.runs SET status = 'failed', remaining_steps = 0 WHERE run_id = '00000000-0000-0000-0000-000000000305';
SELECT pgflow.maybe_complete_run('00000000-0000-0000-0000-000000000305');
SELECT results_eq($$SELECT status, completed_at, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000305'$$,
                  $$VALUES ('completed'::text, now(), '{"m": []}'::jsonb)$$,
                  'maybe_complete_run completes any run with remaining_steps 0 whose status is not completed');

SELECT * FROM finish();
ROLLBACK;
