-- Utilities and helpers:
-- is_valid_slug, is_local, calculate_retry_delay, set_vt_batch, poll_for_tasks,
-- get_run_with_states, start_flow_with_states, track_worker_function, mark_worker_stopped,
-- ensure_workers without pg_net, the pg_cron helpers without pg_cron.
BEGIN;
SELECT plan(60);
\ir helpers/common.psql

---------------------------------------------------------------------------------------------------
-- is_valid_slug
---------------------------------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT s, pgflow.is_valid_slug(s) FROM unnest(ARRAY['abc', '_a', 'A1_b', 'Run', 'runs', 'RUN', 'a' || repeat('1', 127),
                                                         '1abc', '', 'a-b', 'a b', 'run', 'a.b', 'é', 'a' || repeat('1', 128),
                                                         ' a', 'a$']) WITH ORDINALITY AS x(s, n) ORDER BY n$$,
    $$VALUES ('abc'::text, true), ('_a', true), ('A1_b', true), ('Run', true), ('runs', true), ('RUN', true),
             ('a' || repeat('1', 127), true), ('1abc', false), ('', false), ('a-b', false), ('a b', false), ('run', false),
             ('a.b', false), ('é', false), ('a' || repeat('1', 128), false), (' a', false), ('a$', false)$$,
    'is_valid_slug: identifier pattern, length <= 128, not empty, reserved word run (case-sensitive)');
SELECT is(pgflow.is_valid_slug(NULL), false, 'is_valid_slug(NULL) is false, not NULL');
SELECT is(pgflow.is_valid_slug(slug => 'named'), true, 'named argument slug');

---------------------------------------------------------------------------------------------------
-- is_local
---------------------------------------------------------------------------------------------------
SELECT is(pgflow.is_local(), false, 'is_local() without app.settings.jwt_secret: false (never NULL)');
SELECT set_config('app.settings.jwt_secret', 'another-secret', true);
SELECT is(pgflow.is_local(), false, 'is_local() with another secret: false');
SELECT set_config('app.settings.jwt_secret', 'super-secret-jwt-token-with-at-least-32-characters-long', true);
SELECT is(pgflow.is_local(), true, 'is_local() with the local development secret: true');
SELECT set_config('app.settings.jwt_secret', '', true);
SELECT is(pgflow.is_local(), false, 'empty secret: false');

---------------------------------------------------------------------------------------------------
-- calculate_retry_delay
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT pgflow.calculate_retry_delay(b, a) FROM (VALUES (5::numeric, 0, 1), (5, 1, 2), (1.5, 3, 3), (0, 0, 4), (0, 10, 5),
                                                                        (2.7, 1, 6), (1, 30, 7), (3, 2, 8), (0.4, 1, 9)) v(b, a, n) ORDER BY n$$,
                  $$VALUES (5), (10), (12), (0), (0), (5), (1073741824), (12), (0)$$,
                  'calculate_retry_delay = floor(base_delay * 2^attempts_count)');
SELECT is(pgflow.calculate_retry_delay(attempts_count => 2, base_delay => 3), 12, 'named arguments base_delay, attempts_count');
SELECT throws_ok($$SELECT pgflow.calculate_retry_delay(5, 30)$$, '22003', 'integer out of range', 'Q9: (5, 30) overflows int4');
SELECT throws_ok($$SELECT pgflow.calculate_retry_delay(2, 30)$$, '22003', 'integer out of range', 'Q9: (2, 30) = 2^31 overflows int4');
SELECT is(pgflow.calculate_retry_delay(NULL, 1), NULL, 'NULL base_delay gives NULL (not STRICT, no error)');

---------------------------------------------------------------------------------------------------
-- set_vt_batch
---------------------------------------------------------------------------------------------------
SELECT pgmq.create('svb');
CREATE TEMP TABLE svb_ids AS SELECT row_number() OVER () AS n, id FROM pgmq.send_batch('svb', ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}']::jsonb[]) AS id;
SELECT pgmq.read('svb', 0, 1);  -- read_ct of the first message becomes 1
SELECT is_empty($$SELECT * FROM pgflow.set_vt_batch('svb', NULL, ARRAY[1])$$, 'msg_ids NULL: empty result');
SELECT is_empty($$SELECT * FROM pgflow.set_vt_batch('svb', ARRAY[1::bigint], NULL)$$, 'vt_offsets NULL: empty result');
SELECT is_empty($$SELECT * FROM pgflow.set_vt_batch('svb', '{}', '{}')$$, 'two empty arrays: empty result');
SELECT throws_ok($$SELECT * FROM pgflow.set_vt_batch('svb', ARRAY[1, 2]::bigint[], ARRAY[1])$$, 'P0001',
                 'msg_ids length (2) must equal vt_offsets length (1)', 'lengths differ');
SELECT throws_ok($$SELECT * FROM pgflow.set_vt_batch('svb', '{}', ARRAY[1])$$, 'P0001',
                 'msg_ids length (<NULL>) must equal vt_offsets length (1)', 'an empty array''s length prints as <NULL>');
CREATE TEMP TABLE clock AS SELECT clock_timestamp() AS before;
CREATE TEMP TABLE svb_result AS
    SELECT * FROM pgflow.set_vt_batch(queue_name => 'svb',
                                      msg_ids => ARRAY[(SELECT id FROM svb_ids WHERE n = 1), (SELECT id FROM svb_ids WHERE n = 2), 999999],
                                      vt_offsets => ARRAY[100, -5, 3]);
ALTER TABLE clock ADD COLUMN after timestamptz;
UPDATE clock SET after = clock_timestamp();
SELECT results_eq($$SELECT name FROM pg_temp.cols('svb_result')$$,
                  $$VALUES ('msg_id'), ('read_ct'), ('enqueued_at'), ('vt'), ('message'), ('headers')$$,
                  'set_vt_batch returns (msg_id, read_ct, enqueued_at, vt, message, headers)');
SELECT results_eq($$SELECT r.msg_id, r.read_ct, r.message, r.headers, r.enqueued_at = q.enqueued_at, r.vt = q.vt
                    FROM svb_result r JOIN pgmq.q_svb q USING (msg_id) ORDER BY r.msg_id$$,
                  $$SELECT id, CASE WHEN n = 1 THEN 1 ELSE 0 END, jsonb_build_object('i', n), NULL::jsonb, true, true
                    FROM svb_ids WHERE n <= 2 ORDER BY id$$,
                  'the two known ids are updated and returned as stored (read_ct unchanged); the unknown id is ignored');
SELECT ok((SELECT q.vt BETWEEN c.before + interval '100 seconds' AND c.after + interval '100 seconds'
           FROM pgmq.q_svb q, clock c WHERE q.msg_id = (SELECT id FROM svb_ids WHERE n = 1)), 'vt = clock + 100 s');
SELECT ok((SELECT q.vt BETWEEN c.before - interval '5 seconds' AND c.after - interval '5 seconds'
           FROM pgmq.q_svb q, clock c WHERE q.msg_id = (SELECT id FROM svb_ids WHERE n = 2)), 'negative offset: vt = clock - 5 s');
SELECT ok((SELECT q.vt < c.before FROM pgmq.q_svb q, clock c WHERE q.msg_id = (SELECT id FROM svb_ids WHERE n = 3)),
          'the message not listed is untouched');
SELECT is((SELECT count(*)::int FROM pgflow.set_vt_batch('SVB', ARRAY[(SELECT id FROM svb_ids WHERE n = 3)], ARRAY[1])), 1,
          'the table is resolved through pgmq.format_table_name (upper-case name -> q_svb)');
SELECT throws_ok($$SELECT * FROM pgflow.set_vt_batch('nosuch', ARRAY[1::bigint], ARRAY[1])$$, '42P01',
                 'relation "pgmq.q_nosuch" does not exist', 'missing queue: 42P01');
SELECT throws_ok($$SELECT * FROM pgflow.set_vt_batch('bad;name', ARRAY[1::bigint], ARRAY[1])$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'invalid queue name: pgmq''s error');

---------------------------------------------------------------------------------------------------
-- poll_for_tasks (deprecated)
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('pft');
SELECT pgflow.add_step('pft', 'a');
SELECT pgflow.start_flow('pft', '{}', '00000000-0000-0000-0000-000000000e01');
SELECT is_empty($$SELECT * FROM pgflow.poll_for_tasks('pft', 30, 10)$$, 'poll_for_tasks returns an empty set');
SELECT is_empty($$SELECT * FROM pgflow.poll_for_tasks(queue_name => 'pft', vt => 30, qty => 10, max_poll_seconds => 1, poll_interval_ms => 10)$$,
                'named arguments');
SELECT results_eq($$SELECT read_ct FROM pgmq.q_pft$$, $$VALUES (0)$$, 'no side effect: the message was not read');
SELECT results_eq($$SELECT status, attempts_count FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000e01'$$,
                  $$VALUES ('queued'::text, 0)$$, 'no side effect: the task was not started');
SELECT is(pg_temp.session_messages($$SELECT * FROM pgflow.poll_for_tasks('pft', 30, 10)$$),
          ARRAY['NOTICE: 00000: DEPRECATED: poll_for_tasks is deprecated and will be removed. Please update pgflow via "npx pgflow install".'],
          'poll_for_tasks raises the deprecation NOTICE');

---------------------------------------------------------------------------------------------------
-- get_run_with_states / start_flow_with_states
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('grs');
SELECT pgflow.add_step('grs', 'a');
SELECT pgflow.add_step('grs', 'b', ARRAY['a']);
SELECT pgflow.start_flow('grs', '{"in": 1}', '00000000-0000-0000-0000-000000000e02');
CREATE TEMP TABLE grs AS SELECT pgflow.get_run_with_states('00000000-0000-0000-0000-000000000e02') AS j;
SELECT is((SELECT array_agg(k ORDER BY k) FROM grs, jsonb_object_keys(j) k), ARRAY['run', 'steps'], 'keys run and steps');
SELECT is((SELECT j -> 'run' FROM grs), (SELECT to_jsonb(r) FROM pgflow.runs r WHERE run_id = '00000000-0000-0000-0000-000000000e02'),
          '"run" is the runs row as a JSON object');
SELECT is((SELECT array_agg(k ORDER BY k) FROM grs, jsonb_object_keys(j -> 'run') k),
          ARRAY['completed_at', 'failed_at', 'flow_slug', 'input', 'output', 'remaining_steps', 'run_id', 'started_at', 'status'],
          'run object keys are the nine column names');
SELECT set_eq($$SELECT e FROM grs, jsonb_array_elements(j -> 'steps') e$$,
              $$SELECT to_jsonb(s) FROM pgflow.step_states s WHERE run_id = '00000000-0000-0000-0000-000000000e02'$$,
              '"steps" holds the step_states rows as JSON objects');
SELECT is((SELECT j -> 'run' ->> 'started_at' FROM grs), to_jsonb(now()) #>> '{}', 'timestamps in jsonb''s ISO form');
SELECT is((SELECT array_agg(k ORDER BY k) FROM grs, jsonb_array_elements(j -> 'steps') e, jsonb_object_keys(e) k
           WHERE e ->> 'step_slug' = 'a'),
          ARRAY['completed_at', 'created_at', 'error_message', 'failed_at', 'flow_slug', 'initial_tasks', 'output',
                'remaining_deps', 'remaining_tasks', 'run_id', 'skip_reason', 'skipped_at', 'started_at', 'status', 'step_slug'],
          'step objects carry the fifteen step_states column names');
SELECT is(pgflow.get_run_with_states('00000000-0000-0000-0000-00000000ffff'), NULL, 'unknown run: NULL');
SELECT is(pgflow.get_run_with_states(run_id => '00000000-0000-0000-0000-000000000e02'), (SELECT j FROM grs), 'named argument run_id');

SELECT pgflow.create_flow('grs_empty');
CREATE TEMP TABLE sfws AS
    SELECT pgflow.start_flow_with_states('grs_empty', '{"x": 1}', '00000000-0000-0000-0000-000000000e03') AS j;
SELECT is((SELECT j FROM sfws), jsonb_build_object('run', (SELECT to_jsonb(r) FROM pgflow.runs r WHERE run_id = '00000000-0000-0000-0000-000000000e03'),
                                                    'steps', '[]'::jsonb),
          'start_flow_with_states: state after all cascades; "steps" is [] without steps');
SELECT is((SELECT j -> 'run' ->> 'status' FROM sfws), 'completed', 'the stepless run is already completed');
CREATE TEMP TABLE sfws2 AS
    SELECT pgflow.start_flow_with_states(flow_slug => 'grs', input => '{"y": 2}', run_id => '00000000-0000-0000-0000-000000000e04') AS j;
SELECT is((SELECT j FROM sfws2), pgflow.get_run_with_states('00000000-0000-0000-0000-000000000e04'),
          'start_flow_with_states(named arguments) = get_run_with_states of the new run');
SELECT is((SELECT jsonb_array_length(j -> 'steps') FROM sfws2), 2, 'with its two step states');
SELECT ok((SELECT (j -> 'run' ->> 'run_id') IS NOT NULL FROM (SELECT pgflow.start_flow_with_states('grs', '{}') AS j) x),
          'run_id defaults to a new uuid');
SELECT throws_ok($$SELECT pgflow.start_flow_with_states('nope', '{}')$$, '23503',
                 'insert or update on table "runs" violates foreign key constraint "runs_flow_slug_fkey"', 'errors of start_flow propagate');

---------------------------------------------------------------------------------------------------
-- track_worker_function / mark_worker_stopped
---------------------------------------------------------------------------------------------------
CREATE TEMP TABLE clock2 (name text PRIMARY KEY, at timestamptz);
INSERT INTO clock2 VALUES ('t0', clock_timestamp());
SELECT pgflow.track_worker_function('fn-a');
INSERT INTO clock2 VALUES ('t1', clock_timestamp());
SELECT results_eq($$SELECT function_name, enabled, debounce, last_invoked_at, created_at FROM pgflow.worker_functions$$,
                  $$VALUES ('fn-a'::text, true, '6 seconds'::interval, NULL::timestamptz, now())$$,
                  'track_worker_function: new row with enabled true, debounce 6 s, last_invoked_at NULL, created_at now');
SELECT ok((SELECT updated_at BETWEEN (SELECT at FROM clock2 WHERE name = 't0') AND (SELECT at FROM clock2 WHERE name = 't1')
           FROM pgflow.worker_functions WHERE function_name = 'fn-a'), 'updated_at = clock');
UPDATE pgflow.worker_functions SET enabled = false, debounce = '10 seconds', last_invoked_at = now() - interval '1 day';
INSERT INTO clock2 VALUES ('t2', clock_timestamp());
SELECT pgflow.track_worker_function(function_name => 'fn-a');
INSERT INTO clock2 VALUES ('t3', clock_timestamp());
SELECT results_eq($$SELECT function_name, enabled, debounce, last_invoked_at, created_at FROM pgflow.worker_functions$$,
                  $$VALUES ('fn-a'::text, false, '10 seconds'::interval, now() - interval '1 day', now())$$,
                  'existing row: other columns kept');
SELECT ok((SELECT updated_at BETWEEN (SELECT at FROM clock2 WHERE name = 't2') AND (SELECT at FROM clock2 WHERE name = 't3')
           FROM pgflow.worker_functions WHERE function_name = 'fn-a'), 'existing row: only updated_at = clock');

INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES
    ('00000000-0000-0000-0000-0000000000c1', 'q', 'fn-a'), ('00000000-0000-0000-0000-0000000000c2', 'q', 'fn-a');
INSERT INTO clock2 VALUES ('t4', clock_timestamp());
SELECT pgflow.mark_worker_stopped('00000000-0000-0000-0000-0000000000c1');
INSERT INTO clock2 VALUES ('t5', clock_timestamp());
SELECT ok((SELECT stopped_at BETWEEN (SELECT at FROM clock2 WHERE name = 't4') AND (SELECT at FROM clock2 WHERE name = 't5')
           FROM pgflow.workers WHERE worker_id = '00000000-0000-0000-0000-0000000000c1'), 'mark_worker_stopped: stopped_at = clock');
SELECT is((SELECT stopped_at FROM pgflow.workers WHERE worker_id = '00000000-0000-0000-0000-0000000000c2'), NULL, 'other workers untouched');
SELECT lives_ok($$SELECT pgflow.mark_worker_stopped(worker_id => '00000000-0000-0000-0000-00000000ffff')$$, 'unknown worker: no-op');
SELECT is((SELECT count(*)::int FROM pgflow.workers WHERE stopped_at IS NOT NULL), 1, 'still only one stopped worker');

---------------------------------------------------------------------------------------------------
-- ensure_workers without pg_net; cron helpers without pg_cron
---------------------------------------------------------------------------------------------------
SELECT ok(to_regnamespace('net') IS NULL AND to_regnamespace('cron') IS NULL, 'neither pg_net nor pg_cron in this database');
UPDATE pgflow.worker_functions SET enabled = true, last_invoked_at = NULL;
SELECT is_empty($$SELECT * FROM pgflow.ensure_workers()$$, 'ensure_workers without pg_net returns nothing');
SELECT set_config('app.settings.jwt_secret', 'super-secret-jwt-token-with-at-least-32-characters-long', true);
SELECT is_empty($$SELECT * FROM pgflow.ensure_workers()$$, 'also when is_local()');
SELECT set_config('app.settings.jwt_secret', '', true);
SELECT is((SELECT last_invoked_at FROM pgflow.worker_functions), NULL, 'nothing marked as invoked');
SELECT matches(array_to_string(pg_temp.session_messages($$SELECT pgflow.track_worker_function('fn-n')$$,
                                                        $$SELECT * FROM pgflow.ensure_workers()$$), E'\n'),
               '^NOTICE: 00000: [^\n]*pg_net[^\n]*$', 'ensure_workers without pg_net raises exactly one NOTICE naming pg_net');
SELECT throws_like($$SELECT pgflow.setup_requeue_stalled_tasks_cron()$$, '%pg_cron%',
                   'setup_requeue_stalled_tasks_cron without pg_cron: an error naming pg_cron');
SELECT throws_like($$SELECT pgflow.setup_ensure_workers_cron('5 seconds')$$, '%pg_cron%',
                   'setup_ensure_workers_cron without pg_cron: an error naming pg_cron');
SELECT throws_like($$SELECT * FROM pgflow.cleanup_ensure_workers_logs()$$, '%pg_cron%',
                   'cleanup_ensure_workers_logs without pg_cron: an error naming pg_cron');

SELECT * FROM finish();
ROLLBACK;
