-- Reading: read (incl. conditional), qty NULL/0, vt semantics, read_ct,
-- last_read_at, read_with_poll timing, pop.
BEGIN;
SELECT plan(72);
SET LOCAL client_min_messages = error;

\ir helpers/read_calls.psql
-- The message's row in its queue table as text, for before/after comparisons.
CREATE FUNCTION pg_temp.row_of(q text, id bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE format('SELECT t::text FROM pgmq.%I t WHERE msg_id = $1', 'q_' || q) INTO r USING id;
    RETURN r;
END;
$$;

---------------------------------------------------------------------------------------------------
-- read
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('rq');
SELECT FROM pgmq.send_batch('rq', ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}', '{"i": 4}', '{"i": 5}']::jsonb[],
                       ARRAY['{"h": 1}', NULL, NULL, NULL, NULL]::jsonb[]);
CREATE TEMP TABLE rq_before AS SELECT * FROM pgmq.q_rq;

SELECT is(pg_temp.call('r1', $$pgmq.read('rq', 30, 2)$$), 2, 'read(rq, 30, 2) returns 2 rows');
SELECT is(pg_temp.ids('r1'), ARRAY[1, 2]::bigint[], 'read claims the lowest msg_ids');
SELECT ok(pg_temp.claimed_ok('r1', 1, 30), 'read: read_ct 1, last_read_at = clock, vt = clock + 30 s');
SELECT results_eq($$SELECT msg_id, enqueued_at, message, headers FROM got WHERE k = 'r1' ORDER BY msg_id$$,
                  $$SELECT msg_id, enqueued_at, message, headers FROM rq_before WHERE msg_id <= 2 ORDER BY msg_id$$,
                  'read returns enqueued_at, message and headers unchanged');
SELECT set_eq($$SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.q_rq WHERE msg_id <= 2$$,
              $$SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM got WHERE k = 'r1'$$,
              'read returns the rows as updated in the table');
SELECT set_eq($$SELECT * FROM pgmq.q_rq WHERE msg_id > 2$$, $$SELECT * FROM rq_before WHERE msg_id > 2$$,
              'unclaimed rows are untouched (read_ct 0, last_read_at NULL)');

SELECT is(pg_temp.call('r2', $$pgmq.read('rq', 30, 10)$$), 3, 'read(rq, 30, 10) returns the 3 remaining visible rows');
SELECT is(pg_temp.ids('r2'), ARRAY[3, 4, 5]::bigint[], 'claimed rows are not visible again');
SELECT is(pg_temp.call('r3', $$pgmq.read('rq', 30, 10)$$), 0, 'nothing visible: read returns nothing');
SELECT is((SELECT count(*)::int FROM pgmq.q_rq), 5, 'read never removes messages');

UPDATE pgmq.q_rq SET vt = clock_timestamp() - interval '1 second';
CREATE TEMP TABLE rq_visible AS SELECT * FROM pgmq.q_rq;
SELECT is(pg_temp.call('r4', $$pgmq.read('rq', 30, 0)$$), 0, 'qty 0 reads nothing');
SELECT set_eq('SELECT * FROM pgmq.q_rq', 'SELECT * FROM rq_visible', 'qty 0 changes nothing');
SELECT is(pg_temp.call('r5', $$pgmq.read('rq', 30, NULL)$$), 5, 'qty NULL reads every visible message');
SELECT ok(pg_temp.claimed_ok('r5', 2, 30), 'second read: read_ct 2, last_read_at and vt from this read');

SAVEPOINT before_rolled_back_read;
UPDATE pgmq.q_rq SET vt = clock_timestamp() - interval '1 second';
CREATE TEMP TABLE rq_snapshot AS SELECT * FROM pgmq.q_rq;
SELECT FROM pg_temp.call('rolled_back', $$pgmq.read('rq', 30, 10)$$);
ROLLBACK TO SAVEPOINT before_rolled_back_read;
SELECT set_eq('SELECT * FROM pgmq.q_rq', $$SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
                                          FROM got WHERE k = 'r5'$$,
              'a rolled-back read leaves vt, read_ct and last_read_at unchanged');

UPDATE pgmq.q_rq SET vt = clock_timestamp() - interval '1 second' WHERE msg_id IN (2, 3, 4, 5);
SELECT is(pg_temp.call('r6', $$pgmq.read('rq', 0, 2)$$), 2, 'read with vt 0');
SELECT is(pg_temp.ids('r6'), ARRAY[2, 3]::bigint[], 'the lowest visible ids are claimed (1 is invisible)');
SELECT ok(pg_temp.claimed_ok('r6', 3, 0), 'vt 0: vt = clock of the read');
SELECT is(pg_temp.call('r7', $$pgmq.read('rq', -10, 2)$$), 2, 'a vt-0 message is visible again at once');
SELECT is(pg_temp.ids('r7'), ARRAY[2, 3]::bigint[], 'the same messages are read again');
SELECT ok(pg_temp.claimed_ok('r7', 4, -10), 'negative vt: vt = clock - 10 s (in the past)');
SELECT is(pg_temp.call('r8', $$pgmq.read('rq', 30, 10)$$), 4, 'negative vt keeps messages visible');
SELECT is(pg_temp.ids('r8'), ARRAY[2, 3, 4, 5]::bigint[], 'all visible messages read');

-- Delayed messages are not read before their vt.
SELECT FROM pgmq.create('rd');
SELECT FROM pgmq.send('rd', '{"d": 1}', 60);
SELECT FROM pgmq.send('rd', '{"d": 2}');
SELECT FROM pgmq.send('rd', '{"d": 3}', clock_timestamp() + interval '1 hour');
SELECT is(pg_temp.call('d1', $$pgmq.read('rd', 30, 10)$$), 1, 'delayed messages are invisible');
SELECT is(pg_temp.ids('d1'), ARRAY[2]::bigint[], 'only the undelayed message is read');
SELECT is(pg_temp.row_of('rd', 1), (SELECT t::text FROM pgmq.q_rd t WHERE msg_id = 1), 'sanity: row_of');
SELECT is((SELECT read_ct FROM pgmq.q_rd WHERE msg_id = 1), 0, 'an invisible message is not touched');

-- conditional
SELECT FROM pgmq.create('rc');
SELECT FROM pgmq.send_batch('rc', ARRAY['{"type": "a", "n": 1}', '{"type": "b", "n": 2}', '{"type": "a", "n": 3}',
                                   '{"type": "a", "nested": {"x": 1, "y": 2}}', '"a"']::jsonb[]);
SELECT is(pg_temp.call('c1', $$pgmq.read('rc', 0, 10, '{"type": "a"}')$$), 3, 'conditional filters with @>');
SELECT is(pg_temp.ids('c1'), ARRAY[1, 3, 4]::bigint[], 'conditional {"type": "a"}');
SELECT is(pg_temp.call('c2', $$pgmq.read('rc', 0, 1, '{"type": "a"}')$$), 1, 'qty applies after the filter');
SELECT is(pg_temp.ids('c2'), ARRAY[1]::bigint[], 'lowest matching id first');
SELECT is(pg_temp.call('c3', $$pgmq.read('rc', 0, 10, '{}')$$), 5, 'conditional {} = no filter');
SELECT is(pg_temp.call('c4', $$pgmq.read('rc', 0, 10, NULL)$$), 5, 'conditional NULL = no filter');
SELECT is(pg_temp.call('c5', $$pgmq.read('rc', 0, 10)$$), 5, 'conditional defaults to {}');
SELECT is(pg_temp.call('c6', $$pgmq.read(queue_name => 'rc', vt => 0, qty => 10, conditional => '{"nested": {"x": 1}}')$$), 1,
          'named arguments with a nested conditional');
SELECT is(pg_temp.ids('c6'), ARRAY[4]::bigint[], 'nested containment');
SELECT is(pg_temp.call('c7', $$pgmq.read('rc', 0, 10, '{"type": "c"}')$$), 0, 'no match: nothing');
SELECT is((SELECT array_agg(read_ct ORDER BY msg_id) FROM pgmq.q_rc), ARRAY[5, 3, 4, 5, 3],
          'read_ct counts every read of each message');

---------------------------------------------------------------------------------------------------
-- read_with_poll
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('wp');
SELECT FROM pgmq.send_batch('wp', ARRAY['{"w": 1}', '{"w": 2}']::jsonb[]);
SELECT is(pg_temp.call('p1', $$pgmq.read_with_poll('wp', 30, 10, 5, 100)$$), 2,
          'read_with_poll returns what is there without waiting to fill qty');
SELECT cmp_ok(pg_temp.elapsed_ms('p1'), '<', 1000::numeric, 'read_with_poll returns immediately when messages exist');
SELECT ok(pg_temp.claimed_ok('p1', 1, 30), 'read_with_poll claims like read (read_ct, last_read_at, vt)');

SELECT is(pg_temp.call('p2', $$pgmq.read_with_poll('wp', 30, 10, 1, 100)$$), 0, 'nothing visible: read_with_poll returns empty');
SELECT cmp_ok(pg_temp.elapsed_ms('p2'), '>=', 990::numeric, '... after the deadline (max_poll_seconds 1)');
SELECT cmp_ok(pg_temp.elapsed_ms('p2'), '<', 2500::numeric, '... and not much later');

UPDATE pgmq.q_wp SET vt = clock_timestamp() - interval '1 second';
CREATE TEMP TABLE wp_snapshot AS SELECT * FROM pgmq.q_wp;
SELECT is(pg_temp.call('p3', $$pgmq.read_with_poll('wp', 30, 10, 0, 100)$$), 0, 'max_poll_seconds 0: empty');
SELECT is(pg_temp.call('p4', $$pgmq.read_with_poll('wp', 30, 10, -3, 100)$$), 0, 'max_poll_seconds < 0: empty');
SELECT cmp_ok(pg_temp.elapsed_ms('p3') + pg_temp.elapsed_ms('p4'), '<', 500::numeric, '... at once');
SELECT set_eq('SELECT * FROM pgmq.q_wp', 'SELECT * FROM wp_snapshot', 'max_poll_seconds <= 0 does not read at all');

SELECT FROM pgmq.send('wp', '{"w": 3}', 1);
UPDATE pgmq.q_wp SET vt = clock_timestamp() + interval '1 hour' WHERE msg_id <> 3;
SELECT is(pg_temp.call('p5', $$pgmq.read_with_poll(queue_name => 'wp', vt => 30, qty => 5, max_poll_seconds => 4, poll_interval_ms => 50)$$),
          1, 'read_with_poll (named arguments) picks up a message that becomes visible while polling');
SELECT is(pg_temp.ids('p5'), ARRAY[3]::bigint[], '... the delayed message');
SELECT cmp_ok(pg_temp.elapsed_ms('p5'), '>', 500::numeric, '... after waiting for its vt');
SELECT cmp_ok(pg_temp.elapsed_ms('p5'), '<', 2500::numeric, '... well before the deadline');

SELECT FROM pgmq.send_batch('wp', ARRAY['{"kind": "x"}', '{"kind": "y"}']::jsonb[]);
SELECT is(pg_temp.call('p6', $$pgmq.read_with_poll('wp', 30, 5, 1, 100, '{"kind": "z"}')$$), 0,
          'read_with_poll with a non-matching conditional waits and returns empty');
SELECT cmp_ok(pg_temp.elapsed_ms('p6'), '>=', 990::numeric, '... after the deadline');
SELECT is(pg_temp.call('p7', $$pgmq.read_with_poll('wp', 30, 5, conditional => '{"kind": "y"}')$$), 1,
          'read_with_poll with a matching conditional (other arguments defaulted)');
SELECT results_eq($$SELECT message FROM got WHERE k = 'p7'$$, $$VALUES ('{"kind": "y"}'::jsonb)$$, '... returns the match');
SELECT is(pg_temp.call('p8', $$pgmq.read_with_poll('wp', 30, 1)$$), 1, 'read_with_poll with default poll arguments');
SELECT cmp_ok(pg_temp.elapsed_ms('p8'), '<', 1000::numeric, '... returns at once when a message is visible');

---------------------------------------------------------------------------------------------------
-- pop
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('pp');
SELECT FROM pgmq.send_batch('pp', ARRAY['{"p": 1}', '{"p": 2}', '{"p": 3}', '{"p": 4}', '{"p": 5}']::jsonb[],
                       ARRAY['{"h": 1}', '{"h": 2}', NULL, NULL, NULL]::jsonb[]);
SELECT FROM pgmq.send('pp', '{"p": 6}', 3600);
SELECT FROM pgmq.read('pp', 30, 1);
CREATE TEMP TABLE pp_before AS SELECT * FROM pgmq.q_pp;
SELECT is(pg_temp.call('o1', $$pgmq.pop('pp')$$), 1, 'pop(queue_name) pops one message');
SELECT results_eq($$SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM got WHERE k = 'o1'$$,
                  $$SELECT * FROM pp_before WHERE msg_id = 2$$,
                  'pop returns the lowest visible message exactly as stored (read_ct, vt, last_read_at unchanged)');
SELECT is((SELECT count(*)::int FROM pgmq.q_pp WHERE msg_id = 2), 0, 'pop deletes the message');
SELECT is(pg_temp.call('o2', $$pgmq.pop('pp', 2)$$), 2, 'pop(queue_name, 2)');
SELECT is(pg_temp.ids('o2'), ARRAY[3, 4]::bigint[], 'pop takes the lowest visible ids');
UPDATE pgmq.q_pp SET vt = '2000-01-01+00' WHERE msg_id = 1;
SELECT is(pg_temp.call('o3', $$pgmq.pop(queue_name => 'pp', qty => NULL)$$), 2, 'pop with qty NULL pops every visible message');
SELECT results_eq($$SELECT msg_id, read_ct, last_read_at IS NOT NULL, vt FROM got WHERE k = 'o3' ORDER BY msg_id$$,
                  $$VALUES (1::bigint, 1, true, '2000-01-01+00'::timestamptz), (5, 0, false, (SELECT vt FROM pp_before WHERE msg_id = 5))$$,
                  'a previously read message is popped with its read_ct, last_read_at and vt');
SELECT results_eq('SELECT msg_id FROM pgmq.q_pp', ARRAY[6::bigint], 'the delayed message stays');
SELECT is(pg_temp.call('o4', $$pgmq.pop('pp')$$), 0, 'pop with nothing visible returns nothing');
UPDATE pgmq.q_pp SET vt = clock_timestamp() - interval '1 s';
SELECT is(pg_temp.call('o5', $$pgmq.pop('pp', 0)$$), 0, 'pop qty 0 returns nothing');
SELECT is((SELECT count(*)::int FROM pgmq.q_pp), 1, '... and deletes nothing');
SELECT is((SELECT count(*)::int FROM pgmq.a_pp), 0, 'pop archives nothing');

-- _poll_wait names the NULL argument's actual meaning (it raised XX000 about "argument 1").
SELECT throws_ok($$SELECT pgmq._poll_wait('q', NULL, clock_timestamp())$$, '22004',
                 'poll_interval_ms and deadline must not be NULL', '_poll_wait with a NULL interval: 22004');
SELECT throws_ok($$SELECT pgmq._poll_wait('q', 10, NULL)$$, '22004',
                 'poll_interval_ms and deadline must not be NULL', '_poll_wait with a NULL deadline: 22004');

SELECT * FROM finish();
ROLLBACK;
