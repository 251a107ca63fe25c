-- Acknowledging and updating: archive / delete (single and array), set_vt in all
-- four forms, and the 42P01 error of every per-queue function on a missing queue or archive.
BEGIN;
SELECT plan(89);
SET LOCAL client_min_messages = error;

SELECT FROM pgmq.create('aq');
SELECT FROM pgmq.send_batch('aq', ARRAY['{"a": 1}', '{"a": 2}', '{"a": 3}', '{"a": 4}', '{"a": 5}', '{"a": 6}']::jsonb[],
                            ARRAY['{"h": 1}', NULL, NULL, NULL, NULL, NULL]::jsonb[]);
SELECT FROM pgmq.read('aq', 30, 1);
CREATE TEMP TABLE aq_before AS SELECT * FROM pgmq.q_aq;

---------------------------------------------------------------------------------------------------
-- archive
---------------------------------------------------------------------------------------------------
SELECT is(pgmq.archive('aq', 1::bigint), true, 'archive(queue_name, msg_id) returns true for a queued message');
SELECT is_empty('SELECT 1 FROM pgmq.q_aq WHERE msg_id = 1', 'archive removes the message from q_');
SELECT results_eq($$SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.a_aq$$,
                  $$SELECT * FROM aq_before WHERE msg_id = 1$$,
                  'archive copies msg_id, read_ct, enqueued_at, last_read_at, vt, message and headers');
SELECT ok((SELECT archived_at = now() AND last_read_at IS NOT NULL FROM pgmq.a_aq WHERE msg_id = 1),
          'archived_at = now(); last_read_at of a read message is kept');
SELECT is(pgmq.archive('aq', 1::bigint), false, 'archive of an already archived id returns false');
SELECT is(pgmq.archive('aq', 999::bigint), false, 'archive of an unknown id returns false');
SELECT is(pgmq.archive(queue_name => 'AQ', msg_id => 2::bigint), true, 'archive with named arguments and another spelling');

SELECT set_eq($$SELECT * FROM pgmq.archive('aq', ARRAY[3, 4, 4, 999, 1]::bigint[])$$, ARRAY[3, 4]::bigint[],
              'archive(queue_name, msg_ids) returns the ids moved: duplicates once, missing / archived ignored');
SELECT results_eq($$SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.a_aq ORDER BY msg_id$$,
                  $$SELECT * FROM aq_before WHERE msg_id <= 4 ORDER BY msg_id$$, 'the archive holds 1..4 unchanged');
SELECT results_eq('SELECT msg_id FROM pgmq.q_aq ORDER BY msg_id', ARRAY[5, 6]::bigint[], 'the queue holds 5, 6');
SELECT is_empty($$SELECT * FROM pgmq.archive('aq', ARRAY[]::bigint[])$$, 'archive of an empty array returns nothing');
SELECT is_empty($$SELECT * FROM pgmq.archive('aq', NULL::bigint[])$$, 'archive of a NULL array returns nothing');
SELECT FROM pgmq.send('aq', '{"a": 7}', 3600);
SELECT is(pgmq.archive('aq', 7::bigint), true, 'archive works on an invisible message');

---------------------------------------------------------------------------------------------------
-- delete
---------------------------------------------------------------------------------------------------
SELECT is(pgmq.delete('aq', 5::bigint), true, 'delete(queue_name, msg_id) returns true for a queued message');
SELECT is_empty('SELECT 1 FROM pgmq.q_aq WHERE msg_id = 5', 'delete removes the message');
SELECT is_empty('SELECT 1 FROM pgmq.a_aq WHERE msg_id = 5', 'delete does not archive');
SELECT is(pgmq.delete('aq', 5::bigint), false, 'delete of a deleted id returns false');
SELECT is(pgmq.delete('aq', 1::bigint), false, 'delete does not touch the archive (id 1 is archived)');
SELECT results_eq('SELECT count(*)::int FROM pgmq.a_aq WHERE msg_id = 1', ARRAY[1], '... the archived row is still there');
SELECT FROM pgmq.send_batch('aq', ARRAY['{"a": 8}', '{"a": 9}', '{"a": 10}']::jsonb[]);
SELECT set_eq($$SELECT * FROM pgmq.delete('aq', ARRAY[6, 8, 8, 9, 999]::bigint[])$$, ARRAY[6, 8, 9]::bigint[],
              'delete(queue_name, msg_ids) returns the ids deleted');
SELECT results_eq('SELECT msg_id FROM pgmq.q_aq', ARRAY[10::bigint], 'only 10 is left');
SELECT is_empty($$SELECT * FROM pgmq.delete('aq', ARRAY[]::bigint[])$$, 'delete of an empty array returns nothing');
SELECT is(pgmq.delete(queue_name => 'aq', msg_id => 10::bigint), true, 'delete with named arguments');

---------------------------------------------------------------------------------------------------
-- set_vt: four forms
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('vq');
SELECT FROM pgmq.send_batch('vq', ARRAY['{"v": 1}', '{"v": 2}', '{"v": 3}', '{"v": 4}']::jsonb[]);
SELECT FROM pgmq.read('vq', 30, 2);
CREATE TEMP TABLE vq_before AS SELECT * FROM pgmq.q_vq;
CREATE TEMP TABLE vt_calls (k text, t0 timestamptz, t1 timestamptz, r pgmq.message_record);
CREATE FUNCTION pg_temp.set_vt_call(k text, call text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n integer;
BEGIN
    EXECUTE format('INSERT INTO vt_calls SELECT %L, %L, clock_timestamp(), r FROM %s r', k, t0, call);
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vt_calls SET t1 = clock_timestamp() WHERE vt_calls.k = set_vt_call.k;
    RETURN n;
END;
$$;

SELECT is(pg_temp.set_vt_call('s1', $$pgmq.set_vt('vq', 1::bigint, 100)$$), 1, 'set_vt(queue_name, msg_id, vt integer) returns one row');
SELECT ok((SELECT (r).vt BETWEEN t0 + interval '100 s' AND t1 + interval '100 s' FROM vt_calls WHERE k = 's1'),
          'set_vt integer: vt = clock + vt s');
SELECT results_eq($$SELECT (r).msg_id, (r).read_ct, (r).enqueued_at, (r).last_read_at, (r).message, (r).headers FROM vt_calls WHERE k = 's1'$$,
                  $$SELECT msg_id, read_ct, enqueued_at, last_read_at, message, headers FROM vq_before WHERE msg_id = 1$$,
                  'set_vt leaves read_ct and last_read_at unchanged and returns the message_record');
SELECT is((SELECT vt FROM pgmq.q_vq WHERE msg_id = 1), (SELECT (r).vt FROM vt_calls WHERE k = 's1'), 'the table has the returned vt');

SELECT is(pg_temp.set_vt_call('s2', $$pgmq.set_vt('vq', 3::bigint, '2033-03-03 03:03:03+00'::timestamptz)$$), 1,
          'set_vt(queue_name, msg_id, vt timestamptz) on a visible message');
SELECT results_eq($$SELECT (r).msg_id, (r).vt, (r).read_ct, (r).last_read_at FROM vt_calls WHERE k = 's2'$$,
                  $$VALUES (3::bigint, '2033-03-03 03:03:03+00'::timestamptz, 0, NULL::timestamptz)$$,
                  'set_vt timestamptz: vt = the timestamp; an unread message keeps read_ct 0 and last_read_at NULL');

SELECT is(pg_temp.set_vt_call('s3', $$pgmq.set_vt('vq', ARRAY[1, 2, 3, 999]::bigint[], 50)$$), 3,
          'set_vt(queue_name, msg_ids, vt integer) returns the existing ids only');
SELECT set_eq($$SELECT (r).msg_id FROM vt_calls WHERE k = 's3'$$, ARRAY[1, 2, 3]::bigint[], '... ids 1, 2, 3');
SELECT ok((SELECT count(DISTINCT (r).vt) = 1 AND bool_and((r).vt BETWEEN t0 + interval '50 s' AND t1 + interval '50 s')
           FROM vt_calls WHERE k = 's3'), 'set_vt array integer: one vt = clock + vt s for all');
SELECT results_eq($$SELECT (r).msg_id, (r).read_ct, (r).last_read_at FROM vt_calls WHERE k = 's3' ORDER BY 1$$,
                  $$SELECT msg_id, read_ct, last_read_at FROM vq_before WHERE msg_id <= 3 ORDER BY 1$$,
                  'set_vt array: read_ct and last_read_at unchanged');

SELECT is(pg_temp.set_vt_call('s4', $$pgmq.set_vt('vq', ARRAY[2, 4]::bigint[], '2000-01-01+00'::timestamptz)$$), 2,
          'set_vt(queue_name, msg_ids, vt timestamptz)');
SELECT results_eq($$SELECT msg_id, vt FROM pgmq.q_vq WHERE msg_id IN (2, 4) ORDER BY msg_id$$,
                  $$VALUES (2::bigint, '2000-01-01+00'::timestamptz), (4, '2000-01-01+00')$$, 'set_vt array timestamptz: vt set');
SELECT results_eq($$SELECT msg_id FROM pgmq.read('vq', 30, 10) ORDER BY 1$$, ARRAY[2, 4]::bigint[],
                  'a vt in the past makes in-flight messages visible again');

SELECT is(pg_temp.set_vt_call('s5', $$pgmq.set_vt('vq', 1::bigint, -10)$$), 1, 'set_vt with negative seconds');
SELECT ok((SELECT (r).vt < t0 FROM vt_calls WHERE k = 's5'), 'negative seconds put vt in the past');
SELECT is_empty($$SELECT * FROM pgmq.set_vt('vq', 999::bigint, 10)$$, 'set_vt integer on an unknown id: empty');
SELECT is_empty($$SELECT * FROM pgmq.set_vt('vq', 999::bigint, now())$$, 'set_vt timestamptz on an unknown id: empty');
SELECT is_empty($$SELECT * FROM pgmq.set_vt('vq', ARRAY[998, 999]::bigint[], 10)$$, 'set_vt array on unknown ids: empty');
SELECT is_empty($$SELECT * FROM pgmq.set_vt('vq', ARRAY[]::bigint[], now())$$, 'set_vt on an empty array: empty');
SELECT results_eq($$SELECT msg_id FROM pgmq.set_vt(queue_name => 'VQ', msg_id => 3::bigint, vt => 5)$$, ARRAY[3::bigint],
                  'set_vt with named arguments (pgflow) and another spelling');
SELECT results_eq($$SELECT msg_id FROM pgmq.set_vt('vq', 3, 5)$$, ARRAY[3::bigint], 'set_vt with untyped integer literals');
SELECT is((SELECT count(*)::int FROM pgmq.a_vq), 0, 'set_vt archives nothing');

---------------------------------------------------------------------------------------------------
-- 42P01 for every per-queue function on a missing queue
---------------------------------------------------------------------------------------------------
SELECT throws_ok(format(sql, 'NoSuchQ'), '42P01', 'relation "pgmq.q_nosuchq" does not exist', call || ' on a missing queue')
FROM (VALUES
    ('SELECT pgmq.send(%L, ''{}''::jsonb)', 'send(queue_name, msg)'),
    ('SELECT pgmq.send(%L, ''{}''::jsonb, ''{}''::jsonb)', 'send(queue_name, msg, headers)'),
    ('SELECT pgmq.send(%L, ''{}''::jsonb, 1)', 'send(queue_name, msg, delay integer)'),
    ('SELECT pgmq.send(%L, ''{}''::jsonb, now())', 'send(queue_name, msg, delay timestamptz)'),
    ('SELECT pgmq.send(%L, ''{}''::jsonb, ''{}''::jsonb, 1)', 'send(queue_name, msg, headers, delay integer)'),
    ('SELECT pgmq.send(%L, ''{}''::jsonb, ''{}''::jsonb, now())', 'send(queue_name, msg, headers, delay timestamptz)'),
    ('SELECT pgmq.send_batch(%L, ARRAY[''{}''::jsonb])', 'send_batch(queue_name, msgs)'),
    ('SELECT pgmq.send_batch(%L, ARRAY[''{}''::jsonb], ARRAY[''{}''::jsonb])', 'send_batch(queue_name, msgs, headers)'),
    ('SELECT pgmq.send_batch(%L, ARRAY[''{}''::jsonb], 1)', 'send_batch(queue_name, msgs, delay integer)'),
    ('SELECT pgmq.send_batch(%L, ARRAY[''{}''::jsonb], now())', 'send_batch(queue_name, msgs, delay timestamptz)'),
    ('SELECT pgmq.send_batch(%L, ARRAY[''{}''::jsonb], ARRAY[''{}''::jsonb], 1)', 'send_batch(queue_name, msgs, headers, delay integer)'),
    ('SELECT pgmq.send_batch(%L, ARRAY[''{}''::jsonb], ARRAY[''{}''::jsonb], now())', 'send_batch(queue_name, msgs, headers, delay timestamptz)'),
    ('SELECT pgmq._send_batch(%L, ARRAY[''{}''::jsonb], NULL, now())', '_send_batch'),
    ('SELECT pgmq.read(%L, 30, 1)', 'read'),
    ('SELECT pgmq.read(%L, 30, 1, ''{"a": 1}'')', 'read with conditional'),
    ('SELECT pgmq.read_with_poll(%L, 30, 1)', 'read_with_poll'),
    ('SELECT pgmq.pop(%L)', 'pop(queue_name)'),
    ('SELECT pgmq.pop(%L, 3)', 'pop(queue_name, qty)'),
    ('SELECT pgmq.read_grouped(%L, 30, 1)', 'read_grouped'),
    ('SELECT pgmq.read_grouped_rr(%L, 30, 1)', 'read_grouped_rr'),
    ('SELECT pgmq.read_grouped_head(%L, 30, 1)', 'read_grouped_head'),
    ('SELECT pgmq.read_grouped_with_poll(%L, 30, 1)', 'read_grouped_with_poll'),
    ('SELECT pgmq.read_grouped_rr_with_poll(%L, 30, 1)', 'read_grouped_rr_with_poll'),
    ('SELECT pgmq.read_grouped_head_with_poll(%L, 30, 1)', 'read_grouped_head_with_poll'),
    ('SELECT pgmq.archive(%L, 1::bigint)', 'archive(queue_name, msg_id)'),
    ('SELECT pgmq.archive(%L, ARRAY[1::bigint])', 'archive(queue_name, msg_ids)'),
    ('SELECT pgmq.delete(%L, 1::bigint)', 'delete(queue_name, msg_id)'),
    ('SELECT pgmq.delete(%L, ARRAY[1::bigint])', 'delete(queue_name, msg_ids)'),
    ('SELECT pgmq.set_vt(%L, 1::bigint, 10)', 'set_vt(queue_name, msg_id, vt integer)'),
    ('SELECT pgmq.set_vt(%L, 1::bigint, now())', 'set_vt(queue_name, msg_id, vt timestamptz)'),
    ('SELECT pgmq.set_vt(%L, ARRAY[1::bigint], 10)', 'set_vt(queue_name, msg_ids, vt integer)'),
    ('SELECT pgmq.set_vt(%L, ARRAY[1::bigint], now())', 'set_vt(queue_name, msg_ids, vt timestamptz)'),
    ('SELECT pgmq.purge_queue(%L)', 'purge_queue'),
    ('SELECT pgmq.metrics(%L)', 'metrics'),
    ('SELECT pgmq.create_fifo_index(%L)', 'create_fifo_index'),
    ('SELECT pgmq._create_fifo_index_if_not_exists(%L)', '_create_fifo_index_if_not_exists')
) AS t(sql, call);

-- A queue whose archive is missing: archive fails with the archive's name.
SELECT FROM pgmq.create('noarch');
SELECT FROM pgmq.send('noarch', '{}');
DROP TABLE pgmq.a_noarch;
SELECT throws_ok($$SELECT pgmq.archive('noarch', 1::bigint)$$, '42P01', 'relation "pgmq.a_noarch" does not exist',
                 'archive(queue_name, msg_id) without archive table');
SELECT throws_ok($$SELECT pgmq.archive('noarch', ARRAY[1::bigint])$$, '42P01', 'relation "pgmq.a_noarch" does not exist',
                 'archive(queue_name, msg_ids) without archive table');
SELECT results_eq('SELECT msg_id FROM pgmq.q_noarch', ARRAY[1::bigint], 'the failed archive left the message in the queue');

-- Exceptions to 42P01.
SELECT is(pgmq.drop_queue('NoSuchQ'), false, 'drop_queue on a missing queue: false, no error');
SELECT lives_ok($$SELECT pgmq.disable_notify_insert('NoSuchQ')$$, 'disable_notify_insert on a missing queue: no error');
SELECT throws_ok($$SELECT pgmq.enable_notify_insert('NoSuchQ')$$, 'P0001',
                 'Queue "NoSuchQ" does not exist. Create it first using pgmq.create()', 'enable_notify_insert: its own message');
SELECT lives_ok($$SELECT pgmq.detach_archive('NoSuchQ')$$, 'detach_archive on a missing queue: no error');
SELECT lives_ok($$SELECT pgmq.read_with_poll('NoSuchQ', 30, 1, 0)$$,
                'read_with_poll with max_poll_seconds 0 never reads, so no error');

SELECT * FROM finish();
ROLLBACK;
