-- Kept plans on queue tables: bounded per backend, and freed when their queue is dropped
-- (a session that created, used and dropped thousands of queues grew without bound).
BEGIN;
SELECT plan(4);
SET LOCAL client_min_messages = error;

-- Kept plans of this backend that mention a queue table of ours.
CREATE FUNCTION pg_temp.plans_on(pattern text) RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::int FROM pg_backend_memory_contexts
    WHERE name = 'CachedPlanSource' AND ident LIKE '%pgmq.%' || pattern || '%'
$$;

-- Every kept statement of a queue: send, send_batch, read, set_vt, archive, delete, pop.
CREATE FUNCTION pg_temp.use_queue(q text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE id bigint;
BEGIN
    PERFORM pgmq.create(q);
    SELECT * INTO id FROM pgmq.send(q, '{}');
    PERFORM pgmq.send_batch(q, ARRAY['{}', '{}']::jsonb[]);
    PERFORM pgmq.read(q, 0, 1);
    PERFORM pgmq.set_vt(q, id, 0);
    PERFORM pgmq.archive(q, id);
    PERFORM pgmq.delete(q, id + 1);
    PERFORM pgmq.pop(q);
END;
$$;

SELECT pg_temp.use_queue('kp_keep');
SELECT cmp_ok(pg_temp.plans_on('q_kp_keep'), '>=', 6, 'a used queue has its kept plans');
SELECT pgmq.drop_queue('kp_keep');
SELECT is(pg_temp.plans_on('q_kp_keep'), 0, 'drop_queue frees them in the backend that drops it');

SELECT pg_temp.use_queue('kp_many_' || i) FROM generate_series(1, 120) i;
SELECT cmp_ok(pg_temp.plans_on('q_kp_many_'), '<=', 192,
              'after 120 queues (840 statements) at most 192 plans on queue tables are kept');
SELECT pgmq.drop_queue('kp_many_' || i) FROM generate_series(1, 120) i;
SELECT is(pg_temp.plans_on('q_kp_many_'), 0, 'and none once their queues are dropped');

SELECT * FROM finish();
ROLLBACK;
