-- ensure_workers against stand-ins for pg_net (net.http_post) and Supabase Vault
-- (vault.decrypted_secrets) created in this transaction: local and hosted mode, credentials,
-- debounce, liveness, disabled functions, last_invoked_at, returned rows. Also (completing
-- 12_helpers) the NOTICE without pg_net in local mode and the exact error of the pg_cron helpers
-- without pg_cron.
BEGIN;
SELECT plan(42);
\ir helpers/common.psql

---------------------------------------------------------------------------------------------------
-- Without pg_net / pg_cron
---------------------------------------------------------------------------------------------------
SELECT ok(to_regnamespace('net') IS NULL AND to_regnamespace('vault') IS NULL AND to_regnamespace('cron') IS NULL,
          'no pg_net, Vault or pg_cron in this database');
SELECT matches(array_to_string(pg_temp.session_messages(
                   $$SET app.settings.jwt_secret = 'super-secret-jwt-token-with-at-least-32-characters-long'$$,
                   $$SELECT pgflow.track_worker_function('fn-n')$$,
                   $$SELECT count(*) FROM pgflow.ensure_workers()$$), E'\n'),
               '^NOTICE: 00000: [^\n]*pg_net[^\n]*$', 'without pg_net, also in local mode: exactly one NOTICE naming pg_net');
SELECT throws_ok($$SELECT pgflow.setup_requeue_stalled_tasks_cron()$$, '42883', 'pg_cron is not installed in this database',
                 'setup_requeue_stalled_tasks_cron() without pg_cron: 42883 with the exact text');
SELECT throws_ok($$SELECT pgflow.setup_requeue_stalled_tasks_cron(cron_interval => '* * * * *')$$, '42883',
                 'pg_cron is not installed in this database', 'also with a cron expression');
SELECT throws_ok($$SELECT pgflow.setup_ensure_workers_cron()$$, '42883', 'pg_cron is not installed in this database',
                 'setup_ensure_workers_cron() without pg_cron: 42883 with the exact text');
SELECT throws_ok($$SELECT pgflow.setup_ensure_workers_cron(cron_interval => '* * * * *')$$, '42883',
                 'pg_cron is not installed in this database', 'also with a cron expression');
SELECT throws_ok($$SELECT * FROM pgflow.cleanup_ensure_workers_logs()$$, '42883', 'pg_cron is not installed in this database',
                 'cleanup_ensure_workers_logs() without pg_cron: 42883 with the exact text');
SELECT throws_ok($$SELECT * FROM pgflow.cleanup_ensure_workers_logs(retention_hours => 48)$$, '42883',
                 'pg_cron is not installed in this database', 'also with retention_hours');
CREATE SCHEMA cron;
SELECT throws_ok($$SELECT pgflow.setup_requeue_stalled_tasks_cron()$$, '42883', 'pg_cron is not installed in this database',
                 'an empty schema named cron is not pg_cron (setup_requeue_stalled_tasks_cron)');
SELECT throws_ok($$SELECT * FROM pgflow.cleanup_ensure_workers_logs()$$, '42883', 'pg_cron is not installed in this database',
                 'an empty schema named cron is not pg_cron (cleanup_ensure_workers_logs)');
DROP SCHEMA cron;

---------------------------------------------------------------------------------------------------
-- Stand-ins
---------------------------------------------------------------------------------------------------
CREATE SCHEMA net;
CREATE SEQUENCE net.request_ids START 501;
CREATE TABLE net.calls (id bigint PRIMARY KEY, url text, body jsonb, params jsonb, headers jsonb, timeout_milliseconds integer);
CREATE FUNCTION net.http_post(url text, body jsonb DEFAULT '{}', params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                              timeout_milliseconds integer DEFAULT 5000)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.calls VALUES (nextval('net.request_ids'), url, body, params, headers, timeout_milliseconds) RETURNING id;
$$;
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (name text, secret text);
CREATE VIEW vault.decrypted_secrets AS SELECT name, secret AS decrypted_secret FROM vault.secrets;

DELETE FROM pgflow.worker_functions;
DELETE FROM pgflow.workers;
INSERT INTO pgflow.worker_functions (function_name, enabled, debounce, last_invoked_at) VALUES
    ('fn-new', true, '6 seconds', NULL),                          -- never invoked
    ('fn-recent', true, '6 seconds', now() - interval '3 seconds'),  -- within debounce
    ('fn-edge', true, '6 seconds', now() - interval '6 seconds'),    -- exactly now - debounce: not passed yet
    ('fn-old', true, '6 seconds', now() - interval '7 seconds'),     -- debounce passed
    ('fn-alive', true, '6 seconds', NULL),                        -- alive worker
    ('fn-stopped', true, '6 seconds', NULL),                      -- its worker is stopped
    ('fn-deprecated', true, '6 seconds', NULL),                   -- its worker is deprecated
    ('fn-stale', true, '6 seconds', NULL),                        -- heartbeat exactly now - debounce: not alive
    ('fn-long', true, '60 seconds', now() - interval '30 seconds'),  -- within its own debounce
    ('fn-longalive', true, '60 seconds', NULL),                   -- heartbeat 30 s ago, alive under its debounce
    ('fn-off', false, '6 seconds', NULL);                         -- disabled
INSERT INTO pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at, stopped_at, deprecated_at) VALUES
    ('00000000-0000-0000-0000-0000000014a1', 'q', 'fn-alive', now() - interval '5 seconds', NULL, NULL),
    ('00000000-0000-0000-0000-0000000014a2', 'q', 'fn-stopped', now(), now(), NULL),
    ('00000000-0000-0000-0000-0000000014a3', 'q', 'fn-deprecated', now(), NULL, now()),
    ('00000000-0000-0000-0000-0000000014a4', 'q', 'fn-stale', now() - interval '6 seconds', NULL, NULL),
    ('00000000-0000-0000-0000-0000000014a5', 'q', 'fn-longalive', now() - interval '30 seconds', NULL, NULL),
    ('00000000-0000-0000-0000-0000000014a6', 'fn-new', 'other-fn', now(), NULL, NULL);
CREATE TEMP TABLE wf_initial AS SELECT function_name, last_invoked_at FROM pgflow.worker_functions;

CREATE TEMP TABLE clock (name text PRIMARY KEY, at timestamptz);
CREATE TEMP TABLE results (label text, function_name text, invoked boolean, request_id bigint);
-- Restores last_invoked_at, forgets the recorded calls.
CREATE FUNCTION pg_temp.reset() RETURNS void LANGUAGE sql AS $$
    UPDATE pgflow.worker_functions w SET last_invoked_at = i.last_invoked_at FROM wf_initial i WHERE i.function_name = w.function_name;
    DELETE FROM net.calls;
$$;
-- Calls ensure_workers, keeps its rows under a label and the clock around the call; returns the row count.
CREATE FUNCTION pg_temp.invoke(p_label text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    INSERT INTO clock VALUES (p_label || '_before', clock_timestamp());
    INSERT INTO results SELECT p_label, e.* FROM pgflow.ensure_workers() e;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO clock VALUES (p_label || '_after', clock_timestamp());
    RETURN n;
END;
$$;
-- Invoked functions have last_invoked_at within the call's clock; all others kept their value.
CREATE FUNCTION pg_temp.last_invoked_ok(p_label text) RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(CASE WHEN w.function_name IN (SELECT r.function_name FROM results r WHERE r.label = p_label)
                         THEN w.last_invoked_at BETWEEN (SELECT at FROM clock WHERE name = p_label || '_before')
                                                    AND (SELECT at FROM clock WHERE name = p_label || '_after')
                         ELSE w.last_invoked_at IS NOT DISTINCT FROM i.last_invoked_at END)
    FROM pgflow.worker_functions w JOIN wf_initial i USING (function_name);
$$;
-- request_id of each returned row is the id http_post returned for that function's URL.
CREATE FUNCTION pg_temp.ids_match(p_label text) RETURNS boolean LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM results WHERE label = p_label) = (SELECT count(*) FROM net.calls)
       AND NOT EXISTS (SELECT 1 FROM results r WHERE r.label = p_label
                       AND r.request_id IS DISTINCT FROM (SELECT c.id FROM net.calls c WHERE c.url LIKE '%/' || r.function_name));
$$;

SELECT is(pg_get_function_result('pgflow.ensure_workers'::regproc), 'TABLE(function_name text, invoked boolean, request_id bigint)',
          'ensure_workers() RETURNS TABLE(function_name text, invoked boolean, request_id bigint)');

---------------------------------------------------------------------------------------------------
-- Local mode: every enabled function, debounce and liveness ignored, no credentials needed
---------------------------------------------------------------------------------------------------
SELECT set_config('app.settings.jwt_secret', 'super-secret-jwt-token-with-at-least-32-characters-long', true);
SELECT is(pg_temp.invoke('local'), 10, 'local: one row per enabled function (vault empty)');
SELECT results_eq($$SELECT function_name, invoked FROM results WHERE label = 'local' ORDER BY function_name$$,
                  $$VALUES ('fn-alive'::text, true), ('fn-deprecated', true), ('fn-edge', true), ('fn-long', true), ('fn-longalive', true),
                           ('fn-new', true), ('fn-old', true), ('fn-recent', true), ('fn-stale', true), ('fn-stopped', true)$$,
                  'local: every enabled function is invoked, ignoring debounce and alive workers; the disabled one is not');
SELECT results_eq($$SELECT url, headers, body, params, timeout_milliseconds FROM net.calls ORDER BY url$$,
                  $$SELECT 'http://kong:8000/functions/v1/' || function_name, '{}'::jsonb, '{}'::jsonb, '{}'::jsonb, 5000
                    FROM pgflow.worker_functions WHERE enabled ORDER BY 1$$,
                  'local: one http_post per function to http://kong:8000/functions/v1/<name> with headers {} and body {}');
SELECT ok(pg_temp.ids_match('local'), 'local: request_id is the id returned by http_post for that function');
SELECT ok(pg_temp.last_invoked_ok('local'), 'local: last_invoked_at = clock for the invoked functions, others unchanged');
SELECT is(pg_temp.invoke('local_again'), 10, 'local: invoked again right away (debounce ignored)');
SELECT is((SELECT count(*)::int FROM net.calls), 20, 'local: 10 more requests');

---------------------------------------------------------------------------------------------------
-- Hosted mode: credentials from the vault
---------------------------------------------------------------------------------------------------
SELECT set_config('app.settings.jwt_secret', 'some-other-secret', true);
SELECT pg_temp.reset();
SELECT is(pg_temp.invoke('none'), 0, 'hosted, no secrets: nothing');
INSERT INTO vault.secrets VALUES ('supabase_project_id', 'projref');
SELECT is(pg_temp.invoke('no_key'), 0, 'hosted, project id but no key: nothing');
INSERT INTO vault.secrets VALUES ('pgflow_auth_secret', ''), ('supabase_service_role_key', '');
SELECT is(pg_temp.invoke('empty_keys'), 0, 'hosted, both keys empty strings: nothing');
UPDATE vault.secrets SET secret = 'pas' WHERE name = 'pgflow_auth_secret';
UPDATE vault.secrets SET secret = '' WHERE name = 'supabase_project_id';
SELECT is(pg_temp.invoke('empty_project'), 0, 'hosted, key but project id an empty string: nothing');
DELETE FROM vault.secrets WHERE name = 'supabase_project_id';
SELECT is(pg_temp.invoke('no_project'), 0, 'hosted, key but no project id: nothing');
SELECT is((SELECT count(*)::int FROM net.calls), 0, 'no request was made without URL or key');
SELECT ok((SELECT bool_and(w.last_invoked_at IS NOT DISTINCT FROM i.last_invoked_at)
           FROM pgflow.worker_functions w JOIN wf_initial i USING (function_name)), 'and no last_invoked_at changed');

-- Fallback key supabase_service_role_key (pgflow_auth_secret empty)
UPDATE vault.secrets SET secret = '' WHERE name = 'pgflow_auth_secret';
UPDATE vault.secrets SET secret = 'srk' WHERE name = 'supabase_service_role_key';
INSERT INTO vault.secrets VALUES ('supabase_project_id', 'projref');
SELECT is(pg_temp.invoke('srk'), 5, 'hosted with project id and service role key: 5 functions');
SELECT results_eq($$SELECT function_name, invoked FROM results WHERE label = 'srk' ORDER BY function_name$$,
                  $$VALUES ('fn-deprecated'::text, true), ('fn-new', true), ('fn-old', true), ('fn-stale', true), ('fn-stopped', true)$$,
                  'hosted: debounce passed and no alive worker (within debounce, exactly at debounce, alive, disabled: skipped)');
SELECT results_eq($$SELECT url, headers, body, params, timeout_milliseconds FROM net.calls ORDER BY url$$,
                  $$SELECT 'https://projref.supabase.co/functions/v1/' || n,
                           '{"Content-Type": "application/json", "Authorization": "Bearer srk"}'::jsonb, '{}'::jsonb, '{}'::jsonb, 5000
                    FROM unnest(ARRAY['fn-deprecated', 'fn-new', 'fn-old', 'fn-stale', 'fn-stopped']) n ORDER BY 1$$,
                  'hosted: https://<project_id>.supabase.co/functions/v1/<name>, JSON content type, Bearer <service role key>, body {}');
SELECT ok(pg_temp.ids_match('srk'), 'hosted: request_id is the id returned by http_post for that function');
SELECT ok(pg_temp.last_invoked_ok('srk'), 'hosted: last_invoked_at = clock for the invoked functions, others unchanged');
SELECT is(pg_temp.invoke('srk_again'), 0, 'hosted: a second call right away invokes nothing (debounce)');
SELECT is((SELECT count(*)::int FROM net.calls), 5, 'no further request');

-- pgflow_auth_secret wins over supabase_service_role_key
SELECT pg_temp.reset();
UPDATE vault.secrets SET secret = 'pas' WHERE name = 'pgflow_auth_secret';
SELECT is(pg_temp.invoke('pas'), 5, 'hosted with pgflow_auth_secret: the same 5 functions');
SELECT results_eq($$SELECT DISTINCT headers FROM net.calls$$,
                  $$VALUES ('{"Content-Type": "application/json", "Authorization": "Bearer pas"}'::jsonb)$$,
                  'pgflow_auth_secret is used before supabase_service_role_key');
SELECT ok(pg_temp.ids_match('pas'), 'request ids match');

-- Liveness and debounce follow the workers table and the function's own debounce
SELECT pg_temp.reset();
UPDATE pgflow.workers SET stopped_at = now() WHERE function_name = 'fn-alive';
UPDATE pgflow.workers SET last_heartbeat_at = now() - interval '59 seconds' WHERE function_name = 'fn-longalive';
UPDATE pgflow.worker_functions SET debounce = '20 seconds' WHERE function_name = 'fn-long';
INSERT INTO pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at) VALUES
    ('00000000-0000-0000-0000-0000000014a7', 'q', 'fn-new', now() - interval '1 second');
SELECT is(pg_temp.invoke('live'), 6, 'hosted, after changing workers and a debounce: 6 functions');
SELECT results_eq($$SELECT function_name FROM results WHERE label = 'live' ORDER BY function_name$$,
                  $$VALUES ('fn-alive'::text), ('fn-deprecated'), ('fn-long'), ('fn-old'), ('fn-stale'), ('fn-stopped')$$,
                  'stopped worker no longer alive; a new alive worker blocks fn-new; 59 s heartbeat alive under 60 s debounce; 30 s ago passes a 20 s debounce');

-- Local mode with the vault filled: still kong, headers {}
SELECT set_config('app.settings.jwt_secret', 'super-secret-jwt-token-with-at-least-32-characters-long', true);
SELECT pg_temp.reset();
SELECT is(pg_temp.invoke('local_vault'), 10, 'local with vault secrets: every enabled function');
SELECT ok((SELECT bool_and(url LIKE 'http://kong:8000/functions/v1/%' AND headers = '{}') FROM net.calls),
          'local: the vault is not used (kong URL, headers {})');

-- Disabled functions stay skipped in hosted mode even when everything else qualifies
SELECT set_config('app.settings.jwt_secret', '', true);
SELECT pg_temp.reset();
UPDATE pgflow.worker_functions SET enabled = false WHERE function_name <> 'fn-off';
UPDATE pgflow.worker_functions SET enabled = true WHERE function_name = 'fn-off';
SELECT is(pg_temp.invoke('off'), 1, 'only the one enabled function is invoked');
SELECT results_eq($$SELECT r.function_name, r.invoked, r.request_id, c.url FROM results r, net.calls c WHERE r.label = 'off'$$,
                  $$SELECT 'fn-off'::text, true, (SELECT last_value FROM net.request_ids), 'https://projref.supabase.co/functions/v1/fn-off'::text$$,
                  'the row is (function_name, true, request_id of its http_post)');
UPDATE pgflow.worker_functions SET enabled = false;
UPDATE pgflow.worker_functions SET last_invoked_at = NULL;
SELECT is_empty($$SELECT * FROM pgflow.ensure_workers()$$, 'all functions disabled: nothing');

SELECT * FROM finish();
ROLLBACK;
