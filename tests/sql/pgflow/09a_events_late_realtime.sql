-- Events without realtime.send (events go to
-- realtime.send when it exists at call time, else to pg_notify on 'pgflow:run:<run_id>' when
-- pgflow.notify_events is on, else nowhere): every event-emitting path works without the realtime
-- schema, the pg_notify fallback, and a realtime.send created later in the same transaction.
BEGIN;
SELECT plan(13);
\ir helpers/common.psql

SELECT ok(to_regnamespace('realtime') IS NULL, 'no realtime schema in this database');
SELECT is(current_setting('pgflow.notify_events'), 'off', 'pgflow.notify_events is off by default');

SELECT pgflow.create_flow('nr', 1);
SELECT pgflow.add_step('nr', 'a');
SELECT pgflow.add_step('nr', 'm', ARRAY['a'], step_type => 'map');
SELECT pgflow.add_step('nr', 'gate', ARRAY['m'], required_input_pattern => '{"m": [1]}');
SELECT pgflow.add_step('nr', 'soft', when_exhausted => 'skip-cascade');
SELECT pgflow.add_step('nr', 'after_soft', ARRAY['soft']);

-- One run through every event kind: run/step started, completed, skipped, run completed.
CREATE FUNCTION pg_temp.full_run(p_run uuid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgflow.start_flow('nr', '{}', p_run);
    PERFORM pg_temp.complete_step(p_run, 'a', '[5, 6]');
    PERFORM pg_temp.complete_map(p_run, 'm', '[1, 2]');
    PERFORM pg_temp.complete_step(p_run, 'gate', '"g"');
    PERFORM pg_temp.start_step(p_run, 'soft');
    PERFORM pgflow.fail_task(p_run, 'soft', 0, 'soft failure');
    RETURN (SELECT status FROM pgflow.runs WHERE run_id = p_run);
END;
$$;
-- And the failing kinds: handler failure, type violation, condition failure.
CREATE FUNCTION pg_temp.failing_runs(p_base integer) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    r1 uuid := ('00000000-0000-0000-0000-' || lpad(p_base::text, 12, '0'))::uuid;
    r2 uuid := ('00000000-0000-0000-0000-' || lpad((p_base + 1)::text, 12, '0'))::uuid;
    r3 uuid := ('00000000-0000-0000-0000-' || lpad((p_base + 2)::text, 12, '0'))::uuid;
BEGIN
    PERFORM pgflow.start_flow('nr', '{}', r1);
    PERFORM pg_temp.start_step(r1, 'a');
    PERFORM pgflow.fail_task(r1, 'a', 0, 'hard failure');
    PERFORM pgflow.start_flow('nr', '{}', r2);
    PERFORM pg_temp.complete_step(r2, 'a', '{"not": "array"}');
    PERFORM pgflow.start_flow('nr', '{}', r3);
    PERFORM pg_temp.complete_step(r3, 'a', '[7]');
    UPDATE pgflow.steps SET when_unmet = 'fail' WHERE flow_slug = 'nr' AND step_slug = 'gate';
    PERFORM pg_temp.complete_map(r3, 'm', '[2]');
    UPDATE pgflow.steps SET when_unmet = 'skip' WHERE flow_slug = 'nr' AND step_slug = 'gate';
    RETURN ARRAY(SELECT status FROM pgflow.runs WHERE run_id IN (r1, r2, r3) ORDER BY run_id);
END;
$$;

SELECT is(pg_temp.full_run('00000000-0000-0000-0000-000000000a01'), 'completed',
          'without realtime.send a whole run (started, completed, skipped events) works and completes');
SELECT is(pg_temp.failing_runs(2561), ARRAY['failed', 'failed', 'failed'],
          'without realtime.send handler failure, type violation and condition failure all work');
SELECT ok((SELECT bool_and(skip_reason IS NOT NULL) FROM pgflow.step_states
           WHERE run_id = '00000000-0000-0000-0000-000000000a01' AND step_slug IN ('soft', 'after_soft')),
          'skip-cascade happened too');

SET LOCAL pgflow.notify_events = on;
SELECT is(pg_temp.full_run('00000000-0000-0000-0000-000000000a11'), 'completed', 'with pgflow.notify_events on: a whole run works');
SELECT is(pg_temp.failing_runs(2577), ARRAY['failed', 'failed', 'failed'], 'with pgflow.notify_events on: failing runs work');
SET LOCAL pgflow.notify_events = off;

-- pg_notify fallback, observed from a second session that commits (its flow is deleted at the end).
CREATE FUNCTION pg_temp.notifications(VARIADIC stmts text[]) RETURNS text[] LANGUAGE plpgsql AS $f$
DECLARE
    cmd text;
    stmt text;
    result text[];
BEGIN
    cmd := format('PGOPTIONS=%s psql -X -h %s -p %s -U %s -d %s',
                  pg_temp.sh_quote('-c lock_timeout=10s -c statement_timeout=60s'),
                  pg_temp.sh_quote(coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                                            'localhost')),
                  current_setting('port'), pg_temp.sh_quote(current_user), pg_temp.sh_quote(current_database()));
    FOREACH stmt IN ARRAY stmts LOOP
        cmd := cmd || ' -c ' || pg_temp.sh_quote(stmt);
    END LOOP;
    cmd := cmd || ' 2>&1';
    CREATE TEMP TABLE IF NOT EXISTS notify_output (n bigserial, line text);
    TRUNCATE notify_output;
    EXECUTE format($c$COPY notify_output (line) FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02')$c$, cmd);
    SELECT coalesce(array_agg(o.line ORDER BY o.n), '{}') INTO result
    FROM notify_output o WHERE o.line LIKE 'Asynchronous notification%' OR o.line LIKE 'ERROR:%';
    RETURN result;
END
$f$;
CREATE TEMP TABLE notified AS
SELECT n, (regexp_match(line, '^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process'))[1] AS channel,
          (regexp_match(line, '^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process'))[2]::jsonb AS payload
FROM unnest(pg_temp.notifications(
        'SET pgflow.notify_events = on',
        'LISTEN "pgflow:run:00000000-0000-0000-0000-000000000aff"',
        'LISTEN "pgflow:run:00000000-0000-0000-0000-000000000afe"',
        format('SELECT pgflow.create_flow(%L)', 'nr_notify_' || txid_current()),
        format('SELECT pgflow.add_step(%L, %L)', 'nr_notify_' || txid_current(), 'a'),
        format('SELECT pgflow.start_flow(%L, %L, %L)', 'nr_notify_' || txid_current(), '{}', '00000000-0000-0000-0000-000000000aff'),
        'SET pgflow.notify_events = off',
        format('SELECT pgflow.start_flow(%L, %L, %L)', 'nr_notify_' || txid_current(), '{}', '00000000-0000-0000-0000-000000000afe'),
        format('SELECT pgflow.delete_flow_and_data(%L)', 'nr_notify_' || txid_current()))) WITH ORDINALITY AS x(line, n);
SELECT results_eq($$SELECT channel, payload ->> 'event', payload -> 'payload' ->> 'event_type', payload -> 'payload' ->> 'run_id'
                    FROM notified ORDER BY n$$,
                  $$VALUES ('pgflow:run:00000000-0000-0000-0000-000000000aff'::text, 'run:started'::text, 'run:started'::text,
                            '00000000-0000-0000-0000-000000000aff'::text),
                           ('pgflow:run:00000000-0000-0000-0000-000000000aff', 'step:a:started', 'step:started',
                            '00000000-0000-0000-0000-000000000aff')$$,
                  'notify_events on, no realtime.send: events arrive on channel pgflow:run:<run_id> in order; off: nothing');
SELECT is((SELECT count(*)::int FROM pgflow.flows WHERE flow_slug LIKE 'nr_notify_%'), 0, 'the second session cleaned up');

---------------------------------------------------------------------------------------------------
-- realtime.send created after pgflow already ran in this transaction: resolved at call time.
---------------------------------------------------------------------------------------------------
CREATE SCHEMA realtime;
CREATE TABLE realtime.sent (id bigserial PRIMARY KEY, payload jsonb, event text, topic text, private boolean);
CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO realtime.sent (payload, event, topic, private) VALUES (payload, event, topic, private);
END
$$;
SELECT lives_ok($$SELECT pgflow.start_flow('nr', '{}', '00000000-0000-0000-0000-000000000a21')$$,
                'start_flow after realtime.send was created in the same transaction');
SELECT results_eq($$SELECT event, topic, private FROM realtime.sent ORDER BY id$$,
                  $$VALUES ('run:started'::text, 'pgflow:run:00000000-0000-0000-0000-000000000a21'::text, false),
                           ('step:a:started', 'pgflow:run:00000000-0000-0000-0000-000000000a21', false),
                           ('step:soft:started', 'pgflow:run:00000000-0000-0000-0000-000000000a21', false)$$,
                  'realtime.send created mid-transaction receives the events of later calls');
SELECT lives_ok($$SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000a21', 'a', '[1]')$$, 'complete_task afterwards');
SELECT is((SELECT array_agg(event ORDER BY id) FROM realtime.sent WHERE id > 3),
          ARRAY['step:a:completed', 'step:m:started'], 'and its events are recorded too');

SELECT * FROM finish();
ROLLBACK;
