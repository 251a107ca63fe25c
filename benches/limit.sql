-- pgflow-bench "limit": the least durable work one task needs if the engine were perfect.
--
-- One run of this script (one pgbench "transaction") = one task. pgbench runs each statement
-- below in autocommit, so one script run is three commits, each a WAL flush:
--
--   1. enqueue     The producer's commit. Once start_flow (or a send) returns, the task must
--                  survive a crash, so it has to be written and committed.
--   2. claim       A worker takes the task. The claim must be committed before the work starts:
--                  otherwise two workers could run the same task, and after a crash nobody would
--                  know the task was in progress (attempt counting, timeouts). It cannot share a
--                  commit with 1 (another client, later in time) nor with 3 (the work itself
--                  happens in between, outside the database, and may take minutes).
--   3. completion  The result is recorded; it must be durable before the worker moves on, or a
--                  crash would lose a result that was already acknowledged.
--
-- Fewer than three commits would drop one of these guarantees. Everything else is kept to the
-- minimum: one narrow table, one insert, one claim of the oldest queued task with
-- FOR UPDATE SKIP LOCKED (how concurrent workers take distinct tasks without waiting on each
-- other), one update. No flows, steps, dependencies, queue/archive tables or events: whatever
-- the real engine spends beyond this is its own overhead.
--
-- The table is created by pgflow-bench:
--   CREATE TABLE bench_limit_tasks (id bigserial PRIMARY KEY, state smallint NOT NULL DEFAULT 0,
--                                   payload jsonb);
--   CREATE INDEX bench_limit_tasks_queued ON bench_limit_tasks (id) WHERE state = 0;
-- state: 0 queued, 1 claimed, 2 completed.

-- 1. enqueue
INSERT INTO bench_limit_tasks (state, payload) VALUES (0, '{"n": 1}');

-- 2. claim the oldest queued task (0 when every queued task is locked by another client)
WITH claimed AS (
    UPDATE bench_limit_tasks SET state = 1
    WHERE id = (SELECT id FROM bench_limit_tasks WHERE state = 0
                ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id)
SELECT coalesce(max(id), 0) AS task_id FROM claimed
\gset

-- 3. completion
UPDATE bench_limit_tasks SET state = 2, payload = '{"ok": true}' WHERE id = :task_id;
