-- Queue names: format_table_name, validate_queue_name, the 47-character
-- limit, the invalid-character check of every per-queue function, and SQL injection attempts
-- through hostile queue names.
BEGIN;
SELECT plan(152);
SET LOCAL client_min_messages = error;

CREATE FUNCTION pg_temp.invalid_chars() RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'queue name contains invalid characters: $, ;, --, or \''' $$;

-- The shape of this database outside temporary schemas (shared catalogs such as pg_database are
-- left out: other sessions of the cluster may change them meanwhile).
CREATE FUNCTION pg_temp.catalog_state() RETURNS TABLE(kind text, name text) LANGUAGE sql AS $$
    SELECT 'rel:' || c.relkind::text, n.nspname || '.' || c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname !~ '^pg_(temp|toast)'
    UNION ALL SELECT 'proc', p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace::regnamespace::text !~ '^pg_temp'
    UNION ALL SELECT 'schema', nspname::text FROM pg_namespace WHERE nspname !~ '^pg_(temp|toast_temp)'
    UNION ALL SELECT 'type', t.oid::regtype::text FROM pg_type t WHERE t.typnamespace::regnamespace::text !~ '^pg_(temp|toast)'
    UNION ALL SELECT 'constraint', c.conrelid::regclass || '.' || c.conname FROM pg_constraint c
        WHERE c.connamespace::regnamespace::text !~ '^pg_(temp|toast)'
    UNION ALL SELECT 'trigger', tgrelid::regclass || '.' || tgname FROM pg_trigger
    UNION ALL SELECT 'meta', queue_name::text FROM pgmq.meta
$$;
CREATE TEMP TABLE state_before AS SELECT * FROM pg_temp.catalog_state();

---------------------------------------------------------------------------------------------------
-- format_table_name
---------------------------------------------------------------------------------------------------
SELECT is(pgmq.format_table_name('Foo-Bar', 'q'), 'q_foo-bar', 'format_table_name(Foo-Bar, q) = q_foo-bar');
SELECT is(pgmq.format_table_name('Foo-Bar', 'a'), 'a_foo-bar', 'format_table_name(Foo-Bar, a) = a_foo-bar');
SELECT is(pgmq.format_table_name('My Queue.v2', 'Q'), 'q_my queue.v2', 'spaces and dots are accepted; prefix is lower-cased too');
SELECT is(pgmq.format_table_name('', 'q'), 'q_', 'the empty name gives q_');
SELECT is(pgmq.format_table_name(NULL, 'q'), NULL, 'NULL name gives NULL');
SELECT is(pgmq.format_table_name('a-b - c-', 'q'), 'q_a-b - c-', 'single hyphens are accepted');
SELECT is(pgmq.format_table_name('ÄÖÜ-Ω', 'q'), 'q_äöü-ω', 'non-ASCII letters are lower-cased');
SELECT throws_ok(format('SELECT pgmq.format_table_name(%L, %L)', n, 'q'), 'P0001', pg_temp.invalid_chars(),
                 'format_table_name rejects ' || to_json(n)::text)
FROM unnest(ARRAY['cost$', '$', 'a;b', ';', 'a--b', '--', '---', 'it''s', '''', 'x"--']) AS n;
SELECT is(pg_temp.invalid_chars(), E'queue name contains invalid characters: $, ;, --, or \\''',
          'the message ends with a backslash and a quote');

---------------------------------------------------------------------------------------------------
-- validate_queue_name and the 47-character limit
---------------------------------------------------------------------------------------------------
SELECT lives_ok(format('SELECT pgmq.validate_queue_name(%L)', repeat('n', 47)), 'validate_queue_name: 47 characters pass');
SELECT is(pgmq.validate_queue_name(repeat('n', 47))::text, '', 'validate_queue_name returns void');
SELECT throws_ok(format('SELECT pgmq.validate_queue_name(%L)', repeat('n', 48)), 'P0001',
                 'queue name is too long, maximum length is 47 characters', 'validate_queue_name: 48 characters fail');
SELECT lives_ok('SELECT pgmq.validate_queue_name(NULL)', 'validate_queue_name(NULL) passes');
SELECT lives_ok(format('SELECT pgmq.validate_queue_name(%L)', repeat('é', 47)), 'the limit counts characters, not bytes');
SELECT throws_ok(format('SELECT pgmq.validate_queue_name(%L)', repeat('é', 48)), 'P0001',
                 'queue name is too long, maximum length is 47 characters', '48 multibyte characters fail');
SELECT lives_ok($$SELECT pgmq.validate_queue_name('a;b')$$, 'validate_queue_name checks only the length');

SELECT lives_ok(format('SELECT pgmq.create(%L)', repeat('L', 47)), 'create with a 47-character name');
SELECT set_eq(format($$SELECT relname::text COLLATE "default" FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relname LIKE %L$$,
                     '%' || repeat('l', 47) || '%'),
              ARRAY['q_' || repeat('l', 47), 'a_' || repeat('l', 47), 'q_' || repeat('l', 47) || '_pkey',
                    'a_' || repeat('l', 47) || '_pkey', 'q_' || repeat('l', 47) || '_vt_idx',
                    'q_' || repeat('l', 47) || '_msg_id_seq'],
              'a 47-character name gets untruncated object names');
SELECT ok(EXISTS (SELECT 1 FROM pg_class WHERE relname = 'archived_at_idx_' || repeat('L', 47)),
          'archived_at_idx_<47 characters> fits in 63 bytes untruncated');
SELECT results_eq(format('SELECT total_messages FROM pgmq.metrics(%L)', repeat('L', 47)), ARRAY[0::bigint],
                  'a 47-character queue works (metrics finds its sequence)');
SELECT is(pgmq.drop_queue(repeat('L', 47)), true, 'and can be dropped');
SELECT throws_ok(format('SELECT pgmq.%s(%L)', f, repeat('n', 48)), 'P0001',
                 'queue name is too long, maximum length is 47 characters', f || ' rejects a 48-character name')
FROM unnest(ARRAY['create', 'create_non_partitioned', 'create_unlogged', 'create_partitioned']) AS f;
SELECT throws_ok(format('SELECT pgmq.create(%L)', repeat('n', 47) || ';'), 'P0001', pg_temp.invalid_chars(),
                 'create: the invalid-character check comes before the length check');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_class WHERE relname LIKE '%nnnnnnnnnn%'), 'rejected names created nothing');

---------------------------------------------------------------------------------------------------
-- Every per-queue function rejects an injection attempt before building any statement
---------------------------------------------------------------------------------------------------
SELECT throws_ok(format(sql, 'x"; drop table pgmq.meta; --'), 'P0001', pg_temp.invalid_chars(),
                 split_part(sql, '(', 1) || ' rejects x"; drop table pgmq.meta; -- (' || what || ')')
FROM (VALUES
    ('SELECT pgmq.create(%L)', '1'),
    ('SELECT pgmq.create_non_partitioned(%L)', '1'),
    ('SELECT pgmq.create_unlogged(%L)', '1'),
    ('SELECT pgmq.create_partitioned(%L)', '1'),
    ('SELECT pgmq.convert_archive_partitioned(%L)', '1'),
    ('SELECT pgmq.drop_queue(%L)', 'text'),
    ('SELECT pgmq.drop_queue(%L, false)', 'text, boolean'),
    ('SELECT pgmq.purge_queue(%L)', '1'),
    ('SELECT pgmq.detach_archive(%L)', '1'),
    ($$SELECT pgmq.send(%L, '{}'::jsonb)$$, 'msg'),
    ($$SELECT pgmq.send(%L, '{}'::jsonb, '{}'::jsonb)$$, 'msg, headers'),
    ($$SELECT pgmq.send(%L, '{}'::jsonb, 1)$$, 'msg, delay integer'),
    ($$SELECT pgmq.send(%L, '{}'::jsonb, now())$$, 'msg, delay timestamptz'),
    ($$SELECT pgmq.send(%L, '{}'::jsonb, '{}'::jsonb, 1)$$, 'msg, headers, delay integer'),
    ($$SELECT pgmq.send(%L, '{}'::jsonb, '{}'::jsonb, now())$$, 'msg, headers, delay timestamptz'),
    ($$SELECT pgmq.send_batch(%L, ARRAY['{}'::jsonb])$$, 'msgs'),
    ($$SELECT pgmq.send_batch(%L, ARRAY['{}'::jsonb], ARRAY['{}'::jsonb])$$, 'msgs, headers'),
    ($$SELECT pgmq.send_batch(%L, ARRAY['{}'::jsonb], 1)$$, 'msgs, delay integer'),
    ($$SELECT pgmq.send_batch(%L, ARRAY['{}'::jsonb], now())$$, 'msgs, delay timestamptz'),
    ($$SELECT pgmq.send_batch(%L, ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], 1)$$, 'msgs, headers, delay integer'),
    ($$SELECT pgmq.send_batch(%L, ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], now())$$, 'msgs, headers, delay timestamptz'),
    ($$SELECT pgmq._send_batch(%L, ARRAY['{}'::jsonb], NULL, now())$$, 'internal'),
    ('SELECT pgmq.read(%L, 30, 1)', 'defaults'),
    ($$SELECT pgmq.read(%L, 30, 1, '{"a":1}')$$, 'conditional'),
    ('SELECT pgmq.read_with_poll(%L, 30, 1)', 'defaults'),
    ('SELECT pgmq.read_with_poll(%L, 30, 1, 1, 10)', 'max_poll_seconds 1'),
    ('SELECT pgmq.pop(%L)', 'default qty'),
    ('SELECT pgmq.pop(%L, 5)', 'qty'),
    ('SELECT pgmq.read_grouped(%L, 30, 1)', '3'),
    ('SELECT pgmq.read_grouped_rr(%L, 30, 1)', '3'),
    ('SELECT pgmq.read_grouped_head(%L, 30, 1)', '3'),
    ('SELECT pgmq.read_grouped_with_poll(%L, 30, 1, 1, 10)', '5'),
    ('SELECT pgmq.read_grouped_rr_with_poll(%L, 30, 1, 1, 10)', '5'),
    ('SELECT pgmq.read_grouped_head_with_poll(%L, 30, 1, 1, 10)', '5'),
    ('SELECT pgmq.create_fifo_index(%L)', '1'),
    ('SELECT pgmq._create_fifo_index_if_not_exists(%L)', 'internal'),
    ('SELECT pgmq.archive(%L, 1::bigint)', 'msg_id'),
    ('SELECT pgmq.archive(%L, ARRAY[1::bigint])', 'msg_ids'),
    ('SELECT pgmq.delete(%L, 1::bigint)', 'msg_id'),
    ('SELECT pgmq.delete(%L, ARRAY[1::bigint])', 'msg_ids'),
    ('SELECT pgmq.set_vt(%L, 1::bigint, 5)', 'msg_id, integer'),
    ('SELECT pgmq.set_vt(%L, 1::bigint, now())', 'msg_id, timestamptz'),
    ('SELECT pgmq.set_vt(%L, ARRAY[1::bigint], 5)', 'msg_ids, integer'),
    ('SELECT pgmq.set_vt(%L, ARRAY[1::bigint], now())', 'msg_ids, timestamptz'),
    ('SELECT pgmq.metrics(%L)', '1'),
    ('SELECT pgmq.enable_notify_insert(%L)', 'default interval'),
    ('SELECT pgmq.enable_notify_insert(%L, 0)', 'interval'),
    ('SELECT pgmq.disable_notify_insert(%L)', '1')
) AS t(sql, what);

-- Functions that only compare the name with meta take it as a value.
SELECT throws_ok($$SELECT pgmq.update_notify_insert('x"; drop table pgmq.meta; --', 10)$$, 'P0001',
                 'Queue "x"; drop table pgmq.meta; --" does not exist. Create the queue first using pgmq.create()',
                 'update_notify_insert treats a hostile name as an unknown queue');
SELECT throws_ok($$SELECT pgmq.bind_topic('a.b', 'x''); drop table pgmq.meta; --')$$, 'P0001',
                 'Queue "x''); drop table pgmq.meta; --" does not exist. Create the queue first using pgmq.create()',
                 'bind_topic treats a hostile name as an unknown queue');
SELECT is(pgmq.unbind_topic('a.b', 'x''); drop table pgmq.meta; --'), false, 'unbind_topic with a hostile name: false');
SELECT is_empty($$SELECT * FROM pgmq.list_topic_bindings('x''); drop table pgmq.meta; --')$$,
                'list_topic_bindings with a hostile name: empty');

-- Rejected names of every flavour, for create.
SELECT throws_ok(format('SELECT pgmq.create(%L)', n), 'P0001', pg_temp.invalid_chars(), 'create rejects ' || to_json(n)::text)
FROM unnest(ARRAY['x"; drop table pgmq.meta; --', 'x''; drop table pgmq.meta; --', 'Robert''); DROP TABLE pgmq.meta;--',
                  '$1', '$$', 'a--', '''', E'a;\nb', 'q$$; SELECT pg_sleep(10); $$']) AS n;

---------------------------------------------------------------------------------------------------
-- Hostile but accepted names: a correctly quoted table, and nothing else happens
---------------------------------------------------------------------------------------------------
CREATE TEMP TABLE hostile (n text);
INSERT INTO hostile VALUES
    ('x" drop table pgmq.meta'), ('a"b'), ('"'), ('back\slash'), ('\'), ('%I%s%L%%'), ('Ünïcödé-队列-🚀'),
    ('with space'), (' '), ('a.b'), ('pgmq.meta'), ('meta'), ('*/ select 1 /*'), (E'new\nline\ttab'),
    ('x) OR (1=1'), ('MiXeD'), ('q_x'), ('-'), ('null'), ('a/b'), ('[a]{b}(c)'), ('"q_x"');

-- Everything a hostile-named queue should survive; returns what it saw.
CREATE FUNCTION pg_temp.round_trip(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    seen text[] := '{}';
    v text;
BEGIN
    seen := seen || (SELECT string_agg(i::text, ',') FROM pgmq.send(q, '{"n":1}') i);
    seen := seen || (SELECT string_agg(i::text, ',') FROM pgmq.send_batch(q, ARRAY['{"n":2}', '{"n":3}']::jsonb[]) i);
    seen := seen || (SELECT string_agg(r.msg_id || ':' || r.message::text, ',') FROM pgmq.read(q, 30, 1) r);
    seen := seen || (SELECT count(*)::text FROM pgmq.set_vt(q, 1::bigint, -1));
    seen := seen || (SELECT string_agg(r.msg_id::text, ',') FROM pgmq.read_grouped_rr(q, 30, 1) r);
    seen := seen || (SELECT string_agg(r.msg_id::text, ',') FROM pgmq.pop(q) r);
    seen := seen || pgmq.archive(q, 1::bigint)::text;
    EXECUTE format('SELECT string_agg(msg_id::text, %L) FROM pgmq.%I', ',', pgmq.format_table_name(q, 'a')) INTO v;
    seen := seen || v;
    seen := seen || pgmq.delete(q, 3::bigint)::text;
    PERFORM pgmq.bind_topic('hostile.key', q);
    seen := seen || pgmq.send_topic('hostile.key', '{"n":4}')::text;
    PERFORM pgmq.unbind_topic('hostile.key', q);
    PERFORM pgmq.enable_notify_insert(q, 0);
    PERFORM pgmq.send(q, '{"n":5}');
    seen := seen || (SELECT (last_notified_at > to_timestamp(0))::text FROM pgmq.notify_insert_throttle WHERE queue_name = q);
    PERFORM pgmq.disable_notify_insert(q);
    PERFORM pgmq.create_fifo_index(q);
    seen := seen || (SELECT m.queue_name || '|' || m.queue_length || '|' || m.total_messages FROM pgmq.metrics(q) m);
    seen := seen || pgmq.purge_queue(q)::text;
    seen := seen || pgmq.drop_queue(q)::text;
    RETURN array_to_string(seen, ' ');
END;
$$;

SELECT lives_ok(format('SELECT pgmq.create(%L)', n), 'create accepts ' || to_json(n)::text) FROM hostile;
SELECT set_eq(
    'SELECT kind, name FROM pg_temp.catalog_state() EXCEPT SELECT kind, name FROM state_before',
    $$SELECT k, 'pgmq.' || rel FROM hostile,
        LATERAL (VALUES ('rel:r', 'q_' || lower(n)), ('rel:r', 'a_' || lower(n)), ('rel:i', 'q_' || lower(n) || '_pkey'),
                        ('rel:i', 'a_' || lower(n) || '_pkey'), ('rel:i', 'q_' || lower(n) || '_vt_idx'),
                        ('rel:i', 'archived_at_idx_' || n), ('rel:S', 'q_' || lower(n) || '_msg_id_seq')) AS o(k, rel)
      UNION ALL SELECT k, format('pgmq.%I', rel) || suffix FROM hostile,
        LATERAL (VALUES ('q_' || lower(n)), ('a_' || lower(n))) AS r(rel),
        LATERAL (VALUES ('type', ''), ('type', '[]'), ('constraint', '.' || rel || '_pkey')) AS o(k, suffix)
      UNION ALL SELECT 'meta', n FROM hostile$$,
    'hostile names created exactly their quoted tables, indexes, sequences, row types, keys and meta rows, nothing else');
SELECT is_empty($$SELECT kind, name FROM state_before EXCEPT SELECT kind, name FROM pg_temp.catalog_state()$$,
                'nothing that existed before is gone (pgmq.meta included)');
SELECT ok(to_regclass('pgmq."q_a.b"') IS NOT NULL AND to_regnamespace('a') IS NULL,
          'a.b is a table name, not a schema-qualified name');
SELECT ok(to_regclass('pgmq.q_meta') IS NOT NULL AND to_regclass('pgmq.meta') IS NOT NULL,
          'queue "meta" lives beside the registry table');
SELECT is(pgmq.format_table_name(E'new\nline\ttab', 'q'), E'q_new\nline\ttab', 'control characters are kept in the name');

SELECT is(pg_temp.round_trip(n), '1 2,3 1:{"n": 1} 1 1 2 true 1 true 1 true ' || n || '|2|5 2 true',
          'round trip (send, send_batch, read, set_vt, read_grouped_rr, pop, archive, delete, send_topic, notify, '
          || 'fifo index, metrics, purge, drop) for ' || to_json(n)::text)
FROM hostile;
SELECT is_empty('SELECT kind, name FROM pg_temp.catalog_state() EXCEPT SELECT kind, name FROM state_before',
                'after dropping the hostile queues nothing new is left');
SELECT is_empty($$SELECT kind, name FROM state_before EXCEPT SELECT kind, name FROM pg_temp.catalog_state()$$,
                'and nothing that existed before is gone');

-- The same tables are reached through every spelling of a mixed-case name.
SELECT FROM pgmq.create('CaSeQ');
SELECT results_eq($$SELECT * FROM pgmq.send('CASEQ', '{"via": "CASEQ"}')$$, ARRAY[1::bigint], 'send through another spelling');
SELECT results_eq($$SELECT message FROM pgmq.read('caseq', 30, 5)$$, $$VALUES ('{"via": "CASEQ"}'::jsonb)$$,
                  'read through a third spelling sees the message in q_caseq');
SELECT is(pgmq.purge_queue('CaSeQ'), 1::bigint, 'purge through the stored spelling');
SELECT ok(to_regclass('pgmq.q_caseq') IS NOT NULL AND to_regclass('pgmq."q_CaSeQ"') IS NULL,
          'mixed-case name: only the lower-cased table exists');

SELECT * FROM finish();
ROLLBACK;
