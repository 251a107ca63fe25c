-- One lower-casing rule for queue names everywhere: SQL's lower() under the database's
-- collation, which pgmq.format_table_name uses. The Rust functions (send, read, read_with_poll,
-- pop, archive, delete, set_vt) find the table that create made, whatever the name's letters.
-- scripts/test.sh runs this file in a UTF-8 database and again in one with LC_CTYPE = C.
-- Also: names that identifier truncation would merge are refused.
BEGIN;
SELECT plan(21);
SET LOCAL client_min_messages = error;

CREATE FUNCTION pg_temp.round_trip(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
    ids bigint[];
BEGIN
    PERFORM pgmq.create(q);
    RETURN NEXT format('%s: create makes %s', q, pgmq.format_table_name(q, 'q'));
    SELECT * INTO id FROM pgmq.send(q, '{"n": 1}');
    SELECT array_agg(s) INTO ids FROM pgmq.send_batch(q, ARRAY['{"n": 2}', '{"n": 3}']::jsonb[], 0) s;
    PERFORM pgmq.send(q, '{"n": 4}', 0);
    RETURN NEXT format('%s: send and send_batch', q);
    IF (SELECT count(*) FROM pgmq.read(q, 30, 1)) = 1 THEN RETURN NEXT format('%s: read', q); END IF;
    IF (SELECT count(*) FROM pgmq.read_with_poll(q, 30, 1, 1, 10)) = 1 THEN
        RETURN NEXT format('%s: read_with_poll', q);
    END IF;
    IF (SELECT count(*) FROM pgmq.set_vt(q, id, 0)) = 1 THEN RETURN NEXT format('%s: set_vt', q); END IF;
    IF pgmq.archive(q, id) THEN RETURN NEXT format('%s: archive', q); END IF;
    IF pgmq.delete(q, ids[1]) THEN RETURN NEXT format('%s: delete', q); END IF;
    IF (SELECT count(*) FROM pgmq.pop(q)) = 1 THEN RETURN NEXT format('%s: pop', q); END IF;
    IF (SELECT queue_length FROM pgmq.metrics(q)) = 1 THEN RETURN NEXT format('%s: metrics', q); END IF;
    PERFORM pgmq.drop_queue(q);
    RETURN NEXT format('%s: drop_queue', q);
END;
$$;

-- Names whose lower-case forms differ between Unicode's rules and a database's (C ctype: only
-- ASCII letters change; UTF-8: final sigma, dotted capital I).
SELECT results_eq(
    format($$SELECT * FROM pg_temp.round_trip(%L)$$, q),
    format($$VALUES (%L), (%L), (%L), (%L), (%L), (%L), (%L), (%L), (%L), (%L)$$,
           q || ': create makes ' || lower('q_' || q), q || ': send and send_batch', q || ': read',
           q || ': read_with_poll', q || ': set_vt', q || ': archive', q || ': delete', q || ': pop',
           q || ': metrics', q || ': drop_queue'),
    format('queue %s: every function finds the table create made', q))
FROM unnest(ARRAY['Äq', 'ΑΣ', 'İq', 'ǅq', 'MiXeD', 'plain']) AS q;

-- Names that differ only in case are one queue, as in pgmq.
SELECT lives_ok($$SELECT pgmq.create('CaseQ')$$, 'create CaseQ');
SELECT is((SELECT count(*)::int FROM pgmq.send('caseq', '{}')), 1, 'send to caseq reaches CaseQ''s table');
SELECT is((SELECT count(*)::int FROM pgmq.read('CASEQ', 30, 5)), 1, 'read from CASEQ reads it');
SELECT lives_ok($$SELECT pgmq.drop_queue('CaseQ')$$, 'drop CaseQ');

-- Identifier truncation: two names whose table names would be cut to the same 63 bytes.
SELECT lives_ok(format($$SELECT pgmq.create(%L)$$, repeat('é', 23)), '23 two-byte characters (46 bytes) are accepted');
SELECT throws_ok(format($$SELECT pgmq.create(%L)$$, repeat('é', 30) || 'a'), '42622',
                 'queue name is too long, maximum length is 47 bytes',
                 'a 31-character name of 61 bytes is refused (its table and index names would be truncated)');
SELECT throws_ok(format($$SELECT pgmq.create_unlogged(%L)$$, repeat('é', 30) || 'b'), '42622',
                 'queue name is too long, maximum length is 47 bytes', 'create_unlogged refuses it too');
SELECT is((SELECT count(*)::int FROM pgmq.meta WHERE queue_name LIKE 'éééééééééééééééééééééééééééééé%'), 0,
          'and nothing was created for it');
SELECT lives_ok(format($$SELECT pgmq.create(%L)$$, repeat('a', 47)), '47 ASCII characters are still accepted');
SELECT is(pgmq.validate_queue_name(repeat('é', 47))::text, '', 'validate_queue_name keeps pgmq''s character count');

-- Flows: slugs that differ only in case would share a queue.
SELECT lives_ok($$SELECT pgflow.create_flow('Shared_q')$$, 'create_flow Shared_q');
SELECT throws_ok($$SELECT pgflow.create_flow('shared_Q')$$, '23505',
                 'flow slug "shared_Q" would share its queue with flow "Shared_q"',
                 'create_flow refuses a slug whose queue is another flow''s');
SELECT lives_ok($$SELECT pgflow.create_flow('Shared_q')$$, 'create_flow of the same slug is still idempotent');
SELECT is((SELECT count(*)::int FROM pgflow.flows WHERE lower(flow_slug) = 'shared_q'), 1, 'one flow');
SELECT lives_ok($$SELECT pgflow.delete_flow_and_data('Shared_q')$$, 'delete_flow_and_data');

SELECT * FROM finish();
ROLLBACK;
