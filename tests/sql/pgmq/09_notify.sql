-- Insert notifications: enable / disable / update / list, the trigger definition,
-- throttle rows and the throttle window, every error and NOTICE. LISTEN delivery is tested
-- elsewhere. For mixed-case names the implementation follows pgmq 1.13.1 (the trigger carries
-- the stored queue name), as the contract recommends.
BEGIN;
SELECT plan(51);
SET LOCAL client_min_messages = error;

\ir helpers/session_messages.psql

CREATE FUNCTION pg_temp.triggers(rel regclass) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = rel
$$;
CREATE FUNCTION pg_temp.throttle(q text) RETURNS TABLE(throttle_interval_ms integer, last_notified_at timestamptz)
LANGUAGE sql AS $$
    SELECT t.throttle_interval_ms, t.last_notified_at FROM pgmq.notify_insert_throttle t WHERE t.queue_name = q
$$;

---------------------------------------------------------------------------------------------------
-- enable_notify_insert
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('nq');
SELECT lives_ok($$SELECT pgmq.enable_notify_insert('nq')$$, 'enable_notify_insert(queue_name)');
SELECT results_eq($$SELECT * FROM pg_temp.throttle('nq')$$, $$VALUES (250, to_timestamp(0))$$,
                  'default throttle 250 ms, last_notified_at = epoch');
SELECT set_eq($$SELECT * FROM pg_temp.triggers('pgmq.q_nq')$$,
              ARRAY['CREATE CONSTRAINT TRIGGER trigger_notify_queue_insert_listeners AFTER INSERT ON pgmq.q_nq DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION pgmq.notify_queue_listeners(''nq'')'],
              'constraint trigger: AFTER INSERT, DEFERRABLE INITIALLY IMMEDIATE, FOR EACH ROW, notify_queue_listeners(stored name)');
SELECT results_eq($$SELECT tgenabled::text, tgdeferrable, tginitdeferred, tgconstraint <> 0 FROM pg_trigger
                    WHERE tgrelid = 'pgmq.q_nq'::regclass$$,
                  $$VALUES ('O', true, false, true)$$, 'trigger enabled, deferrable, initially immediate, a constraint trigger');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_n')$$, $$SELECT pgmq.enable_notify_insert('ntc_n')$$,
                                   $$SELECT pgmq.enable_notify_insert('ntc_n', 10)$$),
          ARRAY['NOTICE: 00000: trigger "trigger_notify_queue_insert_listeners" for relation "pgmq.q_ntc_n" does not exist, skipping'],
          'the first enable emits the DROP TRIGGER IF EXISTS notice; re-enabling emits nothing');

-- Re-enabling replaces the interval and resets the window; still one trigger.
UPDATE pgmq.notify_insert_throttle SET last_notified_at = now() WHERE queue_name = 'nq';
SELECT lives_ok($$SELECT pgmq.enable_notify_insert(queue_name => 'nq', throttle_interval_ms => 1000)$$, 're-enable with 1000 ms');
SELECT results_eq($$SELECT * FROM pg_temp.throttle('nq')$$, $$VALUES (1000, to_timestamp(0))$$,
                  're-enable sets the interval and resets last_notified_at');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'pgmq.q_nq'::regclass), 1, 're-enable leaves one trigger');
SELECT FROM pgmq.enable_notify_insert('nq', 0);
SELECT results_eq($$SELECT * FROM pg_temp.throttle('nq')$$, $$VALUES (0, to_timestamp(0))$$, 'interval 0 is allowed');

-- Errors, in order.
SELECT throws_ok($$SELECT pgmq.enable_notify_insert('nq', -1)$$, 'P0001', 'throttle_interval_ms must be non-negative',
                 'negative interval');
SELECT throws_ok($$SELECT pgmq.enable_notify_insert('no_such_queue', -1)$$, 'P0001', 'throttle_interval_ms must be non-negative',
                 'the interval check comes before the queue check');
SELECT throws_ok($$SELECT pgmq.enable_notify_insert('no_such_queue')$$, 'P0001',
                 'Queue "no_such_queue" does not exist. Create it first using pgmq.create()', 'missing queue');
SELECT FROM pgmq.create('NqMixed');
SELECT throws_ok($$SELECT pgmq.enable_notify_insert('nqmixed')$$, '23503',
                 'insert or update on table "notify_insert_throttle" violates foreign key constraint "notify_insert_throttle_meta_queue_name_fk"',
                 'a spelling absent from meta (table exists) fails the FK');
SELECT is_empty($$SELECT * FROM pg_temp.triggers('pgmq.q_nqmixed')$$, '... and leaves no trigger');
-- A queue table without a meta row behaves the same.
CREATE TABLE pgmq.q_orphan (msg_id bigint);
SELECT throws_ok($$SELECT pgmq.enable_notify_insert('orphan', 5)$$, '23503',
                 'insert or update on table "notify_insert_throttle" violates foreign key constraint "notify_insert_throttle_meta_queue_name_fk"',
                 'a queue table without meta row fails the FK');
DROP TABLE pgmq.q_orphan;

---------------------------------------------------------------------------------------------------
-- The trigger and the throttle window
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.send('nq', '{}');
SELECT ok((SELECT last_notified_at BETWEEN now() AND clock_timestamp() FROM pg_temp.throttle('nq')),
          'interval 0: an insert sets last_notified_at = clock');
UPDATE pgmq.notify_insert_throttle SET last_notified_at = to_timestamp(0) WHERE queue_name = 'nq';
INSERT INTO pgmq.q_nq (vt, message) VALUES (now(), '{"direct": true}');
SELECT ok((SELECT last_notified_at > now() - interval '1 minute' FROM pg_temp.throttle('nq')),
          'the trigger fires for a direct INSERT too');

SELECT FROM pgmq.create('tq');
SELECT FROM pgmq.enable_notify_insert('tq', 3600000);
SELECT FROM pgmq.send('tq', '{}');
CREATE TEMP TABLE tq_first AS SELECT last_notified_at FROM pg_temp.throttle('tq');
SELECT ok((SELECT last_notified_at > now() - interval '1 minute' FROM tq_first), 'first insert after enable opens the window');
SELECT FROM pgmq.send_batch('tq', ARRAY['{}', '{}']::jsonb[]);
SELECT FROM pgmq.send('tq', '{}');
SELECT is((SELECT last_notified_at FROM pg_temp.throttle('tq')), (SELECT last_notified_at FROM tq_first),
          'inserts inside the window do not touch last_notified_at');
UPDATE pgmq.notify_insert_throttle SET last_notified_at = clock_timestamp() - interval '3600001 milliseconds' WHERE queue_name = 'tq';
SELECT FROM pgmq.send('tq', '{}');
SELECT ok((SELECT last_notified_at > now() - interval '1 minute' FROM pg_temp.throttle('tq')),
          'once the interval has passed an insert notifies again');

-- Mixed-case name: the throttle row keeps the stored spelling and the trigger finds it.
SELECT lives_ok($$SELECT pgmq.enable_notify_insert('NqMixed', 0)$$, 'enable with the stored mixed-case spelling');
SELECT set_eq($$SELECT * FROM pg_temp.triggers('pgmq.q_nqmixed')$$,
              ARRAY['CREATE CONSTRAINT TRIGGER trigger_notify_queue_insert_listeners AFTER INSERT ON pgmq.q_nqmixed DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION pgmq.notify_queue_listeners(''NqMixed'')'],
              'the trigger of a mixed-case queue carries the stored name');
SELECT FROM pgmq.send('nqmixed', '{}');
SELECT ok((SELECT last_notified_at > now() - interval '1 minute' FROM pg_temp.throttle('NqMixed')),
          'an insert into a mixed-case queue updates its throttle row');

-- Without a trigger argument the key is the table name without q_.
SELECT FROM pgmq.create('noarg');
SELECT FROM pgmq.enable_notify_insert('noarg', 0);
DROP TRIGGER trigger_notify_queue_insert_listeners ON pgmq.q_noarg;
CREATE CONSTRAINT TRIGGER trigger_notify_queue_insert_listeners AFTER INSERT ON pgmq.q_noarg
    DEFERRABLE FOR EACH ROW EXECUTE PROCEDURE pgmq.notify_queue_listeners();
SELECT FROM pgmq.send('noarg', '{}');
SELECT ok((SELECT last_notified_at > now() - interval '1 minute' FROM pg_temp.throttle('noarg')),
          'notify_queue_listeners() without argument looks up the lower-cased table stem');

---------------------------------------------------------------------------------------------------
-- update_notify_insert
---------------------------------------------------------------------------------------------------
CREATE TEMP TABLE tq_trigger AS SELECT oid FROM pg_trigger WHERE tgrelid = 'pgmq.q_tq'::regclass;
SELECT lives_ok($$SELECT pgmq.update_notify_insert('tq', 42)$$, 'update_notify_insert');
SELECT results_eq($$SELECT * FROM pg_temp.throttle('tq')$$, $$VALUES (42, to_timestamp(0))$$,
                  'update sets the interval and resets last_notified_at');
SELECT results_eq($$SELECT oid FROM pg_trigger WHERE tgrelid = 'pgmq.q_tq'::regclass$$, 'SELECT oid FROM tq_trigger',
                  'update leaves the trigger untouched');
SELECT FROM pgmq.send('tq', '{}');
SELECT ok((SELECT last_notified_at > now() - interval '1 minute' FROM pg_temp.throttle('tq')),
          'after update the next insert notifies (window reset)');
SELECT lives_ok($$SELECT pgmq.update_notify_insert(queue_name => 'tq', throttle_interval_ms => 0)$$, 'update to 0, named arguments');
SELECT results_eq($$SELECT throttle_interval_ms FROM pg_temp.throttle('tq')$$, ARRAY[0], 'interval 0');
SELECT throws_ok($$SELECT pgmq.update_notify_insert('tq', -5)$$, 'P0001', 'throttle_interval_ms must be non-negative, got: -5',
                 'update: negative interval');
SELECT throws_ok($$SELECT pgmq.update_notify_insert('no_such_queue', -5)$$, 'P0001', 'throttle_interval_ms must be non-negative, got: -5',
                 'update: the interval check comes first');
SELECT throws_ok($$SELECT pgmq.update_notify_insert('no_such_queue', 5)$$, 'P0001',
                 'Queue "no_such_queue" does not exist. Create the queue first using pgmq.create()', 'update: missing queue');
SELECT throws_ok($$SELECT pgmq.update_notify_insert('TQ', 5)$$, 'P0001',
                 'Queue "TQ" does not exist. Create the queue first using pgmq.create()', 'update: the meta lookup is exact');
SELECT FROM pgmq.create('plain');
SELECT throws_ok($$SELECT pgmq.update_notify_insert('plain', 5)$$, 'P0001',
                 'Queue "plain" does not have notify_insert enabled. Enable it first using pgmq.enable_notify_insert()',
                 'update: notify not enabled');

---------------------------------------------------------------------------------------------------
-- list_notify_insert_throttles
---------------------------------------------------------------------------------------------------
SELECT results_eq('SELECT queue_name, throttle_interval_ms FROM pgmq.list_notify_insert_throttles()',
                  $$VALUES ('NqMixed'::text, 0), ('noarg', 0), ('nq', 0), ('tq', 0)$$,
                  'list_notify_insert_throttles: every throttle row ordered by queue_name');
SELECT results_eq('SELECT * FROM pgmq.list_notify_insert_throttles()',
                  'SELECT queue_name::text, throttle_interval_ms, last_notified_at FROM pgmq.notify_insert_throttle ORDER BY queue_name',
                  'list_notify_insert_throttles returns the rows as stored');

---------------------------------------------------------------------------------------------------
-- disable_notify_insert
---------------------------------------------------------------------------------------------------
SELECT lives_ok($$SELECT pgmq.disable_notify_insert('nq')$$, 'disable_notify_insert');
SELECT is_empty($$SELECT * FROM pg_temp.triggers('pgmq.q_nq')$$, 'disable drops the trigger');
SELECT is_empty($$SELECT * FROM pg_temp.throttle('nq')$$, 'disable deletes the throttle row');
SELECT lives_ok($$SELECT pgmq.disable_notify_insert('nq')$$, 'disable again');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_d')$$, $$SELECT pgmq.disable_notify_insert('ntc_d')$$),
          ARRAY['NOTICE: 00000: trigger "trigger_notify_queue_insert_listeners" for relation "pgmq.q_ntc_d" does not exist, skipping'],
          'disable when not enabled: NOTICE only');
SELECT is(pg_temp.session_messages($$SELECT pgmq.disable_notify_insert('Ntc_Missing')$$),
          ARRAY['NOTICE: 00000: relation "pgmq.q_ntc_missing" does not exist, skipping'],
          'disable on a missing queue: NOTICE only');
SELECT is(pg_temp.session_messages($$SELECT pgmq.create('ntc_e')$$, $$SELECT pgmq.enable_notify_insert('ntc_e')$$,
                                   $$SELECT pgmq.disable_notify_insert('ntc_e')$$),
          ARRAY['NOTICE: 00000: trigger "trigger_notify_queue_insert_listeners" for relation "pgmq.q_ntc_e" does not exist, skipping'],
          'disable of an enabled queue is silent');
-- The throttle row is deleted by exact name; the trigger by the lower-cased table.
SELECT FROM pgmq.disable_notify_insert('NQMIXED');
SELECT is_empty($$SELECT * FROM pg_temp.triggers('pgmq.q_nqmixed')$$, 'disable with another spelling drops the trigger');
SELECT results_eq($$SELECT throttle_interval_ms FROM pg_temp.throttle('NqMixed')$$, ARRAY[0],
                  '... but keeps the throttle row of the stored spelling');
SELECT FROM pgmq.disable_notify_insert('NqMixed');
SELECT is_empty($$SELECT * FROM pg_temp.throttle('NqMixed')$$, 'disable with the stored spelling deletes it');
SELECT FROM pgmq.send('nq', '{}');
SELECT is_empty($$SELECT * FROM pg_temp.throttle('nq')$$, 'sending after disable creates no throttle row');

-- drop_queue removes trigger and throttle row.
SELECT FROM pgmq.drop_queue('tq');
SELECT is_empty($$SELECT * FROM pg_temp.throttle('tq')$$, 'drop_queue removes the throttle row');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgname = 'trigger_notify_queue_insert_listeners'), 1,
          'only the trigger of noarg is left');
SELECT throws_ok('SELECT pgmq.notify_queue_listeners()', '0A000', 'trigger functions can only be called as triggers',
                 'notify_queue_listeners is a trigger function');

SELECT * FROM finish();
ROLLBACK;
