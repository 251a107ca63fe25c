-- Flow definition: create_flow and add_step, their defaults, returned rows, queue
-- creation, idempotency (pgflow's quirks included) and every constraint error they can raise.
BEGIN;
SELECT plan(70);
\ir helpers/common.psql

---------------------------------------------------------------------------------------------------
-- create_flow
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT flow_slug, opt_max_attempts, opt_base_delay, opt_timeout, created_at = now()
                    FROM pgflow.create_flow('def_a')$$,
                  $$VALUES ('def_a'::text, 3, 5, 60, true)$$,
                  'create_flow(slug): returns the flows row with function defaults 3 / 5 / 60 and created_at now (Q4: base_delay 5)');
SELECT results_eq($$SELECT * FROM pgflow.flows WHERE flow_slug = 'def_a'$$,
                  $$SELECT 'def_a'::text, 3, 5, 60, now()$$, 'the stored flows row equals the returned one');
SELECT is((SELECT count(*)::int FROM pgmq.list_queues() WHERE queue_name = 'def_a'), 1,
          'create_flow creates the pgmq queue named like the flow');
SELECT ok(to_regclass('pgmq.q_def_a') IS NOT NULL AND to_regclass('pgmq.a_def_a') IS NOT NULL,
          'queue and archive tables pgmq.q_def_a / pgmq.a_def_a exist');
SELECT results_eq($$SELECT flow_slug, opt_max_attempts, opt_base_delay, opt_timeout
                    FROM pgflow.create_flow('def_b', 7, 2, 30)$$,
                  $$VALUES ('def_b'::text, 7, 2, 30)$$, 'create_flow with explicit options');
SELECT results_eq($$SELECT opt_max_attempts, opt_base_delay, opt_timeout FROM pgflow.create_flow('def_c', NULL, NULL, NULL)$$,
                  $$VALUES (3, 5, 60)$$, 'NULL options take the function defaults');
SELECT results_eq($$SELECT opt_max_attempts, opt_base_delay, opt_timeout
                    FROM pgflow.create_flow(flow_slug => 'def_d', timeout => 10, base_delay => 0, max_attempts => 0)$$,
                  $$VALUES (0, 0, 10)$$, 'named arguments flow_slug, max_attempts, base_delay, timeout; zero attempts/delay allowed');
SELECT results_eq($$SELECT opt_base_delay FROM pgflow.create_flow(flow_slug => 'def_e', max_attempts => 4)$$,
                  $$VALUES (5)$$, 'omitted base_delay is 5, not the column default 1 (Q4)');
INSERT INTO pgflow.flows (flow_slug) VALUES ('def_direct');
SELECT results_eq($$SELECT opt_max_attempts, opt_base_delay, opt_timeout FROM pgflow.flows WHERE flow_slug = 'def_direct'$$,
                  $$VALUES (3, 1, 60)$$, 'a direct INSERT gets the column defaults 3 / 1 / 60 (Q4)');

-- Existing flow: nothing updated, existing row returned, queue untouched.
SELECT pgmq.send('def_b', '{"keep": true}');
SELECT results_eq($$SELECT flow_slug, opt_max_attempts, opt_base_delay, opt_timeout FROM pgflow.create_flow('def_b', 1, 1, 1)$$,
                  $$VALUES ('def_b'::text, 7, 2, 30)$$, 'create_flow on an existing slug returns the existing row unchanged');
SELECT results_eq($$SELECT opt_max_attempts, opt_base_delay, opt_timeout FROM pgflow.flows WHERE flow_slug = 'def_b'$$,
                  $$VALUES (7, 2, 30)$$, 'and does not update the stored options');
SELECT results_eq($$SELECT message FROM pgmq.q_def_b$$, $$VALUES ('{"keep": true}'::jsonb)$$,
                  'an existing queue is left untouched (its message is still there)');
SELECT pgmq.drop_queue('def_b');
SELECT results_eq($$SELECT flow_slug, opt_max_attempts FROM pgflow.create_flow('def_b')$$,
                  $$VALUES ('def_b'::text, 7)$$, 'create_flow for an existing flow whose queue is gone');
SELECT is((SELECT count(*)::int FROM pgmq.list_queues() WHERE queue_name = 'def_b'), 1,
          'the missing queue is re-created');
SELECT pgflow.create_flow('def_direct');
SELECT is((SELECT count(*)::int FROM pgmq.list_queues() WHERE queue_name = 'def_direct'), 1,
          'create_flow creates the queue of a flow row inserted directly');

-- Errors
SELECT throws_ok($$SELECT pgflow.create_flow('bad-slug')$$, '23514',
                 'new row for relation "flows" violates check constraint "slug_is_valid"', 'invalid slug: slug_is_valid');
SELECT throws_ok($$SELECT pgflow.create_flow('run')$$, '23514',
                 'new row for relation "flows" violates check constraint "slug_is_valid"', 'reserved slug run: slug_is_valid');
SELECT throws_ok($$SELECT pgflow.create_flow('')$$, '23514',
                 'new row for relation "flows" violates check constraint "slug_is_valid"', 'empty slug: slug_is_valid');
SELECT throws_ok($$SELECT pgflow.create_flow(NULL)$$, '23502',
                 'null value in column "flow_slug" of relation "flows" violates not-null constraint', 'NULL slug: not-null');
SELECT throws_ok($$SELECT pgflow.create_flow('def_x', -1)$$, '23514',
                 'new row for relation "flows" violates check constraint "opt_max_attempts_is_nonnegative"', 'max_attempts -1');
SELECT throws_ok($$SELECT pgflow.create_flow('def_x', 3, -1)$$, '23514',
                 'new row for relation "flows" violates check constraint "opt_base_delay_is_nonnegative"', 'base_delay -1');
SELECT throws_ok($$SELECT pgflow.create_flow('def_x', 3, 1, 0)$$, '23514',
                 'new row for relation "flows" violates check constraint "opt_timeout_is_positive"', 'timeout 0');
SELECT throws_ok($$SELECT pgflow.create_flow('bad-slug', -1)$$, '23514',
                 'new row for relation "flows" violates check constraint "opt_max_attempts_is_nonnegative"',
                 'CHECKs run in alphabetical order: opt_max_attempts_is_nonnegative before slug_is_valid');
SELECT throws_ok(format('SELECT pgflow.create_flow(%L)', repeat('q', 48)), 'P0001',
                 'queue name is too long, maximum length is 47 characters',
                 'a valid 48-character slug fails inside pgmq (name length error, 47)');
SELECT is((SELECT count(*)::int FROM pgflow.flows WHERE flow_slug = repeat('q', 48)), 0, 'and no flows row remains');
SELECT results_eq(format('SELECT flow_slug FROM pgflow.create_flow(%L)', repeat('q', 47)),
                  format('VALUES (%L::text)', repeat('q', 47)), 'a 47-character slug works');

---------------------------------------------------------------------------------------------------
-- add_step
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('st');
SELECT results_eq($$SELECT * FROM pgflow.add_step('st', 'a')$$,
                  $$SELECT 'st'::text, 'a'::text, 'single'::text, 0, 0, NULL::int, NULL::int, NULL::int, now(),
                           NULL::int, NULL::jsonb, NULL::jsonb, 'skip'::text, 'fail'::text$$,
                  'first step: every column of the returned steps row (index 0, single, defaults, NULL options)');
SELECT results_eq($$SELECT step_index, deps_count FROM pgflow.add_step('st', 'b', ARRAY['a'])$$,
                  $$VALUES (1, 1)$$, 'second step: step_index 1, deps_count 1');
SELECT results_eq($$SELECT * FROM pgflow.add_step(flow_slug => 'st', step_slug => 'c', deps_slugs => ARRAY['a', 'b'],
                      max_attempts => 5, base_delay => 2, timeout => 30, start_delay => 10, step_type => 'single',
                      required_input_pattern => '{"x": 1}', forbidden_input_pattern => '{"y": 2}',
                      when_unmet => 'fail', when_exhausted => 'skip-cascade')$$,
                  $$SELECT 'st'::text, 'c'::text, 'single'::text, 2, 2, 5, 2, 30, now(), 10,
                           '{"x": 1}'::jsonb, '{"y": 2}'::jsonb, 'fail'::text, 'skip-cascade'::text$$,
                  'all twelve named arguments stored as given');
SELECT results_eq($$SELECT flow_slug, dep_slug, step_slug, created_at = now() FROM pgflow.deps WHERE flow_slug = 'st'
                    ORDER BY step_slug, dep_slug$$,
                  $$VALUES ('st'::text, 'a'::text, 'b'::text, true), ('st', 'a', 'c', true), ('st', 'b', 'c', true)$$,
                  'one deps row per dependency');
SELECT results_eq($$SELECT step_index, deps_count, step_type FROM pgflow.add_step('st', 'd', NULL, step_type => NULL)$$,
                  $$VALUES (3, 0, 'single'::text)$$, 'NULL deps_slugs gives deps_count 0, NULL step_type gives single');
SELECT results_eq($$SELECT step_index, step_type, deps_count FROM pgflow.add_step('st', 'm', ARRAY['d'], step_type => 'map')$$,
                  $$VALUES (4, 'map'::text, 1)$$, 'a map step with one dependency');
SELECT results_eq($$SELECT step_index, step_type FROM pgflow.add_step('st', 'rm', step_type => 'map')$$,
                  $$VALUES (5, 'map'::text)$$, 'a root map step');

-- Existing step: returned unchanged, but new edges are added.
SELECT results_eq($$SELECT * FROM pgflow.add_step('st', 'b', ARRAY['a', 'd'], max_attempts => 9, step_type => 'single',
                                                  when_unmet => 'fail')$$,
                  $$SELECT 'st'::text, 'b'::text, 'single'::text, 1, 1, NULL::int, NULL::int, NULL::int, now(),
                           NULL::int, NULL::jsonb, NULL::jsonb, 'skip'::text, 'fail'::text$$,
                  'repeated add_step returns the existing row unchanged');
SELECT results_eq($$SELECT deps_count, opt_max_attempts, step_type, when_unmet FROM pgflow.steps WHERE flow_slug = 'st' AND step_slug = 'b'$$,
                  $$VALUES (1, NULL::int, 'single'::text, 'skip'::text)$$, 'and leaves the stored row unchanged');
SELECT results_eq($$SELECT dep_slug FROM pgflow.deps WHERE flow_slug = 'st' AND step_slug = 'b' ORDER BY dep_slug$$,
                  $$VALUES ('a'::text), ('d')$$, 'Q5: the new dependency edge b <- d is inserted anyway');
SELECT results_eq($$SELECT step_slug, step_index FROM pgflow.steps WHERE flow_slug = 'st' ORDER BY step_index$$,
                  $$VALUES ('a'::text, 0), ('b', 1), ('c', 2), ('d', 3), ('m', 4), ('rm', 5)$$,
                  'step indexes are dense from 0; the repeated call took no index');
SELECT pgflow.create_flow('st2');
SELECT is((SELECT step_index FROM pgflow.add_step('st2', 'a')), 0, 'step_index restarts at 0 in another flow');

-- duplicate dependencies are counted but stored once.
SELECT results_eq($$SELECT deps_count FROM pgflow.add_step('st2', 'dup', ARRAY['a', 'a'])$$, $$VALUES (2)$$,
                  'Q11: deps_slugs {a,a} gives deps_count 2');
SELECT is((SELECT count(*)::int FROM pgflow.deps WHERE flow_slug = 'st2' AND step_slug = 'dup'), 1,
          'Q11: but a single deps row');
SELECT pgflow.start_flow('st2', '{}', '00000000-0000-0000-0000-0000000000d1');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000000d1', 'a', '"A"');
SELECT results_eq($$SELECT status, remaining_deps FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-0000000000d1' AND step_slug = 'dup'$$,
                  $$VALUES ('created'::text, 1)$$, 'Q11: after its only dependency completed the step still waits for one');
SELECT results_eq($$SELECT status, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000000d1'$$,
                  $$VALUES ('started'::text, 1)$$, 'Q11: so the run never completes');

-- Map validation comes first.
SELECT throws_ok($$SELECT pgflow.add_step('st', 'fan_out', ARRAY['fetch', 'parse'], step_type => 'map')$$, 'P0001',
                 'Map step "fan_out" can have at most one dependency, but 2 were provided: fetch, parse',
                 'map step with two dependencies');
SELECT throws_ok($$SELECT pgflow.add_step('no_such_flow', 'mm', ARRAY['x', 'y', 'z'], step_type => 'map')$$, 'P0001',
                 'Map step "mm" can have at most one dependency, but 3 were provided: x, y, z',
                 'map validation happens before anything else (unknown flow, unknown deps)');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'a', ARRAY['b', 'c'], step_type => 'map')$$, 'P0001',
                 'Map step "a" can have at most one dependency, but 2 were provided: b, c',
                 'map validation even for an existing step');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'dupmap', ARRAY['a', 'a'], step_type => 'map')$$, 'P0001',
                 'Map step "dupmap" can have at most one dependency, but 2 were provided: a, a',
                 'map validation counts duplicate entries');
SELECT lives_ok($$SELECT pgflow.add_step('st', 'single_multi', ARRAY['a', 'b', 'c'], step_type => 'single')$$,
                'a single step may have many dependencies');

-- Constraint errors
SELECT throws_ok($$SELECT pgflow.add_step('no_such_flow', 'x')$$, '23503',
                 'insert or update on table "steps" violates foreign key constraint "steps_flow_slug_fkey"', 'unknown flow');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'bad-slug')$$, '23514',
                 'new row for relation "steps" violates check constraint "steps_step_slug_check"', 'invalid step slug');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'run')$$, '23514',
                 'new row for relation "steps" violates check constraint "steps_step_slug_check"', 'reserved step slug run');
SELECT throws_ok(format('SELECT pgflow.add_step(%L, %L)', 'st', repeat('s', 129)), '23514',
                 'new row for relation "steps" violates check constraint "steps_step_slug_check"', '129-character step slug');
SELECT lives_ok(format('SELECT pgflow.add_step(%L, %L)', 'st', repeat('s', 128)), '128-character step slug is valid');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', step_type => 'batch')$$, '23514',
                 'new row for relation "steps" violates check constraint "steps_step_type_check"', 'bad step_type');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', max_attempts => -1)$$, '23514',
                 'new row for relation "steps" violates check constraint "opt_max_attempts_is_nonnegative"', 'max_attempts -1');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', base_delay => -1)$$, '23514',
                 'new row for relation "steps" violates check constraint "opt_base_delay_is_nonnegative"', 'base_delay -1');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', timeout => 0)$$, '23514',
                 'new row for relation "steps" violates check constraint "opt_timeout_is_positive"', 'timeout 0');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', start_delay => -1)$$, '23514',
                 'new row for relation "steps" violates check constraint "opt_start_delay_is_nonnegative"', 'start_delay -1');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', required_input_pattern => '[1]')$$, '23514',
                 'new row for relation "steps" violates check constraint "required_input_pattern_is_object"',
                 'array required_input_pattern');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', forbidden_input_pattern => '"s"')$$, '23514',
                 'new row for relation "steps" violates check constraint "forbidden_input_pattern_is_object"',
                 'string forbidden_input_pattern');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', when_unmet => 'ignore')$$, '23514',
                 'new row for relation "steps" violates check constraint "when_unmet_is_valid"', 'bad when_unmet');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', when_exhausted => 'retry')$$, '23514',
                 'new row for relation "steps" violates check constraint "when_exhausted_is_valid"', 'bad when_exhausted');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', when_unmet => NULL)$$, '23502',
                 'null value in column "when_unmet" of relation "steps" violates not-null constraint', 'NULL when_unmet');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', when_exhausted => NULL)$$, '23502',
                 'null value in column "when_exhausted" of relation "steps" violates not-null constraint', 'NULL when_exhausted');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', step_type => 'batch', when_unmet => NULL)$$, '23502',
                 'null value in column "when_unmet" of relation "steps" violates not-null constraint',
                 'NOT NULL is checked before CHECKs');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', max_attempts => -1, timeout => 0, step_type => 'batch')$$, '23514',
                 'new row for relation "steps" violates check constraint "opt_max_attempts_is_nonnegative"',
                 'several failing CHECKs: the alphabetically first one is reported');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', ARRAY['x'])$$, '23514',
                 'new row for relation "deps" violates check constraint "deps_check"', 'self dependency');
SELECT throws_ok($$SELECT pgflow.add_step('st', 'x', ARRAY['later'])$$, '23503',
                 'insert or update on table "deps" violates foreign key constraint "deps_flow_slug_dep_slug_fkey"',
                 'dependency not (yet) defined');
SELECT throws_ok($$SELECT pgflow.add_step('st2', 'x', ARRAY['b'])$$, '23503',
                 'insert or update on table "deps" violates foreign key constraint "deps_flow_slug_dep_slug_fkey"',
                 'dependency defined only in another flow');
SELECT is((SELECT count(*)::int FROM pgflow.steps WHERE step_slug = 'x'), 0, 'failed add_step calls left no step behind');
SELECT results_eq($$SELECT max(step_index) FROM pgflow.steps WHERE flow_slug = 'st'$$, $$VALUES (7)$$,
                  'failed calls took no step_index (indexes stay dense)');

SELECT * FROM finish();
ROLLBACK;
