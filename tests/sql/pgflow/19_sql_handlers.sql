-- SQL handlers, run in the test's transaction with pgflow.run_local_tasks (what the executors do
-- in theirs): routing away from the flow's queue, inputs, outputs, failures and retries,
-- timeouts, settings, privileges, ad-hoc tasks and pools.
BEGIN;
SELECT plan(77);
\ir helpers/common.psql

-- Runs local tasks until none is left that is visible now.
CREATE FUNCTION pg_temp.drain() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    total integer := 0;
    n integer;
BEGIN
    FOR i IN 1..50 LOOP
        n := pgflow.run_local_tasks(100);
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
    RETURN total;
END;
$$;

---------------------------------------------------------------------------------------------------
-- Bad input
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('etl');
SELECT pgflow.add_step('etl', 'extract');
SELECT pgflow.add_step('etl', 'transform', ARRAY['extract'], step_type => 'map');
SELECT pgflow.add_step('etl', 'load', ARRAY['transform']);

SELECT throws_ok($$SELECT pgflow.set_sql_handler(NULL, 'extract', 'SELECT 1')$$, '22004',
                 'flow_slug must not be NULL', 'set_sql_handler: NULL flow is 22004');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('etl', 'extract', NULL)$$, '22004',
                 'statement must not be NULL', 'set_sql_handler: NULL statement is 22004');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('etl', 'nope', 'SELECT 1')$$, '42704',
                 'step "nope" of flow "etl" does not exist', 'set_sql_handler: an unknown step is 42704');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('etl', 'extract', 'SELEC 1')$$, '42601', NULL,
                 'set_sql_handler: a statement that does not parse is refused at once (42601)');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('etl', 'extract', '  ')$$, '22023', NULL,
                 'set_sql_handler: an empty statement is 22023');
SELECT throws_ok($$SELECT pgflow.run_local_tasks(0)$$, '22023', NULL, 'run_local_tasks: max_tasks 0 is 22023');

---------------------------------------------------------------------------------------------------
-- A pure-SQL ETL flow: extract rows, a map transforms each, load inserts them
---------------------------------------------------------------------------------------------------
CREATE TABLE public.src (id int PRIMARY KEY, name text);
CREATE TABLE public.dst (id int PRIMARY KEY, name text);
INSERT INTO public.src SELECT g, 'item ' || g FROM generate_series(1, 5) g;
SELECT pgflow.set_sql_handler('etl', 'extract',
    $$SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'name', name) ORDER BY id), '[]') FROM public.src$$);
SELECT pgflow.set_sql_handler('etl', 'transform',
    $$SELECT jsonb_build_object('id', ($1->>'id')::int, 'name', upper($1->>'name'), 'tag', $2->>'tag')$$);
SELECT pgflow.set_sql_handler('etl', 'load',
    $$INSERT INTO public.dst SELECT (e->>'id')::int, e->>'name' || '/' || (e->>'tag') FROM jsonb_array_elements($1->'transform') e RETURNING id$$);

SELECT pgflow.start_flow('etl', '{"tag": "t1"}', '00000000-0000-0000-0000-0000000e7101');
SELECT is(pg_temp.queued_ids('etl'), '{}'::bigint[], 'tasks of steps with a handler get no message in the flow''s queue');
SELECT is((SELECT count(*)::int FROM pgmq.read('etl', 30, 10)), 0, 'an external worker reading the queue receives nothing');
SELECT is((SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'extract'), NULL::bigint,
          'the task has no message id');
SELECT is((SELECT count(*)::int FROM pgflow._local_tasks), 1, 'it waits in the executors'' queue');
SELECT is(pg_temp.drain(), 7, 'run_local_tasks runs extract, five transform tasks and load');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000e7101'),
          'completed {"load": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}]}',
          'the run completes with the load step''s rows as its output');
SELECT is((SELECT string_agg(name, ',' ORDER BY id) FROM public.dst),
          'ITEM 1/t1,ITEM 2/t1,ITEM 3/t1,ITEM 4/t1,ITEM 5/t1',
          'the map got each element as $1 and the run input as $2; load inserted the rows');
SELECT is((SELECT count(*)::int FROM pgflow._local_tasks), 0, 'the executors'' queue is empty afterwards');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE status = 'completed' AND attempts_count = 1), 7,
          'every task completed at its first attempt');

---------------------------------------------------------------------------------------------------
-- Inputs and outputs
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('io');
SELECT pgflow.add_step('io', 'root');
SELECT pgflow.add_step('io', 'rows', ARRAY['root']);
SELECT pgflow.add_step('io', 'none', ARRAY['root']);
SELECT pgflow.add_step('io', 'nul', ARRAY['root']);
SELECT pgflow.add_step('io', 'util', ARRAY['root']);
SELECT pgflow.add_step('io', 'j', ARRAY['root']);
SELECT pgflow.add_step('io', 'args', ARRAY['root']);
SELECT pgflow.add_step('io', 'void', ARRAY['root']);
SELECT pgflow.set_sql_handler('io', 'root', $$SELECT jsonb_build_object('in', $1, 'flow', $2)$$);
SELECT pgflow.set_sql_handler('io', 'rows', $$SELECT g AS n, 'x' || g AS s FROM generate_series(1, 2) g$$);
SELECT pgflow.set_sql_handler('io', 'none', $$SELECT 1 AS one WHERE false$$);
SELECT pgflow.set_sql_handler('io', 'nul', $$SELECT NULL::int$$);
SELECT pgflow.set_sql_handler('io', 'util', $$CREATE TABLE public.made_by_handler (a int)$$);
SELECT pgflow.set_sql_handler('io', 'j', $$SELECT 42::numeric$$);
SELECT pgflow.set_sql_handler('io', 'args', $$SELECT $1$$);
SELECT pgflow.set_sql_handler('io', 'void', $$SELECT pg_sleep(0)$$);
SELECT pgflow.start_flow('io', '{"x": 1}', '00000000-0000-0000-0000-0000000e7102');
SELECT pg_temp.drain();
CREATE FUNCTION pg_temp.out(p_step text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT output FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000e7102' AND step_slug = p_step
$$;
SELECT is(pg_temp.out('root'), '{"in": {}, "flow": {"x": 1}}', 'a root step gets {} as $1 and the run input as $2');
SELECT is(pg_temp.out('args'), '{"root": {"in": {}, "flow": {"x": 1}}}', 'a dependent step gets its dependencies'' outputs as $1');
SELECT is(pg_temp.out('rows'), '[{"n": 1, "s": "x1"}, {"n": 2, "s": "x2"}]', 'several rows or columns: an array of objects');
SELECT is(pg_temp.out('none'), '[]', 'zero rows: an empty array');
SELECT is(pg_temp.out('nul'), 'null', 'one row with one NULL column: JSON null');
SELECT is(pg_temp.out('util'), 'null', 'a statement without a result: JSON null');
SELECT is(pg_temp.out('j'), '42', 'one value: its JSON (to_jsonb)');
SELECT is(pg_temp.out('void'), 'null', 'a function returning void: JSON null');
SELECT ok(to_regclass('public.made_by_handler') IS NOT NULL, 'the utility statement ran');

---------------------------------------------------------------------------------------------------
-- A flow mixing SQL and external steps
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('mix');
SELECT pgflow.add_step('mix', 'ext1');
SELECT pgflow.add_step('mix', 'sql2', ARRAY['ext1']);
SELECT pgflow.add_step('mix', 'ext3', ARRAY['sql2']);
SELECT pgflow.set_sql_handler('mix', 'sql2', $$SELECT ($1->'ext1'->>'n')::int * 10$$);
SELECT pgflow.start_flow('mix', '{}', '00000000-0000-0000-0000-0000000e7103');
SELECT is(cardinality(pg_temp.queued_ids('mix')), 1, 'the external root step has its message');
SELECT is(pg_temp.drain(), 0, 'the executors have nothing to do yet');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-0000000e7103', 'ext1', '{"n": 4}');
SELECT is(cardinality(pg_temp.queued_ids('mix')), 0, 'completing the external step queues the SQL step without a message');
SELECT is(pg_temp.drain(), 1, 'the executors run the SQL step');
SELECT is((SELECT input FROM pg_temp.start_step('00000000-0000-0000-0000-0000000e7103', 'ext3')), '{"sql2": 40}',
          'the next external step gets its message and the SQL step''s output as input');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000e7103', 'ext3', 0, '"done"');
SELECT is((SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000e7103'), 'completed',
          'the mixed run completes');

---------------------------------------------------------------------------------------------------
-- A failing handler leaves no effects, retries with the step's backoff, then fails the run
---------------------------------------------------------------------------------------------------
CREATE TABLE public.effects (note text);
SELECT pgflow.create_flow('bad', max_attempts => 2, base_delay => 0);
SELECT pgflow.add_step('bad', 'boom');
SELECT pgflow.set_sql_handler('bad', 'boom', $$WITH w AS (INSERT INTO public.effects VALUES ('x') RETURNING 1) SELECT 1 / (SELECT count(*)::int - 1 FROM w)$$);
SELECT pgflow.start_flow('bad', '{}', '00000000-0000-0000-0000-0000000e7104');
SELECT is(pgflow.run_local_tasks(1), 1, 'the failing task is claimed');
SELECT is((SELECT status || ' ' || attempts_count || ' ' || error_message FROM pgflow.step_tasks
           WHERE run_id = '00000000-0000-0000-0000-0000000e7104'),
          'queued 1 division by zero', 'the failed attempt is recorded: queued again, attempt 1, the error''s message');
SELECT is((SELECT count(*)::int FROM public.effects), 0, 'the failed handler left no effects');
SELECT is((SELECT count(*)::int FROM pgflow._local_tasks WHERE run_id = '00000000-0000-0000-0000-0000000e7104'), 1,
          'the retry is back in the executors'' queue');
SELECT is(pgflow.run_local_tasks(1), 1, 'with base_delay 0 it is retried at once');
SELECT is((SELECT r.status || ' ' || t.attempts_count || ' ' || t.status FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id)
           WHERE r.run_id = '00000000-0000-0000-0000-0000000e7104'),
          'failed 2 failed', 'the last attempt fails the task, the step and the run');
SELECT is((SELECT count(*)::int FROM public.effects), 0, 'still no effects');
SELECT is((SELECT count(*)::int FROM pgflow._local_tasks WHERE run_id = '00000000-0000-0000-0000-0000000e7104'), 0,
          'nothing is left in the executors'' queue');

SELECT pgflow.create_flow('slowretry', max_attempts => 3, base_delay => 5);
SELECT pgflow.add_step('slowretry', 'boom');
SELECT pgflow.set_sql_handler('slowretry', 'boom', 'SELECT 1/0');
SELECT pgflow.start_flow('slowretry', '{}', '00000000-0000-0000-0000-0000000e7105');
SELECT pgflow.run_local_tasks(10);
SELECT ok((SELECT visible_at > clock_timestamp() + interval '8 seconds' FROM pgflow._local_tasks
           WHERE run_id = '00000000-0000-0000-0000-0000000e7105'),
          'the retry waits for the step''s backoff (base_delay 5 * 2^1 = 10 s)');
SELECT is(pgflow.run_local_tasks(10), 0, 'and is not claimed before');

---------------------------------------------------------------------------------------------------
-- Timeout: a handler that runs longer than its step's timeout is cancelled
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('slow', max_attempts => 1);
SELECT pgflow.add_step('slow', 'sleep', timeout => 1);
SELECT pgflow.set_sql_handler('slow', 'sleep', $$INSERT INTO public.effects VALUES ('slow'); SELECT pg_sleep(5)$$);
SELECT pgflow.start_flow('slow', '{}', '00000000-0000-0000-0000-0000000e7106');
SELECT pg_temp.drain();
SELECT is((SELECT t.error_message || ' / ' || r.status FROM pgflow.step_tasks t JOIN pgflow.runs r USING (run_id)
           WHERE run_id = '00000000-0000-0000-0000-0000000e7106'),
          'Task timed out after 1 seconds / failed', 'the attempt fails with the timeout message');
SELECT ok(clock_timestamp() - (SELECT started_at FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000e7106')
          < interval '4 seconds', 'it was cancelled after about one second, not after five');
SELECT is((SELECT count(*)::int FROM public.effects WHERE note = 'slow'), 0, 'the cancelled handler left no effects');

---------------------------------------------------------------------------------------------------
-- Settings a handler changes do not leak into the next one
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('gucs');
SELECT pgflow.add_step('gucs', 'a');
SELECT pgflow.add_step('gucs', 'b', ARRAY['a']);
SELECT pgflow.set_sql_handler('gucs', 'a', $$SELECT set_config('search_path', 'pg_temp_nothing', false)$$);
SELECT pgflow.set_sql_handler('gucs', 'b', $$SELECT current_setting('search_path')$$);
SET LOCAL search_path = public;
SELECT pgflow.start_flow('gucs', '{}', '00000000-0000-0000-0000-0000000e7107');
SELECT pg_temp.drain();
SELECT is((SELECT output FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000e7107' AND step_slug = 'b'),
          (SELECT to_jsonb(reset_val) FROM pg_settings WHERE name = 'search_path'),
          'a session setting made by one handler is put back before the next (handlers run with the database''s search_path, not the caller''s)');
SELECT is(current_setting('search_path'), 'public', 'and the caller''s setting is untouched');
RESET search_path;

---------------------------------------------------------------------------------------------------
-- Privileges: a handler runs as the role that set it; only a flow's owner may set its handlers
---------------------------------------------------------------------------------------------------
CREATE ROLE pgflow_t_alice NOSUPERUSER;
CREATE ROLE pgflow_t_bob NOSUPERUSER;
GRANT USAGE ON SCHEMA pgflow TO pgflow_t_alice, pgflow_t_bob;
CREATE TABLE public.secret (s text);
INSERT INTO public.secret VALUES ('top');
CREATE TABLE public.alice_log (who text);
GRANT INSERT, SELECT ON public.alice_log TO pgflow_t_alice;
SELECT pgflow.create_flow('owned');
SELECT pgflow.add_step('owned', 'who');
SELECT pgflow.add_step('owned', 'peek', ARRAY['who']);
UPDATE pgflow._flow_owners SET owner = 'pgflow_t_alice'::regrole WHERE flow_slug = 'owned';

SET LOCAL ROLE pgflow_t_bob;
SELECT throws_ok($$SELECT pgflow.set_sql_handler('owned', 'who', 'SELECT 1')$$, '42501',
                 'must be the owner of flow "owned" to change the handlers of its steps',
                 'another role cannot attach a handler to a flow it does not own');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('etl', 'extract', 'SELECT 1')$$, '42501', NULL,
                 'nor to a flow a superuser created');
SELECT throws_ok($$SELECT pgflow.run_local_tasks()$$, '42501', NULL, 'run_local_tasks is for superusers only');
RESET ROLE;

SET LOCAL ROLE pgflow_t_alice;
SELECT lives_ok($$SELECT pgflow.set_sql_handler('owned', 'who',
                  'INSERT INTO public.alice_log SELECT current_user RETURNING who')$$,
                'the flow''s owner sets a handler');
SELECT lives_ok($$SELECT pgflow.set_sql_handler('owned', 'peek', 'SELECT s FROM public.secret')$$,
                'and one that reads a table it may not read');
RESET ROLE;
SELECT is((SELECT string_agg(run_as::regrole::text, ',') FROM pgflow._step_handlers WHERE flow_slug = 'owned'),
          'pgflow_t_alice,pgflow_t_alice', 'the handlers are recorded to run as the role that set them');
SELECT pgflow.start_flow('owned', '{}', '00000000-0000-0000-0000-0000000e7108');
SELECT pg_temp.drain();
SELECT is((SELECT output FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000e7108' AND step_slug = 'who'),
          '"pgflow_t_alice"', 'a superuser''s executor runs the handler as its owner, not as itself');
SELECT is((SELECT t.error_message FROM pgflow.step_tasks t
           WHERE run_id = '00000000-0000-0000-0000-0000000e7108' AND step_slug = 'peek'),
          'permission denied for table secret', 'with that role''s privileges and no more');
SET LOCAL ROLE pgflow_t_bob;
SELECT throws_ok($$SELECT pgflow.remove_handler('owned', 'who')$$, '42501', NULL,
                 'another role cannot remove the owner''s handler');
RESET ROLE;
SELECT pgflow.set_sql_handler('owned', 'who', 'SELECT current_user');
SELECT is((SELECT run_as::regrole::text FROM pgflow._step_handlers WHERE flow_slug = 'owned' AND step_slug = 'who'),
          current_user::text, 'a superuser replacing the handler makes it run as the superuser: no role is chosen by name');

---------------------------------------------------------------------------------------------------
-- Program handlers: only with pg_execute_server_program, checked again when a task runs
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('prog', max_attempts => 1);
SELECT pgflow.add_step('prog', 'cat');
SELECT pgflow.add_step('prog', 'later', ARRAY['cat']);
UPDATE pgflow._flow_owners SET owner = 'pgflow_t_alice'::regrole WHERE flow_slug = 'prog';
SELECT throws_ok($$SELECT pgflow.set_program_handler('prog', 'cat', ARRAY[]::text[])$$, '22023', NULL,
                 'set_program_handler: an empty argv is 22023');
SELECT throws_ok($$SELECT pgflow.set_program_handler('prog', 'cat', ARRAY['/bin/sh', NULL])$$, '22004', NULL,
                 'set_program_handler: a NULL in argv is 22004');
SET LOCAL ROLE pgflow_t_alice;
SELECT throws_ok($$SELECT pgflow.set_program_handler('prog', 'cat', ARRAY['/bin/sh', '-c', 'cat'])$$, '42501',
                 'must be superuser or have privileges of the pg_execute_server_program role to run programs in steps',
                 'the flow''s owner without pg_execute_server_program cannot define a program step');
RESET ROLE;
GRANT pg_execute_server_program TO pgflow_t_alice;
SET LOCAL ROLE pgflow_t_alice;
SELECT lives_ok($$SELECT pgflow.set_program_handler('prog', 'cat', ARRAY['/bin/sh', '-c', 'cat'])$$,
                'with it, the owner defines one');
SELECT lives_ok($$SELECT pgflow.set_program_handler('prog', 'later', ARRAY['/bin/sh', '-c', 'echo 1'])$$,
                'and another');
RESET ROLE;
SELECT pgflow.start_flow('prog', '{}', '00000000-0000-0000-0000-0000000e710a');
SELECT pgflow.run_local_tasks(1);
SELECT is((SELECT output FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-0000000e710a' AND step_slug = 'cat'),
          '{}', 'the program got the input on stdin, and its stdout is the output');
REVOKE pg_execute_server_program FROM pgflow_t_alice;
SELECT pgflow.run_local_tasks(1);
SELECT is((SELECT error_message FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-0000000e710a' AND step_slug = 'later'),
          'must be superuser or have privileges of the pg_execute_server_program role to run programs in steps',
          'a role that lost pg_execute_server_program no longer runs programs');
SELECT throws_ok($$SELECT pgflow.set_sql_handler('prog', 'cat', 'SELECT 1', target => 'otherdb')$$, '55000', NULL,
                 'a target without dblink in the database is 55000');

---------------------------------------------------------------------------------------------------
-- Ad-hoc SQL tasks
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.push_sql(NULL)$$, '22004', NULL, 'push_sql: NULL is 22004');
SELECT throws_ok($$SELECT pgflow.push_sql('SELEC')$$, '42601', NULL, 'push_sql: a statement that does not parse is 42601');
SELECT pgflow.push_sql('SELECT 40 + 2') AS adhoc1 \gset
SELECT is((SELECT count(*)::int FROM pgflow.push_sql_batch(ARRAY['SELECT 1', 'SELECT 1/0', $$INSERT INTO public.effects VALUES ('adhoc')$$])),
          3, 'push_sql_batch queues one run per statement');
SELECT is(pg_temp.drain(), 4, 'the executors run the four ad-hoc tasks');
SELECT is((SELECT status || ' ' || output::text FROM pgflow.runs WHERE run_id = :'adhoc1'),
          'completed {"sql": 42}', 'an ad-hoc task is a run of flow pgflow_adhoc with the result as output');
SELECT is((SELECT string_agg(r.status || ':' || coalesce(t.error_message, '-'), ',' ORDER BY r.status)
           FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.flow_slug = 'pgflow_adhoc'),
          'completed:-,completed:-,completed:-,failed:division by zero',
          'a failing ad-hoc task fails its run with the error, at its first attempt');
SELECT is((SELECT count(*)::int FROM public.effects WHERE note = 'adhoc'), 1, 'an ad-hoc statement''s effect happened once');

---------------------------------------------------------------------------------------------------
-- Pools: external workers get only the pool's free slots
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgflow.create_pool('p', 0)$$, '22023', NULL, 'create_pool: max_running 0 is 22023');
SELECT throws_ok($$SELECT pgflow.set_pool('etl', 'nope')$$, '42704', NULL, 'set_pool: an unknown pool is 42704');
SELECT pgflow.create_pool('one', 1);
SELECT pgflow.create_flow('pooled');
SELECT pgflow.add_step('pooled', 'm', step_type => 'map');
SELECT pgflow.set_pool('pooled', 'one');
SELECT pgflow.start_flow('pooled', '[1, 2, 3]', '00000000-0000-0000-0000-0000000e7109');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000e7109', 'm')), 1,
          'start_tasks hands out one task for a pool of one');
SELECT is((SELECT count(*)::int FROM pgmq.q_pooled WHERE vt > clock_timestamp()), 2,
          'the two others stay queued, their messages visible again within a second');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000e7109', 'm')), 0,
          'while the slot is taken, nothing more is handed out');
SELECT pgflow.complete_task('00000000-0000-0000-0000-0000000e7109', 'm', 0, '1');
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000e7109', 'm')), 1,
          'once the task completed, its slot is free again');
SELECT pgflow.set_pool('pooled', NULL);
SELECT is((SELECT count(*)::int FROM pg_temp.start_step('00000000-0000-0000-0000-0000000e7109', 'm')), 1,
          'out of the pool, the remaining task is handed out');

SELECT * FROM finish();
ROLLBACK;
