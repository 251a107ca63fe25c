-- Least privilege: create_roles, grant_flow and revoke_flow; what a worker, an observer and a
-- role with nothing granted can and cannot do. Roles made here go with the ROLLBACK.
BEGIN;
SELECT plan(81);
\ir helpers/common.psql

SELECT lives_ok('SELECT pgflow.create_roles()', 'create_roles makes the roles');
SELECT lives_ok('SELECT pgflow.create_roles()', 'and may run again');
SELECT is((SELECT array_agg(rolname::text || ':' || rolcanlogin ORDER BY rolname) FROM pg_roles
           WHERE rolname IN ('pgflow_worker', 'pgflow_observer', 'pgflow_definer')),
          ARRAY['pgflow_definer:false', 'pgflow_observer:false', 'pgflow_worker:false'],
          'pgflow_worker, pgflow_observer and pgflow_definer, NOLOGIN');

SELECT pgflow.create_flow('mine', max_attempts => 1);
SELECT pgflow.add_step('mine', 'a');
SELECT pgflow.add_step('mine', 'b', ARRAY['a']);
SELECT pgflow.create_flow('theirs', max_attempts => 1);
SELECT pgflow.add_step('theirs', 'a');
SELECT pgmq.create('plain_q');
SELECT pgmq.send('plain_q', '{"private": true}');
SELECT pgflow.start_flow('mine', '{"secret": "m"}', '00000000-0000-0000-0000-00000000e001');
SELECT pgflow.start_flow('theirs', '{"secret": "t"}', '00000000-0000-0000-0000-00000000e002');
SELECT message_id AS theirs_msg FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000e002' \gset

CREATE ROLE pgflow_t_w1 IN ROLE pgflow_worker;
CREATE ROLE pgflow_t_o1 IN ROLE pgflow_observer;
CREATE ROLE pgflow_t_nobody;
SELECT lives_ok($$SELECT pgflow.grant_flow('mine', 'pgflow_t_w1')$$, 'grant_flow');
INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
VALUES ('00000000-0000-0000-0000-00000000e0aa', 'mine', 'w1');

---------------------------------------------------------------------------------------------------
-- A worker: the tasks of its flow, nothing else.
---------------------------------------------------------------------------------------------------
SET LOCAL ROLE pgflow_t_w1;
SELECT msg_id AS mine_msg FROM pgmq.read('mine', 30, 10) \gset
SELECT ok(:mine_msg IS NOT NULL, 'a worker reads the queue of a flow granted to it');
SELECT is((SELECT flow_input ->> 'secret' FROM pgflow.start_tasks('mine', ARRAY[:mine_msg]::bigint[],
                                                                   '00000000-0000-0000-0000-00000000e0aa')),
          'm', 'starts its task and gets the input');
SELECT is((SELECT status FROM pgflow.complete_task('00000000-0000-0000-0000-00000000e001', 'a', 0, '"out"')),
          'completed', 'completes it');
SELECT throws_ok($$SELECT * FROM pgmq.read('theirs', 30, 10)$$, '42501', NULL, 'reads no other flow''s queue');
SELECT throws_ok($$SELECT * FROM pgmq.read('plain_q', 30, 10)$$, '42501', NULL, 'nor a plain queue');
SELECT throws_ok(format('SELECT * FROM pgflow.start_tasks(%L, %L, %L)', 'theirs', ARRAY[:theirs_msg]::bigint[],
                        '00000000-0000-0000-0000-00000000e0aa'),
                 '42501', 'permission denied to work on flow "theirs": a superuser or the extension''s owner grants it with pgflow.grant_flow',
                 'starts no task of another flow');
SELECT throws_ok($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-00000000e002', 'a', 0, '1')$$,
                 '42501', NULL, 'completes none');
SELECT throws_ok($$SELECT * FROM pgflow.fail_task('00000000-0000-0000-0000-00000000e002', 'a', 0, 'x')$$,
                 '42501', NULL, 'fails none');
SELECT is_empty($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-00000000ffff', 'a', 0, '1')$$,
                'a run that does not exist: no row, as for anyone');
SELECT throws_ok($$SELECT * FROM pgflow.start_tasks(NULL, '{1}', '00000000-0000-0000-0000-00000000e0aa')$$,
                 '42501', NULL, 'start_tasks without a flow: refused');
SELECT throws_ok('SELECT input FROM pgflow.runs', '42501', NULL, 'reads no run input');
SELECT throws_ok('SELECT output FROM pgflow.step_states', '42501', NULL, 'nor step outputs');
SELECT throws_ok('SELECT output FROM pgflow.step_tasks', '42501', NULL, 'nor task outputs');
SELECT throws_ok($$SELECT pgflow.get_run_with_states('00000000-0000-0000-0000-00000000e002')$$, '42501', NULL,
                 'nor a run through get_run_with_states');
SELECT throws_ok($$SELECT * FROM pgflow.cancel_run('00000000-0000-0000-0000-00000000e001')$$, '42501', NULL,
                 'cancels no run, not even of its own flow');
SELECT throws_ok($$SELECT * FROM pgflow.pause_run('00000000-0000-0000-0000-00000000e002')$$, '42501', NULL,
                 'pauses none');
SELECT throws_ok($$SELECT * FROM pgflow.start_flow('mine', '{}')$$, '42501', NULL, 'starts no run');
SELECT throws_ok($$SELECT pgflow.create_flow('evil')$$, '42501', NULL, 'defines no flow');
SELECT throws_ok($$SELECT pgflow.add_step('mine', 'evil')$$, '42501', NULL, 'adds no step');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('mine', 'b', 'SELECT 1')$$, '42501', NULL,
                 'gives no step a SQL handler');
SELECT throws_ok($$SELECT pgflow.set_program_handler('mine', 'b', ARRAY['/bin/true'])$$, '42501', NULL,
                 'nor a program');
SELECT throws_ok($$SELECT pgflow.schedule_flow('mine', '1 hour')$$, '42501', NULL, 'schedules nothing');
SELECT pgflow.push_sql('SELECT current_user') AS adhoc_run \gset
SELECT throws_ok($$SELECT pgmq.send('mine', '{}')$$, '42501', NULL, 'sends nothing into its flow''s queue');
SELECT throws_ok(format('SELECT pgmq.delete(%L, %s::bigint)', 'mine', :mine_msg), '42501', NULL,
                 'deletes no message of it');
SELECT throws_ok($$SELECT pgflow.grant_flow('theirs', 'pgflow_t_w1')$$, '42501', 'permission denied to grant a flow',
                 'grants itself no other flow');
SELECT throws_ok($$SELECT pgflow.create_roles()$$, '42501', 'permission denied to create pgflow_core''s roles',
                 'runs no create_roles');
SELECT lives_ok($$UPDATE pgflow.workers SET last_heartbeat_at = now() WHERE worker_id = '00000000-0000-0000-0000-00000000e0aa'$$,
                'beats its heartbeat');
RESET ROLE;

SELECT is((SELECT status FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-00000000e001' AND step_slug = 'b'),
          'started', 'its completion moved the run on (b started)');
SELECT pgflow.run_local_tasks();
SELECT is((SELECT output ->> 'sql' FROM pgflow.runs WHERE run_id = :'adhoc_run'), 'pgflow_t_w1',
          'ad-hoc SQL that a worker pushes runs as the worker itself, never as a more privileged role');
SELECT is((SELECT last_worker_id FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000e001' AND step_slug = 'a'),
          '00000000-0000-0000-0000-00000000e0aa'::uuid, 'and the task names its worker');

---------------------------------------------------------------------------------------------------
-- A worker's look-alike operators ahead of pg_catalog in its search_path are never called, not
-- even by the functions that act as the extension's owner.
---------------------------------------------------------------------------------------------------
CREATE SCHEMA pgflow_t_evil AUTHORIZATION pgflow_t_w1;
SET LOCAL ROLE pgflow_t_w1;
CREATE TABLE pgflow_t_evil.calls (called_as text, query text);
CREATE FUNCTION pgflow_t_evil.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO pgflow_t_evil.calls VALUES (current_user, pg_catalog.current_query()); RETURN $1::text = $2::text; END $$;
CREATE FUNCTION pgflow_t_evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO pgflow_t_evil.calls VALUES (current_user, pg_catalog.current_query()); RETURN $1::bytea = $2::bytea; END $$;
CREATE OPERATOR pgflow_t_evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = pgflow_t_evil.uuid_eq);
CREATE OPERATOR pgflow_t_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pgflow_t_evil.text_eq);
SELECT msg_id AS b_msg FROM pgmq.read('mine', 30, 1) \gset
-- Plain statements only until RESET: pgTAP's own functions would call the look-alikes too.
SET LOCAL search_path = pgflow_t_evil, pg_catalog, public;
SELECT '00000000-0000-0000-0000-00000000e001'::uuid = '00000000-0000-0000-0000-00000000e001'::uuid AS sane \gset
SELECT step_slug AS b_started FROM pgflow.start_tasks('mine', ARRAY[:b_msg]::bigint[], '00000000-0000-0000-0000-00000000e0aa') \gset
SELECT status AS b_status FROM pgflow.complete_task('00000000-0000-0000-0000-00000000e001', 'b', 0, '"b"') \gset
RESET search_path;
SELECT ok(:'sane'::boolean AND EXISTS (SELECT 1 FROM pgflow_t_evil.calls WHERE query LIKE '%AS sane%'),
          'the look-alike = answers the worker''s own query: the search_path is hostile');
SELECT is(:'b_started'::text, 'b', 'with its look-alike operators first in search_path, the worker starts a task');
SELECT is(:'b_status'::text, 'completed', 'and completes it');
SELECT is((SELECT count(*)::int FROM pgflow_t_evil.calls WHERE query NOT LIKE '%AS sane%'), 0,
          'the look-alikes ran for the worker''s own query only, never inside the engine');
RESET ROLE;

---------------------------------------------------------------------------------------------------
-- An observer: states and check_invariants, no inputs, outputs or queues.
---------------------------------------------------------------------------------------------------
SET LOCAL ROLE pgflow_t_o1;
SELECT is((SELECT array_agg(status ORDER BY run_id) FROM pgflow.runs WHERE flow_slug IN ('mine', 'theirs')),
          ARRAY['completed', 'started'],
          'an observer reads the runs'' states');
SELECT is((SELECT count(*)::int FROM pgflow.step_states WHERE status = 'completed' AND flow_slug IN ('mine', 'theirs')), 2,
          'and the steps''');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE flow_slug IN ('mine', 'theirs')), 3, 'and the tasks''');
SELECT is_empty('SELECT * FROM pgflow.check_invariants()', 'and runs check_invariants');
SELECT throws_ok('SELECT input FROM pgflow.runs', '42501', NULL, 'but reads no input');
SELECT throws_ok('SELECT output FROM pgflow.step_states', '42501', NULL, 'no output');
SELECT throws_ok('SELECT * FROM pgflow.step_tasks', '42501', NULL, 'no task output either');
SELECT throws_ok($$SELECT * FROM pgmq.read('mine', 30, 1)$$, '42501', NULL, 'no queue');
SELECT throws_ok($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-00000000e001', 'b', 0, '1')$$,
                 '42501', NULL, 'works no task');
SELECT throws_ok($$SELECT * FROM pgflow.cancel_run('00000000-0000-0000-0000-00000000e001')$$, '42501', NULL,
                 'cancels no run');
RESET ROLE;

---------------------------------------------------------------------------------------------------
-- A role with nothing granted, and revoke_flow.
---------------------------------------------------------------------------------------------------
SET LOCAL ROLE pgflow_t_nobody;
SELECT throws_ok($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-00000000e001', 'b', 0, '1')$$,
                 '42501', NULL, 'a role with nothing granted reaches no function');
SELECT throws_ok($$SELECT * FROM pgmq.read('mine', 30, 1)$$, '42501', NULL, 'and no queue');
RESET ROLE;
GRANT USAGE ON SCHEMA pgmq TO pgflow_t_nobody;
GRANT SELECT, UPDATE ON pgmq.q_plain_q TO pgflow_t_nobody;
SET LOCAL ROLE pgflow_t_nobody;
SELECT is((SELECT message ->> 'private' FROM pgmq.read('plain_q', 30, 1)), 'true',
          'a pgmq user granted one queue reads it, with no rights on the engine''s tables');
RESET ROLE;

SELECT lives_ok($$SELECT pgflow.revoke_flow('mine', 'pgflow_t_w1')$$, 'revoke_flow');
SET LOCAL ROLE pgflow_t_w1;
SELECT throws_ok($$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-00000000e001', 'b', 0, '1')$$,
                 '42501', NULL, 'after revoke_flow the worker works no task of the flow');
RESET ROLE;

---------------------------------------------------------------------------------------------------
-- A definer: creates flows, which it then owns, and acts on its own flows and runs only.
---------------------------------------------------------------------------------------------------
CREATE ROLE pgflow_t_d1 IN ROLE pgflow_definer;
CREATE ROLE pgflow_t_d2 IN ROLE pgflow_definer;
SET LOCAL ROLE pgflow_t_d1;
SELECT lives_ok($$SELECT pgflow.create_flow('dflow', max_attempts => 1)$$, 'a definer creates a flow');
SELECT lives_ok($$SELECT pgflow.add_step('dflow', 'a')$$, 'adds steps to it');
SELECT lives_ok($$SELECT pgflow.add_step('dflow', 'who', ARRAY['a'])$$, 'and more');
SELECT lives_ok($$SELECT pgflow.set_sql_handler('dflow', 'who', 'SELECT current_user')$$, 'gives its steps SQL handlers');
SELECT lives_ok($$SELECT pgflow.set_flow_priority('dflow', 3)$$, 'sets its flow''s priority');
SELECT is((SELECT status FROM pgflow.start_flow('dflow', '{}', '00000000-0000-0000-0000-00000000ed01')), 'started',
          'starts a run of its flow');
SELECT is((SELECT status FROM pgflow.start_run('dflow', '{}', idempotency_key => 'once')), 'started', 'and with a key');
SELECT is(pgflow.run_status('00000000-0000-0000-0000-00000000ed01'), 'started', 'reads its run''s status');
SELECT is((SELECT status FROM pgflow.pause_run('00000000-0000-0000-0000-00000000ed01')), 'started', 'pauses it');
SELECT is((SELECT status FROM pgflow.resume_run('00000000-0000-0000-0000-00000000ed01')), 'started', 'resumes it');
SELECT throws_ok($$SELECT pgflow.add_step('mine', 'evil')$$, '42501', 'must be the owner of flow "mine"',
                 'adds no step to a flow that is not its own');
SELECT throws_ok($$SELECT pgflow.create_flow('mine')$$, '42501', 'must be the owner of flow "mine"',
                 'and does not take it over with create_flow');
SELECT throws_ok($$SELECT * FROM pgflow.start_flow('mine', '{}')$$, '42501', NULL, 'starts no run of it');
SELECT throws_ok($$SELECT * FROM pgflow.cancel_run('00000000-0000-0000-0000-00000000e002')$$, '42501', NULL,
                 'cancels no run of it');
SELECT throws_ok($$SELECT pgflow.run_status('00000000-0000-0000-0000-00000000e002')$$, '42501', NULL,
                 'nor reads its status');
SELECT throws_ok('SELECT input FROM pgflow.runs', '42501', NULL, 'reads no run table directly');
SELECT throws_ok($$SELECT * FROM pgflow.start_tasks('dflow', '{1}', '00000000-0000-0000-0000-00000000e0aa')$$, '42501',
                 NULL, 'works no task (that is for workers)');
-- Its look-alike operators first in search_path run in none of the functions that act as the
-- extension's owner for it.
RESET ROLE;
GRANT USAGE ON SCHEMA pgflow_t_evil TO pgflow_t_d1;
GRANT INSERT, SELECT ON pgflow_t_evil.calls TO pgflow_t_d1;
DELETE FROM pgflow_t_evil.calls;
SET LOCAL ROLE pgflow_t_d1;
SET LOCAL search_path = pgflow_t_evil, pg_catalog, public;
SELECT status AS d_paused FROM pgflow.pause_run('00000000-0000-0000-0000-00000000ed01') \gset
SELECT status AS d_resumed FROM pgflow.resume_run('00000000-0000-0000-0000-00000000ed01') \gset
SELECT pgflow.run_status('00000000-0000-0000-0000-00000000ed01') AS d_status \gset
SELECT pgflow.set_flow_priority('dflow', 4) AS d_priority \gset
SELECT pgflow.set_flow_concurrency('dflow', 10) AS d_limit \gset
SELECT pgflow.schedule_flow('dflow', '1 hour') AS d_schedule \gset
SELECT pgflow.pause_schedule(:d_schedule) AS d_pause_schedule \gset
SELECT pgflow.unschedule(:d_schedule) AS d_unschedule \gset
SELECT status AS d_started FROM pgflow.start_run('dflow', '{}', idempotency_key => 'evil') \gset
SELECT pgflow.set_sql_handler('dflow', 'a', 'SELECT 1') AS d_handler \gset
SELECT pgflow.remove_handler('dflow', 'a') AS d_removed \gset
RESET search_path;
SELECT is(:'d_paused' || :'d_resumed' || :'d_status' || :'d_started', 'startedstartedstartedstarted',
          'with look-alike operators first in search_path, the definer pauses, resumes, reads and starts its runs');
SELECT is((SELECT count(*)::int FROM pgflow_t_evil.calls), 0,
          'and no look-alike ran inside the engine (run control, priority, limit, schedules, handlers)');
RESET ROLE;
SET LOCAL ROLE pgflow_t_d2;
SELECT throws_ok($$SELECT * FROM pgflow.cancel_run('00000000-0000-0000-0000-00000000ed01')$$, '42501',
                 'must be the owner of flow "dflow"', 'another definer cannot cancel the first one''s run');
SELECT throws_ok($$SELECT pgflow.add_step('dflow', 'x')$$, '42501', NULL, 'nor change its flow');
RESET ROLE;
SELECT is((SELECT owner::text FROM pgflow._flow_owners WHERE flow_slug = 'dflow'), 'pgflow_t_d1',
          'the definer owns the flow it created');
SET LOCAL ROLE pgflow_t_d1;
SELECT is((SELECT status FROM pgflow.cancel_run('00000000-0000-0000-0000-00000000ed01')), 'failed', 'cancels its own run');
RESET ROLE;
-- Its handler runs as the definer, not as the extension's owner it acted as.
SELECT pgflow.start_flow('dflow', '{}', '00000000-0000-0000-0000-00000000ed02');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-00000000ed02', 'a', '1');
SELECT pgflow.run_local_tasks();
SELECT is((SELECT output ->> 'who' FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-00000000ed02'), 'pgflow_t_d1',
          'the definer''s SQL handler runs as the definer');

-- Every function of schema pgflow fixes its search_path, except the contract's that the contract
-- gives none (they set an empty one inside), run_local_tasks (it runs the users' statements)
-- and two that run no statement.
SELECT is((SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc
           WHERE pronamespace = 'pgflow'::regnamespace AND proconfig IS NULL),
          ARRAY['_cascade_force_skip_steps', '_notice_worker_not_running', '_worker_preloaded',
                'cascade_complete_taskless_steps', 'ensure_workers', 'mark_worker_stopped',
                'prune_data_older_than', 'run_local_tasks', 'set_vt_batch', 'track_worker_function'],
          'the functions without a fixed search_path are the known few');

SELECT throws_ok($$SELECT pgflow.grant_flow('nope', 'pgflow_t_w1')$$, '42704', 'flow "nope" does not exist',
                 'grant_flow: an unknown flow');
SELECT throws_ok($$SELECT pgflow.grant_flow('mine', NULL)$$, '22004', 'role_name must not be NULL',
                 'grant_flow: no role');
SELECT throws_ok($$SELECT pgflow.grant_flow('mine', 'pgflow_t_no_such_role')$$, '42704', NULL,
                 'grant_flow: an unknown role');

SELECT * FROM finish();
ROLLBACK;
