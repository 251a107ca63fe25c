-- Flow shapes and compilation: _get_flow_shape, _compare_flow_shapes (messages,
-- order, NULL semantics Q10), _create_flow_from_shape, ensure_flow_compiled with all four statuses
-- and its advisory lock.
BEGIN;
SELECT plan(37);
\ir helpers/common.psql

CREATE FUNCTION pg_temp.advisory_lock_held(k1 integer, k2 integer) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.mode = 'ExclusiveLock'
                     AND l.objsubid = 2 AND l.classid::text::bigint = (k1::bigint & 4294967295)
                     AND l.objid::text::bigint = (k2::bigint & 4294967295))
$$;

---------------------------------------------------------------------------------------------------
-- _get_flow_shape
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('shp', 7, 2, 30);
SELECT pgflow.add_step('shp', 'fetch', max_attempts => 9, timeout => 5);
SELECT pgflow.add_step('shp', 'parse', ARRAY['fetch'], required_input_pattern => '{"fetch": {"ok": true}}', when_unmet => 'fail');
SELECT pgflow.add_step('shp', 'fan', ARRAY['parse'], step_type => 'map', when_exhausted => 'skip-cascade');
SELECT pgflow.add_step('shp', 'join', ARRAY['parse', 'fetch'], forbidden_input_pattern => '{"x": 1}', when_unmet => 'skip-cascade',
                       when_exhausted => 'skip');
CREATE TEMP TABLE shp AS SELECT pgflow._get_flow_shape('shp') AS shape;
SELECT is((SELECT shape FROM shp), '{"steps": [
    {"slug": "fetch", "stepType": "single", "dependencies": [], "whenUnmet": "skip", "whenExhausted": "fail",
     "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}},
    {"slug": "parse", "stepType": "single", "dependencies": ["fetch"], "whenUnmet": "fail", "whenExhausted": "fail",
     "requiredInputPattern": {"defined": true, "value": {"fetch": {"ok": true}}}, "forbiddenInputPattern": {"defined": false}},
    {"slug": "fan", "stepType": "map", "dependencies": ["parse"], "whenUnmet": "skip", "whenExhausted": "skip-cascade",
     "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}},
    {"slug": "join", "stepType": "single", "dependencies": ["fetch", "parse"], "whenUnmet": "skip-cascade", "whenExhausted": "skip",
     "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": true, "value": {"x": 1}}}]}'::jsonb,
    '_get_flow_shape: steps by step_index with exactly the seven keys, sorted dependencies, pattern wrappers, no options');
SELECT is(pgflow._get_flow_shape('no_such_flow'), '{"steps": []}'::jsonb, 'unknown flow: {"steps": []}');
SELECT pgflow.create_flow('shp_empty');
SELECT is(pgflow._get_flow_shape('shp_empty'), '{"steps": []}'::jsonb, 'flow without steps: {"steps": []}');

---------------------------------------------------------------------------------------------------
-- _compare_flow_shapes
---------------------------------------------------------------------------------------------------
SELECT is(pgflow._compare_flow_shapes((SELECT shape FROM shp), (SELECT shape FROM shp)), '{}'::text[], 'equal shapes: {}');
SELECT is(pgflow._compare_flow_shapes((SELECT shape FROM shp) || '{"options": {"maxAttempts": 1}}',
                                      (SELECT shape FROM shp)), '{}'::text[], 'options are never compared');
SELECT is(pgflow._compare_flow_shapes(
    jsonb_set((SELECT shape FROM shp), '{steps,3,dependencies}', '["parse", "fetch"]'), (SELECT shape FROM shp)),
    '{}'::text[], 'dependency order does not matter (both sides sorted)');
SELECT is(pgflow._compare_flow_shapes('{"steps": [{"slug": "a"}, {"slug": "b"}]}', '{"steps": [{"slug": "a"}]}'),
          ARRAY['Step count differs: 2 vs 1', 'Step at index 1: missing in second shape (first has ''b'')'],
          'local has more steps: count message, then missing in second shape');
SELECT is(pgflow._compare_flow_shapes('{"steps": [{"slug": "a"}]}', '{"steps": [{"slug": "a"}, {"slug": "b"}, {"slug": "c"}]}'),
          ARRAY['Step count differs: 1 vs 3', 'Step at index 1: missing in first shape (second has ''b'')',
                'Step at index 2: missing in first shape (second has ''c'')'],
          'db has more steps: missing in first shape, one message per index');
SELECT is(pgflow._compare_flow_shapes('{}', '{"steps": [{"slug": "a"}]}'),
          ARRAY['Step count differs: 0 vs 1', 'Step at index 0: missing in first shape (second has ''a'')'],
          'missing steps key counts as empty');
SELECT is(pgflow._compare_flow_shapes('{}', '{}'), '{}'::text[], 'both without steps: {}');
SELECT is(pgflow._compare_flow_shapes(
    '{"steps": [{"slug": "x", "stepType": "map", "dependencies": ["b", "a"], "whenUnmet": "fail", "whenExhausted": "skip",
                 "requiredInputPattern": {"defined": true, "value": {"x": 1}}, "forbiddenInputPattern": {"defined": false}}]}',
    '{"steps": [{"slug": "y", "stepType": "single", "dependencies": ["c"], "whenUnmet": "skip", "whenExhausted": "fail",
                 "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": true, "value": {"y": [1, 2]}}}]}'),
    ARRAY['Step at index 0: slug differs ''x'' vs ''y''',
          'Step at index 0: type differs ''map'' vs ''single''',
          'Step at index 0: dependencies differ [a, b] vs [c]',
          'Step at index 0: whenUnmet differs ''fail'' vs ''skip''',
          'Step at index 0: whenExhausted differs ''skip'' vs ''fail''',
          'Step at index 0: requiredInputPattern differs ''{"value": {"x": 1}, "defined": true}'' vs ''{"defined": false}''',
          'Step at index 0: forbiddenInputPattern differs ''{"defined": false}'' vs ''{"value": {"y": [1, 2]}, "defined": true}'''],
    'every field differs: seven messages in the documented order, patterns in canonical jsonb text');
SELECT is(pgflow._compare_flow_shapes(
    '{"steps": [{"slug": "a", "dependencies": ["z"], "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}},
                {"dependencies": []}]}',
    '{"steps": [{"slug": "a", "stepType": "map", "whenUnmet": "fail", "whenExhausted": "skip",
                 "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}},
                {"slug": "b", "stepType": "single", "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}}]}'),
    ARRAY['Step at index 0: dependencies differ [z] vs []',
          'Step at index 1: requiredInputPattern differs '''' vs ''{"defined": false}''',
          'Step at index 1: forbiddenInputPattern differs '''' vs ''{"defined": false}'''],
    'Q10: missing slug/stepType/whenUnmet/whenExhausted never differ; missing dependencies = []; a missing pattern differs and renders as empty');
SELECT is(pgflow._compare_flow_shapes(
    '{"steps": [{"slug": "a", "requiredInputPattern": {"defined": false}}]}',
    '{"steps": [{"slug": "a"}]}'),
    ARRAY['Step at index 0: requiredInputPattern differs ''{"defined": false}'' vs '''''],
    'Q10: pattern present locally, missing in db');
SELECT is(pgflow._compare_flow_shapes(
    '{"steps": [{"slug": "a", "requiredInputPattern": null, "forbiddenInputPattern": null}]}',
    '{"steps": [{"slug": "a", "requiredInputPattern": null, "forbiddenInputPattern": null}]}'),
    '{}'::text[], 'JSON null patterns on both sides are equal');

---------------------------------------------------------------------------------------------------
-- _create_flow_from_shape
---------------------------------------------------------------------------------------------------
SELECT lives_ok($$SELECT pgflow._create_flow_from_shape('from_shape', '{
    "steps": [
      {"slug": "a", "stepType": "single", "dependencies": [], "whenUnmet": "skip", "whenExhausted": "fail",
       "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false},
       "options": {"maxAttempts": 4, "baseDelay": 6, "timeout": 7, "startDelay": 8}},
      {"slug": "b", "dependencies": ["a"], "requiredInputPattern": {"defined": true, "value": {"a": 1}},
       "forbiddenInputPattern": {"defined": false, "value": {"ignored": true}}},
      {"slug": "m", "stepType": "map", "dependencies": ["b"], "whenUnmet": "fail", "whenExhausted": "skip-cascade",
       "options": {"maxAttempts": "2"}},
      {"slug": "c", "dependencies": ["m", "a"]}],
    "options": {"maxAttempts": 5, "baseDelay": "2", "timeout": 30}}')$$, '_create_flow_from_shape');
SELECT results_eq($$SELECT opt_max_attempts, opt_base_delay, opt_timeout FROM pgflow.flows WHERE flow_slug = 'from_shape'$$,
                  $$VALUES (5, 2, 30)$$, 'flow options from shape.options (text values cast to integer)');
SELECT results_eq($$SELECT step_slug, step_type, step_index, deps_count, opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay,
                           required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted
                    FROM pgflow.steps WHERE flow_slug = 'from_shape' ORDER BY step_index$$,
                  $$VALUES ('a'::text, 'single'::text, 0, 0, 4, 6, 7, 8, NULL::jsonb, NULL::jsonb, 'skip'::text, 'fail'::text),
                           ('b', 'single', 1, 1, NULL, NULL, NULL, NULL, '{"a": 1}', NULL, 'skip', 'fail'),
                           ('m', 'map', 2, 1, 2, NULL, NULL, NULL, NULL, NULL, 'fail', 'skip-cascade'),
                           ('c', 'single', 3, 2, NULL, NULL, NULL, NULL, NULL, NULL, 'skip', 'fail')$$,
                  'steps in array order: options, missing stepType -> single, missing modes -> skip/fail, pattern value only when defined');
SELECT results_eq($$SELECT dep_slug, step_slug FROM pgflow.deps WHERE flow_slug = 'from_shape' ORDER BY step_slug, dep_slug$$,
                  $$VALUES ('a'::text, 'b'::text), ('a', 'c'), ('m', 'c'), ('b', 'm')$$, 'dependencies');
SELECT is((SELECT count(*)::int FROM pgmq.list_queues() WHERE queue_name = 'from_shape'), 1, 'the queue is created');
SELECT lives_ok($$SELECT pgflow._create_flow_from_shape('from_shape2', '{"steps": [{"slug": "only"}]}')$$, 'minimal shape');
SELECT results_eq($$SELECT opt_max_attempts, opt_base_delay, opt_timeout FROM pgflow.flows WHERE flow_slug = 'from_shape2'$$,
                  $$VALUES (3, 5, 60)$$, 'missing options: create_flow defaults 3 / 5 / 60');
SELECT throws_ok($$SELECT pgflow._create_flow_from_shape('from_shape3', '{"steps": [{"slug": "b", "dependencies": ["a"]}]}')$$,
                 '23503', 'insert or update on table "deps" violates foreign key constraint "deps_flow_slug_dep_slug_fkey"',
                 'add_step errors propagate');
SELECT is(pgflow._compare_flow_shapes((SELECT shape FROM shp), pgflow._get_flow_shape('shp')), '{}'::text[],
          'round trip: the shape read back compares equal');

---------------------------------------------------------------------------------------------------
-- ensure_flow_compiled
---------------------------------------------------------------------------------------------------
CREATE TEMP TABLE shapes (name text PRIMARY KEY, shape jsonb);
INSERT INTO shapes VALUES
  ('v1', '{"steps": [{"slug": "a", "stepType": "single", "dependencies": [], "whenUnmet": "skip", "whenExhausted": "fail",
                      "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}}],
           "options": {"maxAttempts": 2}}'),
  ('v2', '{"steps": [{"slug": "a", "stepType": "single", "dependencies": [], "whenUnmet": "skip", "whenExhausted": "fail",
                      "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}},
                     {"slug": "b", "stepType": "single", "dependencies": ["a"], "whenUnmet": "skip", "whenExhausted": "fail",
                      "requiredInputPattern": {"defined": false}, "forbiddenInputPattern": {"defined": false}}],
           "options": {"maxAttempts": 4}}');

SELECT is(pgflow.ensure_flow_compiled('efc', (SELECT shape FROM shapes WHERE name = 'v1')),
          '{"status": "compiled", "differences": []}'::jsonb, 'absent flow: compiled, no differences');
SELECT ok(pg_temp.advisory_lock_held(1, hashtext('efc')), 'pg_advisory_xact_lock(1, hashtext(flow_slug)) is held');
SELECT results_eq($$SELECT s.step_slug, f.opt_max_attempts FROM pgflow.steps s JOIN pgflow.flows f USING (flow_slug) WHERE flow_slug = 'efc'$$,
                  $$VALUES ('a'::text, 2)$$, 'the flow was created from the shape');
SELECT is(pgflow.ensure_flow_compiled(flow_slug => 'efc', shape => (SELECT shape FROM shapes WHERE name = 'v1') || '{"options": {"maxAttempts": 9}}'),
          '{"status": "verified", "differences": []}'::jsonb, 'same shape (other options): verified');
SELECT is((SELECT opt_max_attempts FROM pgflow.flows WHERE flow_slug = 'efc'), 2, 'verified: DB options not updated');

SELECT pgflow.start_flow('efc', '{}', '00000000-0000-0000-0000-000000000c01');
SELECT is(pgflow.ensure_flow_compiled('efc', (SELECT shape FROM shapes WHERE name = 'v2'), false),
          jsonb_build_object('status', 'mismatch', 'differences',
                             jsonb_build_array('Step count differs: 2 vs 1', 'Step at index 1: missing in second shape (first has ''b'')')),
          'different shape, not local, no data loss allowed: mismatch with the differences');
SELECT is((SELECT count(*)::int FROM pgflow.steps WHERE flow_slug = 'efc'), 1, 'mismatch: nothing changed');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'efc'), 1, 'mismatch: runs kept');

SELECT is(pgflow.ensure_flow_compiled('efc', (SELECT shape FROM shapes WHERE name = 'v2'), allow_data_loss => true),
          jsonb_build_object('status', 'recompiled', 'differences',
                             jsonb_build_array('Step count differs: 2 vs 1', 'Step at index 1: missing in second shape (first has ''b'')')),
          'allow_data_loss: recompiled with the differences');
SELECT results_eq($$SELECT s.step_slug, f.opt_max_attempts FROM pgflow.steps s JOIN pgflow.flows f USING (flow_slug)
                    WHERE flow_slug = 'efc' ORDER BY step_index$$,
                  $$VALUES ('a'::text, 4), ('b', 4)$$, 'recompiled: flow rebuilt from the new shape (with its options)');
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'efc'), 0, 'recompiled: the old runs are gone');
SELECT is((SELECT count(*)::int FROM pgmq.q_efc), 0, 'recompiled: the queue was dropped and re-created (old message gone)');

-- is_local() true: recompiles without allow_data_loss
SELECT set_config('app.settings.jwt_secret', 'super-secret-jwt-token-with-at-least-32-characters-long', true);
SELECT is(pgflow.ensure_flow_compiled('efc', (SELECT shape FROM shapes WHERE name = 'v1')),
          jsonb_build_object('status', 'recompiled', 'differences',
                             jsonb_build_array('Step count differs: 1 vs 2', 'Step at index 1: missing in first shape (second has ''b'')')),
          'is_local(): recompiled even without allow_data_loss');
SELECT is((SELECT count(*)::int FROM pgflow.steps WHERE flow_slug = 'efc'), 1, 'back to one step');
SELECT set_config('app.settings.jwt_secret', '', true);

SELECT * FROM finish();
ROLLBACK;
