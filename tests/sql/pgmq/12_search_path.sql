-- A caller's search_path cannot redirect the extension's statements. Schema trap holds a
-- look-alike of every pg_catalog function, aggregate, operator and type that PL/pgSQL can imitate
-- (same name, same argument types); each raises XX999 'search_path trap: <what>'. With search_path
-- trap, pg_catalog, public every unqualified name in a statement resolves to its look-alike, so
-- any pgmq or pgflow call that reaches an unqualified built-in fails here. The pgmq functions
-- have no SET search_path, so their statements, dynamic ones included, qualify every
-- built-in as pg_catalog.name(...) and every operator as OPERATOR(pg_catalog.op).
BEGIN;
SELECT plan(139);
SET LOCAL client_min_messages = error;

---------------------------------------------------------------------------------------------------
-- The trap
---------------------------------------------------------------------------------------------------
CREATE SCHEMA trap;
CREATE TEMP TABLE trap_made (kind text, name text);
CREATE TEMP TABLE caller_path AS SELECT current_setting('search_path') AS path;

-- Types a PL/pgSQL look-alike cannot take or return.
CREATE FUNCTION pg_temp.unusable(types oid[]) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_type ty WHERE ty.oid = ANY (types)
                   AND ty.typname IN ('internal', 'cstring', 'any', 'language_handler', 'trigger', 'event_trigger',
                                      'fdw_handler', 'index_am_handler', 'tsm_handler', 'table_am_handler', 'opaque'))
$$;

-- CREATE FUNCTION name(args) RETURNS result raising 'search_path trap: <what>'.
CREATE FUNCTION pg_temp.make_trap(name text, args text, result text, what text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format($c$CREATE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql AS $b$
                   BEGIN RAISE EXCEPTION 'search_path trap: %%', %L USING ERRCODE = 'XX999'; END $b$$c$,
                   name, args, result, what);
END;
$f$;

DO $trap$
DECLARE
    f record;
BEGIN
    -- Functions: the exact signature, with argument names, defaults, OUT parameters and SETOF.
    FOR f IN
        SELECT p.oid, p.proname, pg_get_function_arguments(p.oid) AS args, pg_get_function_result(p.oid) AS result
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
          AND NOT pg_temp.unusable(p.proargtypes::oid[] || coalesce(p.proallargtypes, '{}') || p.prorettype)
        ORDER BY p.oid
    LOOP
        BEGIN
            PERFORM pg_temp.make_trap(format('trap.%I', f.proname), f.args, f.result, f.oid::regprocedure::text);
            INSERT INTO trap_made VALUES ('function', f.oid::regprocedure::text);
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;

    -- PL/pgSQL cannot take VARIADIC "any" (format, concat, jsonb_build_object, ...): a stand-in
    -- with VARIADIC text[] catches every call whose variadic arguments are text or literals.
    FOR f IN
        SELECT p.oid, p.proname, pg_get_function_arguments(p.oid) AS args, pg_get_function_result(p.oid) AS result
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' AND p.provariadic = '"any"'::regtype
          AND NOT pg_temp.unusable(p.proargtypes[0:p.pronargs - 2]::oid[] || p.prorettype)
        ORDER BY p.oid
    LOOP
        BEGIN
            PERFORM pg_temp.make_trap(format('trap.%I', f.proname), replace(f.args, 'VARIADIC "any"', 'VARIADIC text[]'),
                                      f.result, f.oid::regprocedure::text);
            INSERT INTO trap_made VALUES ('variadic "any" function', f.oid::regprocedure::text);
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;

    -- Plain aggregates (count, max, array_agg, ...): transition and final functions both raise,
    -- so an aggregate over no rows is caught too.
    FOR f IN
        SELECT p.oid, p.proname, p.prorettype::regtype::text AS result,
               CASE WHEN p.pronargs = 0 THEN p.proname || '(*)' ELSE p.oid::regprocedure::text END AS what,
               (SELECT string_agg(a.t::regtype::text, ', ' ORDER BY a.i)
                FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)) AS types
        FROM pg_proc p JOIN pg_aggregate g ON g.aggfnoid = p.oid
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'a' AND g.aggkind = 'n'
          AND NOT pg_temp.unusable(p.proargtypes::oid[] || p.prorettype)
        ORDER BY p.oid
    LOOP
        BEGIN
            PERFORM pg_temp.make_trap(format('trap.%I', 'agg_' || f.oid), concat_ws(', ', f.result, f.types), f.result,
                                      'aggregate ' || f.what);
            PERFORM pg_temp.make_trap(format('trap.%I', 'agg_' || f.oid || '_final'), f.result, f.result,
                                      'aggregate ' || f.what);
            EXECUTE format('CREATE AGGREGATE trap.%I(%s) (SFUNC = trap.%I, STYPE = %s, FINALFUNC = trap.%I)',
                           f.proname, coalesce(f.types, '*'), 'agg_' || f.oid, f.result, 'agg_' || f.oid || '_final');
            INSERT INTO trap_made VALUES ('aggregate', f.what);
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;

    -- Binary and prefix operators: same name and operand types, a raising function behind each.
    FOR f IN
        SELECT o.oid, o.oprname, o.oprkind, o.oprleft::regtype::text AS lt, o.oprright::regtype::text AS rt,
               o.oprresult::regtype::text AS result
        FROM pg_operator o
        WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprkind IN ('b', 'l')
          AND NOT pg_temp.unusable(ARRAY[o.oprleft, o.oprright, o.oprresult])
        ORDER BY o.oid
    LOOP
        BEGIN
            PERFORM pg_temp.make_trap(format('trap.%I', 'op_' || f.oid),
                                      CASE WHEN f.oprkind = 'b' THEN f.lt || ', ' ELSE '' END || f.rt, f.result,
                                      'operator ' || f.oid::regoperator::text);
            EXECUTE format('CREATE OPERATOR trap.%s (%s RIGHTARG = %s, FUNCTION = trap.%I)', f.oprname,
                           CASE WHEN f.oprkind = 'b' THEN format('LEFTARG = %s,', f.lt) ELSE '' END, f.rt, 'op_' || f.oid);
            INSERT INTO trap_made VALUES ('operator', f.oid::regoperator::text);
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;

    -- Base, range and multirange types: a domain of the same name whose CHECK raises, so a value
    -- cast to or stored in an unqualified non-keyword type name (text, jsonb, timestamptz,
    -- regclass, "char", ...) is caught. Keywords (integer, bigint, boolean, interval, varchar,
    -- numeric, ...) always mean the pg_catalog types.
    CREATE FUNCTION trap.type_trap(name pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $b$
        BEGIN RAISE EXCEPTION 'search_path trap: type %', name USING ERRCODE = 'XX999'; END $b$;
    FOR f IN
        SELECT t.oid, t.typname
        FROM pg_type t
        WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype IN ('b', 'r', 'm') AND t.typname !~ '^_'
          AND NOT pg_temp.unusable(ARRAY[t.oid])
        ORDER BY t.oid
    LOOP
        BEGIN
            EXECUTE format('CREATE DOMAIN trap.%I AS %s CHECK (trap.type_trap(%L))', f.typname, f.oid::regtype, f.typname);
            INSERT INTO trap_made VALUES ('type', f.typname);
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;
END;
$trap$;

-- Runs one statement with search_path trap, pg_catalog, public and restores the caller's
-- search_path; returns the first column of the first row as text. pgTAP itself never runs
-- under the trap: only the EXECUTE does (every name below is qualified all the same).
CREATE FUNCTION pg_temp.trapped(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    saved pg_catalog.text := pg_catalog.current_setting('search_path');
    result pg_catalog.text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'trap, pg_catalog, public', true);
    BEGIN
        EXECUTE sql INTO result;
    EXCEPTION WHEN others THEN
        PERFORM pg_catalog.set_config('search_path', saved, true);
        RAISE;
    END;
    PERFORM pg_catalog.set_config('search_path', saved, true);
    RETURN result;
END;
$$;

-- Rows of a table, NULL when it does not exist (a failed call does not end the test).
CREATE FUNCTION pg_temp.rows(rel text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF to_regclass(rel) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', rel) INTO n;
    RETURN n;
END;
$$;

-- pgTAP assertions on a statement run under the trap.
CREATE FUNCTION pg_temp.trap_ok(sql text, description text) RETURNS text LANGUAGE sql AS $$
    SELECT lives_ok(format('SELECT pg_temp.trapped(%L)', sql), description)
$$;
CREATE FUNCTION pg_temp.trap_throws(sql text, errcode text, errmsg text, description text) RETURNS text LANGUAGE sql AS $$
    SELECT throws_ok(format('SELECT pg_temp.trapped(%L)', sql), errcode, errmsg, description)
$$;
CREATE FUNCTION pg_temp.trap_is(sql text, expected text, description text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    got text;
    context text;
BEGIN
    got := pg_temp.trapped(sql);
    RETURN is(got, expected, description);
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS context = PG_EXCEPTION_CONTEXT;
    RETURN ok(false, description) || E'\n' || diag(format(E'    died: %s: %s\n        CONTEXT:\n            %s',
                                                          SQLSTATE, SQLERRM, replace(context, E'\n', E'\n            ')));
END;
$$;

SELECT cmp_ok((SELECT count(*)::int FROM trap_made WHERE kind = 'function'), '>=', 2000,
              'trap: at least 2000 look-alike functions');
SELECT cmp_ok((SELECT count(*)::int FROM trap_made WHERE kind = 'operator'), '>=', 500,
              'trap: at least 500 look-alike operators');
SELECT cmp_ok((SELECT count(*)::int FROM trap_made WHERE kind = 'aggregate'), '>=', 100,
              'trap: at least 100 look-alike aggregates');
SELECT cmp_ok((SELECT count(*)::int FROM trap_made WHERE kind = 'type'), '>=', 50,
              'trap: at least 50 look-alike types');
SELECT is(pg_temp.trapped('SELECT pg_catalog.current_setting(''search_path'')'), 'trap, pg_catalog, public',
          'trapped() runs its statement with search_path trap, pg_catalog, public');
SELECT is(current_setting('search_path'), (SELECT path FROM caller_path), '... and restores the caller''s search_path');
SELECT pg_temp.trap_is('SELECT pg_catalog.now() OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()', 'true',
                       'qualified names pass the trap');
SELECT pg_temp.trap_throws('SELECT make_interval(secs => 1)', 'XX999',
                           'search_path trap: make_interval(integer,integer,integer,integer,integer,integer,double precision)',
                           'trap: make_interval(secs => ...)');
SELECT pg_temp.trap_throws('SELECT clock_timestamp()', 'XX999', 'search_path trap: clock_timestamp()', 'trap: clock_timestamp()');
SELECT pg_temp.trap_throws('SELECT now()', 'XX999', 'search_path trap: now()', 'trap: now()');
SELECT pg_temp.trap_throws('SELECT lower(''Q''::pg_catalog.text)', 'XX999', 'search_path trap: lower(text)', 'trap: lower(text)');
SELECT pg_temp.trap_throws('SELECT format(''%I'', ''q'')', 'XX999', 'search_path trap: format(text,"any")',
                           'trap: format(text, VARIADIC "any") (a VARIADIC text[] stand-in)');
SELECT pg_temp.trap_throws('SELECT jsonb_build_object(''k'', ''v'')', 'XX999', 'search_path trap: jsonb_build_object("any")',
                           'trap: jsonb_build_object(VARIADIC "any") (a VARIADIC text[] stand-in)');
SELECT pg_temp.trap_throws('SELECT 1::bigint = 2::bigint', 'XX999', 'search_path trap: operator =(bigint,bigint)',
                           'trap: =(bigint, bigint)');
SELECT pg_temp.trap_throws('SELECT pg_catalog.now() <= pg_catalog.now()', 'XX999',
                           'search_path trap: operator <=(timestamp with time zone,timestamp with time zone)',
                           'trap: <=(timestamptz, timestamptz)');
SELECT pg_temp.trap_throws('SELECT ''{}''::pg_catalog.jsonb @> ''{}''::pg_catalog.jsonb', 'XX999',
                           'search_path trap: operator @>(jsonb,jsonb)', 'trap: @>(jsonb, jsonb)');
SELECT pg_temp.trap_throws('SELECT ''a''::pg_catalog.text || ''b''::pg_catalog.text', 'XX999',
                           'search_path trap: operator ||(text,text)', 'trap: ||(text, text)');
SELECT pg_temp.trap_throws('SELECT count(*) FROM pg_catalog.pg_class WHERE false', 'XX999',
                           'search_path trap: aggregate count(*)', 'trap: count(*), over no rows too');
SELECT pg_temp.trap_throws('SELECT ''{}''::jsonb', 'XX999', 'search_path trap: type jsonb', 'trap: a cast to jsonb');
SELECT pg_temp.trap_throws('DO $d$ DECLARE v text := ''v''; BEGIN END $d$', 'XX999', 'search_path trap: type text',
                           'trap: a PL/pgSQL variable of type text');
SELECT pg_temp.trap_throws('SELECT 1 WHERE 1 IN (2, 3)', 'XX999', 'search_path trap: operator =(integer,integer)',
                           'trap: IN (...) looks = up by name');

---------------------------------------------------------------------------------------------------
-- Queue management
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_ok($$SELECT pgmq.create('sp_q')$$, 'create');
SELECT pg_temp.trap_ok($$SELECT pgmq.create_unlogged('sp_unl')$$, 'create_unlogged');
SELECT pg_temp.trap_ok($$SELECT pgmq.create_non_partitioned('sp_np')$$, 'create_non_partitioned');
SELECT pg_temp.trap_ok($$SELECT pgmq.create('sp_q')$$, 'create of an existing queue');
SELECT results_eq($$SELECT queue_name::text, is_unlogged FROM pgmq.meta WHERE queue_name LIKE 'sp\_%' ORDER BY 1$$,
                  $$VALUES ('sp_np', false), ('sp_q', false), ('sp_unl', true)$$, 'the queues are registered');
SELECT is((SELECT format_type(a.atttypid, a.atttypmod) || ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)
           FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = to_regclass('pgmq.q_sp_q') AND a.attname = 'enqueued_at'),
          'timestamp with time zone DEFAULT now()',
          'q_<n>.enqueued_at defaults to pg_catalog.now(), not to the trap''s now()');
SELECT pg_temp.trap_is($$SELECT pgmq._belongs_to_pgmq('q_sp_q')$$, 'false', '_belongs_to_pgmq');
SELECT pg_temp.trap_is($$SELECT pgmq._extension_exists('plpgsql')$$, 'true', '_extension_exists');
SELECT pg_temp.trap_is($$SELECT pgmq.format_table_name('Sp_Q', 'q')$$, 'q_sp_q', 'format_table_name');
SELECT pg_temp.trap_throws($$SELECT pgmq.format_table_name('sp;q', 'q')$$, 'P0001',
                           'queue name contains invalid characters: $, ;, --, or \''', 'format_table_name: invalid characters');
SELECT pg_temp.trap_throws($$SELECT pgmq.create(pg_catalog.repeat('é', 24))$$, '42622',
                           'queue name is too long, maximum length is 47 bytes', 'create: 24 characters, 48 bytes');
SELECT pg_temp.trap_throws($$SELECT pgmq.create(pg_catalog.repeat('x', 48))$$, 'P0001',
                           'queue name is too long, maximum length is 47 characters', 'create: 48 characters');
SELECT pg_temp.trap_ok($$SELECT pgmq.create_fifo_index('sp_q')$$, 'create_fifo_index');
SELECT pg_temp.trap_ok($$SELECT pgmq.create_fifo_indexes_all()$$, 'create_fifo_indexes_all');

---------------------------------------------------------------------------------------------------
-- Sending
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"n": 1}') OPERATOR(pg_catalog.>) 0$$, 'true', 'send(queue, msg)');
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"n": 2}', 0) OPERATOR(pg_catalog.>) 0$$, 'true', 'send(queue, msg, delay integer)');
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"n": 3}', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.>) 0$$, 'true',
                       'send(queue, msg, delay timestamptz)');
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"n": 4}', '{"h": 1}'::pg_catalog.jsonb) OPERATOR(pg_catalog.>) 0$$, 'true',
                       'send(queue, msg, headers)');
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"n": 5}', '{"h": 1}', 0) OPERATOR(pg_catalog.>) 0$$, 'true',
                       'send(queue, msg, headers, delay integer)');
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"n": 6}', '{"h": 1}', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.>) 0$$,
                       'true', 'send(queue, msg, headers, delay timestamptz)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch('sp_q', '{"{\"b\": 1}","{\"b\": 2}"}')$$, '2',
                       'send_batch(queue, msgs)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch('sp_q', '{"{\"b\": 3}","{\"b\": 4}"}', 0)$$, '2',
                       'send_batch(queue, msgs, delay integer)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.send_batch('sp_q', '{"{\"b\": 5}","{\"b\": 6}"}', pg_catalog.clock_timestamp())$$, '2',
                       'send_batch(queue, msgs, delay timestamptz)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.send_batch('sp_q', '{"{\"b\": 7}","{\"b\": 8}"}', '{"{\"h\": 1}","{\"h\": 2}"}'::pg_catalog.jsonb[])$$,
                       '2', 'send_batch(queue, msgs, headers)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.send_batch('sp_q', '{"{\"b\": 9}","{\"b\": 10}"}', '{"{\"h\": 1}","{\"h\": 2}"}', 0)$$,
                       '2', 'send_batch(queue, msgs, headers, delay integer)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.send_batch('sp_q', '{"{\"b\": 11}","{\"b\": 12}"}', '{"{\"h\": 1}","{\"h\": 2}"}',
                                              pg_catalog.clock_timestamp())$$,
                       '2', 'send_batch(queue, msgs, headers, delay timestamptz)');
SELECT is(pg_temp.rows('pgmq.q_sp_q'), 18::bigint, '18 messages were sent');

---------------------------------------------------------------------------------------------------
-- Reading and acknowledging
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.read('sp_q', 30, 2)$$, '2', 'read');
SELECT pg_temp.trap_is($$SELECT r.message OPERATOR(pg_catalog.->>) 'n' FROM pgmq.read('sp_q', 30, 5, '{"n": 5}') r$$, '5',
                       'read with a conditional');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.read_with_poll('sp_q', 30, 2, 1)$$, '2',
                       'read_with_poll with messages at hand');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.read_with_poll('sp_np', 30, 1, 1, 100)$$, '0',
                       'read_with_poll on an empty queue (polls for 1 s)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.pop('sp_q')$$, '1', 'pop');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.pop('sp_q', 2)$$, '2', 'pop(queue, qty)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.set_vt('sp_q', (SELECT pg_catalog.min(msg_id) FROM pgmq.q_sp_q), 0)$$,
                       '1', 'set_vt(queue, msg_id, vt integer)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.set_vt('sp_q', (SELECT pg_catalog.max(msg_id) FROM pgmq.q_sp_q),
                                                                      pg_catalog.clock_timestamp())$$,
                       '1', 'set_vt(queue, msg_id, vt timestamptz)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.set_vt('sp_q', ARRAY(SELECT msg_id FROM pgmq.q_sp_q ORDER BY msg_id LIMIT 3), 0)$$,
                       '3', 'set_vt(queue, msg_ids, vt integer)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.set_vt('sp_q', ARRAY(SELECT msg_id FROM pgmq.q_sp_q ORDER BY msg_id LIMIT 3),
                                          pg_catalog.clock_timestamp())$$,
                       '3', 'set_vt(queue, msg_ids, vt timestamptz)');
SELECT pg_temp.trap_is($$SELECT pgmq.archive('sp_q', (SELECT pg_catalog.min(msg_id) FROM pgmq.q_sp_q))$$, 'true',
                       'archive(queue, msg_id)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.archive('sp_q', ARRAY(SELECT msg_id FROM pgmq.q_sp_q ORDER BY msg_id LIMIT 2))$$,
                       '2', 'archive(queue, msg_ids)');
SELECT pg_temp.trap_is($$SELECT pgmq.delete('sp_q', (SELECT pg_catalog.min(msg_id) FROM pgmq.q_sp_q))$$, 'true',
                       'delete(queue, msg_id)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.delete('sp_q', ARRAY(SELECT msg_id FROM pgmq.q_sp_q ORDER BY msg_id LIMIT 2))$$,
                       '2', 'delete(queue, msg_ids)');
SELECT is(pg_temp.rows('pgmq.q_sp_q'), 9::bigint, '3 popped, 3 archived, 3 deleted: 9 messages left');
SELECT is(pg_temp.rows('pgmq.a_sp_q'), 3::bigint, '3 messages archived');

---------------------------------------------------------------------------------------------------
-- Observability
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_is($$SELECT m.queue_length FROM pgmq.metrics('sp_q') m$$, '9', 'metrics');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.metrics_all() m WHERE m.queue_name OPERATOR(pg_catalog.~) '^sp_'$$,
                       '3', 'metrics_all');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.list_queues() q WHERE q.queue_name OPERATOR(pg_catalog.~) '^sp_'$$,
                       '3', 'list_queues');

---------------------------------------------------------------------------------------------------
-- FIFO / grouped reads
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_ok($$SELECT pgmq.create('sp_fifo')$$, 'create a FIFO queue');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.send_batch('sp_fifo', '{"{\"i\": 1}","{\"i\": 2}","{\"i\": 3}","{\"i\": 4}","{\"i\": 5}","{\"i\": 6}"}',
                                              '{"{\"x-pgmq-group\": \"g1\"}","{\"x-pgmq-group\": \"g1\"}",
                                                "{\"x-pgmq-group\": \"g2\"}","{\"x-pgmq-group\": \"g2\"}",
                                                "{}","{}"}'::pg_catalog.jsonb[])$$,
                       '6', 'six messages in three groups');
SELECT pg_temp.trap_is($$SELECT pg_catalog.string_agg(r.message OPERATOR(pg_catalog.->>) 'i', ',' ORDER BY r.msg_id)
                         FROM pgmq.read_grouped('sp_fifo', 30, 2) r$$, '1,2', 'read_grouped fills from the oldest group');
SELECT pg_temp.trap_is($$SELECT pg_catalog.string_agg(r.message OPERATOR(pg_catalog.->>) 'i', ',' ORDER BY r.msg_id)
                         FROM pgmq.read_grouped_rr('sp_fifo', 30, 2) r$$, '3,5', 'read_grouped_rr takes one of each open group');
SELECT pg_temp.trap_is($$SELECT pg_catalog.string_agg(r.message OPERATOR(pg_catalog.->>) 'i', ',' ORDER BY r.msg_id)
                         FROM pgmq.read_grouped_head('sp_fifo', 30, 2) r$$, NULL, 'read_grouped_head: every head is taken');
SELECT pg_temp.trap_ok($$SELECT pg_catalog.count(*) FROM pgmq.send_batch('sp_fifo', '{"{\"i\": 7}","{\"i\": 8}","{\"i\": 9}"}',
                                                                         '{"{\"x-pgmq-group\": \"g3\"}","{\"x-pgmq-group\": \"g4\"}",
                                                                           "{\"x-pgmq-group\": \"g5\"}"}'::pg_catalog.jsonb[])$$,
                       'three more groups');
SELECT pg_temp.trap_is($$SELECT r.message OPERATOR(pg_catalog.->>) 'i' FROM pgmq.read_grouped_with_poll('sp_fifo', 30, 1, 1, 100) r$$,
                       '7', 'read_grouped_with_poll');
SELECT pg_temp.trap_is($$SELECT r.message OPERATOR(pg_catalog.->>) 'i' FROM pgmq.read_grouped_rr_with_poll('sp_fifo', 30, 1, 1, 100) r$$,
                       '8', 'read_grouped_rr_with_poll');
SELECT pg_temp.trap_is($$SELECT r.message OPERATOR(pg_catalog.->>) 'i' FROM pgmq.read_grouped_head_with_poll('sp_fifo', 30, 1, 1, 100) r$$,
                       '9', 'read_grouped_head_with_poll');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.read_grouped_with_poll('sp_fifo', 30, 1, 1, 100)$$, '0',
                       'read_grouped_with_poll with nothing visible (polls for 1 s)');

---------------------------------------------------------------------------------------------------
-- Insert notifications
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_ok($$SELECT pgmq.enable_notify_insert('sp_q', 0)$$, 'enable_notify_insert');
SELECT pg_temp.trap_is($$SELECT pgmq.send('sp_q', '{"notify": true}') OPERATOR(pg_catalog.>) 0$$, 'true',
                       'send fires the notify trigger (throttle 0)');
SELECT ok((SELECT last_notified_at > to_timestamp(0) FROM pgmq.notify_insert_throttle WHERE queue_name = 'sp_q'),
          'the trigger notified');
SELECT pg_temp.trap_ok($$SELECT pgmq.update_notify_insert('sp_q', 60000)$$, 'update_notify_insert');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch('sp_q', '{"{}","{}"}')$$, '2',
                       'send_batch fires the notify trigger (throttled)');
SELECT pg_temp.trap_is($$SELECT t.throttle_interval_ms FROM pgmq.list_notify_insert_throttles() t
                         WHERE t.queue_name OPERATOR(pg_catalog.=) 'sp_q'$$, '60000', 'list_notify_insert_throttles');
SELECT pg_temp.trap_ok($$SELECT pgmq.disable_notify_insert('sp_q')$$, 'disable_notify_insert');

---------------------------------------------------------------------------------------------------
-- Topics
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_ok($$SELECT pgmq.bind_topic('sp.*', 'sp_q')$$, 'bind_topic');
SELECT pg_temp.trap_ok($$SELECT pgmq.bind_topic('sp.#', 'sp_unl')$$, 'bind_topic, second queue');
SELECT pg_temp.trap_is($$SELECT pg_catalog.string_agg(t.queue_name, ',' ORDER BY t.queue_name) FROM pgmq.test_routing('sp.x') t$$,
                       'sp_q,sp_unl', 'test_routing');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.list_topic_bindings() b WHERE b.pattern OPERATOR(pg_catalog.~~) 'sp.%'$$,
                       '2', 'list_topic_bindings()');
SELECT pg_temp.trap_is($$SELECT b.pattern FROM pgmq.list_topic_bindings('sp_q') b$$, 'sp.*', 'list_topic_bindings(queue)');
SELECT pg_temp.trap_is($$SELECT pgmq.send_topic('sp.x', '{"t": 1}')$$, '2', 'send_topic(key, msg)');
SELECT pg_temp.trap_is($$SELECT pgmq.send_topic('sp.x', '{"t": 2}', 0)$$, '2', 'send_topic(key, msg, delay)');
SELECT pg_temp.trap_is($$SELECT pgmq.send_topic('sp.x', '{"t": 3}', '{"h": 1}', 0)$$, '2', 'send_topic(key, msg, headers, delay)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch_topic('sp.x', '{"{}","{}"}')$$, '4',
                       'send_batch_topic(key, msgs)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch_topic('sp.x', '{"{}","{}"}', '{"{}","{}"}'::pg_catalog.jsonb[])$$,
                       '4', 'send_batch_topic(key, msgs, headers)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch_topic('sp.x', '{"{}","{}"}', 0)$$, '4',
                       'send_batch_topic(key, msgs, delay integer)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch_topic('sp.x', '{"{}","{}"}', pg_catalog.clock_timestamp())$$,
                       '4', 'send_batch_topic(key, msgs, delay timestamptz)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.send_batch_topic('sp.x', '{"{}","{}"}', '{"{}","{}"}', 0)$$, '4',
                       'send_batch_topic(key, msgs, headers, delay integer)');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*)
                         FROM pgmq.send_batch_topic('sp.x', '{"{}","{}"}', '{"{}","{}"}', pg_catalog.clock_timestamp())$$,
                       '4', 'send_batch_topic(key, msgs, headers, delay timestamptz)');
SELECT pg_temp.trap_throws($$SELECT pgmq.send_topic('sp..x', '{}')$$, 'P0001',
                           'routing_key cannot contain consecutive dots. Got: sp..x', 'send_topic: every key check runs');
SELECT pg_temp.trap_throws($$SELECT pgmq.bind_topic('sp.*#', 'sp_q')$$, 'P0001',
                           'pattern cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: sp.*#',
                           'bind_topic: every pattern check runs');
SELECT pg_temp.trap_throws($$SELECT pgmq.send_batch_topic('sp.x', '{"{}","{}"}', '{"{}"}'::pg_catalog.jsonb[])$$, 'P0001',
                           'headers array length (1) must match msgs array length (2)', 'send_batch_topic: batch checks');
SELECT pg_temp.trap_is($$SELECT pgmq.unbind_topic('sp.*', 'sp_q')$$, 'true', 'unbind_topic');
SELECT pg_temp.trap_is($$SELECT pgmq.unbind_topic('sp.*', 'sp_q')$$, 'false', 'unbind_topic of a missing binding');

---------------------------------------------------------------------------------------------------
-- Partitioned queues (pg_partman is not installed: the checks before it run)
---------------------------------------------------------------------------------------------------
SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_partman')
            THEN skip('pg_partman is installed', 3)
            ELSE pg_temp.trap_throws($$SELECT pgmq.create_partitioned('sp_part')$$, 'P0001',
                                     'pg_partman is required for partitioned queues', 'create_partitioned')
                 || E'\n' || pg_temp.trap_throws($$SELECT pgmq.convert_archive_partitioned('sp_q')$$, 'P0001',
                                                 'pg_partman is required for partitioned queues', 'convert_archive_partitioned')
                 || E'\n' || pg_temp.trap_is($$SELECT pgmq._get_pg_partman_major_version() IS NULL
                                                  AND pgmq._get_pg_partman_schema() IS NULL$$, 'true',
                                             '_get_pg_partman_major_version, _get_pg_partman_schema')
       END;

---------------------------------------------------------------------------------------------------
-- Purge, detach, drop
---------------------------------------------------------------------------------------------------
SELECT pg_temp.trap_is($$SELECT pgmq.purge_queue('sp_unl')$$, '15', 'purge_queue (3 send_topic + 6 send_batch_topic x 2)');
SELECT is(pg_temp.rows('pgmq.q_sp_unl'), 0::bigint, 'purge_queue emptied the queue');
SELECT pg_temp.trap_ok($$SELECT pgmq.detach_archive('sp_q')$$, 'detach_archive');
SELECT pg_temp.trap_is($$SELECT pgmq.drop_queue('sp_np', false)$$, 'true', 'drop_queue(queue, partitioned)');
SELECT pg_temp.trap_is($$SELECT pgmq.drop_queue('sp_unl')$$, 'true', 'drop_queue');
SELECT pg_temp.trap_is($$SELECT pgmq.drop_queue('sp_missing')$$, 'false', 'drop_queue of a missing queue');

---------------------------------------------------------------------------------------------------
-- A pgflow workflow: a single step, then a map step over its output
---------------------------------------------------------------------------------------------------
INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
VALUES ('00000000-0000-0000-0000-0000000012aa', 'sp_flow', 'sp-worker');
-- The message ids of the queued tasks of a run.
CREATE FUNCTION pg_temp.queued(run uuid) RETURNS text LANGUAGE sql AS $$
    SELECT array_agg(message_id ORDER BY message_id)::text FROM pgflow.step_tasks WHERE run_id = run AND status = 'queued'
$$;

SELECT pg_temp.trap_ok($$SELECT pgflow.create_flow('sp_flow', 2, 0, 60)$$, 'pgflow.create_flow');
SELECT pg_temp.trap_ok($$SELECT pgflow.add_step('sp_flow', 'first')$$, 'pgflow.add_step (single)');
SELECT pg_temp.trap_ok($$SELECT pgflow.add_step('sp_flow', 'each', ARRAY['first'], step_type => 'map')$$,
                       'pgflow.add_step (map step with a dependency)');
SELECT pg_temp.trap_is($$SELECT r.status FROM pgflow.start_flow('sp_flow', '{"n": 3}', '00000000-0000-0000-0000-000000001201') r$$,
                       'started', 'pgflow.start_flow');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.read_with_poll('sp_flow', 30, 10, 1)$$, '1',
                       'pgmq.read_with_poll on the flow''s queue');
SELECT pg_temp.trap_is(format($$SELECT pg_catalog.count(*) FROM pgflow.start_tasks('sp_flow', %L, '00000000-0000-0000-0000-0000000012aa')$$,
                              pg_temp.queued('00000000-0000-0000-0000-000000001201')),
                       '1', 'pgflow.start_tasks');
SELECT pg_temp.trap_is($$SELECT t.status FROM pgflow.fail_task('00000000-0000-0000-0000-000000001201', 'first', 0, 'boom') t$$,
                       'queued', 'pgflow.fail_task (retried)');
SELECT pg_temp.trap_is(format($$SELECT pg_catalog.count(*) FROM pgflow.start_tasks('sp_flow', %L, '00000000-0000-0000-0000-0000000012aa')$$,
                              pg_temp.queued('00000000-0000-0000-0000-000000001201')),
                       '1', 'pgflow.start_tasks (second attempt)');
SELECT pg_temp.trap_is($$SELECT t.status FROM pgflow.complete_task('00000000-0000-0000-0000-000000001201', 'first', 0, '[1, 2, 3]') t$$,
                       'completed', 'pgflow.complete_task');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgmq.read_with_poll('sp_flow', 30, 10, 1)$$, '3',
                       'the map step''s three tasks are queued');
SELECT pg_temp.trap_is(format($$SELECT pg_catalog.count(*) FROM pgflow.start_tasks('sp_flow', %L, '00000000-0000-0000-0000-0000000012aa')$$,
                              pg_temp.queued('00000000-0000-0000-0000-000000001201')),
                       '3', 'pgflow.start_tasks (map tasks)');
SELECT pg_temp.trap_is(format($$SELECT t.status FROM pgflow.complete_task('00000000-0000-0000-0000-000000001201', 'each', %s, '%s') t$$,
                              i, i * 10),
                       'completed', format('pgflow.complete_task (map task %s)', i))
FROM generate_series(0, 2) i;
SELECT pg_temp.trap_is($$SELECT pgflow.get_run_with_states('00000000-0000-0000-0000-000000001201') OPERATOR(pg_catalog.#>>) '{run,output}'$$,
                       '{"each": [0, 10, 20]}', 'pgflow.get_run_with_states: the run completed');
SELECT pg_temp.trap_is($$SELECT pgflow.start_flow_with_states('sp_flow', '{}', '00000000-0000-0000-0000-000000001202')
                                OPERATOR(pg_catalog.#>>) '{run,status}'$$,
                       'started', 'pgflow.start_flow_with_states');
SELECT pg_temp.trap_is(format($$SELECT pg_catalog.count(*) FROM pgflow.set_vt_batch('sp_flow', %L, '{0}')$$,
                              pg_temp.queued('00000000-0000-0000-0000-000000001202')),
                       '1', 'pgflow.set_vt_batch');
SELECT pg_temp.trap_throws($$SELECT pgflow.set_vt_batch('sp_flow', '{1}', '{}')$$, 'P0001',
                           'msg_ids length (1) must equal vt_offsets length (<NULL>)', 'pgflow.set_vt_batch: length check');
SELECT pg_temp.trap_ok($$SELECT pgflow.track_worker_function('sp-worker')$$, 'pgflow.track_worker_function');
SELECT pg_temp.trap_ok($$SELECT pgflow.mark_worker_stopped('00000000-0000-0000-0000-0000000012aa')$$, 'pgflow.mark_worker_stopped');
SELECT pg_temp.trap_is($$SELECT pg_catalog.count(*) FROM pgflow.ensure_workers()$$, '0', 'pgflow.ensure_workers (no pg_net)');
SELECT pg_temp.trap_ok($$SELECT pgflow.prune_data_older_than('1 day')$$, 'pgflow.prune_data_older_than');
-- The two Rust functions the contract gives no search_path: they run their statements with ''.
SELECT pg_temp.trap_is($$SELECT pgflow.cascade_complete_taskless_steps('00000000-0000-0000-0000-000000001202')$$, '0',
                       'pgflow.cascade_complete_taskless_steps');
SELECT pg_temp.trap_is($$SELECT pgflow._cascade_force_skip_steps('00000000-0000-0000-0000-000000001202', 'first', 'condition_unmet')$$,
                       '2', 'pgflow._cascade_force_skip_steps (the step and its dependent)');
SELECT pg_temp.trap_ok($$SELECT pgflow.delete_flow_and_data('sp_flow')$$, 'pgflow.delete_flow_and_data');
SELECT is((SELECT count(*) FROM pgmq.meta WHERE queue_name = 'sp_flow'), 0::bigint, 'the flow and its queue are gone');

SELECT is(current_setting('search_path'), (SELECT path FROM caller_path),
          'the caller''s search_path is back after every trapped call');

SELECT * FROM finish();
ROLLBACK;
