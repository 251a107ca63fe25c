-- Sending: the six send and six send_batch overloads, vt values, delays,
-- headers, batch checks, id order, overload ambiguity, _validate_batch_params and _send_batch.
BEGIN;
SELECT plan(93);
SET LOCAL client_min_messages = error;

-- Runs a set-returning send call; records its ids (in output order) and the clock around it.
CREATE TEMP TABLE sent (k text PRIMARY KEY, ids bigint[], t0 timestamptz, t1 timestamptz);
CREATE FUNCTION pg_temp.timed(k text, call text) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    got bigint[];
BEGIN
    EXECUTE format('SELECT array_agg(x ORDER BY o) FROM %s WITH ORDINALITY AS s(x, o)', call) INTO got;
    INSERT INTO sent VALUES (k, got, t0, clock_timestamp());
    RETURN got;
END;
$$;
-- Does the message's vt lie within [t0, t1] of send k, shifted by delay?
CREATE FUNCTION pg_temp.vt_ok(k text, q text, id bigint, delay interval) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v timestamptz;
    ok boolean;
BEGIN
    EXECUTE format('SELECT vt FROM pgmq.%I WHERE msg_id = $1', 'q_' || q) INTO v USING id;
    SELECT v BETWEEN s.t0 + delay AND s.t1 + delay INTO ok FROM sent s WHERE s.k = vt_ok.k;
    RETURN ok;
END;
$$;

SELECT FROM pgmq.create('sq');
SELECT FROM pgmq.create('sb');

---------------------------------------------------------------------------------------------------
-- send: six overloads
---------------------------------------------------------------------------------------------------
SELECT is(pg_temp.timed('A', $$pgmq.send('sq', '{"o": "A"}')$$), ARRAY[1::bigint], 'send(queue_name, msg) returns msg_id 1');
SELECT results_eq($$SELECT read_ct, enqueued_at = now(), last_read_at IS NULL, message, headers IS NULL FROM pgmq.q_sq WHERE msg_id = 1$$,
                  $$VALUES (0, true, true, '{"o": "A"}'::jsonb, true)$$,
                  'send(queue_name, msg): read_ct 0, enqueued_at now(), last_read_at NULL, message as given, headers NULL');
SELECT ok(pg_temp.vt_ok('A', 'sq', 1, '0'), 'send(queue_name, msg): vt = clock');

SELECT is(pg_temp.timed('B', $$pgmq.send('sq', '{"o": "B"}', '{"h": "B"}'::jsonb)$$), ARRAY[2::bigint],
          'send(queue_name, msg, headers) returns the next id');
SELECT results_eq($$SELECT read_ct, last_read_at IS NULL, message, headers FROM pgmq.q_sq WHERE msg_id = 2$$,
                  $$VALUES (0, true, '{"o": "B"}'::jsonb, '{"h": "B"}'::jsonb)$$, 'send(queue_name, msg, headers) stores the headers');
SELECT ok(pg_temp.vt_ok('B', 'sq', 2, '0'), 'send(queue_name, msg, headers): vt = clock');

SELECT is(pg_temp.timed('C', $$pgmq.send('sq', '{"o": "C"}', 30)$$), ARRAY[3::bigint], 'send(queue_name, msg, delay integer)');
SELECT results_eq($$SELECT message, headers IS NULL FROM pgmq.q_sq WHERE msg_id = 3$$,
                  $$VALUES ('{"o": "C"}'::jsonb, true)$$, 'send(queue_name, msg, delay integer): headers NULL');
SELECT ok(pg_temp.vt_ok('C', 'sq', 3, '30 s'), 'send(queue_name, msg, delay integer): vt = clock + delay s');

SELECT is(pg_temp.timed('D', $$pgmq.send('sq', '{"o": "D"}', '2031-02-03 04:05:06+00'::timestamptz)$$), ARRAY[4::bigint],
          'send(queue_name, msg, delay timestamptz)');
SELECT results_eq($$SELECT vt, headers IS NULL FROM pgmq.q_sq WHERE msg_id = 4$$,
                  $$VALUES ('2031-02-03 04:05:06+00'::timestamptz, true)$$, 'send(queue_name, msg, delay timestamptz): vt = delay');

SELECT is(pg_temp.timed('E', $$pgmq.send('sq', '{"o": "E"}', '{"h": "E"}'::jsonb, 45)$$), ARRAY[5::bigint],
          'send(queue_name, msg, headers, delay integer)');
SELECT results_eq($$SELECT message, headers FROM pgmq.q_sq WHERE msg_id = 5$$,
                  $$VALUES ('{"o": "E"}'::jsonb, '{"h": "E"}'::jsonb)$$, 'send(queue_name, msg, headers, delay integer): headers');
SELECT ok(pg_temp.vt_ok('E', 'sq', 5, '45 s'), 'send(queue_name, msg, headers, delay integer): vt = clock + delay s');

SELECT is(pg_temp.timed('F', $$pgmq.send('sq', '{"o": "F"}', '{"h": "F"}'::jsonb, '2032-01-01 00:00:00+00'::timestamptz)$$),
          ARRAY[6::bigint], 'send(queue_name, msg, headers, delay timestamptz)');
SELECT results_eq($$SELECT read_ct, enqueued_at = now(), last_read_at IS NULL, vt, message, headers FROM pgmq.q_sq WHERE msg_id = 6$$,
                  $$VALUES (0, true, true, '2032-01-01 00:00:00+00'::timestamptz, '{"o": "F"}'::jsonb, '{"h": "F"}'::jsonb)$$,
                  'send(queue_name, msg, headers, delay timestamptz): every column');

-- Negative and zero delays, NULL and non-object messages.
SELECT is(pg_temp.timed('G', $$pgmq.send('sq', '{"o": "G"}', -30)$$), ARRAY[7::bigint], 'send with a negative delay');
SELECT ok(pg_temp.vt_ok('G', 'sq', 7, '-30 s'), 'negative delay puts vt in the past');
SELECT is(pg_temp.timed('H', $$pgmq.send('sq', '{"o": "H"}', 0)$$), ARRAY[8::bigint], 'send with delay 0');
SELECT ok(pg_temp.vt_ok('H', 'sq', 8, '0'), 'delay 0: vt = clock');
SELECT results_eq($$SELECT * FROM pgmq.send('sq', NULL)$$, ARRAY[9::bigint], 'send(queue_name, NULL): an untyped NULL msg resolves');
SELECT is((SELECT message FROM pgmq.q_sq WHERE msg_id = 9), NULL, 'a NULL message is stored as NULL');
SELECT results_eq($$SELECT * FROM pgmq.send('sq', '[1, "two", null]')$$, ARRAY[10::bigint], 'send a JSON array');
SELECT results_eq($$SELECT * FROM pgmq.send('sq', 'null'::jsonb, NULL::jsonb)$$, ARRAY[11::bigint],
                  'send JSON null with explicit NULL headers');
SELECT results_eq($$SELECT message, headers IS NULL FROM pgmq.q_sq WHERE msg_id IN (10, 11) ORDER BY msg_id$$,
                  $$VALUES ('[1, "two", null]'::jsonb, true), ('null'::jsonb, true)$$, 'messages are stored as given');

-- Named notation as used by clients.
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"o": "named"}', delay => 10)$$, ARRAY[12::bigint],
                  'send(queue_name =>, msg =>, delay =>)');
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"o": "named2"}', headers => '{"h": 1}')$$,
                  ARRAY[13::bigint], 'send(queue_name =>, msg =>, headers =>)');
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{}', headers => '{"h": 2}', delay => now() + interval '1 day')$$,
                  ARRAY[14::bigint], 'send(queue_name =>, msg =>, headers =>, delay => timestamptz)');
SELECT results_eq($$SELECT headers, vt = now() + interval '1 day' FROM pgmq.q_sq WHERE msg_id IN (13, 14) ORDER BY msg_id$$,
                  $$VALUES ('{"h": 1}'::jsonb, false), ('{"h": 2}'::jsonb, true)$$, 'named arguments reach the right parameters');

-- No defaults: an untyped NULL third (or fourth) argument is ambiguous.
SELECT throws_ok($$SELECT pgmq.send('sq', '{}', NULL)$$, '42725', 'function pgmq.send(unknown, unknown, unknown) is not unique',
                 'send with an untyped NULL third argument is ambiguous');
SELECT throws_ok($$SELECT pgmq.send('sq', '{}', '{}', NULL)$$, '42725',
                 'function pgmq.send(unknown, unknown, unknown, unknown) is not unique',
                 'send with an untyped NULL fourth argument is ambiguous');
SELECT throws_ok($$SELECT pgmq.send_batch('sq', ARRAY['{}'::jsonb], NULL)$$, '42725',
                 'function pgmq.send_batch(unknown, jsonb[], unknown) is not unique',
                 'send_batch with an untyped NULL third argument is ambiguous');
SELECT throws_ok($$SELECT pgmq.send('sq')$$, '42883', NULL, 'send needs a message');

-- ids: increasing, never reused, rolled-back sends consume ids; mixed-case names share the table.
SAVEPOINT before_rollback;
SELECT NULL FROM pgmq.send('sq', '{"o": "rolled back"}');
ROLLBACK TO SAVEPOINT before_rollback;
SELECT results_eq($$SELECT * FROM pgmq.send('SQ', '{"o": "after rollback"}')$$, ARRAY[16::bigint],
                  'a rolled-back send consumed id 15; SQ resolves to q_sq');
SELECT is_empty($$SELECT 1 FROM pgmq.q_sq WHERE msg_id = 15$$, 'the rolled-back message does not exist');
SELECT results_eq('SELECT msg_id FROM pgmq.q_sq ORDER BY msg_id',
                  $$SELECT generate_series(1, 14)::bigint UNION ALL SELECT 16 ORDER BY 1$$,
                  'all sends stored with strictly increasing ids');

---------------------------------------------------------------------------------------------------
-- send_batch: six overloads
---------------------------------------------------------------------------------------------------
SELECT is(pg_temp.timed('B1', $$pgmq.send_batch('sb', ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}']::jsonb[])$$),
          ARRAY[1, 2, 3]::bigint[], 'send_batch(queue_name, msgs) returns ids in input order');
SELECT results_eq($$SELECT msg_id, message, headers, read_ct, last_read_at FROM pgmq.q_sb WHERE msg_id <= 3 ORDER BY msg_id$$,
                  $$VALUES (1::bigint, '{"i": 1}'::jsonb, NULL::jsonb, 0, NULL::timestamptz),
                           (2, '{"i": 2}', NULL, 0, NULL), (3, '{"i": 3}', NULL, 0, NULL)$$,
                  'send_batch(queue_name, msgs): msgs[i] gets the i-th id, headers NULL');
SELECT ok(pg_temp.vt_ok('B1', 'sb', 1, '0') AND (SELECT count(DISTINCT vt) FROM pgmq.q_sb WHERE msg_id <= 3) = 1,
          'send_batch(queue_name, msgs): one vt = clock for the whole batch');

SELECT is(pg_temp.timed('B2', $$pgmq.send_batch('sb', ARRAY['{"i": 4}', '{"i": 5}']::jsonb[], ARRAY['{"h": 4}', NULL]::jsonb[])$$),
          ARRAY[4, 5]::bigint[], 'send_batch(queue_name, msgs, headers)');
SELECT results_eq($$SELECT msg_id, message, headers FROM pgmq.q_sb WHERE msg_id IN (4, 5) ORDER BY msg_id$$,
                  $$VALUES (4::bigint, '{"i": 4}'::jsonb, '{"h": 4}'::jsonb), (5, '{"i": 5}', NULL)$$,
                  'send_batch(queue_name, msgs, headers): headers[i] pairs with msgs[i] (NULL element kept NULL)');
SELECT ok(pg_temp.vt_ok('B2', 'sb', 4, '0') AND pg_temp.vt_ok('B2', 'sb', 5, '0'),
          'send_batch(queue_name, msgs, headers): vt = clock');

SELECT is(pg_temp.timed('B3', $$pgmq.send_batch('sb', ARRAY['{"i": 6}', '{"i": 7}']::jsonb[], 30)$$),
          ARRAY[6, 7]::bigint[], 'send_batch(queue_name, msgs, delay integer)');
SELECT ok(pg_temp.vt_ok('B3', 'sb', 6, '30 s') AND (SELECT count(DISTINCT vt) FROM pgmq.q_sb WHERE msg_id IN (6, 7)) = 1
          AND (SELECT bool_and(headers IS NULL) FROM pgmq.q_sb WHERE msg_id IN (6, 7)),
          'send_batch(queue_name, msgs, delay integer): one vt = clock + delay s, headers NULL');

SELECT is(pg_temp.timed('B4', $$pgmq.send_batch('sb', ARRAY['{"i": 8}', '{"i": 9}']::jsonb[], '2031-05-05 05:05:05+00'::timestamptz)$$),
          ARRAY[8, 9]::bigint[], 'send_batch(queue_name, msgs, delay timestamptz)');
SELECT results_eq($$SELECT msg_id, vt, headers FROM pgmq.q_sb WHERE msg_id IN (8, 9) ORDER BY msg_id$$,
                  $$VALUES (8::bigint, '2031-05-05 05:05:05+00'::timestamptz, NULL::jsonb), (9, '2031-05-05 05:05:05+00', NULL)$$,
                  'send_batch(queue_name, msgs, delay timestamptz): vt = delay');

SELECT is(pg_temp.timed('B5', $$pgmq.send_batch('sb', ARRAY['{"i": 10}', '{"i": 11}']::jsonb[], ARRAY['{"h": 10}', '{"h": 11}']::jsonb[], 45)$$),
          ARRAY[10, 11]::bigint[], 'send_batch(queue_name, msgs, headers, delay integer)');
SELECT results_eq($$SELECT msg_id, message, headers FROM pgmq.q_sb WHERE msg_id IN (10, 11) ORDER BY msg_id$$,
                  $$VALUES (10::bigint, '{"i": 10}'::jsonb, '{"h": 10}'::jsonb), (11, '{"i": 11}', '{"h": 11}')$$,
                  'send_batch(queue_name, msgs, headers, delay integer): pairs');
SELECT ok(pg_temp.vt_ok('B5', 'sb', 10, '45 s') AND (SELECT count(DISTINCT vt) FROM pgmq.q_sb WHERE msg_id IN (10, 11)) = 1,
          'send_batch(queue_name, msgs, headers, delay integer): one vt = clock + delay s');

SELECT is(pg_temp.timed('B6', $$pgmq.send_batch('sb', ARRAY['{"i": 12}', '{"i": 13}']::jsonb[], ARRAY[NULL, '{"h": 13}']::jsonb[], '2000-01-01 00:00:00+00'::timestamptz)$$),
          ARRAY[12, 13]::bigint[], 'send_batch(queue_name, msgs, headers, delay timestamptz)');
SELECT results_eq($$SELECT msg_id, vt, message, headers FROM pgmq.q_sb WHERE msg_id IN (12, 13) ORDER BY msg_id$$,
                  $$VALUES (12::bigint, '2000-01-01 00:00:00+00'::timestamptz, '{"i": 12}'::jsonb, NULL::jsonb),
                           (13, '2000-01-01 00:00:00+00', '{"i": 13}', '{"h": 13}')$$,
                  'send_batch(queue_name, msgs, headers, delay timestamptz): vt = delay (a past one too), pairs');

SELECT is(pg_temp.timed('B7', $$pgmq.send_batch('sb', ARRAY['{"i": 14}']::jsonb[], -10)$$), ARRAY[14]::bigint[],
          'send_batch with a negative delay');
SELECT ok(pg_temp.vt_ok('B7', 'sb', 14, '-10 s'), 'negative batch delay: vt in the past');
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'sb', msgs => ARRAY['{"i": 15}', NULL]::jsonb[], delay => 0)$$,
                  ARRAY[15, 16]::bigint[], 'send_batch(queue_name =>, msgs =>, delay =>) (the pgflow call); NULL message allowed');
SELECT is((SELECT message FROM pgmq.q_sb WHERE msg_id = 16), NULL, 'a NULL element of msgs is stored as a NULL message');
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'sb', msgs => ARRAY['{"i": 17}']::jsonb[], headers => ARRAY['{"h": 17}']::jsonb[])$$,
                  ARRAY[17]::bigint[], 'send_batch(queue_name =>, msgs =>, headers =>)');
SELECT results_eq($$SELECT * FROM pgmq.send_batch('sb', ARRAY['{"i": 18}']::jsonb[], NULL::jsonb[])$$,
                  ARRAY[18]::bigint[], 'send_batch with headers NULL is allowed');

-- A large batch keeps array order.
SELECT is((SELECT array_agg(x ORDER BY o) = (SELECT array_agg(g::bigint ORDER BY g) FROM generate_series(19, 268) g)
           FROM pgmq.send_batch('sb', (SELECT array_agg(jsonb_build_object('i', g) ORDER BY g) FROM generate_series(19, 268) g))
                WITH ORDINALITY AS s(x, o)),
          true, '250 messages: ids returned ascending in array order');
SELECT is_empty($$SELECT msg_id FROM pgmq.q_sb WHERE msg_id <> (message->>'i')::bigint$$, 'every msgs[i] got its own id');

---------------------------------------------------------------------------------------------------
-- Batch checks: every send_batch overload
---------------------------------------------------------------------------------------------------
SELECT throws_ok(format(sql, 'NULL::jsonb[]'), 'P0001', 'msgs cannot be NULL or empty', label || ': msgs NULL')
FROM (VALUES ('SELECT pgmq.send_batch(''sb'', %s)', 'send_batch(queue_name, msgs)'),
             ('SELECT pgmq.send_batch(''sb'', %s, ARRAY[''{}''::jsonb])', 'send_batch(queue_name, msgs, headers)'),
             ('SELECT pgmq.send_batch(''sb'', %s, 5)', 'send_batch(queue_name, msgs, delay integer)'),
             ('SELECT pgmq.send_batch(''sb'', %s, now())', 'send_batch(queue_name, msgs, delay timestamptz)'),
             ('SELECT pgmq.send_batch(''sb'', %s, ARRAY[''{}''::jsonb], 5)', 'send_batch(queue_name, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch(''sb'', %s, ARRAY[''{}''::jsonb], now())', 'send_batch(queue_name, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok(format(sql, 'ARRAY[]::jsonb[]'), 'P0001', 'msgs cannot be NULL or empty', label || ': msgs empty')
FROM (VALUES ('SELECT pgmq.send_batch(''sb'', %s)', 'send_batch(queue_name, msgs)'),
             ('SELECT pgmq.send_batch(''sb'', %s, ARRAY[]::jsonb[])', 'send_batch(queue_name, msgs, headers)'),
             ('SELECT pgmq.send_batch(''sb'', %s, 5)', 'send_batch(queue_name, msgs, delay integer)'),
             ('SELECT pgmq.send_batch(''sb'', %s, now())', 'send_batch(queue_name, msgs, delay timestamptz)'),
             ('SELECT pgmq.send_batch(''sb'', %s, ARRAY[]::jsonb[], 5)', 'send_batch(queue_name, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch(''sb'', %s, ARRAY[]::jsonb[], now())', 'send_batch(queue_name, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok($$SELECT pgmq.send_batch('sb', NULL)$$, 'P0001', 'msgs cannot be NULL or empty',
                 'send_batch(queue_name, untyped NULL): msgs NULL');
SELECT throws_ok(format(sql, 'ARRAY[''{"a": 1}'', ''{"a": 2}'']::jsonb[]', 'ARRAY[''{}'']::jsonb[]'), 'P0001',
                 'headers array length (1) must match msgs array length (2)', label || ': 1 header for 2 msgs')
FROM (VALUES ('SELECT pgmq.send_batch(''sb'', %s, %s)', 'send_batch(queue_name, msgs, headers)'),
             ('SELECT pgmq.send_batch(''sb'', %s, %s, 5)', 'send_batch(queue_name, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch(''sb'', %s, %s, now())', 'send_batch(queue_name, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok($$SELECT pgmq.send_batch('sb', ARRAY['{}']::jsonb[], ARRAY[]::jsonb[])$$, 'P0001',
                 'headers array length (0) must match msgs array length (1)', 'an empty headers array counts as length 0');
SELECT throws_ok($$SELECT pgmq.send_batch('sb', ARRAY['{}', '{}']::jsonb[], ARRAY['{}', '{}', '{}']::jsonb[], 0)$$, 'P0001',
                 'headers array length (3) must match msgs array length (2)', 'more headers than msgs');
SELECT throws_ok($$SELECT pgmq.send_batch('sb', NULL::jsonb[], ARRAY['{}', '{}']::jsonb[])$$, 'P0001',
                 'msgs cannot be NULL or empty', 'the msgs check comes before the headers check');
SELECT throws_ok($$SELECT pgmq.send_batch('no_such_queue', ARRAY[]::jsonb[])$$, 'P0001',
                 'msgs cannot be NULL or empty', 'batch checks run before the queue table is touched');
SELECT results_eq($$SELECT max(msg_id) FROM pgmq.q_sb$$, ARRAY[268::bigint], 'failed batches inserted nothing');
SELECT results_eq($$SELECT * FROM pgmq.send('sb', '{}')$$, ARRAY[269::bigint], 'failed batches consumed no ids');

---------------------------------------------------------------------------------------------------
-- Internal helpers
---------------------------------------------------------------------------------------------------
SELECT lives_ok($$SELECT pgmq._validate_batch_params(ARRAY['{}']::jsonb[], NULL)$$, '_validate_batch_params accepts msgs without headers');
SELECT is(pgmq._validate_batch_params(ARRAY['{}', '{}']::jsonb[], ARRAY['{}', '{}']::jsonb[])::text, '',
          '_validate_batch_params returns void for matching arrays');
SELECT throws_ok($$SELECT pgmq._validate_batch_params(ARRAY[]::jsonb[], NULL)$$, 'P0001', 'msgs cannot be NULL or empty',
                 '_validate_batch_params: empty msgs');
SELECT throws_ok($$SELECT pgmq._validate_batch_params(NULL, NULL)$$, 'P0001', 'msgs cannot be NULL or empty',
                 '_validate_batch_params: NULL msgs');
SELECT throws_ok($$SELECT pgmq._validate_batch_params(ARRAY['{}']::jsonb[], ARRAY['{}', '{}']::jsonb[])$$, 'P0001',
                 'headers array length (2) must match msgs array length (1)', '_validate_batch_params: lengths differ');
SELECT results_eq($$SELECT * FROM pgmq._send_batch('sb', ARRAY['{"u": 1}', '{"u": 2}']::jsonb[], ARRAY['{"h": 1}']::jsonb[], '2030-01-01+00')$$,
                  ARRAY[270, 271]::bigint[], '_send_batch is unchecked: fewer headers than msgs is accepted');
SELECT results_eq($$SELECT msg_id, vt, headers FROM pgmq.q_sb WHERE msg_id IN (270, 271) ORDER BY msg_id$$,
                  $$VALUES (270::bigint, '2030-01-01+00'::timestamptz, '{"h": 1}'::jsonb), (271, '2030-01-01+00', NULL)$$,
                  '_send_batch: vt = delay, missing headers are NULL');
SELECT is_empty($$SELECT * FROM pgmq._send_batch('sb', ARRAY[]::jsonb[], NULL, now())$$, '_send_batch of nothing returns nothing');

-- Headers pair with messages by position, whatever the arrays' subscripts or dimensions.
SELECT pgmq.create('sb_pos');
CREATE FUNCTION pg_temp.pairs(VARIADIC ms text[]) RETURNS TABLE(m text, h text) LANGUAGE sql AS $$
    SELECT message ->> 'm', headers ->> 'h' FROM pgmq.q_sb_pos WHERE message ->> 'm' = ANY(ms) ORDER BY msg_id
$$;
SELECT pgmq.send_batch('sb_pos', ARRAY['{"m": "a"}', '{"m": "b"}']::jsonb[],
                       '[0:1]={"{\"h\": \"A\"}","{\"h\": \"B\"}"}'::jsonb[]);
SELECT results_eq($$SELECT * FROM pg_temp.pairs('a', 'b')$$, $$VALUES ('a', 'A'), ('b', 'B')$$,
                  'send_batch: headers with subscripts from 0 pair by position');
SELECT pgmq.send_batch('sb_pos', '[5:6]={"{\"m\": \"c\"}","{\"m\": \"d\"}"}'::jsonb[],
                       ARRAY['{"h": "C"}', '{"h": "D"}']::jsonb[], 0);
SELECT results_eq($$SELECT * FROM pg_temp.pairs('c', 'd')$$, $$VALUES ('c', 'C'), ('d', 'D')$$,
                  'send_batch: messages with subscripts from 5 pair by position');
SELECT pgmq.send_batch('sb_pos', ARRAY[['{"m": "e"}', '{"m": "f"}'], ['{"m": "g"}', '{"m": "h"}']]::jsonb[],
                       ARRAY[['{"h": "E"}', '{"h": "F"}'], ['{"h": "G"}', '{"h": "H"}']]::jsonb[]);
SELECT results_eq($$SELECT * FROM pg_temp.pairs('e', 'f', 'g', 'h')$$,
                  $$VALUES ('e', 'E'), ('f', 'F'), ('g', 'G'), ('h', 'H')$$,
                  'send_batch: two-dimensional arrays pair in storage order');
SELECT pgmq._send_batch('sb_pos', ARRAY['{"m": "i"}', '{"m": "j"}']::jsonb[], '[2:2]={"{\"h\": \"I\"}"}'::jsonb[], now());
SELECT results_eq($$SELECT * FROM pg_temp.pairs('i', 'j')$$, $$VALUES ('i', 'I'), ('j', NULL)$$,
                  '_send_batch: a shorter headers array pairs from its first element');

SELECT * FROM finish();
ROLLBACK;
