-- Least privilege and hostile owners: only a trusted realtime.send receives events; no SECURITY
-- DEFINER function is executable by PUBLIC; an altered step_task_record is an error, not a crash.
BEGIN;
SELECT plan(24);
\ir helpers/common.psql

---------------------------------------------------------------------------------------------------
-- realtime.send is called only when it and its schema belong to a superuser or the extension's
-- owner. A database owner who is no superuser could otherwise run code as whoever starts a flow.
---------------------------------------------------------------------------------------------------
CREATE ROLE pgflow_t_owner NOSUPERUSER;
CREATE TABLE public.realtime_calls (called_as text, event text);
GRANT INSERT ON public.realtime_calls TO PUBLIC;
CREATE SCHEMA realtime AUTHORIZATION pgflow_t_owner;
CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.realtime_calls VALUES (current_user, event) $$;
ALTER FUNCTION realtime.send(jsonb, text, text, boolean) OWNER TO pgflow_t_owner;

SELECT pgflow.create_flow('sec');
SELECT pgflow.add_step('sec', 'a', max_attempts => 1, timeout => 1);
SELECT lives_ok($$SELECT pgflow.start_flow('sec', '{}', '00000000-0000-0000-0000-00000000c001')$$,
                'start_flow with an untrusted realtime.send');
SELECT is((SELECT count(*)::int FROM public.realtime_calls), 0,
          'a realtime.send owned by a non-superuser in its schema is never called');

ALTER FUNCTION realtime.send(jsonb, text, text, boolean) OWNER TO CURRENT_USER;
SELECT lives_ok($$SELECT pgflow.start_flow('sec', '{}', '00000000-0000-0000-0000-00000000c002')$$,
                'start_flow: function trusted, schema not');
SELECT is((SELECT count(*)::int FROM public.realtime_calls), 0,
          'a superuser''s realtime.send in a schema a non-superuser owns is not called either');

ALTER SCHEMA realtime OWNER TO CURRENT_USER;
SELECT lives_ok($$SELECT pgflow.start_flow('sec', '{}', '00000000-0000-0000-0000-00000000c003')$$,
                'start_flow: function and schema trusted');
SELECT ok((SELECT count(*) FROM public.realtime_calls WHERE event = 'run:started') = 1,
          'once both belong to a superuser, it receives the events (the change is seen at once)');

-- The background worker's path (a hard timeout fails the task) follows the same rule.
ALTER FUNCTION realtime.send(jsonb, text, text, boolean) OWNER TO pgflow_t_owner;
DELETE FROM public.realtime_calls;
SELECT pg_temp.start_step('00000000-0000-0000-0000-00000000c003', 'a');
UPDATE pgflow.step_tasks SET queued_at = now() - interval '2 hours', started_at = now() - interval '1 hour'
WHERE run_id = '00000000-0000-0000-0000-00000000c003';
SELECT is(pgflow._fail_timed_out_tasks('0 seconds'), 1, 'a timed-out task is failed');
SELECT is((SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-00000000c003'), 'failed',
          'its run failed (events: step:a:failed, run:failed)');
SELECT is((SELECT count(*)::int FROM public.realtime_calls), 0,
          'its events do not reach a realtime.send that an untrusted role owns');
DROP SCHEMA realtime CASCADE;

---------------------------------------------------------------------------------------------------
-- SECURITY DEFINER functions: EXECUTE is not granted to PUBLIC.
---------------------------------------------------------------------------------------------------
SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
     WHERE p.pronamespace = 'pgflow'::regnamespace AND p.prosecdef),
    ARRAY['_insert_map_tasks', 'check_invariants', 'cleanup_ensure_workers_logs', 'get_run_with_states',
          'requeue_stalled_tasks', 'setup_ensure_workers_cron', 'setup_requeue_stalled_tasks_cron',
          'start_flow_with_states'],
    'the eight SECURITY DEFINER functions');
SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
     WHERE p.pronamespace IN ('pgflow'::regnamespace, 'pgmq'::regnamespace) AND p.prosecdef
       AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))),
    NULL,
    'none of them is executable by PUBLIC');

CREATE ROLE pgflow_t_user NOSUPERUSER;
GRANT USAGE ON SCHEMA pgflow TO pgflow_t_user;
SET LOCAL ROLE pgflow_t_user;
SELECT throws_ok($$SELECT pgflow.get_run_with_states('00000000-0000-0000-0000-00000000c001')$$, '42501', NULL,
                 'a role with USAGE only can''t read another run through get_run_with_states');
SELECT throws_ok($$SELECT pgflow.start_flow_with_states('sec', '{}')$$, '42501', NULL,
                 'nor start a flow through start_flow_with_states');
SELECT throws_ok($$SELECT pgflow._insert_map_tasks('sec', '00000000-0000-0000-0000-00000000c001', 'a', '{1}')$$,
                 '42501', NULL, 'nor call _insert_map_tasks (replica mode)');
SELECT throws_ok($$SELECT pgflow.requeue_stalled_tasks()$$, '42501', NULL, 'nor requeue_stalled_tasks');
SELECT throws_ok($$SELECT pgflow.setup_requeue_stalled_tasks_cron()$$, '42501', NULL,
                 'nor setup_requeue_stalled_tasks_cron');
SELECT throws_ok($$SELECT pgflow.setup_ensure_workers_cron()$$, '42501', NULL, 'nor setup_ensure_workers_cron');
SELECT throws_ok($$SELECT pgflow.cleanup_ensure_workers_logs()$$, '42501', NULL, 'nor cleanup_ensure_workers_logs');
RESET ROLE;

-- A role granted the tables (but not _insert_map_tasks) still starts big maps: start_flow then
-- inserts the task rows with the ordinary checks.
CREATE ROLE pgflow_t_app NOSUPERUSER;
GRANT USAGE ON SCHEMA pgflow, pgmq TO pgflow_t_app;
GRANT ALL ON ALL TABLES IN SCHEMA pgflow, pgmq TO pgflow_t_app;
GRANT ALL ON ALL SEQUENCES IN SCHEMA pgmq TO pgflow_t_app;
SELECT pgflow.create_flow('sec_map');
SELECT pgflow.add_step('sec_map', 'm', step_type => 'map');
GRANT ALL ON ALL TABLES IN SCHEMA pgmq TO pgflow_t_app;
SET LOCAL ROLE pgflow_t_app;
SELECT lives_ok($$SELECT pgflow.start_flow('sec_map', (SELECT jsonb_agg(i) FROM generate_series(1, 1500) i),
                                           '00000000-0000-0000-0000-00000000c004')$$,
                'a role without EXECUTE on _insert_map_tasks starts a 1,500-element map');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000c004'), 1500,
          'with all its task rows');

---------------------------------------------------------------------------------------------------
-- An owner's ALTER TYPE on step_task_record is an error in start_tasks, not a crash.
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('sec_type');
SELECT pgflow.add_step('sec_type', 'a');
SELECT pgflow.start_flow('sec_type', '{}', '00000000-0000-0000-0000-00000000c005');
SAVEPOINT altered;
ALTER TYPE pgflow.step_task_record ADD ATTRIBUTE extra text;
SELECT throws_ok($$SELECT * FROM pgflow.start_tasks('sec_type', pg_temp.task_msgs('00000000-0000-0000-0000-00000000c005'), pg_temp.worker())$$, '42804',
                 'type pgflow.step_task_record was altered', 'an added attribute: start_tasks refuses, the server lives');
ROLLBACK TO altered;
ALTER TYPE pgflow.step_task_record ALTER ATTRIBUTE task_index TYPE bigint;
SELECT throws_ok($$SELECT * FROM pgflow.start_tasks('sec_type', pg_temp.task_msgs('00000000-0000-0000-0000-00000000c005'), pg_temp.worker())$$, '42804',
                 'type pgflow.step_task_record was altered', 'a changed attribute type: refused too');
ROLLBACK TO altered;
ALTER TYPE pgflow.step_task_record DROP ATTRIBUTE flow_input, ADD ATTRIBUTE flow_input jsonb;
SELECT throws_ok($$SELECT * FROM pgflow.start_tasks('sec_type', pg_temp.task_msgs('00000000-0000-0000-0000-00000000c005'), pg_temp.worker())$$, '42804',
                 'type pgflow.step_task_record was altered', 'a dropped and re-added attribute: refused too');
ROLLBACK TO altered;
SELECT is((SELECT count(*)::int FROM pgflow.start_tasks('sec_type', pg_temp.task_msgs('00000000-0000-0000-0000-00000000c005'), pg_temp.worker())), 1,
          'with the type as it was, start_tasks works');

SELECT * FROM finish();
ROLLBACK;
