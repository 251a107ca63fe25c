-- Partitioned queues with the real pg_partman (Debian's postgresql-15-partman, 4.7):
-- create_partitioned by msg_id and by time, reads, archives, deletes, partition maintenance and
-- retention, convert_archive_partitioned, drop_queue.
BEGIN;
SELECT plan(29);
SET LOCAL client_min_messages = warning;
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;

-- Partitions of a table, in range order, as 'first id/partition count'.
CREATE FUNCTION pg_temp.parts(parent text) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = parent::regclass
$$;
CREATE FUNCTION pg_temp.rows_by_part(parent text) RETURNS TABLE (part text, n bigint) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT tableoid::regclass::text, count(*) FROM %s GROUP BY 1 ORDER BY 1', parent);
END;
$$;

-- By msg_id: 10 ids a partition, 30 kept, 2 made ahead.
SELECT lives_ok($$SELECT pgmq.create_partitioned('pq', '10', '30', 2)$$, 'create_partitioned by msg_id');
SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'pgmq.q_pq'::regclass), 'p', 'the queue table is partitioned');
SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'pgmq.a_pq'::regclass), 'p', 'so is its archive');
SELECT results_eq(
    $$SELECT parent_table, control, partition_interval, retention, premake FROM partman.part_config ORDER BY parent_table$$,
    $$VALUES ('pgmq.a_pq'::text, 'msg_id'::text, '10'::text, '30'::text, 2), ('pgmq.q_pq', 'msg_id', '10', '30', 2)$$,
    'pg_partman manages both, with the interval, retention and premake given');
SELECT is(pg_temp.parts('pgmq.q_pq'), ARRAY['q_pq_default', 'q_pq_p0', 'q_pq_p10', 'q_pq_p20'],
          'partitions for ids 0-29 are made, and a default one');
SELECT is((SELECT is_partitioned FROM pgmq.list_queues() WHERE queue_name = 'pq'), true, 'list_queues says partitioned');

SELECT is((SELECT count(*)::int FROM pgmq.send_batch('pq', array_fill('{"k": 1}'::jsonb, ARRAY[25]))), 25, 'send_batch of 25');
SELECT results_eq($$SELECT * FROM pg_temp.rows_by_part('pgmq.q_pq')$$,
                  $$VALUES ('pgmq.q_pq_p0', 9::bigint), ('pgmq.q_pq_p10', 10), ('pgmq.q_pq_p20', 6)$$,
                  'the messages land in their partitions by msg_id (ids start at 1)');
SELECT is((SELECT count(*)::int FROM pgmq.read('pq', 30, 12)), 12, 'read takes from the partitions in order');
SELECT is((SELECT array_agg(msg_id ORDER BY msg_id) FROM pgmq.read('pq', 30, 3)), ARRAY[13::bigint, 14, 15],
          'and goes on in msg_id order');
SELECT is(ARRAY(SELECT pgmq.archive('pq', ARRAY[1, 2, 3]::bigint[])), ARRAY[1, 2, 3]::bigint[], 'archive moves messages to the archive');
SELECT is((SELECT array_agg(msg_id ORDER BY msg_id) FROM pgmq.a_pq), ARRAY[1, 2, 3]::bigint[], 'which holds them');
SELECT is(pgmq.delete('pq', 4::bigint), true, 'delete');
SELECT is((SELECT msg_id FROM pgmq.pop('pq')), 16::bigint, 'pop takes the first visible message');
SELECT is((SELECT queue_length FROM pgmq.metrics('pq')), 20::bigint, 'metrics counts across partitions');

-- Maintenance, as pg_partman's background worker or a cron job runs it: partitions are made ahead
-- of the newest id, and those more than 30 ids behind it are dropped with their messages.
SELECT lives_ok($$SELECT partman.run_maintenance('pgmq.q_pq')$$, 'run_maintenance on the queue');
SELECT is(pg_temp.parts('pgmq.q_pq'), ARRAY['q_pq_default', 'q_pq_p0', 'q_pq_p10', 'q_pq_p20', 'q_pq_p30', 'q_pq_p40'],
          'two partitions are made ahead of the newest id (25)');
SELECT is((SELECT count(*)::int FROM pgmq.send_batch('pq', array_fill('{"k": 2}'::jsonb, ARRAY[20]))), 20,
          'twenty more: ids 26-45');
SELECT results_eq($$SELECT * FROM pg_temp.rows_by_part('pgmq.q_pq') WHERE part IN ('pgmq.q_pq_p40', 'pgmq.q_pq_default')$$,
                  $$VALUES ('pgmq.q_pq_p40', 6::bigint)$$, 'they land in the partitions made ahead, none in the default one');
SELECT lives_ok($$SELECT partman.run_maintenance('pgmq.q_pq')$$, 'run_maintenance again');
SELECT is(pg_temp.parts('pgmq.q_pq'), ARRAY['q_pq_default', 'q_pq_p10', 'q_pq_p20', 'q_pq_p30', 'q_pq_p40', 'q_pq_p50', 'q_pq_p60'],
          'the partition of ids 0-9 (more than 30 behind 45) is dropped, two more are made ahead');
SELECT is((SELECT min(msg_id) FROM pgmq.q_pq), 10::bigint, 'its messages went with it');
SELECT is((SELECT array_agg(msg_id ORDER BY msg_id) FROM pgmq.read('pq', 30, 100)),
          ARRAY(SELECT generate_series(17, 45)::bigint), 'the visible messages read in order across partitions');

-- By time: daily partitions on enqueued_at.
SELECT lives_ok($$SELECT pgmq.create_partitioned('pt', '1 day', '7 days')$$, 'create_partitioned by time');
SELECT is((SELECT control FROM partman.part_config WHERE parent_table = 'pgmq.q_pt'), 'enqueued_at',
          'partitioned on enqueued_at, the archive on archived_at');

SELECT pgmq.send('pt', '{"day": 1}');
SELECT is((SELECT message FROM pgmq.read('pt', 30, 1)), '{"day": 1}'::jsonb, 'a message sent to it is read back');
SELECT is((SELECT part LIKE 'pgmq.q_pt_p20%' FROM pg_temp.rows_by_part('pgmq.q_pt')), true,
          'from today''s partition, made ahead (not the default one)');

-- drop_queue removes the tables and pg_partman's configuration.
SELECT pgmq.drop_queue('pq');
SELECT is((SELECT count(*)::int FROM partman.part_config WHERE parent_table IN ('pgmq.q_pq', 'pgmq.a_pq'))
          + (SELECT count(*)::int FROM pg_class WHERE relname LIKE 'q\_pq%' OR relname LIKE 'a\_pq%'), 0,
          'drop_queue of a partitioned queue: no table, partition or pg_partman row is left');

-- convert_archive_partitioned: a plain queue's archive, rows kept in the old table.
SELECT pgmq.create('plainq');
SELECT pgmq.archive('plainq', pgmq.send('plainq', '{"old": true}'));
SELECT pgmq.convert_archive_partitioned('plainq', '10', '100');
SELECT results_eq(
    $$SELECT (SELECT relkind::text FROM pg_class WHERE oid = 'pgmq.a_plainq'::regclass),
             (SELECT count(*) FROM pgmq.a_plainq_old),
             (SELECT parent_table FROM partman.part_config WHERE parent_table = 'pgmq.a_plainq')$$,
    $$VALUES ('p'::text, 1::bigint, 'pgmq.a_plainq'::text)$$,
    'convert_archive_partitioned: a partitioned archive managed by pg_partman; the old rows in a_plainq_old');

SELECT * FROM finish();
ROLLBACK;
