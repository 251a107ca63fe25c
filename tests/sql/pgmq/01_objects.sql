-- pgmq objects: schema, registry tables, composite types, function signatures, per-queue
-- table layouts, privileges.
BEGIN;
SELECT plan(71);
SET LOCAL client_min_messages = error;

-- Columns of a relation or composite type in order: name, type, NOT NULL, default, identity, generated.
CREATE FUNCTION pg_temp.cols(rel regclass)
RETURNS TABLE(name text, type text, not_null boolean, col_default text, ident text, gen text)
LANGUAGE sql AS $$
    SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid), nullif(a.attidentity, '')::text, nullif(a.attgenerated, '')::text
    FROM pg_attribute a
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
$$;

CREATE FUNCTION pg_temp.type_fields(typ regtype)
RETURNS TABLE(name text, type text)
LANGUAGE sql AS $$
    SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
    FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
    WHERE t.oid = typ AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
$$;

-- Every function of schema pgmq as "name(arguments with defaults) -> result".
CREATE FUNCTION pg_temp.pgmq_functions()
RETURNS SETOF text LANGUAGE sql AS $$
    SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> ' || pg_get_function_result(p.oid)
    FROM pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace
$$;

-- set_has with the expected rows given as an array.
CREATE FUNCTION pg_temp.set_has(sql text, expected text[], description text) RETURNS text LANGUAGE sql AS $$
    SELECT public.set_has(sql, format('SELECT unnest(%L::text[])', expected), description)
$$;

-- Index definitions and constraint definitions of one table.
CREATE FUNCTION pg_temp.indexes(rel regclass) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = rel
$$;
CREATE FUNCTION pg_temp.constraints(rel regclass) RETURNS TABLE(name text, def text) LANGUAGE sql AS $$
    SELECT c.conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conrelid = rel
$$;

---------------------------------------------------------------------------------------------------
-- Section 0: schema and registry tables
---------------------------------------------------------------------------------------------------
SELECT has_schema('pgmq', 'schema pgmq exists');
SELECT has_table('pgmq', 'meta', 'table pgmq.meta exists');
SELECT has_table('pgmq', 'notify_insert_throttle', 'table pgmq.notify_insert_throttle exists');
SELECT has_table('pgmq', 'topic_bindings', 'table pgmq.topic_bindings exists');

SELECT results_eq(
    $$SELECT name, type, not_null, col_default, ident, gen FROM pg_temp.cols('pgmq.meta')$$,
    $$VALUES ('queue_name', 'character varying', true, NULL::text, NULL::text, NULL::text),
             ('is_partitioned', 'boolean', true, NULL, NULL, NULL),
             ('is_unlogged', 'boolean', true, NULL, NULL, NULL),
             ('created_at', 'timestamp with time zone', true, 'now()', NULL, NULL)$$,
    'meta: columns, order, types, NOT NULL and defaults');
SELECT set_eq($$SELECT name, def FROM pg_temp.constraints('pgmq.meta')$$,
              $$VALUES ('meta_queue_name_key', 'UNIQUE (queue_name)')$$,
              'meta: only constraint is meta_queue_name_key UNIQUE(queue_name)');
SELECT hasnt_pk('pgmq', 'meta', 'meta has no primary key');

SELECT results_eq(
    $$SELECT name, type, not_null, col_default, ident, gen FROM pg_temp.cols('pgmq.notify_insert_throttle')$$,
    $$VALUES ('queue_name', 'character varying', true, NULL::text, NULL::text, NULL::text),
             ('throttle_interval_ms', 'integer', true, '0', NULL, NULL),
             ('last_notified_at', 'timestamp with time zone', true, 'to_timestamp((0)::double precision)', NULL, NULL)$$,
    'notify_insert_throttle: columns, order, types, NOT NULL and defaults');
SELECT is((SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.notify_insert_throttle'::regclass),
          'u', 'notify_insert_throttle is UNLOGGED');
SELECT set_eq($$SELECT name, def FROM pg_temp.constraints('pgmq.notify_insert_throttle')$$,
              $$VALUES ('notify_insert_throttle_queue_name_key', 'UNIQUE (queue_name)'),
                       ('notify_insert_throttle_meta_queue_name_fk',
                        'FOREIGN KEY (queue_name) REFERENCES pgmq.meta(queue_name) ON DELETE CASCADE')$$,
              'notify_insert_throttle: unique key and cascading FK to meta');
SELECT set_eq($$SELECT * FROM pg_temp.indexes('pgmq.notify_insert_throttle')$$,
              ARRAY['CREATE UNIQUE INDEX notify_insert_throttle_queue_name_key ON pgmq.notify_insert_throttle USING btree (queue_name)',
                    'CREATE INDEX idx_notify_throttle_active ON pgmq.notify_insert_throttle USING btree (queue_name, last_notified_at) WHERE (throttle_interval_ms > 0)'],
              'notify_insert_throttle: indexes incl. partial idx_notify_throttle_active');

SELECT results_eq(
    $$SELECT name, type, not_null, ident, gen FROM pg_temp.cols('pgmq.topic_bindings')$$,
    $$VALUES ('pattern', 'text', true, NULL::text, NULL::text),
             ('queue_name', 'text', true, NULL, NULL),
             ('bound_at', 'timestamp with time zone', true, NULL, NULL),
             ('compiled_regex', 'text', false, NULL, 's')$$,
    'topic_bindings: columns, order, types; compiled_regex is GENERATED ... STORED');
SELECT col_default_is('pgmq', 'topic_bindings', 'bound_at', 'now()', 'topic_bindings.bound_at defaults to now()');
SELECT set_eq($$SELECT name, def FROM pg_temp.constraints('pgmq.topic_bindings')$$,
              $$VALUES ('topic_bindings_unique_pattern_queue', 'UNIQUE (pattern, queue_name)'),
                       ('topic_bindings_meta_queue_name_fk',
                        'FOREIGN KEY (queue_name) REFERENCES pgmq.meta(queue_name) ON DELETE CASCADE')$$,
              'topic_bindings: unique (pattern, queue_name) and cascading FK to meta');
SELECT set_eq($$SELECT * FROM pg_temp.indexes('pgmq.topic_bindings')$$,
              ARRAY['CREATE UNIQUE INDEX topic_bindings_unique_pattern_queue ON pgmq.topic_bindings USING btree (pattern, queue_name)',
                    'CREATE INDEX idx_topic_bindings_covering ON pgmq.topic_bindings USING btree (pattern) INCLUDE (queue_name, compiled_regex)'],
              'topic_bindings: indexes incl. covering idx_topic_bindings_covering');

SELECT pg_temp.set_has(
    $$SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'pgflow_core'$$,
    ARRAY['pgmq.meta', 'pgmq.notify_insert_throttle', 'pgmq.topic_bindings'],
    'meta, notify_insert_throttle and topic_bindings are extension configuration tables (dumped)');
SELECT is_empty($$SELECT c FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(t, c)
                  WHERE e.extname = 'pgflow_core' AND t::regclass::text LIKE 'pgmq.%' AND c <> ''$$,
                'their dump filter is empty (all rows are dumped)');
SELECT is((SELECT count(*)::int FROM pg_depend d
           WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
             AND d.objid IN ('pgmq.meta'::regclass, 'pgmq.notify_insert_throttle'::regclass, 'pgmq.topic_bindings'::regclass)),
          3, 'meta, notify_insert_throttle and topic_bindings are extension members');

---------------------------------------------------------------------------------------------------
-- Section 2.2: composite types
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT * FROM pg_temp.type_fields('pgmq.message_record')$$,
    $$VALUES ('msg_id', 'bigint'), ('read_ct', 'integer'), ('enqueued_at', 'timestamp with time zone'),
             ('last_read_at', 'timestamp with time zone'), ('vt', 'timestamp with time zone'),
             ('message', 'jsonb'), ('headers', 'jsonb')$$,
    'message_record: 7 fields, last_read_at between enqueued_at and vt');
SELECT results_eq($$SELECT * FROM pg_temp.type_fields('pgmq.queue_record')$$,
    $$VALUES ('queue_name', 'character varying'), ('is_partitioned', 'boolean'), ('is_unlogged', 'boolean'),
             ('created_at', 'timestamp with time zone')$$,
    'queue_record: fields and order');
SELECT results_eq($$SELECT * FROM pg_temp.type_fields('pgmq.metrics_result')$$,
    $$VALUES ('queue_name', 'text'), ('queue_length', 'bigint'), ('newest_msg_age_sec', 'integer'),
             ('oldest_msg_age_sec', 'integer'), ('total_messages', 'bigint'),
             ('scrape_time', 'timestamp with time zone'), ('queue_visible_length', 'bigint'),
             ('default_partition_length', 'bigint')$$,
    'metrics_result: 8 fields incl. default_partition_length');

---------------------------------------------------------------------------------------------------
-- Section 4: the 76 functions with exact parameter names, defaults and result types
---------------------------------------------------------------------------------------------------
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'format_table_name(queue_name text, prefix text) -> text',
    'validate_queue_name(queue_name text) -> void',
    'acquire_queue_lock(queue_name text) -> void',
    '_validate_batch_params(msgs jsonb[], headers jsonb[]) -> void',
    '_send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone) -> SETOF bigint',
    '_create_fifo_index_if_not_exists(queue_name text) -> void',
    'notify_queue_listeners() -> trigger',
    '_extension_exists(extension_name text) -> boolean',
    '_belongs_to_pgmq(table_name text) -> boolean',
    '_ensure_pg_partman_installed() -> void',
    '_get_partition_col(partition_interval text) -> text',
    '_get_pg_partman_major_version() -> integer',
    '_get_pg_partman_schema() -> text'],
    'names and internal helpers (sections 1, 2.6)');
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'create(queue_name text) -> void',
    'create_non_partitioned(queue_name text) -> void',
    'create_unlogged(queue_name text) -> void',
    'create_partitioned(queue_name text, partition_interval text DEFAULT ''10000''::text, retention_interval text DEFAULT ''100000''::text, premake integer DEFAULT 4) -> void',
    'convert_archive_partitioned(table_name text, partition_interval text DEFAULT ''10000''::text, retention_interval text DEFAULT ''100000''::text, leading_partition integer DEFAULT 10) -> void',
    'drop_queue(queue_name text) -> boolean',
    'drop_queue(queue_name text, partitioned boolean) -> boolean',
    'purge_queue(queue_name text) -> bigint',
    'detach_archive(queue_name text) -> void',
    'list_queues() -> SETOF pgmq.queue_record'],
    'queue management functions (4.1)');
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'send(queue_name text, msg jsonb) -> SETOF bigint',
    'send(queue_name text, msg jsonb, headers jsonb) -> SETOF bigint',
    'send(queue_name text, msg jsonb, delay integer) -> SETOF bigint',
    'send(queue_name text, msg jsonb, delay timestamp with time zone) -> SETOF bigint',
    'send(queue_name text, msg jsonb, headers jsonb, delay integer) -> SETOF bigint',
    'send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone) -> SETOF bigint',
    'send_batch(queue_name text, msgs jsonb[]) -> SETOF bigint',
    'send_batch(queue_name text, msgs jsonb[], headers jsonb[]) -> SETOF bigint',
    'send_batch(queue_name text, msgs jsonb[], delay integer) -> SETOF bigint',
    'send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone) -> SETOF bigint',
    'send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) -> SETOF bigint',
    'send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone) -> SETOF bigint'],
    'the 6 send and 6 send_batch overloads (4.2)');
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT ''{}''::jsonb) -> SETOF pgmq.message_record',
    'read_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100, conditional jsonb DEFAULT ''{}''::jsonb) -> SETOF pgmq.message_record',
    'pop(queue_name text, qty integer DEFAULT 1) -> SETOF pgmq.message_record',
    'read_grouped(queue_name text, vt integer, qty integer) -> SETOF pgmq.message_record',
    'read_grouped_rr(queue_name text, vt integer, qty integer) -> SETOF pgmq.message_record',
    'read_grouped_head(queue_name text, vt integer, qty integer) -> SETOF pgmq.message_record',
    'read_grouped_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100) -> SETOF pgmq.message_record',
    'read_grouped_rr_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100) -> SETOF pgmq.message_record',
    'read_grouped_head_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100) -> SETOF pgmq.message_record',
    'create_fifo_index(queue_name text) -> void',
    'create_fifo_indexes_all() -> void'],
    'reading and grouped reading functions (4.3, 4.4)');
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'archive(queue_name text, msg_id bigint) -> boolean',
    'archive(queue_name text, msg_ids bigint[]) -> SETOF bigint',
    'delete(queue_name text, msg_id bigint) -> boolean',
    'delete(queue_name text, msg_ids bigint[]) -> SETOF bigint',
    'set_vt(queue_name text, msg_id bigint, vt integer) -> SETOF pgmq.message_record',
    'set_vt(queue_name text, msg_id bigint, vt timestamp with time zone) -> SETOF pgmq.message_record',
    'set_vt(queue_name text, msg_ids bigint[], vt integer) -> SETOF pgmq.message_record',
    'set_vt(queue_name text, msg_ids bigint[], vt timestamp with time zone) -> SETOF pgmq.message_record',
    'metrics(queue_name text) -> pgmq.metrics_result',
    'metrics_all() -> SETOF pgmq.metrics_result'],
    'acknowledging, set_vt and metrics functions (4.5, 4.6)');
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250) -> void',
    'disable_notify_insert(queue_name text) -> void',
    'update_notify_insert(queue_name text, throttle_interval_ms integer) -> void',
    'list_notify_insert_throttles() -> TABLE(queue_name text, throttle_interval_ms integer, last_notified_at timestamp with time zone)'],
    'insert notification functions (4.7)');
SELECT pg_temp.set_has('SELECT * FROM pg_temp.pgmq_functions()', ARRAY[
    'validate_routing_key(routing_key text) -> boolean',
    'validate_topic_pattern(pattern text) -> boolean',
    'bind_topic(pattern text, queue_name text) -> void',
    'unbind_topic(pattern text, queue_name text) -> boolean',
    'test_routing(routing_key text) -> TABLE(pattern text, queue_name text, compiled_regex text)',
    'list_topic_bindings() -> TABLE(pattern text, queue_name text, bound_at timestamp with time zone, compiled_regex text)',
    'list_topic_bindings(queue_name text) -> TABLE(pattern text, queue_name text, bound_at timestamp with time zone, compiled_regex text)',
    'send_topic(routing_key text, msg jsonb, headers jsonb, delay integer) -> integer',
    'send_topic(routing_key text, msg jsonb) -> integer',
    'send_topic(routing_key text, msg jsonb, delay integer) -> integer',
    'send_batch_topic(routing_key text, msgs jsonb[]) -> TABLE(queue_name text, msg_id bigint)',
    'send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[]) -> TABLE(queue_name text, msg_id bigint)',
    'send_batch_topic(routing_key text, msgs jsonb[], delay integer) -> TABLE(queue_name text, msg_id bigint)',
    'send_batch_topic(routing_key text, msgs jsonb[], delay timestamp with time zone) -> TABLE(queue_name text, msg_id bigint)',
    'send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer) -> TABLE(queue_name text, msg_id bigint)',
    'send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay timestamp with time zone) -> TABLE(queue_name text, msg_id bigint)'],
    'topic functions (4.8)');

-- Beyond the 76, only underscore-prefixed internals may exist: an extra public overload would
-- change overload resolution for clients.
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'pgmq'::regnamespace AND proname !~ '^_'), 67,
          '67 functions without a leading underscore: the 76 of the contract minus its 9 underscore helpers');
SELECT is_empty($$SELECT proname FROM pg_proc WHERE pronamespace = 'pgmq'::regnamespace AND proname !~ '^_'
                  GROUP BY proname HAVING count(*) <> CASE proname
                      WHEN 'send' THEN 6 WHEN 'send_batch' THEN 6 WHEN 'send_batch_topic' THEN 6
                      WHEN 'set_vt' THEN 4 WHEN 'send_topic' THEN 3 WHEN 'archive' THEN 2 WHEN 'delete' THEN 2
                      WHEN 'drop_queue' THEN 2 WHEN 'list_topic_bindings' THEN 2 ELSE 1 END$$,
                'no function has more overloads than the contract lists');
SELECT hasnt_function('pgmq', 'pop', ARRAY['text'], 'no 1-argument pop(text)');
SELECT hasnt_function('pgmq', 'create_partitioned', ARRAY['text', 'text', 'text'], 'no 3-argument create_partitioned');
SELECT hasnt_function('pgmq', 'send_topic', ARRAY['text', 'jsonb', 'jsonb'], 'no send_topic(routing_key, msg, headers)');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                  WHERE p.pronamespace = 'pgmq'::regnamespace AND p.proname LIKE 'read%'
                    AND 'timestamp with time zone'::regtype = ANY (p.proargtypes)$$,
                'no read* overload takes a timestamptz');
SELECT is_empty($$SELECT proname FROM pg_proc WHERE pronamespace = 'pgmq'::regnamespace
                  AND proname IN ('detach_all', 'attach_all')$$, 'no detach_all / attach_all');

-- Function properties: not STRICT, not SECURITY DEFINER, no SET options (unless stated).
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace
                  AND (p.proisstrict OR p.prosecdef OR p.proconfig IS NOT NULL)$$,
                'no pgmq function is STRICT, SECURITY DEFINER or has SET options');
SELECT set_eq($$SELECT p.oid::regprocedure::text FROM pg_proc p
                WHERE p.pronamespace = 'pgmq'::regnamespace AND p.provolatile <> 'v'$$,
              $$VALUES ('pgmq.validate_routing_key(text)'), ('pgmq.validate_topic_pattern(text)'),
                       ('pgmq.test_routing(text)'), ('pgmq.list_topic_bindings()'),
                       ('pgmq.list_topic_bindings(text)'), ('pgmq.list_notify_insert_throttles()')$$,
              'only the validators (IMMUTABLE) and listing functions (STABLE) are not VOLATILE');
SELECT results_eq($$SELECT p.oid::regprocedure::text, p.provolatile::text FROM pg_proc p
                    WHERE p.pronamespace = 'pgmq'::regnamespace AND p.provolatile <> 'v' ORDER BY 1$$,
                  $$VALUES ('pgmq.list_notify_insert_throttles()', 's'), ('pgmq.list_topic_bindings()', 's'),
                           ('pgmq.list_topic_bindings(text)', 's'), ('pgmq.test_routing(text)', 's'),
                           ('pgmq.validate_routing_key(text)', 'i'), ('pgmq.validate_topic_pattern(text)', 'i')$$,
                  'validators IMMUTABLE, test_routing / list_* STABLE');
-- The message functions (send*, read*, pop, archive, delete, set_vt) are deliberately in Rust ('c').
SELECT set_eq($$SELECT p.oid::regprocedure::text, l.lanname::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                WHERE p.oid::regprocedure::text IN (
                  'pgmq.format_table_name(text,text)', 'pgmq.validate_queue_name(text)', 'pgmq."create"(text)',
                  'pgmq.create_non_partitioned(text)', 'pgmq.drop_queue(text)', 'pgmq.list_queues()',
                  'pgmq._extension_exists(text)', 'pgmq._get_pg_partman_major_version()', 'pgmq._get_pg_partman_schema()',
                  'pgmq.send(text,jsonb)', 'pgmq.send(text,jsonb,jsonb)', 'pgmq.send(text,jsonb,integer)',
                  'pgmq.send(text,jsonb,timestamp with time zone)', 'pgmq.send(text,jsonb,jsonb,integer)',
                  'pgmq.send(text,jsonb,jsonb,timestamp with time zone)',
                  'pgmq.send_batch(text,jsonb[])', 'pgmq.send_batch(text,jsonb[],jsonb[])',
                  'pgmq.send_batch(text,jsonb[],integer)', 'pgmq.send_batch(text,jsonb[],timestamp with time zone)',
                  'pgmq.send_batch(text,jsonb[],jsonb[],integer)',
                  'pgmq.send_batch(text,jsonb[],jsonb[],timestamp with time zone)',
                  'pgmq.read(text,integer,integer,jsonb)', 'pgmq.read_with_poll(text,integer,integer,integer,integer,jsonb)',
                  'pgmq.pop(text,integer)',
                  'pgmq.set_vt(text,bigint,integer)', 'pgmq.set_vt(text,bigint,timestamp with time zone)',
                  'pgmq.set_vt(text,bigint[],integer)', 'pgmq.set_vt(text,bigint[],timestamp with time zone)',
                  'pgmq.metrics(text)', 'pgmq.list_notify_insert_throttles()',
                  'pgmq.validate_routing_key(text)', 'pgmq.validate_topic_pattern(text)', 'pgmq.test_routing(text)',
                  'pgmq.list_topic_bindings()', 'pgmq.list_topic_bindings(text)',
                  'pgmq.send_topic(text,jsonb,jsonb,integer)',
                  'pgmq.send_batch_topic(text,jsonb[],jsonb[],timestamp with time zone)',
                  'pgmq.send_batch_topic(text,jsonb[])', 'pgmq.send_batch_topic(text,jsonb[],jsonb[])',
                  'pgmq.send_batch_topic(text,jsonb[],integer)',
                  'pgmq.send_batch_topic(text,jsonb[],timestamp with time zone)',
                  'pgmq.send_batch_topic(text,jsonb[],jsonb[],integer)')$$,
              $$VALUES ('pgmq.format_table_name(text,text)', 'plpgsql'), ('pgmq.validate_queue_name(text)', 'plpgsql'),
                       ('pgmq."create"(text)', 'plpgsql'), ('pgmq.create_non_partitioned(text)', 'plpgsql'),
                       ('pgmq.drop_queue(text)', 'plpgsql'), ('pgmq.list_queues()', 'plpgsql'),
                       ('pgmq._extension_exists(text)', 'sql'), ('pgmq._get_pg_partman_major_version()', 'sql'),
                       ('pgmq._get_pg_partman_schema()', 'sql'),
                       ('pgmq.send(text,jsonb)', 'c'), ('pgmq.send(text,jsonb,jsonb)', 'c'),
                       ('pgmq.send(text,jsonb,integer)', 'c'), ('pgmq.send(text,jsonb,timestamp with time zone)', 'c'),
                       ('pgmq.send(text,jsonb,jsonb,integer)', 'c'),
                       ('pgmq.send(text,jsonb,jsonb,timestamp with time zone)', 'c'),
                       ('pgmq.send_batch(text,jsonb[])', 'c'), ('pgmq.send_batch(text,jsonb[],jsonb[])', 'c'),
                       ('pgmq.send_batch(text,jsonb[],integer)', 'c'),
                       ('pgmq.send_batch(text,jsonb[],timestamp with time zone)', 'c'),
                       ('pgmq.send_batch(text,jsonb[],jsonb[],integer)', 'c'),
                       ('pgmq.send_batch(text,jsonb[],jsonb[],timestamp with time zone)', 'c'),
                       ('pgmq.read(text,integer,integer,jsonb)', 'c'),
                       ('pgmq.read_with_poll(text,integer,integer,integer,integer,jsonb)', 'c'),
                       ('pgmq.pop(text,integer)', 'c'),
                       ('pgmq.set_vt(text,bigint,integer)', 'c'),
                       ('pgmq.set_vt(text,bigint,timestamp with time zone)', 'c'),
                       ('pgmq.set_vt(text,bigint[],integer)', 'c'),
                       ('pgmq.set_vt(text,bigint[],timestamp with time zone)', 'c'),
                       ('pgmq.metrics(text)', 'plpgsql'), ('pgmq.list_notify_insert_throttles()', 'sql'),
                       ('pgmq.validate_routing_key(text)', 'plpgsql'), ('pgmq.validate_topic_pattern(text)', 'plpgsql'),
                       ('pgmq.test_routing(text)', 'plpgsql'),
                       ('pgmq.list_topic_bindings()', 'sql'), ('pgmq.list_topic_bindings(text)', 'sql'),
                       ('pgmq.send_topic(text,jsonb,jsonb,integer)', 'plpgsql'),
                       ('pgmq.send_batch_topic(text,jsonb[],jsonb[],timestamp with time zone)', 'plpgsql'),
                       ('pgmq.send_batch_topic(text,jsonb[])', 'sql'), ('pgmq.send_batch_topic(text,jsonb[],jsonb[])', 'sql'),
                       ('pgmq.send_batch_topic(text,jsonb[],integer)', 'sql'),
                       ('pgmq.send_batch_topic(text,jsonb[],timestamp with time zone)', 'sql'),
                       ('pgmq.send_batch_topic(text,jsonb[],jsonb[],integer)', 'sql')$$,
              'implementation language where the contract states it');

---------------------------------------------------------------------------------------------------
-- Section 2.3: per-queue objects of a standard queue
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('ObjQ');

SELECT has_table('pgmq', 'q_objq', 'create(''ObjQ'') makes pgmq.q_objq (lower-cased stem)');
SELECT has_table('pgmq', 'a_objq', 'create(''ObjQ'') makes pgmq.a_objq');
SELECT results_eq(
    $$SELECT name, type, not_null, col_default, ident, gen FROM pg_temp.cols('pgmq.q_objq')$$,
    $$VALUES ('msg_id', 'bigint', true, NULL::text, 'a', NULL::text),
             ('read_ct', 'integer', true, '0', NULL, NULL),
             ('enqueued_at', 'timestamp with time zone', true, 'now()', NULL, NULL),
             ('last_read_at', 'timestamp with time zone', false, NULL, NULL, NULL),
             ('vt', 'timestamp with time zone', true, NULL, NULL, NULL),
             ('message', 'jsonb', false, NULL, NULL, NULL),
             ('headers', 'jsonb', false, NULL, NULL, NULL)$$,
    'q_<n>: 7 columns in order, msg_id GENERATED ALWAYS AS IDENTITY, last_read_at 4th and nullable');
SELECT results_eq(
    $$SELECT name, type, not_null, col_default, ident, gen FROM pg_temp.cols('pgmq.a_objq')$$,
    $$VALUES ('msg_id', 'bigint', true, NULL::text, NULL::text, NULL::text),
             ('read_ct', 'integer', true, '0', NULL, NULL),
             ('enqueued_at', 'timestamp with time zone', true, 'now()', NULL, NULL),
             ('last_read_at', 'timestamp with time zone', false, NULL, NULL, NULL),
             ('archived_at', 'timestamp with time zone', true, 'now()', NULL, NULL),
             ('vt', 'timestamp with time zone', true, NULL, NULL, NULL),
             ('message', 'jsonb', false, NULL, NULL, NULL),
             ('headers', 'jsonb', false, NULL, NULL, NULL)$$,
    'a_<n>: 8 columns in order, msg_id without identity, archived_at 5th');
SELECT is(pg_get_serial_sequence('pgmq.q_objq', 'msg_id'), 'pgmq.q_objq_msg_id_seq',
          'identity sequence is pgmq.q_<n>_msg_id_seq');
SELECT set_eq($$SELECT name, def FROM pg_temp.constraints('pgmq.q_objq')$$,
              $$VALUES ('q_objq_pkey', 'PRIMARY KEY (msg_id)')$$, 'q_<n>: primary key q_<n>_pkey (msg_id)');
SELECT set_eq($$SELECT name, def FROM pg_temp.constraints('pgmq.a_objq')$$,
              $$VALUES ('a_objq_pkey', 'PRIMARY KEY (msg_id)')$$, 'a_<n>: primary key a_<n>_pkey (msg_id)');
SELECT set_eq($$SELECT * FROM pg_temp.indexes('pgmq.q_objq')$$,
              ARRAY['CREATE UNIQUE INDEX q_objq_pkey ON pgmq.q_objq USING btree (msg_id)',
                    'CREATE INDEX q_objq_vt_idx ON pgmq.q_objq USING btree (vt)'],
              'q_<n>: indexes are the pkey and q_<n>_vt_idx btree (vt); no fifo index by default');
SELECT set_eq($$SELECT * FROM pg_temp.indexes('pgmq.a_objq')$$,
              ARRAY['CREATE UNIQUE INDEX a_objq_pkey ON pgmq.a_objq USING btree (msg_id)',
                    'CREATE INDEX "archived_at_idx_ObjQ" ON pgmq.a_objq USING btree (archived_at)'],
              'a_<n>: archived_at_idx_<queue_name> keeps the case of the name as given');
SELECT is_empty($$SELECT tgname FROM pg_trigger WHERE tgrelid = 'pgmq.q_objq'::regclass$$,
                'no trigger on a new queue table');
SELECT results_eq($$SELECT relpersistence::text FROM pg_class WHERE oid IN ('pgmq.q_objq'::regclass, 'pgmq.a_objq'::regclass) ORDER BY relname$$,
                  ARRAY['p', 'p'], 'standard queue: both tables logged');
SELECT results_eq($$SELECT queue_name::text, is_partitioned, is_unlogged, created_at = now() FROM pgmq.meta$$,
                  $$VALUES ('ObjQ', false, false, true)$$, 'meta row keeps the original spelling, created_at = now()');
SELECT is_empty($$SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass AND deptype = 'e'
                  AND objid IN ('pgmq.q_objq'::regclass, 'pgmq.a_objq'::regclass, 'pgmq.q_objq_msg_id_seq'::regclass)$$,
                'per-queue tables and sequence are not extension members');

-- Defaults and identity behaviour of a real row.
INSERT INTO pgmq.q_objq (vt, message) VALUES (clock_timestamp(), '{"direct": true}');
SELECT results_eq($$SELECT msg_id, read_ct, enqueued_at = now(), last_read_at IS NULL, headers IS NULL FROM pgmq.q_objq$$,
                  $$VALUES (1::bigint, 0, true, true, true)$$,
                  'direct insert: msg_id 1 from the sequence, read_ct 0, enqueued_at now(), last_read_at/headers NULL');
SELECT throws_ok($$INSERT INTO pgmq.q_objq (msg_id, vt) VALUES (100, now())$$, '428C9',
                 'cannot insert a non-DEFAULT value into column "msg_id"',
                 'q_<n>.msg_id is GENERATED ALWAYS');
SELECT throws_ok($$INSERT INTO pgmq.q_objq (vt) VALUES (NULL)$$, '23502', NULL, 'q_<n>.vt is NOT NULL');

-- Unlogged queue: queue table unlogged, archive logged.
SELECT FROM pgmq.create_unlogged('objunl');
SELECT results_eq($$SELECT relname::text COLLATE "default", relpersistence::text FROM pg_class
                    WHERE relnamespace = 'pgmq'::regnamespace AND relname IN ('q_objunl', 'a_objunl') ORDER BY relname$$,
                  $$VALUES ('a_objunl', 'p'), ('q_objunl', 'u')$$, 'create_unlogged: q_<n> UNLOGGED, a_<n> logged');
SELECT results_eq(
    $$SELECT name, type, not_null, col_default, ident FROM pg_temp.cols('pgmq.q_objunl')$$,
    $$SELECT name, type, not_null, col_default, ident FROM pg_temp.cols('pgmq.q_objq')$$,
    'unlogged queue table has the standard layout');
SELECT results_eq(
    $$SELECT name, type, not_null, col_default, ident FROM pg_temp.cols('pgmq.a_objunl')$$,
    $$SELECT name, type, not_null, col_default, ident FROM pg_temp.cols('pgmq.a_objq')$$,
    'unlogged queue archive has the standard layout');
SELECT set_eq($$SELECT * FROM pg_temp.indexes('pgmq.q_objunl') UNION ALL SELECT * FROM pg_temp.indexes('pgmq.a_objunl')$$,
              ARRAY['CREATE UNIQUE INDEX q_objunl_pkey ON pgmq.q_objunl USING btree (msg_id)',
                    'CREATE INDEX q_objunl_vt_idx ON pgmq.q_objunl USING btree (vt)',
                    'CREATE UNIQUE INDEX a_objunl_pkey ON pgmq.a_objunl USING btree (msg_id)',
                    'CREATE INDEX archived_at_idx_objunl ON pgmq.a_objunl USING btree (archived_at)'],
              'unlogged queue: same keys and indexes');
SELECT is(pg_get_serial_sequence('pgmq.q_objunl', 'msg_id'), 'pgmq.q_objunl_msg_id_seq', 'unlogged queue identity sequence');
SELECT results_eq($$SELECT is_partitioned, is_unlogged FROM pgmq.meta WHERE queue_name = 'objunl'$$,
                  $$VALUES (false, true)$$, 'meta row of an unlogged queue: (false, true)');

---------------------------------------------------------------------------------------------------
-- Privileges for pg_monitor, including objects created later (default privileges)
---------------------------------------------------------------------------------------------------
SELECT ok(has_schema_privilege('pg_monitor', 'pgmq', 'USAGE'), 'pg_monitor has USAGE on schema pgmq');
SELECT ok(has_table_privilege('pg_monitor', 'pgmq.meta', 'SELECT')
          AND has_table_privilege('pg_monitor', 'pgmq.notify_insert_throttle', 'SELECT')
          AND has_table_privilege('pg_monitor', 'pgmq.topic_bindings', 'SELECT'),
          'pg_monitor can SELECT meta, notify_insert_throttle and topic_bindings');
SELECT ok(has_table_privilege('pg_monitor', 'pgmq.q_objq', 'SELECT')
          AND has_table_privilege('pg_monitor', 'pgmq.a_objq', 'SELECT')
          AND has_table_privilege('pg_monitor', 'pgmq.q_objunl', 'SELECT'),
          'pg_monitor can SELECT queue and archive tables created later');
SELECT ok(has_sequence_privilege('pg_monitor', 'pgmq.q_objq_msg_id_seq', 'SELECT'),
          'pg_monitor can SELECT the identity sequence of a queue');
SELECT ok(NOT has_table_privilege('pg_monitor', 'pgmq.meta', 'INSERT')
          AND NOT has_table_privilege('pg_monitor', 'pgmq.q_objq', 'UPDATE')
          AND NOT has_table_privilege('pg_monitor', 'pgmq.q_objq', 'DELETE'),
          'pg_monitor gets read access only');

---------------------------------------------------------------------------------------------------
-- Cascades from meta (2.1): deleting a meta row removes throttle setting and topic bindings
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.enable_notify_insert('objunl', 0);
SELECT FROM pgmq.bind_topic('objects.#', 'objunl');
DELETE FROM pgmq.meta WHERE queue_name = 'objunl';
SELECT is((SELECT count(*)::int FROM pgmq.notify_insert_throttle WHERE queue_name = 'objunl'), 0,
          'deleting the meta row cascades to notify_insert_throttle');
SELECT is((SELECT count(*)::int FROM pgmq.topic_bindings WHERE queue_name = 'objunl'), 0,
          'deleting the meta row cascades to topic_bindings');
SELECT throws_ok($$INSERT INTO pgmq.topic_bindings (pattern, queue_name) VALUES ('x', 'no_such_queue')$$, '23503',
                 'insert or update on table "topic_bindings" violates foreign key constraint "topic_bindings_meta_queue_name_fk"',
                 'topic_bindings FK demands a meta row');
SELECT throws_ok($$INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES ('ObjQ', false, false)$$, '23505',
                 'duplicate key value violates unique constraint "meta_queue_name_key"',
                 'meta.queue_name is unique');
SELECT lives_ok($$INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES ('objq', false, false)$$,
                'meta uniqueness is case-sensitive (names are kept as given)');

SELECT * FROM finish();
ROLLBACK;
