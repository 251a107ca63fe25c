-- Queue management: create*, drop_queue, purge_queue, detach_archive,
-- list_queues, create_partitioned / convert_archive_partitioned without pg_partman, queue lock.
BEGIN;
SELECT plan(83);
SET LOCAL client_min_messages = error;

\ir helpers/session_messages.psql

CREATE FUNCTION pg_temp.advisory_lock_held(key bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
                     AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
                     AND l.classid::text::bigint = ((key >> 32) & 4294967295)
                     AND l.objid::text::bigint = (key & 4294967295))
$$;
CREATE FUNCTION pg_temp.rel_exists(name text) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname = name)
$$;

---------------------------------------------------------------------------------------------------
-- list_queues / create / create_non_partitioned / create_unlogged
---------------------------------------------------------------------------------------------------
SELECT is_empty('SELECT * FROM pgmq.list_queues()', 'list_queues() is empty without queues');

SELECT lives_ok($$SELECT pgmq.create('mq1')$$, 'create(mq1)');
SELECT results_eq($$SELECT queue_name::text, is_partitioned, is_unlogged, created_at = now() FROM pgmq.meta$$,
                  $$VALUES ('mq1', false, false, true)$$, 'create inserts meta row (name, false, false, now())');
SELECT ok(pg_temp.rel_exists('q_mq1') AND pg_temp.rel_exists('a_mq1') AND pg_temp.rel_exists('q_mq1_vt_idx')
          AND pg_temp.rel_exists('archived_at_idx_mq1') AND pg_temp.rel_exists('q_mq1_msg_id_seq'),
          'create makes q_, a_, vt index, archived_at index and sequence');

CREATE TEMP TABLE mq1_oids AS
    SELECT c.relname, c.oid FROM pg_class c WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname ~ 'mq1';
SELECT FROM pgmq.send('mq1', '{"keep": 1}');
SELECT lives_ok($$SELECT pgmq.create('mq1')$$, 'create is idempotent');
SELECT lives_ok($$SELECT pgmq.create_non_partitioned('mq1')$$, 'create_non_partitioned on an existing queue');
SELECT lives_ok($$SELECT pgmq.create_unlogged('mq1')$$, 'create_unlogged on an existing queue');
SELECT set_eq($$SELECT c.relname, c.oid FROM pg_class c WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname ~ 'mq1'$$,
              'SELECT relname, oid FROM mq1_oids', 'repeated create* keeps the very same relations');
SELECT results_eq($$SELECT queue_name::text, is_partitioned, is_unlogged FROM pgmq.meta$$,
                  $$VALUES ('mq1', false, false)$$, 'repeated create* keeps the single meta row as it was');
SELECT is((SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_mq1'::regclass), 'p',
          'create_unlogged leaves an existing logged queue table logged');
SELECT results_eq($$SELECT message FROM pgmq.q_mq1$$, $$VALUES ('{"keep": 1}'::jsonb)$$,
                  'repeated create* keeps the messages');

SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_a')$$, $$SELECT pgmq.create('ntc_a')$$),
          ARRAY['NOTICE: 42P07: relation "q_ntc_a" already exists, skipping',
                'NOTICE: 42P07: relation "a_ntc_a" already exists, skipping',
                'NOTICE: 42P07: relation "q_ntc_a_vt_idx" already exists, skipping',
                'NOTICE: 42P07: relation "archived_at_idx_ntc_a" already exists, skipping'],
          'create: first call silent, repeated call emits the four 42P07 NOTICEs');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create_non_partitioned('Ntc_B')$$,
                                   $$SELECT pgmq.create_non_partitioned('Ntc_B')$$),
          ARRAY['NOTICE: 42P07: relation "q_ntc_b" already exists, skipping',
                'NOTICE: 42P07: relation "a_ntc_b" already exists, skipping',
                'NOTICE: 42P07: relation "q_ntc_b_vt_idx" already exists, skipping',
                'NOTICE: 42P07: relation "archived_at_idx_Ntc_B" already exists, skipping'],
          'create_non_partitioned: four NOTICEs, index name keeps the case of the name');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create_unlogged('ntc_c')$$, $$SELECT pgmq.create_unlogged('ntc_c')$$),
          ARRAY['NOTICE: 42P07: relation "q_ntc_c" already exists, skipping',
                'NOTICE: 42P07: relation "a_ntc_c" already exists, skipping',
                'NOTICE: 42P07: relation "q_ntc_c_vt_idx" already exists, skipping',
                'NOTICE: 42P07: relation "archived_at_idx_ntc_c" already exists, skipping'],
          'create_unlogged: four NOTICEs on the repeated call');

SELECT lives_ok($$SELECT pgmq.create_unlogged('mu')$$, 'create_unlogged(mu)');
SELECT lives_ok($$SELECT pgmq.create('mu')$$, 'create on an existing unlogged queue');
SELECT results_eq($$SELECT is_partitioned, is_unlogged FROM pgmq.meta WHERE queue_name = 'mu'$$,
                  $$VALUES (false, true)$$, 'create leaves the meta row of an unlogged queue as it was');
SELECT is((SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_mu'::regclass), 'u',
          'create leaves an existing unlogged queue table unlogged');

-- Names differing only in case share the tables; meta keeps each spelling.
SELECT lives_ok($$SELECT pgmq.create('MQ1')$$, 'create(MQ1) after create(mq1)');
SELECT results_eq($$SELECT queue_name::text FROM pgmq.meta WHERE lower(queue_name) = 'mq1' ORDER BY 1$$,
                  ARRAY['MQ1', 'mq1'], 'meta holds both spellings');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relname IN ('q_mq1', 'q_MQ1')),
          1, 'both spellings share the single table q_mq1');

SELECT set_eq('SELECT queue_name::text, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues()',
              $$VALUES ('mq1', false, false, now()), ('MQ1', false, false, now()), ('mu', false, true, now())$$,
              'list_queues returns every meta row as queue_record');

-- The empty name is accepted (tables q_ / a_).
SELECT lives_ok($$SELECT pgmq.create('')$$, 'create('''') is accepted');
SELECT ok(pg_temp.rel_exists('q_') AND pg_temp.rel_exists('a_') AND pg_temp.rel_exists('archived_at_idx_'),
          'the empty name makes pgmq.q_, pgmq.a_ and archived_at_idx_');
SELECT is(pgmq.drop_queue(''), true, 'drop_queue('''') drops it again');

-- create* is transactional.
SAVEPOINT before_txq;
SELECT FROM pgmq.create('txq');
ROLLBACK TO SAVEPOINT before_txq;
SELECT ok(NOT pg_temp.rel_exists('q_txq') AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'txq'),
          'a rolled-back create leaves neither tables nor meta row');

---------------------------------------------------------------------------------------------------
-- acquire_queue_lock and the queue lock of create* / drop_queue
---------------------------------------------------------------------------------------------------
SELECT lives_ok($$SELECT pgmq.acquire_queue_lock('LockQ')$$, 'acquire_queue_lock(LockQ)');
SELECT ok(pg_temp.advisory_lock_held(hashtext('pgmq.queue_LockQ')),
          'acquire_queue_lock holds the advisory lock hashtext(''pgmq.queue_'' || name)');
SELECT ok(NOT pg_temp.advisory_lock_held(hashtext('pgmq.queue_lockq')), 'the lock key is case-sensitive');
SELECT is(pg_temp.session_messages(
              $s$DO $d$BEGIN RAISE NOTICE 'other session got lock: %', pg_try_advisory_xact_lock(hashtext('pgmq.queue_LockQ')); END$d$$s$,
              $s$DO $d$BEGIN RAISE NOTICE 'other session got lock: %', pg_try_advisory_xact_lock(hashtext('pgmq.queue_lockq')); END$d$$s$),
          ARRAY['NOTICE: 00000: other session got lock: f', 'NOTICE: 00000: other session got lock: t'],
          'the queue lock is held to transaction end and excludes other sessions');
SELECT is(pg_temp.session_messages($$SET lock_timeout = '300ms'$$, $$SELECT pgmq.create('LockQ')$$),
          ARRAY['ERROR: 55P03: canceling statement due to lock timeout'],
          'create in another session waits for the queue lock');
SELECT FROM pgmq.create('LockCreate');
SELECT ok(pg_temp.advisory_lock_held(hashtext('pgmq.queue_LockCreate')), 'create takes the queue lock');
SELECT FROM pgmq.create_unlogged('LockUnl');
SELECT ok(pg_temp.advisory_lock_held(hashtext('pgmq.queue_LockUnl')), 'create_unlogged takes the queue lock');
SELECT FROM pgmq.drop_queue('LockDrop');
SELECT ok(pg_temp.advisory_lock_held(hashtext('pgmq.queue_LockDrop')), 'drop_queue takes the queue lock (even for a missing queue)');

---------------------------------------------------------------------------------------------------
-- drop_queue(text)
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('dq');
SELECT FROM pgmq.send('dq', '{}');
SELECT FROM pgmq.enable_notify_insert('dq', 0);
SELECT FROM pgmq.bind_topic('dq.#', 'dq');
SELECT is(pgmq.drop_queue('dq'), true, 'drop_queue on an existing queue returns true');
SELECT ok(NOT pg_temp.rel_exists('q_dq') AND NOT pg_temp.rel_exists('a_dq') AND NOT pg_temp.rel_exists('q_dq_msg_id_seq')
          AND NOT pg_temp.rel_exists('q_dq_vt_idx') AND NOT pg_temp.rel_exists('archived_at_idx_dq'),
          'drop_queue drops tables, sequence and indexes');
SELECT is((SELECT count(*)::int FROM pgmq.meta WHERE queue_name = 'dq'), 0, 'drop_queue deletes the meta row');
SELECT is((SELECT count(*)::int FROM pgmq.notify_insert_throttle WHERE queue_name = 'dq')
          + (SELECT count(*)::int FROM pgmq.topic_bindings WHERE queue_name = 'dq'), 0,
          'drop_queue removes throttle row and topic bindings');
SELECT lives_ok($$SELECT pgmq.create('dq')$$, 'a dropped queue can be created again');
SELECT results_eq($$SELECT * FROM pgmq.send('dq', '{}')$$, ARRAY[1::bigint], 'the re-created queue starts at msg_id 1');
SELECT is(pgmq.drop_queue('dq'), true, 'drop the re-created queue');

SELECT is(pgmq.drop_queue('no_such_queue'), false, 'drop_queue on a missing queue returns false');
SELECT is(pg_temp.session_messages($$SELECT pgmq.drop_queue('ntc_missing')$$),
          ARRAY['NOTICE: 00000: pgmq queue `ntc_missing` does not exist'],
          'drop_queue on a missing queue: NOTICE "pgmq queue `<name>` does not exist"');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_d')$$, $$SELECT pgmq.drop_queue('ntc_d')$$), '{}'::text[],
          'drop_queue on an existing queue emits nothing');

SELECT FROM pgmq.create('NoTable');
DROP TABLE pgmq.q_notable;
SELECT is(pgmq.drop_queue('NoTable'), false, 'drop_queue with a meta row but no queue table returns false');
SELECT ok(pg_temp.rel_exists('a_notable') AND EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'NoTable'),
          '... and returns before dropping the archive or deleting the meta row');

SELECT FROM pgmq.create('NoArchive');
DROP TABLE pgmq.a_noarchive;
SELECT is(pgmq.drop_queue('NoArchive'), true, 'drop_queue works when the archive is missing');
SELECT ok(NOT pg_temp.rel_exists('q_noarchive') AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'NoArchive'),
          'the mixed-case queue without archive is gone');

---------------------------------------------------------------------------------------------------
-- drop_queue(text, boolean): deprecated
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('dq2');
SELECT is(pgmq.drop_queue('dq2', false), true, 'drop_queue(name, false) returns true');
SELECT ok(NOT pg_temp.rel_exists('q_dq2') AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'dq2'),
          'drop_queue(name, partitioned) drops the queue');
SELECT is(pgmq.drop_queue('no_such_queue', true), true, 'drop_queue(name, partitioned) returns true even for a missing queue');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_e')$$, $$SELECT pgmq.drop_queue('ntc_e', false)$$),
          ARRAY['WARNING: 01000: drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead'],
          'drop_queue(name, partitioned) emits the deprecation WARNING');
SELECT is(pg_temp.session_messages($$SELECT pgmq.drop_queue('ntc_missing', true)$$),
          ARRAY['WARNING: 01000: drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead',
                'NOTICE: 00000: pgmq queue `ntc_missing` does not exist'],
          'drop_queue(missing, partitioned): WARNING, then the inner NOTICE');

---------------------------------------------------------------------------------------------------
-- purge_queue
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('pq');
SELECT FROM pgmq.send_batch('pq', ARRAY['{"n":1}', '{"n":2}', '{"n":3}']::jsonb[]);
SELECT FROM pgmq.archive('pq', 1::bigint);
SELECT FROM pgmq.send('pq', '{"n":4}', 3600);
SELECT is(pgmq.purge_queue('pq'), 3::bigint, 'purge_queue returns the number of rows (visible or not)');
SELECT is((SELECT count(*)::int FROM pgmq.q_pq), 0, 'purge_queue empties the queue table');
SELECT results_eq('SELECT msg_id FROM pgmq.a_pq', ARRAY[1::bigint], 'purge_queue leaves the archive untouched');
SELECT results_eq($$SELECT * FROM pgmq.send('pq', '{}')$$, ARRAY[5::bigint], 'purge_queue keeps the sequence');
SELECT is(pgmq.purge_queue('pq'), 1::bigint, 'purge_queue again');
SELECT is(pgmq.purge_queue('pq'), 0::bigint, 'purge_queue on an empty queue returns 0');
SELECT is(pgmq.purge_queue('PQ'), 0::bigint, 'purge_queue resolves the name case-insensitively');

---------------------------------------------------------------------------------------------------
-- detach_archive: deprecated no-op
---------------------------------------------------------------------------------------------------
SELECT lives_ok($$SELECT pgmq.detach_archive('pq')$$, 'detach_archive lives');
SELECT ok(pg_temp.rel_exists('a_pq') AND (SELECT count(*) FROM pgmq.a_pq) = 1, 'detach_archive changes nothing');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_f')$$, $$SELECT pgmq.detach_archive('ntc_f')$$),
          ARRAY['WARNING: 01000: detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.'],
          'detach_archive emits the deprecation WARNING');
SELECT is(pg_temp.session_messages($$SELECT pgmq.detach_archive('ntc_missing')$$),
          ARRAY['WARNING: 01000: detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.'],
          'detach_archive on a missing queue: only the WARNING');
SELECT throws_ok($$SELECT pgmq.detach_archive('a;b')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'detach_archive applies the name check');

---------------------------------------------------------------------------------------------------
-- create_partitioned without pg_partman, and the partman helpers
---------------------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pgmq.create_partitioned('partq')$$, 'P0001', 'pg_partman is required for partitioned queues',
                 'create_partitioned(name) without pg_partman');
SELECT throws_ok($$SELECT pgmq.create_partitioned('partq', '1 day', '7 days', 2)$$, 'P0001',
                 'pg_partman is required for partitioned queues', 'create_partitioned with all arguments without pg_partman');
SELECT throws_ok($$SELECT pgmq.create_partitioned('partq', premake => 0)$$, 'P0001',
                 'pg_partman is required for partitioned queues', 'the pg_partman check comes before the premake check');
SELECT throws_ok($$SELECT pgmq.create_partitioned('part;q')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'create_partitioned: name check first');
SELECT throws_ok(format('SELECT pgmq.create_partitioned(%L)', repeat('p', 48)), 'P0001',
                 'queue name is too long, maximum length is 47 characters', 'create_partitioned: length check before pg_partman');
SELECT ok(NOT pg_temp.rel_exists('q_partq') AND NOT pg_temp.rel_exists('a_partq')
          AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'partq'),
          'a failed create_partitioned leaves nothing');
SELECT throws_ok('SELECT pgmq._ensure_pg_partman_installed()', 'P0001', 'pg_partman is required for partitioned queues',
                 '_ensure_pg_partman_installed raises without pg_partman');
SELECT results_eq($$VALUES (pgmq._extension_exists('pgtap')), (pgmq._extension_exists('pg_partman')), (pgmq._extension_exists(NULL))$$,
                  ARRAY[true, false, false], '_extension_exists looks at pg_extension');
SELECT results_eq($$VALUES (pgmq._get_partition_col('10000')), (pgmq._get_partition_col('1 day')),
                           (pgmq._get_partition_col('daily')), (pgmq._get_partition_col('-5'))$$,
                  ARRAY['msg_id', 'enqueued_at', 'enqueued_at', 'msg_id'],
                  '_get_partition_col: msg_id for integer intervals, else enqueued_at');
SELECT ok(pgmq._get_pg_partman_major_version() IS NULL AND pgmq._get_pg_partman_schema() IS NULL,
          'pg_partman version and schema are NULL without pg_partman');
SELECT is(pgmq._belongs_to_pgmq('q_mq1'), false, '_belongs_to_pgmq: queue tables are not extension members');

---------------------------------------------------------------------------------------------------
-- convert_archive_partitioned
---------------------------------------------------------------------------------------------------
SELECT is(pg_temp.session_messages($$SELECT pgmq.convert_archive_partitioned('ntc_nope')$$),
          ARRAY['NOTICE: 00000: Table a_ntc_nopes does not exists'],
          'convert_archive_partitioned on a missing archive: NOTICE (with the stray s)');
SELECT is(pg_temp.session_messages($$SELECT pgmq.convert_archive_partitioned('NTC_Nope', '1 day', '30 days', 5)$$),
          ARRAY['NOTICE: 00000: Table a_ntc_nopes does not exists'],
          'convert_archive_partitioned lower-cases the name (all four arguments)');
SELECT is(pg_temp.session_messages(
              $$CREATE TABLE pgmq.a_ntc_part (msg_id bigint NOT NULL, archived_at timestamptz NOT NULL DEFAULT now()) PARTITION BY RANGE (msg_id)$$,
              $$SELECT pgmq.convert_archive_partitioned('ntc_part')$$),
          ARRAY['NOTICE: 00000: Table a_ntc_parts is already partitioned'],
          'convert_archive_partitioned on a partitioned archive: NOTICE');
SELECT is(pg_temp.session_messages($$CREATE VIEW pgmq.a_ntc_view AS SELECT 1 AS x$$,
                                   $$SELECT pgmq.convert_archive_partitioned('ntc_view')$$),
          ARRAY['NOTICE: 00000: Table a_ntc_views does not exists'],
          'convert_archive_partitioned: a non-table a_<n> counts as missing');
SELECT FROM pgmq.create('conv');
SELECT FROM pgmq.send('conv', '{}');
SELECT FROM pgmq.archive('conv', 1::bigint);
SELECT throws_ok($$SELECT pgmq.convert_archive_partitioned('conv')$$, 'P0001', 'pg_partman is required for partitioned queues',
                 'convert_archive_partitioned of a plain archive without pg_partman raises before changing anything');
SELECT ok((SELECT relkind FROM pg_class WHERE oid = 'pgmq.a_conv'::regclass) = 'r' AND NOT pg_temp.rel_exists('a_conv_old')
          AND (SELECT count(*) FROM pgmq.a_conv) = 1, 'the archive is unchanged');
SELECT throws_ok($$SELECT pgmq.convert_archive_partitioned('x--y')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'convert_archive_partitioned applies the name check');

SELECT * FROM finish();
ROLLBACK;
