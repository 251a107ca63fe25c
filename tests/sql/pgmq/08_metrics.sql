-- Observability: metrics and metrics_all.
BEGIN;
SELECT plan(18);
SET LOCAL client_min_messages = error;

SELECT FROM pgmq.create('MetQ');

SELECT results_eq($$SELECT * FROM pgmq.metrics('MetQ')$$,
                  $$SELECT 'MetQ'::text, 0::bigint, NULL::integer, NULL::integer, 0::bigint, now(), 0::bigint, NULL::bigint$$,
                  'empty, never used queue: length 0, ages NULL, total 0, scrape_time now(), visible 0, default_partition_length NULL');
SELECT results_eq($$SELECT (pgmq.metrics('metq')).queue_name$$, ARRAY['metq'],
                  'queue_name is the argument as given (the table is shared)');

-- Rows with controlled timestamps (enqueued_at / vt relative to the transaction time now()).
INSERT INTO pgmq.q_metq (enqueued_at, vt, message) VALUES
    (now() - interval '10.6 seconds', now() - interval '1 second', '{"m": 1}'),
    (now() - interval '2.6 seconds', now(), '{"m": 2}'),
    (now() - interval '5 seconds', now() + interval '1 microsecond', '{"m": 3}');
SELECT results_eq($$SELECT queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, queue_visible_length
                    FROM pgmq.metrics('MetQ')$$,
                  $$VALUES (3::bigint, 3, 11, 3::bigint, 2::bigint)$$,
                  'length 3; ages rounded to whole seconds (2.6 -> 3, 10.6 -> 11); total 3; visible = vt <= now()');

-- Messages sent in this transaction have vt = clock > now(), so they do not count as visible yet.
SELECT FROM pgmq.send('MetQ', '{"m": 4}');
SELECT FROM pgmq.send('MetQ', '{"m": 5}', now() - interval '1 hour');
SELECT results_eq($$SELECT queue_length, newest_msg_age_sec, total_messages, queue_visible_length FROM pgmq.metrics('MetQ')$$,
                  $$VALUES (5::bigint, 0, 5::bigint, 3::bigint)$$,
                  'visibility is measured against transaction time; fresh sends have age 0');

SELECT FROM pgmq.archive('MetQ', 1::bigint);
SELECT FROM pgmq.delete('MetQ', 2::bigint);
SELECT FROM pgmq.pop('MetQ');
SELECT results_eq($$SELECT queue_length, total_messages FROM pgmq.metrics('MetQ')$$, $$VALUES (2::bigint, 5::bigint)$$,
                  'total_messages counts every id ever issued (archive, delete, pop do not lower it)');
SELECT FROM pgmq.purge_queue('MetQ');
SELECT results_eq($$SELECT queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, queue_visible_length
                    FROM pgmq.metrics('MetQ')$$,
                  $$VALUES (0::bigint, NULL::integer, NULL::integer, 5::bigint, 0::bigint)$$,
                  'after purge: length 0, ages NULL, total still 5');
SAVEPOINT before_rollback;
SELECT FROM pgmq.send('MetQ', '{}');
ROLLBACK TO SAVEPOINT before_rollback;
SELECT is((pgmq.metrics('MetQ')).total_messages, 6::bigint, 'a rolled-back send still counts in total_messages');
SELECT is((pgmq.metrics('MetQ')).scrape_time, now(), 'scrape_time = now()');

-- default_partition_length: NULL unless pgmq.q_<n>_default exists; then planner estimates.
SELECT is((pgmq.metrics('MetQ')).default_partition_length, NULL, 'default_partition_length NULL without q_<n>_default');
CREATE TABLE pgmq.q_metq_default (x integer);
SELECT is((pgmq.metrics('MetQ')).default_partition_length, 0::bigint,
          'with a never-analyzed q_<n>_default: 0 (negative reltuples count as 0)');
INSERT INTO pgmq.q_metq_default SELECT generate_series(1, 7);
ANALYZE pgmq.q_metq_default;
SELECT is((pgmq.metrics('MetQ')).default_partition_length, 7::bigint, 'reltuples of q_<n>_default');
CREATE TABLE pgmq.a_metq_default (x integer);
INSERT INTO pgmq.a_metq_default SELECT generate_series(1, 4);
ANALYZE pgmq.a_metq_default;
SELECT is((pgmq.metrics('MetQ')).default_partition_length, 11::bigint, 'sum over q_<n>_default and a_<n>_default');
INSERT INTO pgmq.q_metq_default SELECT generate_series(1, 100);
SELECT is((pgmq.metrics('MetQ')).default_partition_length, 11::bigint, 'an estimate, not a count (unchanged until ANALYZE)');
DROP TABLE pgmq.q_metq_default;
SELECT is((pgmq.metrics('MetQ')).default_partition_length, NULL, 'only q_<n>_default switches it on');
DROP TABLE pgmq.a_metq_default;

---------------------------------------------------------------------------------------------------
-- metrics_all
---------------------------------------------------------------------------------------------------
SELECT FROM pgmq.create('met2');
SELECT FROM pgmq.create_unlogged('met3');
SELECT FROM pgmq.send_batch('met2', ARRAY['{}', '{}']::jsonb[]);
SELECT set_eq('SELECT queue_name FROM pgmq.metrics_all()', ARRAY['MetQ', 'met2', 'met3'], 'metrics_all: one row per meta row');
SELECT set_eq('SELECT * FROM pgmq.metrics_all()',
              'SELECT (pgmq.metrics(queue_name)).* FROM pgmq.meta',
              'metrics_all rows equal metrics() of each queue');
SELECT results_eq($$SELECT queue_length, total_messages FROM pgmq.metrics_all() WHERE queue_name = 'met2'$$,
                  $$VALUES (2::bigint, 2::bigint)$$, 'metrics_all values for met2');
SELECT FROM pgmq.drop_queue('met2');
SELECT FROM pgmq.drop_queue('met3');
SELECT FROM pgmq.drop_queue('MetQ');
SELECT is_empty('SELECT * FROM pgmq.metrics_all()', 'metrics_all without queues is empty');

SELECT * FROM finish();
ROLLBACK;
