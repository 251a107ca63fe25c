-- Conditions: required/forbidden patterns with jsonb
-- containment, condition input of root and dependent steps, when_unmet fail / skip / skip-cascade,
-- passes until convergence, the 50-pass safety limit.
BEGIN;
SELECT plan(33);
\ir helpers/common.psql

SELECT pgflow.create_flow('cd_root');
SELECT pgflow.add_step('cd_root', 'req', required_input_pattern => '{"tier": "gold"}');
SELECT pgflow.add_step('cd_root', 'forb', forbidden_input_pattern => '{"blocked": true}');
SELECT pgflow.add_step('cd_root', 'both', required_input_pattern => '{"tier": "gold"}', forbidden_input_pattern => '{"region": "eu"}');
SELECT pgflow.add_step('cd_root', 'arr', required_input_pattern => '{"tags": ["x"]}');
SELECT pgflow.add_step('cd_root', 'child', ARRAY['req']);
SELECT pgflow.add_step('cd_root', 'mapchild', ARRAY['req'], step_type => 'map');

-- All met
SELECT pgflow.start_flow('cd_root', '{"tier": "gold", "region": "us", "tags": ["y", "x"]}', '00000000-0000-0000-0000-000000000701');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000701' ORDER BY step_slug$$,
                  $$VALUES ('arr'::text, 'started'::text), ('both', 'started'), ('child', 'created'), ('forb', 'started'),
                           ('mapchild', 'created'), ('req', 'started')$$,
                  'root conditions met against the run input (required contained, forbidden not contained, array containment)');

-- All unmet, when_unmet skip (the default)
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.start_flow('cd_root', '{"tier": "silver", "blocked": true, "region": "eu"}',
                                                                          '00000000-0000-0000-0000-000000000702')$$,
                  $$VALUES ('started'::text, 1)$$, 'four skipped + one taskless map: remaining_steps 6 -> 1');
SELECT results_eq(
    $$SELECT step_slug, status, skip_reason, skipped_at, initial_tasks, remaining_tasks, started_at, failed_at, error_message
      FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000702' AND step_slug IN ('arr', 'both', 'forb', 'req')
      ORDER BY step_slug$$,
    $$VALUES ('arr'::text, 'skipped'::text, 'condition_unmet'::text, now(), 1, NULL::int, NULL::timestamptz, NULL::timestamptz, NULL::text),
             ('both', 'skipped', 'condition_unmet', now(), 1, NULL, NULL, NULL, NULL),
             ('forb', 'skipped', 'condition_unmet', now(), 1, NULL, NULL, NULL, NULL),
             ('req', 'skipped', 'condition_unmet', now(), 1, NULL, NULL, NULL, NULL)$$,
    'unmet skip: status skipped, skip_reason condition_unmet, skipped_at now, initial_tasks kept, remaining_tasks NULL');
SELECT results_eq($$SELECT status, remaining_deps, initial_tasks, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000702' AND step_slug = 'child'$$,
                  $$VALUES ('started'::text, 0, 1, 1)$$, 'dependent of a skipped step: remaining_deps 1 -> 0, started');
SELECT results_eq($$SELECT status, remaining_deps, initial_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000702' AND step_slug = 'mapchild'$$,
                  $$VALUES ('completed'::text, 0, 0, '[]'::jsonb)$$,
                  'map dependent (deps_count 1) of a skipped step: initial_tasks 0, then completed with [] by the taskless cascade');
SELECT results_eq($$SELECT input, flow_input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000702', 'child')$$,
                  $$VALUES ('{}'::jsonb, NULL::jsonb)$$, 'the skipped dependency is absent from the input');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000702'), 1,
          'skipped steps got no tasks');

-- Non-object run input
SELECT pgflow.start_flow('cd_root', '[1]', '00000000-0000-0000-0000-000000000703');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000703'
                    AND step_slug IN ('arr', 'both', 'forb', 'req') ORDER BY step_slug$$,
                  $$VALUES ('arr'::text, 'skipped'::text), ('both', 'skipped'), ('forb', 'started'), ('req', 'skipped')$$,
                  'array run input: object patterns are not contained ([1] @> {...} is false), so only forbidden-only is met');

---------------------------------------------------------------------------------------------------
-- Dependent conditions, when_unmet fail
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('cd_dep');
SELECT pgflow.add_step('cd_dep', 'a');
SELECT pgflow.add_step('cd_dep', 'b');
SELECT pgflow.add_step('cd_dep', 'slow');
SELECT pgflow.add_step('cd_dep', 'c', ARRAY['a', 'b'], required_input_pattern => '{"a": {"ok": true}}',
                       forbidden_input_pattern => '{"b": {"bad": true}}', when_unmet => 'fail');

SELECT pgflow.start_flow('cd_dep', '{"ok": false}', '00000000-0000-0000-0000-000000000704');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000704', 'a', '{"ok": true, "n": 1}');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000704', 'b', '{"bad": false}');
SELECT results_eq($$SELECT status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000704' AND step_slug = 'c'$$,
                  $$VALUES ('started'::text)$$, 'dependent condition evaluated on {dep: output} (not the run input): met');

SELECT pgflow.start_flow('cd_dep', '{}', '00000000-0000-0000-0000-000000000705');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000705', 'slow');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000705', 'a', '{"ok": true}');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000705', 'b');
SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000705', 'b', 0, '{"bad": true}')$$,
                  $$VALUES ('completed'::text, '{"bad": true}'::jsonb)$$,
                  'complete_task whose completion trips a fail condition returns its completed task');
SELECT results_eq($$SELECT status, error_message, failed_at, remaining_tasks, started_at, initial_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000705' AND step_slug = 'c'$$,
                  $$VALUES ('failed'::text, 'Condition not met'::text, now(), NULL::int, NULL::timestamptz, 1)$$,
                  'when_unmet fail: step failed with Condition not met, remaining_tasks stays NULL');
SELECT results_eq($$SELECT status, failed_at, completed_at, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000705'$$,
                  $$VALUES ('failed'::text, now(), NULL::timestamptz, 2)$$, 'when_unmet fail: run failed, remaining_steps unchanged');
SELECT is(pg_temp.queued_ids('cd_dep') && pg_temp.task_msgs('00000000-0000-0000-0000-000000000705'), false,
          'when_unmet fail: the started task of slow and b''s message left the queue');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000705' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'completed'::text), ('b', 'completed'), ('slow', 'started')$$, 'task rows keep their status');

-- Two failing roots: the lowest step_index is failed, nothing starts.
SELECT pgflow.create_flow('cd_fail2');
SELECT pgflow.add_step('cd_fail2', 'zz', required_input_pattern => '{"x": 1}', when_unmet => 'fail');
SELECT pgflow.add_step('cd_fail2', 'aa', required_input_pattern => '{"x": 1}', when_unmet => 'fail');
SELECT pgflow.add_step('cd_fail2', 'plain');
SELECT results_eq($$SELECT status, failed_at, remaining_steps FROM pgflow.start_flow('cd_fail2', '{}', '00000000-0000-0000-0000-000000000706')$$,
                  $$VALUES ('failed'::text, now(), 3)$$, 'start_flow returns the run already failed by a root fail condition');
SELECT results_eq($$SELECT step_slug, status, error_message FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000706' ORDER BY step_slug$$,
                  $$VALUES ('aa'::text, 'created'::text, NULL::text), ('plain', 'created', NULL), ('zz', 'failed', 'Condition not met')$$,
                  'only the failing step with the lowest step_index (zz) fails; no step is started');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000706'), 0, 'and no task created');

---------------------------------------------------------------------------------------------------
-- skip-cascade and multi-pass
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('cd_sc');
SELECT pgflow.add_step('cd_sc', 'r', required_input_pattern => '{"go": true}', when_unmet => 'skip-cascade');
SELECT pgflow.add_step('cd_sc', 'd1', ARRAY['r']);
SELECT pgflow.add_step('cd_sc', 'd2', ARRAY['d1']);
SELECT pgflow.add_step('cd_sc', 'other');
SELECT pgflow.add_step('cd_sc', 'd3', ARRAY['r', 'other']);
SELECT pgflow.start_flow('cd_sc', '{"go": false}', '00000000-0000-0000-0000-000000000707');
SELECT results_eq($$SELECT step_slug, status, skip_reason, skipped_at, remaining_deps, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000707' ORDER BY step_slug$$,
                  $$VALUES ('d1'::text, 'skipped'::text, 'dependency_skipped'::text, now(), 1, NULL::int),
                           ('d2', 'skipped', 'dependency_skipped', now(), 1, NULL),
                           ('d3', 'skipped', 'dependency_skipped', now(), 2, NULL),
                           ('other', 'started', NULL, NULL, 0, 1),
                           ('r', 'skipped', 'condition_unmet', now(), 0, NULL)$$,
                  'skip-cascade: the step (condition_unmet) and all transitive dependents (dependency_skipped); remaining_deps untouched');
SELECT is((SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000707'), 1,
          'skip-cascade: remaining_steps 5 -> 1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000707', 'other', '"o"');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000707'$$,
                  $$VALUES ('completed'::text, NULL::jsonb)$$,
                  'the run completes; no completed leaf (other is not a leaf) gives output NULL');

SELECT pgflow.create_flow('cd_pass');
SELECT pgflow.add_step('cd_pass', 'a', required_input_pattern => '{"x": 1}');
SELECT pgflow.add_step('cd_pass', 'b', ARRAY['a'], required_input_pattern => '{"a": 1}');
SELECT pgflow.add_step('cd_pass', 'c', ARRAY['b'], forbidden_input_pattern => '{"b": 1}');
SELECT pgflow.start_flow('cd_pass', '{}', '00000000-0000-0000-0000-000000000708');
SELECT results_eq($$SELECT step_slug, status, skip_reason FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000708' ORDER BY step_slug$$,
                  $$VALUES ('a'::text, 'skipped'::text, 'condition_unmet'::text), ('b', 'skipped', 'condition_unmet'), ('c', 'started', NULL)$$,
                  'passes repeat: b (input {} after a was skipped) is skipped in pass 2, c''s forbidden pattern is then met');

-- a conditional step made ready by a taskless map is started without evaluating its condition.
SELECT pgflow.create_flow('cd_q3');
SELECT pgflow.add_step('cd_q3', 'm', step_type => 'map');
SELECT pgflow.add_step('cd_q3', 'c', ARRAY['m'], required_input_pattern => '{"never": 1}', when_unmet => 'fail');
SELECT results_eq($$SELECT status FROM pgflow.start_flow('cd_q3', '[]', '00000000-0000-0000-0000-000000000709')$$,
                  $$VALUES ('started'::text)$$, 'Q3: run not failed');
SELECT results_eq($$SELECT step_slug, status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000709' ORDER BY step_slug$$,
                  $$VALUES ('c'::text, 'started'::text), ('m', 'completed')$$, 'Q3: the conditional step is started unevaluated');

---------------------------------------------------------------------------------------------------
-- cascade_resolve_conditions directly
---------------------------------------------------------------------------------------------------
SELECT is(pgflow.cascade_resolve_conditions('00000000-0000-0000-0000-00000000ffff'), true, 'unknown run: true');
SELECT is(pgflow.cascade_resolve_conditions('00000000-0000-0000-0000-000000000706'), false, 'failed run: false');
SELECT is(pgflow.cascade_resolve_conditions('00000000-0000-0000-0000-000000000707'), true, 'completed run: true');
SELECT is(pgflow.cascade_resolve_conditions('00000000-0000-0000-0000-000000000701'), true, 'nothing to do: true');
-- A started run with a ready, unmet 'fail' step (remaining_deps forced to 0).
SELECT pgflow.start_flow('cd_dep', '{}', '00000000-0000-0000-0000-000000000710');
UPDATE pgflow.step_states SET remaining_deps = 0 WHERE run_id = '00000000-0000-0000-0000-000000000710' AND step_slug = 'c';
SELECT is(pgflow.cascade_resolve_conditions('00000000-0000-0000-0000-000000000710'), false,
          'fail condition (input {} lacks a): false');
SELECT results_eq($$SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000710'$$,
                  $$VALUES ('failed'::text)$$, 'and the run is failed');
SELECT is(pg_temp.queued_ids('cd_dep') && pg_temp.task_msgs('00000000-0000-0000-0000-000000000710'), false,
          'and the queued messages of the run archived');

-- Safety limit: a chain of 49 skipped steps converges, 50 raise.
DO $$
BEGIN
    PERFORM pgflow.create_flow('cchain49');
    PERFORM pgflow.create_flow('cchain50');
    PERFORM pgflow.add_step('cchain49', 's0', required_input_pattern => '{"x": 1}');
    PERFORM pgflow.add_step('cchain50', 's0', required_input_pattern => '{"x": 1}');
    FOR i IN 1 .. 49 LOOP
        IF i < 49 THEN
            PERFORM pgflow.add_step('cchain49', 's' || i, ARRAY['s' || (i - 1)], required_input_pattern => '{"x": 1}');
        END IF;
        PERFORM pgflow.add_step('cchain50', 's' || i, ARRAY['s' || (i - 1)], required_input_pattern => '{"x": 1}');
    END LOOP;
END $$;
SELECT results_eq($$SELECT status, remaining_steps, output FROM pgflow.start_flow('cchain49', '{}')$$,
                  $$VALUES ('completed'::text, 0, NULL::jsonb)$$, '49 chained unmet conditions: all skipped, run completed');
SELECT throws_ok($$SELECT pgflow.start_flow('cchain50', '{}')$$, 'P0001',
                 'cascade_resolve_conditions exceeded safety limit of 50 iterations', '50 chained unmet conditions raise');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'cchain50'), 0, 'and start_flow rolled back');

SELECT * FROM finish();
ROLLBACK;
