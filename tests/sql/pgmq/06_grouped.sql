-- FIFO / grouped reads: read_grouped, read_grouped_rr, read_grouped_head, their
-- _with_poll forms, create_fifo_index, create_fifo_indexes_all.
BEGIN;
SELECT plan(77);
SET LOCAL client_min_messages = error;

\ir helpers/read_calls.psql
-- The contract's example: A:1,2,4  B:3,5  C:6  default:7 (no headers).
CREATE FUNCTION pg_temp.fill(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq.create(q);
    PERFORM pgmq.send(q, jsonb_build_object('n', n), CASE WHEN g IS NULL THEN NULL ELSE jsonb_build_object('x-pgmq-group', g) END)
    FROM (VALUES (1, 'A'), (2, 'A'), (3, 'B'), (4, 'A'), (5, 'B'), (6, 'C'), (7, NULL)) AS m(n, g)
    ORDER BY n;
END;
$$;
-- Ids in the order the call returned them.
CREATE FUNCTION pg_temp.ordered_ids(call text) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    r bigint[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(s.msg_id ORDER BY s.ordinality), ''{}'') FROM %s WITH ORDINALITY AS s', call) INTO r;
    RETURN r;
END;
$$;
CREATE FUNCTION pg_temp.advisory_lock_held(key bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
                     AND l.classid::text::bigint = ((key >> 32) & 4294967295)
                     AND l.objid::text::bigint = (key & 4294967295))
$$;

---------------------------------------------------------------------------------------------------
-- read_grouped: fill the batch from as few groups as possible
---------------------------------------------------------------------------------------------------
SELECT FROM pg_temp.fill('g1');
SELECT is(pg_temp.call('g1a', $$pgmq.read_grouped('g1', 30, 4)$$), 4, 'read_grouped qty 4 returns 4 messages');
SELECT is(pg_temp.ids('g1a'), ARRAY[1, 2, 3, 4]::bigint[], 'contract example: 1, 2, 4 (A) then 3 (B)');
SELECT ok(pg_temp.claimed_ok('g1a', 1, 30), 'read_grouped sets read_ct + 1, last_read_at = clock, vt = clock + vt s');
SELECT is((SELECT count(*)::int FROM pgmq.q_g1 WHERE read_ct > 0), 4, 'only returned messages were updated');
SELECT is(pg_temp.call('g1b', $$pgmq.read_grouped('g1', 30, 10)$$), 2, 'next read_grouped');
SELECT is(pg_temp.ids('g1b'), ARRAY[6, 7]::bigint[], 'A is all in flight, B is blocked by its in-flight 3; C and default go');
SELECT is(pg_temp.call('g1c', $$pgmq.read_grouped('g1', 30, 10)$$), 0, 'then nothing');

SELECT FROM pg_temp.fill('g2');
SELECT is(pg_temp.call('g2', $$pgmq.read_grouped('g2', 30, 1)$$), 1, 'read_grouped qty 1');
SELECT is(pg_temp.ids('g2'), ARRAY[1]::bigint[], 'qty 1: the oldest group head');
SELECT FROM pg_temp.fill('g3');
SELECT is(pg_temp.call('g3', $$pgmq.read_grouped('g3', 30, 3)$$), 3, 'read_grouped qty 3');
SELECT is(pg_temp.ids('g3'), ARRAY[1, 2, 4]::bigint[], 'qty 3: all of group A first');
SELECT FROM pg_temp.fill('g4');
SELECT is(pg_temp.call('g4', $$pgmq.read_grouped('g4', 30, 6)$$), 6, 'read_grouped qty 6');
SELECT is(pg_temp.ids('g4'), ARRAY[1, 2, 3, 4, 5, 6]::bigint[], 'qty 6: A, then B, then C');
SELECT FROM pg_temp.fill('g5');
SELECT FROM pgmq.read('g5', 30, 1);
SELECT is(pg_temp.call('g5', $$pgmq.read_grouped('g5', 30, 10)$$), 4, 'read_grouped while A''s first message is in flight');
SELECT is(pg_temp.ids('g5'), ARRAY[3, 5, 6, 7]::bigint[], 'no later message of A is handed out');
SELECT FROM pg_temp.fill('g6');
SELECT FROM pgmq.set_vt('g6', 2::bigint, 60);
SELECT is(pg_temp.call('g6', $$pgmq.read_grouped('g6', 30, 10)$$), 6, 'read_grouped with an in-flight message inside group A');
SELECT is(pg_temp.ids('g6'), ARRAY[1, 3, 4, 5, 6, 7]::bigint[],
          'the head (1) is visible, so A''s visible messages 1 and 4 go; the in-flight 2 is skipped');
SELECT is(pg_temp.call('g0', $$pgmq.read_grouped('g1', 30, 0)$$), 0, 'read_grouped qty 0 returns nothing');

---------------------------------------------------------------------------------------------------
-- read_grouped_rr: layered round robin, rows in selection order
---------------------------------------------------------------------------------------------------
SELECT FROM pg_temp.fill('r1');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r1', 30, 5)$$), ARRAY[1, 3, 6, 7, 2]::bigint[],
          'contract example: qty 5 -> 1(A), 3(B), 6(C), 7(default), 2(A), in this order');
SELECT results_eq($$SELECT read_ct, last_read_at IS NOT NULL, vt > clock_timestamp() + interval '25 s' FROM pgmq.q_r1
                    WHERE msg_id IN (1, 2, 3, 6, 7)$$,
                  $$VALUES (1, true, true), (1, true, true), (1, true, true), (1, true, true), (1, true, true)$$,
                  'read_grouped_rr claims what it returns');
SELECT is((SELECT array_agg(msg_id ORDER BY msg_id) FROM pgmq.q_r1 WHERE read_ct = 0), ARRAY[4, 5]::bigint[],
          'the rest is untouched');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r1', 30, 10)$$), ARRAY[]::bigint[],
          'every group head is in flight: nothing more (4 and 5 wait)');
SELECT ok(pg_temp.advisory_lock_held(hashtextextended('A', 0)) AND pg_temp.advisory_lock_held(hashtextextended('_default_fifo_group', 0)),
          'read_grouped_rr holds transaction advisory locks keyed on hashtextextended(group, 0)');

SELECT FROM pg_temp.fill('r2');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r2', 30, 7)$$), ARRAY[1, 3, 6, 7, 2, 5, 4]::bigint[],
          'qty 7: first of each group, then second of each, then third');
SELECT FROM pg_temp.fill('r3');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r3', 30, 2)$$), ARRAY[1, 3]::bigint[], 'qty 2: the two oldest groups');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r3', 30, 10)$$), ARRAY[6, 7]::bigint[], 'then the groups whose heads are free');
SELECT FROM pg_temp.fill('r4');
SELECT FROM pgmq.read('r4', 30, 1);
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r4', 30, 10)$$), ARRAY[3, 6, 7, 5]::bigint[],
          'a group whose head is in flight is skipped entirely');
SELECT FROM pg_temp.fill('r5');
SELECT FROM pgmq.set_vt('r5', 1::bigint, -5);
SELECT FROM pgmq.set_vt('r5', 2::bigint, 60);
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r5', 30, 10)$$), ARRAY[1, 3, 6, 7, 4, 5]::bigint[],
          'an in-flight non-head message is skipped, later visible ones of the group still go');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('r2', 30, 0)$$), ARRAY[]::bigint[], 'read_grouped_rr qty 0 returns nothing');

---------------------------------------------------------------------------------------------------
-- read_grouped_head: at most one message per group
---------------------------------------------------------------------------------------------------
SELECT FROM pg_temp.fill('h1');
SELECT is(pg_temp.call('h1a', $$pgmq.read_grouped_head('h1', 30, 10)$$), 4, 'read_grouped_head returns one message per group');
SELECT is(pg_temp.ids('h1a'), ARRAY[1, 3, 6, 7]::bigint[], 'the heads of A, B, C and default');
SELECT ok(pg_temp.claimed_ok('h1a', 1, 30), 'read_grouped_head claims (read_ct, last_read_at, vt)');
SELECT is(pg_temp.call('h1b', $$pgmq.read_grouped_head('h1', 30, 10)$$), 0, 'all heads in flight: nothing');
SELECT FROM pgmq.delete('h1', ARRAY[1, 3]::bigint[]);
SELECT is(pg_temp.call('h1c', $$pgmq.read_grouped_head('h1', 30, 10)$$), 2, 'after acknowledging the heads of A and B');
SELECT is(pg_temp.ids('h1c'), ARRAY[2, 5]::bigint[], 'their next messages are the new heads');
SELECT FROM pg_temp.fill('h2');
SELECT is(pg_temp.call('h2a', $$pgmq.read_grouped_head('h2', 30, 2)$$), 2, 'read_grouped_head qty 2');
SELECT is(pg_temp.ids('h2a'), ARRAY[1, 3]::bigint[], 'lowest heads first');
SELECT is(pg_temp.call('h2b', $$pgmq.read_grouped_head('h2', 30, 10)$$), 2, 'then');
SELECT is(pg_temp.ids('h2b'), ARRAY[6, 7]::bigint[], 'the remaining heads');

-- Group keys: missing key, NULL headers and the literal default name share one group.
SELECT FROM pgmq.create('h3');
SELECT FROM pgmq.send('h3', '{}', NULL::jsonb);
SELECT FROM pgmq.send('h3', '{}', '{"other": 1}'::jsonb);
SELECT FROM pgmq.send('h3', '{}', '{"x-pgmq-group": "_default_fifo_group"}'::jsonb);
SELECT FROM pgmq.send('h3', '{}', '{"x-pgmq-group": "a"}'::jsonb);
SELECT FROM pgmq.send('h3', '{}', '{"x-pgmq-group": "A"}'::jsonb);
SELECT is(pg_temp.call('h3', $$pgmq.read_grouped_head('h3', 30, 10)$$), 3, 'group keys');
SELECT is(pg_temp.ids('h3'), ARRAY[1, 4, 5]::bigint[],
          'no key / NULL headers / "_default_fifo_group" form one group; keys are case-sensitive');

-- A delayed (never read) first message blocks its group in all three strategies.
CREATE FUNCTION pg_temp.fill_delayed(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmq.create(q);
    PERFORM pgmq.send(q, '{"n": 1}', '{"x-pgmq-group": "D"}'::jsonb, 60);
    PERFORM pgmq.send(q, '{"n": 2}', '{"x-pgmq-group": "D"}'::jsonb);
    PERFORM pgmq.send(q, '{"n": 3}', '{"x-pgmq-group": "E"}'::jsonb);
END;
$$;
SELECT FROM pg_temp.fill_delayed('dl1');
SELECT FROM pg_temp.fill_delayed('dl2');
SELECT FROM pg_temp.fill_delayed('dl3');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped('dl1', 30, 10)$$), ARRAY[3]::bigint[], 'read_grouped: a delayed earlier message blocks its group');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('dl2', 30, 10)$$), ARRAY[3]::bigint[], 'read_grouped_rr: an invisible head blocks its group');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_head('dl3', 30, 10)$$), ARRAY[3]::bigint[], 'read_grouped_head: an invisible head blocks its group');

---------------------------------------------------------------------------------------------------
-- _with_poll forms
---------------------------------------------------------------------------------------------------
SELECT FROM pg_temp.fill('p1');
SELECT is(pg_temp.call('p1', $$pgmq.read_grouped_with_poll('p1', 30, 4, 2, 50)$$), 4, 'read_grouped_with_poll');
SELECT is(pg_temp.ids('p1'), ARRAY[1, 2, 3, 4]::bigint[], 'read_grouped_with_poll returns what read_grouped would');
SELECT cmp_ok(pg_temp.elapsed_ms('p1'), '<', 1000::numeric, '... at once');
SELECT FROM pg_temp.fill('p2');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr_with_poll('p2', 30, 5, 2, 50)$$), ARRAY[1, 3, 6, 7, 2]::bigint[],
          'read_grouped_rr_with_poll keeps the selection order');
SELECT FROM pg_temp.fill('p3');
SELECT is(pg_temp.call('p3', $$pgmq.read_grouped_head_with_poll('p3', 30, 10, 2, 50)$$), 4, 'read_grouped_head_with_poll');
SELECT is(pg_temp.ids('p3'), ARRAY[1, 3, 6, 7]::bigint[], 'read_grouped_head_with_poll returns the heads');
SELECT ok(pg_temp.claimed_ok('p3', 1, 30), '_with_poll claims like the base function');

SELECT is(pg_temp.call('p1e', $$pgmq.read_grouped_with_poll('p1', 30, 10, 1, 100)$$), 2, 'read_grouped_with_poll: C and default');
SELECT is(pg_temp.call('p1f', $$pgmq.read_grouped_with_poll('p1', 30, 10, 1, 100)$$), 0, 'read_grouped_with_poll: nothing left');
SELECT cmp_ok(pg_temp.elapsed_ms('p1f'), '>=', 990::numeric, '... returned after the deadline');
SELECT is(pg_temp.call('p2e', $$pgmq.read_grouped_rr_with_poll('p2', 30, 10, 1, 100)$$), 0, 'read_grouped_rr_with_poll: nothing eligible');
SELECT cmp_ok(pg_temp.elapsed_ms('p2e'), '>=', 990::numeric, '... returned after the deadline');
SELECT is(pg_temp.call('p3e', $$pgmq.read_grouped_head_with_poll('p3', 30, 10, 1, 100)$$), 0, 'read_grouped_head_with_poll: no free head');
SELECT cmp_ok(pg_temp.elapsed_ms('p3e'), '>=', 990::numeric, '... returned after the deadline');
SELECT cmp_ok(pg_temp.elapsed_ms('p3e'), '<', 2500::numeric, '... and not much later');

SELECT FROM pg_temp.fill('p4');
SELECT is(pg_temp.call('p4a', $$pgmq.read_grouped_with_poll('p4', 30, 10, 0, 100)$$)
          + pg_temp.call('p4b', $$pgmq.read_grouped_rr_with_poll('p4', 30, 10, 0)$$)
          + pg_temp.call('p4c', $$pgmq.read_grouped_head_with_poll('p4', 30, 10, -1)$$), 0,
          'max_poll_seconds <= 0: all three return empty');
SELECT is((SELECT count(*)::int FROM pgmq.q_p4 WHERE read_ct > 0), 0, '... without reading');
SELECT is(pg_temp.call('p4d', $$pgmq.read_grouped_with_poll('p4', 30, 1)$$)
          + pg_temp.call('p4e', $$pgmq.read_grouped_rr_with_poll('p4', 30, 1)$$)
          + pg_temp.call('p4f', $$pgmq.read_grouped_head_with_poll(queue_name => 'p4', vt => 30, qty => 1)$$), 3,
          'default max_poll_seconds / poll_interval_ms');
SELECT cmp_ok(pg_temp.elapsed_ms('p4d') + pg_temp.elapsed_ms('p4e') + pg_temp.elapsed_ms('p4f'), '<', 1000::numeric,
              '... return at once when something is there');
SELECT is(ARRAY[pg_temp.ids('p4d'), pg_temp.ids('p4e'), pg_temp.ids('p4f')], ARRAY[[1], [3], [6]]::bigint[],
          '... each taking the oldest free group');

SELECT FROM pgmq.create('p5');
SELECT FROM pgmq.send('p5', '{}', '{"x-pgmq-group": "late"}'::jsonb, 1);
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr_with_poll('p5', 30, 5, 4, 50)$$), ARRAY[1]::bigint[],
          'read_grouped_rr_with_poll picks up a message that becomes visible while polling');

---------------------------------------------------------------------------------------------------
-- create_fifo_index / create_fifo_indexes_all
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('fq');
SELECT lives_ok($$SELECT pgmq.create_fifo_index('fq')$$, 'create_fifo_index');
SELECT is((SELECT pg_get_indexdef('pgmq.q_fq_fifo_idx'::regclass)), 'CREATE INDEX q_fq_fifo_idx ON pgmq.q_fq USING gin (headers)',
          'create_fifo_index makes q_<n>_fifo_idx GIN (headers)');
SELECT lives_ok($$SELECT pgmq.create_fifo_index('FQ')$$, 'create_fifo_index again (other spelling)');
SELECT is((SELECT count(*)::int FROM pg_index WHERE indrelid = 'pgmq.q_fq'::regclass), 3, 'still only pkey, vt and fifo index');
SELECT FROM pgmq.create('fq2');
SELECT lives_ok($$SELECT pgmq._create_fifo_index_if_not_exists('fq2')$$, '_create_fifo_index_if_not_exists');
SELECT is((SELECT pg_get_indexdef('pgmq.q_fq2_fifo_idx'::regclass)), 'CREATE INDEX q_fq2_fifo_idx ON pgmq.q_fq2 USING gin (headers)',
          '_create_fifo_index_if_not_exists makes the index');
SELECT lives_ok($$SELECT pgmq.create_fifo_indexes_all()$$, 'create_fifo_indexes_all');
SELECT is_empty($$SELECT m.queue_name FROM pgmq.meta m
                  WHERE to_regclass(format('pgmq.%I', pgmq.format_table_name(m.queue_name, 'q') || '_fifo_idx')) IS NULL$$,
                'create_fifo_indexes_all gives every queue a fifo index');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relname LIKE '%\_fifo\_idx'),
          (SELECT count(*)::int FROM pgmq.meta), 'one fifo index per queue');
SELECT lives_ok($$SELECT pgmq.create_fifo_indexes_all()$$, 'create_fifo_indexes_all is idempotent');
SELECT FROM pgmq.create('FifoMixed');
SELECT FROM pgmq.create_fifo_indexes_all();
SELECT ok(to_regclass('pgmq.q_fifomixed_fifo_idx') IS NOT NULL, 'create_fifo_indexes_all handles mixed-case names');
SELECT is(pg_temp.ordered_ids($$pgmq.read_grouped_rr('fq', 30, 5)$$), ARRAY[]::bigint[], 'grouped reads work with the index (empty queue)');

SELECT * FROM finish();
ROLLBACK;
