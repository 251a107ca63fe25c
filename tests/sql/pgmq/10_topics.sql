-- Topics: validate_routing_key / validate_topic_pattern (every error, in order),
-- compiled_regex, bind_topic / unbind_topic / test_routing / list_topic_bindings, send_topic (3
-- overloads) and send_batch_topic (6 overloads).
BEGIN;
SELECT plan(150);
SET LOCAL client_min_messages = error;

CREATE FUNCTION pg_temp.key_err(k text) RETURNS text LANGUAGE sql AS $$
    SELECT 'routing_key contains invalid characters. Only alphanumeric, dots, hyphens, and underscores are allowed. Got: ' || k
$$;
CREATE FUNCTION pg_temp.pattern_err(p text) RETURNS text LANGUAGE sql AS $$
    SELECT 'pattern contains invalid characters. Only alphanumeric, dots, hyphens, underscores, *, and # are allowed. Got: ' || p
$$;

---------------------------------------------------------------------------------------------------
-- validate_routing_key
---------------------------------------------------------------------------------------------------
SELECT is(pgmq.validate_routing_key('orders'), true, 'a single segment is valid');
SELECT is(pgmq.validate_routing_key('Orders.EU-west_1.9'), true, 'letters, digits, dots, hyphens, underscores');
SELECT is(pgmq.validate_routing_key(repeat('k', 255)), true, '255 characters are valid');
SELECT throws_ok(format('SELECT pgmq.validate_routing_key(%s)', k), 'P0001', msg, d)
FROM (VALUES
    ('NULL', 'routing_key cannot be NULL or empty', 'NULL key'),
    ($$''$$, 'routing_key cannot be NULL or empty', 'empty key'),
    (format('%L', repeat('k', 256)), 'routing_key length cannot exceed 255 characters, got 256 characters', '256 characters'),
    (format('%L', repeat('.', 300)), 'routing_key length cannot exceed 255 characters, got 300 characters',
     'length is checked before characters and dots'),
    ($$'a b'$$, pg_temp.key_err('a b'), 'space'),
    ($$'a*'$$, pg_temp.key_err('a*'), 'wildcard * is not allowed in a key'),
    ($$'a.#'$$, pg_temp.key_err('a.#'), 'wildcard # is not allowed in a key'),
    ($$'café'$$, pg_temp.key_err('café'), 'non-ASCII letter'),
    ($$'a/b'$$, pg_temp.key_err('a/b'), 'slash'),
    ($$'.a$'$$, pg_temp.key_err('.a$'), 'characters are checked before the leading dot'),
    ($$E'a\nb'$$, pg_temp.key_err(E'a\nb'), 'newline'),
    ($$E'abc\n'$$, pg_temp.key_err(E'abc\n'), 'trailing newline'),
    ($$'.a'$$, 'routing_key cannot start with a dot. Got: .a', 'leading dot'),
    ($$'.a.'$$, 'routing_key cannot start with a dot. Got: .a.', 'leading dot is checked before trailing dot'),
    ($$'.'$$, 'routing_key cannot start with a dot. Got: .', 'a single dot'),
    ($$'a.'$$, 'routing_key cannot end with a dot. Got: a.', 'trailing dot'),
    ($$'a..b.'$$, 'routing_key cannot end with a dot. Got: a..b.', 'trailing dot is checked before consecutive dots'),
    ($$'a..b'$$, 'routing_key cannot contain consecutive dots. Got: a..b', 'consecutive dots')
) AS t(k, msg, d);

---------------------------------------------------------------------------------------------------
-- validate_topic_pattern
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT pgmq.validate_topic_pattern(p) FROM unnest(ARRAY['a#', '#', '*.x.#', 'logs.*', '*', 'a.b-c_D.9', '#.error', '*.*']) p$$,
                  ARRAY[true, true, true, true, true, true, true, true], 'valid patterns, incl. a#, #, *.x.#');
SELECT is(pgmq.validate_topic_pattern(repeat('p', 255)), true, '255 characters are valid');
SELECT throws_ok(format('SELECT pgmq.validate_topic_pattern(%s)', p), 'P0001', msg, d)
FROM (VALUES
    ('NULL', 'pattern cannot be NULL or empty', 'NULL pattern'),
    ($$''$$, 'pattern cannot be NULL or empty', 'empty pattern'),
    (format('%L', repeat('p', 256)), 'pattern length cannot exceed 255 characters, got 256 characters', '256 characters'),
    (format('%L', repeat('*', 256)), 'pattern length cannot exceed 255 characters, got 256 characters', 'length before the star check'),
    ($$'a b'$$, pg_temp.pattern_err('a b'), 'space'),
    ($$'a.+'$$, pg_temp.pattern_err('a.+'), 'plus'),
    ($$'a.?'$$, pg_temp.pattern_err('a.?'), 'question mark'),
    ($$'(a|b)'$$, pg_temp.pattern_err('(a|b)'), 'regex syntax'),
    ($$'.**$'$$, pg_temp.pattern_err('.**$'), 'characters are checked first'),
    ($$'.a'$$, 'pattern cannot start with a dot. Got: .a', 'leading dot'),
    ($$'.**.'$$, 'pattern cannot start with a dot. Got: .**.', 'leading dot before trailing dot and stars'),
    ($$'a.'$$, 'pattern cannot end with a dot. Got: a.', 'trailing dot'),
    ($$'**..'$$, 'pattern cannot end with a dot. Got: **..', 'trailing dot before consecutive dots and stars'),
    ($$'a..b'$$, 'pattern cannot contain consecutive dots. Got: a..b', 'consecutive dots'),
    ($$'**..x'$$, 'pattern cannot contain consecutive dots. Got: **..x', 'consecutive dots before stars'),
    ($$'a.**'$$, 'pattern cannot contain consecutive stars (**). Use # for multi-segment matching. Got: a.**', 'consecutive stars'),
    ($$'**##'$$, 'pattern cannot contain consecutive stars (**). Use # for multi-segment matching. Got: **##', 'stars before hashes'),
    ($$'a.##'$$, 'pattern cannot contain consecutive hashes (##). A single # already matches zero or more segments. Got: a.##',
     'consecutive hashes'),
    ($$'##*'$$, 'pattern cannot contain consecutive hashes (##). A single # already matches zero or more segments. Got: ##*',
     'hashes before adjacent wildcards'),
    ($$'a.*#'$$, 'pattern cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: a.*#', '*#'),
    ($$'#*.a'$$, 'pattern cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: #*.a', '#*')
) AS t(p, msg, d);

---------------------------------------------------------------------------------------------------
-- bind_topic and compiled_regex
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('t_logs');
SELECT FROM pgmq.create('t_errors');
SELECT FROM pgmq.create('t_all');
SELECT FROM pgmq.create('T_Mixed');

SELECT lives_ok($$SELECT pgmq.bind_topic('logs.*', 't_logs')$$, 'bind_topic(logs.*, t_logs)');
SELECT lives_ok($$SELECT pgmq.bind_topic(pattern => 'logs.#', queue_name => 't_logs')$$, 'bind_topic with named arguments');
SELECT lives_ok($$SELECT pgmq.bind_topic('#.error', 't_errors')$$, 'bind_topic(#.error)');
SELECT lives_ok($$SELECT pgmq.bind_topic('#', 't_all')$$, 'bind_topic(#)');
SELECT lives_ok($$SELECT pgmq.bind_topic('a#', 'T_Mixed')$$, 'bind_topic(a#) to a mixed-case queue (exact spelling)');
SELECT lives_ok($$SELECT pgmq.bind_topic('logs.*', 't_logs')$$, 'a duplicate binding is silently ignored');
SELECT is((SELECT count(*)::int FROM pgmq.topic_bindings WHERE pattern = 'logs.*' AND queue_name = 't_logs'), 1,
          '... and stays a single row');
SELECT results_eq($$SELECT pattern, compiled_regex FROM pgmq.topic_bindings ORDER BY pattern$$,
                  $$VALUES ('#', '^.*$'), ('#.error', '^.*\.error$'), ('a#', '^a.*$'), ('logs.#', '^logs\..*$'),
                           ('logs.*', '^logs\.[^.]+$')$$,
                  'compiled_regex of the contract''s examples');
SELECT ok((SELECT bool_and(bound_at = now()) FROM pgmq.topic_bindings), 'bound_at = now()');

-- Escaping of the other regex metacharacters (rows inserted directly, bypassing validation).
INSERT INTO pgmq.topic_bindings (pattern, queue_name) VALUES ('x+y?{1}(z)|[w]\v^u$t', 't_all');
SELECT is((SELECT compiled_regex FROM pgmq.topic_bindings WHERE pattern = 'x+y?{1}(z)|[w]\v^u$t'),
          '^x\+y\?\{1\}\(z\)\|\[w\]\\v\^u\$t$', 'compiled_regex escapes . + ? { } ( ) | [ ] \ ^ $');
SELECT ok('x+y?{1}(z)|[w]\v^u$t' ~ (SELECT compiled_regex FROM pgmq.topic_bindings WHERE pattern = 'x+y?{1}(z)|[w]\v^u$t')
          AND NOT 'xxy' ~ (SELECT compiled_regex FROM pgmq.topic_bindings WHERE pattern = 'x+y?{1}(z)|[w]\v^u$t'),
          'the escaped regex matches only the literal text');
DELETE FROM pgmq.topic_bindings WHERE pattern = 'x+y?{1}(z)|[w]\v^u$t';

SELECT throws_ok($$SELECT pgmq.bind_topic('a..b', NULL)$$, 'P0001', 'pattern cannot contain consecutive dots. Got: a..b',
                 'bind_topic validates the pattern first');
SELECT throws_ok($$SELECT pgmq.bind_topic(NULL, 't_logs')$$, 'P0001', 'pattern cannot be NULL or empty', 'bind_topic: NULL pattern');
SELECT throws_ok($$SELECT pgmq.bind_topic('a.**', 't_logs')$$, 'P0001',
                 'pattern cannot contain consecutive stars (**). Use # for multi-segment matching. Got: a.**', 'bind_topic: invalid pattern');
SELECT throws_ok($$SELECT pgmq.bind_topic('a.b', NULL)$$, 'P0001', 'queue_name cannot be NULL or empty', 'bind_topic: NULL queue');
SELECT throws_ok($$SELECT pgmq.bind_topic('a.b', '')$$, 'P0001', 'queue_name cannot be NULL or empty', 'bind_topic: empty queue');
SELECT throws_ok($$SELECT pgmq.bind_topic('a.b', 'no_such_queue')$$, 'P0001',
                 'Queue "no_such_queue" does not exist. Create the queue first using pgmq.create()', 'bind_topic: missing queue');
SELECT throws_ok($$SELECT pgmq.bind_topic('a.b', 't_mixed')$$, 'P0001',
                 'Queue "t_mixed" does not exist. Create the queue first using pgmq.create()', 'bind_topic: the meta lookup is exact');

---------------------------------------------------------------------------------------------------
-- test_routing and list_topic_bindings
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT * FROM pgmq.test_routing('logs.app')$$,
                  $$VALUES ('#'::text, 't_all'::text, '^.*$'::text), ('logs.#', 't_logs', '^logs\..*$'),
                           ('logs.*', 't_logs', '^logs\.[^.]+$')$$,
                  'test_routing(logs.app): matching bindings ordered by pattern');
SELECT results_eq($$SELECT pattern FROM pgmq.test_routing('logs.app.db')$$, ARRAY['#', 'logs.#'],
                  'logs.# matches several segments, logs.* only one');
SELECT results_eq($$SELECT pattern FROM pgmq.test_routing('logs')$$, ARRAY['#'], 'logs.# does not match logs');
SELECT results_eq($$SELECT pattern FROM pgmq.test_routing('db.error')$$, ARRAY['#', '#.error'], '#.error matches db.error');
SELECT results_eq($$SELECT pattern FROM pgmq.test_routing('abc')$$, ARRAY['#', 'a#'], 'a# is a prefix match');
SELECT results_eq($$SELECT pattern FROM pgmq.test_routing('Logs.app')$$, ARRAY['#'], 'matching is case-sensitive');
SELECT throws_ok($$SELECT * FROM pgmq.test_routing('logs.*')$$, 'P0001', pg_temp.key_err('logs.*'), 'test_routing validates the key');
SELECT throws_ok($$SELECT * FROM pgmq.test_routing(NULL)$$, 'P0001', 'routing_key cannot be NULL or empty', 'test_routing(NULL)');

INSERT INTO pgmq.topic_bindings (pattern, queue_name, bound_at) VALUES
    ('old.one', 't_errors', now() - interval '1 day'), ('newer.one', 't_errors', now() + interval '1 day'),
    ('newer.one', 't_all', now() + interval '1 day');
SELECT results_eq($$SELECT pattern, queue_name FROM pgmq.list_topic_bindings()$$,
                  $$VALUES ('newer.one'::text, 't_all'::text), ('newer.one', 't_errors'), ('#', 't_all'), ('#.error', 't_errors'),
                           ('a#', 'T_Mixed'), ('logs.#', 't_logs'), ('logs.*', 't_logs'), ('old.one', 't_errors')$$,
                  'list_topic_bindings(): ORDER BY bound_at DESC, pattern, queue_name');
SELECT results_eq($$SELECT * FROM pgmq.list_topic_bindings()$$,
                  $$SELECT pattern, queue_name, bound_at, compiled_regex FROM pgmq.topic_bindings ORDER BY bound_at DESC, pattern, queue_name$$,
                  'list_topic_bindings() columns: pattern, queue_name, bound_at, compiled_regex');
SELECT results_eq($$SELECT pattern, bound_at = now() FROM pgmq.list_topic_bindings('t_errors')$$,
                  $$VALUES ('newer.one'::text, false), ('#.error', true), ('old.one', false)$$,
                  'list_topic_bindings(queue_name): that queue, ORDER BY bound_at DESC, pattern');
SELECT is_empty($$SELECT * FROM pgmq.list_topic_bindings('T_MIXED')$$, 'list_topic_bindings(queue_name) matches exactly');
SELECT results_eq($$SELECT pattern FROM pgmq.list_topic_bindings(queue_name => 'T_Mixed')$$, ARRAY['a#'], 'named argument');
DELETE FROM pgmq.topic_bindings WHERE pattern IN ('old.one', 'newer.one');

---------------------------------------------------------------------------------------------------
-- unbind_topic
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.bind_topic('tmp.x', 't_all');
SELECT is(pgmq.unbind_topic('tmp.x', 't_all'), true, 'unbind_topic of an existing binding returns true');
SELECT is_empty($$SELECT 1 FROM pgmq.topic_bindings WHERE pattern = 'tmp.x'$$, '... and deletes it');
SELECT is(pgmq.unbind_topic('tmp.x', 't_all'), false, 'unbind_topic again returns false');
SELECT is(pgmq.unbind_topic('a..b', 't_all'), false, 'unbind_topic does not validate the pattern');
SELECT is(pgmq.unbind_topic('a#', 't_mixed'), false, 'unbind_topic matches the queue name exactly');
SELECT throws_ok($$SELECT pgmq.unbind_topic(NULL, NULL)$$, 'P0001', 'pattern cannot be NULL or empty', 'unbind_topic: pattern checked first');
SELECT throws_ok($$SELECT pgmq.unbind_topic('', 't_all')$$, 'P0001', 'pattern cannot be NULL or empty', 'unbind_topic: empty pattern');
SELECT throws_ok($$SELECT pgmq.unbind_topic('a', NULL)$$, 'P0001', 'queue_name cannot be NULL or empty', 'unbind_topic: NULL queue');
SELECT throws_ok($$SELECT pgmq.unbind_topic('a', '')$$, 'P0001', 'queue_name cannot be NULL or empty', 'unbind_topic: empty queue');

---------------------------------------------------------------------------------------------------
-- send_topic
---------------------------------------------------------------------------------------------------
-- Bindings now: t_logs: logs.*, logs.#   t_errors: #.error   t_all: #   T_Mixed: a#
CREATE TEMP TABLE marks (k text PRIMARY KEY, t0 timestamptz, t1 timestamptz, result integer);
CREATE FUNCTION pg_temp.timed_topic(k text, call text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    r integer;
BEGIN
    EXECUTE 'SELECT ' || call INTO r;
    INSERT INTO marks VALUES (k, t0, clock_timestamp(), r);
    RETURN r;
END;
$$;
-- Messages of a queue with vt relative to the clock of call k: (msg_id, message, headers, vt ok).
CREATE FUNCTION pg_temp.msgs(q text, k text, delay interval)
RETURNS TABLE(msg_id bigint, message jsonb, headers jsonb, vt_ok boolean) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT t.msg_id, t.message, t.headers, t.vt BETWEEN m.t0 + $2 AND m.t1 + $2
         FROM pgmq.%I t, marks m WHERE m.k = $1 ORDER BY t.msg_id', pgmq.format_table_name(q, 'q'))
    USING k, delay;
END;
$$;

SELECT is(pg_temp.timed_topic('s1', $$pgmq.send_topic('logs.app', '{"s": 1}')$$), 2,
          'send_topic(routing_key, msg): returns the number of distinct queues');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('t_logs', 's1', '0')$$, $$VALUES (1::bigint, '{"s": 1}'::jsonb, NULL::jsonb, true)$$,
                  'a queue bound by two matching patterns gets the message once; vt = clock, headers NULL');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('t_all', 's1', '0')$$, $$VALUES (1::bigint, '{"s": 1}'::jsonb, NULL::jsonb, true)$$,
                  't_all (#) got it too');
SELECT is((SELECT count(*)::int FROM pgmq.q_t_errors) + (SELECT count(*)::int FROM pgmq.q_t_mixed), 0,
          'non-matching queues got nothing');

SELECT is(pg_temp.timed_topic('s2', $$pgmq.send_topic('db.error', '{"s": 2}', 30)$$), 2, 'send_topic(routing_key, msg, delay)');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('t_errors', 's2', '30 s')$$, $$VALUES (1::bigint, '{"s": 2}'::jsonb, NULL::jsonb, true)$$,
                  'send_topic with delay: vt = clock + delay s');

SELECT is(pg_temp.timed_topic('s3', $$pgmq.send_topic('abc', '{"s": 3}', '{"h": 3}', 5)$$), 2,
          'send_topic(routing_key, msg, headers, delay)');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('T_Mixed', 's3', '5 s')$$, $$VALUES (1::bigint, '{"s": 3}'::jsonb, '{"h": 3}'::jsonb, true)$$,
                  'send_topic with headers and delay reaches the mixed-case queue');
SELECT is(pgmq.send_topic(routing_key => 'abc', msg => '{"s": 4}', headers => NULL, delay => 0), 2, 'send_topic with named arguments');

SELECT FROM pgmq.unbind_topic('#', 't_all');
SELECT is(pgmq.send_topic('nothing.matches', '{}'), 0, 'no matching binding: 0, not an error');
SELECT is(pgmq.send_topic('logs.x', 'null'::jsonb), 1, 'a JSON null message is allowed');

SELECT throws_ok($$SELECT pgmq.send_topic('', NULL)$$, 'P0001', 'routing_key cannot be NULL or empty', 'send_topic validates the key first');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.*', '{}')$$, 'P0001', pg_temp.key_err('logs.*'), 'send_topic(routing_key, msg): invalid key');
SELECT throws_ok($$SELECT pgmq.send_topic('.logs', '{}', 5)$$, 'P0001', 'routing_key cannot start with a dot. Got: .logs',
                 'send_topic(routing_key, msg, delay): invalid key');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.', '{}', '{}', 5)$$, 'P0001', 'routing_key cannot end with a dot. Got: logs.',
                 'send_topic(routing_key, msg, headers, delay): invalid key');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.a', NULL)$$, 'P0001', 'msg cannot be NULL', 'send_topic(routing_key, msg): NULL msg');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.a', NULL, '{}', 0)$$, 'P0001', 'msg cannot be NULL',
                 'send_topic(routing_key, msg, headers, delay): NULL msg');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.a', NULL, -1)$$, 'P0001', 'msg cannot be NULL', 'send_topic: NULL msg (before delay)');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.a', '{}', -1)$$, 'P0001', 'delay cannot be negative, got: -1', 'send_topic: negative delay');
SELECT throws_ok($$SELECT pgmq.send_topic('nothing', '{}', '{}', -7)$$, 'P0001', 'delay cannot be negative, got: -7',
                 'send_topic: negative delay even without matches');
SELECT throws_ok($$SELECT pgmq.send_topic('logs.a', '{}'::jsonb, '{}'::jsonb)$$, '42883', NULL,
                 'there is no send_topic(routing_key, msg, headers)');

-- A failing queue aborts the whole topic send.
SELECT FROM pgmq.create('t_broken');
SELECT FROM pgmq.bind_topic('logs.*', 't_broken');
DROP TABLE pgmq.q_t_broken;
CREATE TEMP TABLE logs_before AS SELECT count(*) AS n FROM pgmq.q_t_logs;
SELECT throws_ok($$SELECT pgmq.send_topic('logs.y', '{}')$$, '42P01', 'relation "pgmq.q_t_broken" does not exist',
                 'send_topic to a queue whose table is gone fails');
SELECT is((SELECT count(*) FROM pgmq.q_t_logs), (SELECT n FROM logs_before), 'nothing was sent to the other queue either');
SELECT throws_ok($$SELECT * FROM pgmq.send_batch_topic('logs.y', ARRAY['{}']::jsonb[])$$, '42P01',
                 'relation "pgmq.q_t_broken" does not exist', 'send_batch_topic fails the same way');
DELETE FROM pgmq.meta WHERE queue_name = 't_broken';

---------------------------------------------------------------------------------------------------
-- send_batch_topic: six overloads
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('b1');
SELECT FROM pgmq.create('b2');
SELECT FROM pgmq.create('b3');
SELECT FROM pgmq.bind_topic('batch.*', 'b2');
SELECT FROM pgmq.bind_topic('batch.#', 'b2');
SELECT FROM pgmq.bind_topic('#', 'b1');
SELECT FROM pgmq.bind_topic('other', 'b3');
DELETE FROM pgmq.topic_bindings WHERE queue_name NOT IN ('b1', 'b2', 'b3');

CREATE TEMP TABLE batch_rows (k text, o bigint, queue_name text, msg_id bigint);
CREATE FUNCTION pg_temp.timed_batch(k text, call text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n integer;
BEGIN
    EXECUTE format('INSERT INTO batch_rows SELECT %L, s.ordinality, s.queue_name, s.msg_id FROM %s WITH ORDINALITY AS s', k, call);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO marks VALUES (k, t0, clock_timestamp(), n);
    RETURN n;
END;
$$;

SELECT is(pg_temp.timed_batch('b1', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[])$$), 4,
          'send_batch_topic(routing_key, msgs): one row per queue and message');
SELECT results_eq($$SELECT queue_name, msg_id FROM batch_rows WHERE k = 'b1' ORDER BY o$$,
                  $$VALUES ('b1'::text, 1::bigint), ('b1', 2), ('b2', 1), ('b2', 2)$$,
                  'queues in queue_name order, each batch in array order; a doubly bound queue gets the batch once');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('b2', 'b1', '0')$$,
                  $$VALUES (1::bigint, '{"b": 1}'::jsonb, NULL::jsonb, true), (2, '{"b": 2}', NULL, true)$$,
                  'messages, headers NULL, vt = clock');
SELECT is((SELECT count(*)::int FROM pgmq.q_b3), 0, 'the non-matching queue got nothing');

SELECT is(pg_temp.timed_batch('b2', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 3}']::jsonb[], ARRAY['{"h": 3}']::jsonb[])$$), 2,
          'send_batch_topic(routing_key, msgs, headers)');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('b1', 'b2', '0') WHERE msg_id = 3$$,
                  $$VALUES (3::bigint, '{"b": 3}'::jsonb, '{"h": 3}'::jsonb, true)$$, 'headers paired, vt = clock');

SELECT is(pg_temp.timed_batch('b3', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 4}']::jsonb[], 20)$$), 2,
          'send_batch_topic(routing_key, msgs, delay integer)');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('b2', 'b3', '20 s') WHERE msg_id = 4$$,
                  $$VALUES (4::bigint, '{"b": 4}'::jsonb, NULL::jsonb, true)$$, 'vt = clock + delay s');

SELECT is(pg_temp.timed_batch('b4', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 5}']::jsonb[], '2030-01-01+00'::timestamptz)$$), 2,
          'send_batch_topic(routing_key, msgs, delay timestamptz)');
SELECT results_eq($$SELECT vt, headers FROM pgmq.q_b1 WHERE msg_id = 5$$, $$VALUES ('2030-01-01+00'::timestamptz, NULL::jsonb)$$,
                  'vt = delay');

SELECT is(pg_temp.timed_batch('b5', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 6}', '{"b": 7}']::jsonb[], ARRAY[NULL, '{"h": 7}']::jsonb[], 15)$$),
          4, 'send_batch_topic(routing_key, msgs, headers, delay integer)');
SELECT results_eq($$SELECT * FROM pg_temp.msgs('b2', 'b5', '15 s') WHERE msg_id IN (6, 7)$$,
                  $$VALUES (6::bigint, '{"b": 6}'::jsonb, NULL::jsonb, true), (7, '{"b": 7}', '{"h": 7}', true)$$,
                  'headers paired, vt = clock + delay s');

SELECT is(pg_temp.timed_batch('b6', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 8}']::jsonb[], ARRAY['{"h": 8}']::jsonb[], '2000-01-01+00'::timestamptz)$$),
          2, 'send_batch_topic(routing_key, msgs, headers, delay timestamptz)');
SELECT results_eq($$SELECT vt, headers FROM pgmq.q_b2 WHERE msg_id = 8$$, $$VALUES ('2000-01-01+00'::timestamptz, '{"h": 8}'::jsonb)$$,
                  'vt = delay, headers paired');

SELECT is(pg_temp.timed_batch('b7', $$pgmq.send_batch_topic('batch.x', ARRAY['{"b": 9}']::jsonb[], -30)$$), 2,
          'send_batch_topic has no negative-delay check');
SELECT results_eq($$SELECT vt_ok FROM pg_temp.msgs('b1', 'b7', '-30 s') WHERE msg_id = 9$$, ARRAY[true], 'vt in the past');
SELECT results_eq($$SELECT queue_name, msg_id FROM pgmq.send_batch_topic(routing_key => 'other', msgs => ARRAY['{}']::jsonb[])$$,
                  $$VALUES ('b1'::text, 10::bigint), ('b3', 1)$$, 'named arguments; columns queue_name, msg_id');
DELETE FROM pgmq.topic_bindings WHERE pattern = '#';
SELECT is_empty($$SELECT * FROM pgmq.send_batch_topic('nothing', ARRAY['{}']::jsonb[])$$, 'no match: empty set');

-- Errors of every overload, in order: key, msgs, headers.
SELECT throws_ok(format(sql, 'NULL::jsonb[]'), 'P0001', 'msgs cannot be NULL or empty', label || ': msgs NULL')
FROM (VALUES ('SELECT pgmq.send_batch_topic(''batch.x'', %s)', 'send_batch_topic(routing_key, msgs)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, ARRAY[''{}''::jsonb])', 'send_batch_topic(routing_key, msgs, headers)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, 5)', 'send_batch_topic(routing_key, msgs, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, now())', 'send_batch_topic(routing_key, msgs, delay timestamptz)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, ARRAY[''{}''::jsonb], 5)', 'send_batch_topic(routing_key, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, ARRAY[''{}''::jsonb], now())', 'send_batch_topic(routing_key, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok(format(sql, 'ARRAY[]::jsonb[]'), 'P0001', 'msgs cannot be NULL or empty', label || ': msgs empty, no matching queue')
FROM (VALUES ('SELECT pgmq.send_batch_topic(''nothing'', %s)', 'send_batch_topic(routing_key, msgs)'),
             ('SELECT pgmq.send_batch_topic(''nothing'', %s, ARRAY[]::jsonb[])', 'send_batch_topic(routing_key, msgs, headers)'),
             ('SELECT pgmq.send_batch_topic(''nothing'', %s, 5)', 'send_batch_topic(routing_key, msgs, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''nothing'', %s, now())', 'send_batch_topic(routing_key, msgs, delay timestamptz)'),
             ('SELECT pgmq.send_batch_topic(''nothing'', %s, ARRAY[]::jsonb[], 5)', 'send_batch_topic(routing_key, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''nothing'', %s, ARRAY[]::jsonb[], now())', 'send_batch_topic(routing_key, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok(format(sql, 'ARRAY[''{}'', ''{}'']::jsonb[]', 'ARRAY[''{}'']::jsonb[]'), 'P0001',
                 'headers array length (1) must match msgs array length (2)', label || ': header count mismatch')
FROM (VALUES ('SELECT pgmq.send_batch_topic(''batch.x'', %s, %s)', 'send_batch_topic(routing_key, msgs, headers)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, %s, 5)', 'send_batch_topic(routing_key, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''batch.x'', %s, %s, now())', 'send_batch_topic(routing_key, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok(format(sql, 'ARRAY[''{}'']::jsonb[]'), 'P0001', 'routing_key cannot contain consecutive dots. Got: a..b',
                 label || ': invalid key')
FROM (VALUES ('SELECT pgmq.send_batch_topic(''a..b'', %s)', 'send_batch_topic(routing_key, msgs)'),
             ('SELECT pgmq.send_batch_topic(''a..b'', %s, NULL::jsonb[])', 'send_batch_topic(routing_key, msgs, headers)'),
             ('SELECT pgmq.send_batch_topic(''a..b'', %s, 5)', 'send_batch_topic(routing_key, msgs, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''a..b'', %s, now())', 'send_batch_topic(routing_key, msgs, delay timestamptz)'),
             ('SELECT pgmq.send_batch_topic(''a..b'', %s, NULL::jsonb[], 5)', 'send_batch_topic(routing_key, msgs, headers, delay integer)'),
             ('SELECT pgmq.send_batch_topic(''a..b'', %s, NULL::jsonb[], now())', 'send_batch_topic(routing_key, msgs, headers, delay timestamptz)')
     ) AS t(sql, label);
SELECT throws_ok($$SELECT pgmq.send_batch_topic(NULL, NULL::jsonb[])$$, 'P0001', 'routing_key cannot be NULL or empty',
                 'the key is validated before the batch');
SELECT throws_ok($$SELECT pgmq.send_batch_topic('batch.x', ARRAY['{}']::jsonb[], ARRAY[]::jsonb[])$$, 'P0001',
                 'headers array length (0) must match msgs array length (1)', 'an empty headers array counts as length 0');
SELECT results_eq($$SELECT max(msg_id) FROM pgmq.q_b2$$, ARRAY[9::bigint], 'failed topic batches inserted nothing');

SELECT * FROM finish();
ROLLBACK;
