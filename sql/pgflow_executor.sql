-- Steps run by the database itself (src/executor): SQL handlers, the queue of their tasks, and
-- ad-hoc SQL tasks. None of these tables is part of the contract.

-- The role that created each flow: only it (or a member of it, or a superuser) may give the
-- flow's steps a handler.
CREATE TABLE pgflow._flow_owners (
    flow_slug text NOT NULL,
    owner     regrole NOT NULL,
    CONSTRAINT _flow_owners_pkey PRIMARY KEY (flow_slug),
    CONSTRAINT _flow_owners_flow_slug_fkey FOREIGN KEY (flow_slug)
        REFERENCES pgflow.flows (flow_slug) ON DELETE CASCADE
);

-- A step's handler, run by the executors for each of its tasks as role run_as: a SQL statement
-- (in this database, or in the one `target` connects to), or a program (argv). kind 'adhoc' is
-- the step of the built-in flow behind ad-hoc tasks: each run brings its own statement
-- (pgflow._adhoc_tasks).
CREATE TABLE pgflow._step_handlers (
    flow_slug  text        NOT NULL,
    step_slug  text        NOT NULL,
    kind       text        NOT NULL,
    statement  text,
    target     text,
    argv       text[],
    run_as     regrole     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT _step_handlers_pkey PRIMARY KEY (flow_slug, step_slug),
    CONSTRAINT _step_handlers_step_fkey FOREIGN KEY (flow_slug, step_slug)
        REFERENCES pgflow.steps (flow_slug, step_slug) ON DELETE CASCADE,
    CONSTRAINT _step_handlers_kind_check CHECK (kind IN ('sql', 'program', 'adhoc')),
    CONSTRAINT _step_handlers_shape_check CHECK (
        (kind = 'sql' AND statement IS NOT NULL AND argv IS NULL)
        OR (kind = 'program' AND statement IS NULL AND target IS NULL AND cardinality(argv) > 0)
        OR (kind = 'adhoc' AND statement IS NULL AND argv IS NULL))
);

-- The queue of tasks that the executors run: tasks of steps with a handler get a row here
-- instead of a message in the flow's queue, so no external worker ever reads them. The executor
-- that claims a task takes its row (a retry puts it back; pruning removes what is left). pool is
-- the task's concurrency pool; lane, for a map step with shards, the task's shard (one
-- transaction serves one lane, so executors do not wait for each other's shard rows); priority,
-- the run's (once runs have priorities, executors take higher ones first).
CREATE TABLE pgflow._local_tasks (
    run_id     uuid        NOT NULL,
    step_slug  text        NOT NULL,
    task_index integer     NOT NULL,
    flow_slug  text        NOT NULL,
    visible_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    pool       text,
    lane       integer,
    priority   integer     NOT NULL DEFAULT 0,
    CONSTRAINT _local_tasks_pkey PRIMARY KEY (run_id, step_slug, task_index)
);
-- The executors' claims, each an ordered index scan stopped by its LIMIT: the oldest visible
-- task of any pool; the oldest of a pool; the oldest of a pool of steps without shards; the
-- oldest of a lane.
CREATE INDEX _local_tasks_visible_at ON pgflow._local_tasks (visible_at);
CREATE INDEX _local_tasks_pool ON pgflow._local_tasks ((coalesce(pool, '')), visible_at);
CREATE INDEX _local_tasks_singles ON pgflow._local_tasks ((coalesce(pool, '')), visible_at) WHERE lane IS NULL;
CREATE INDEX _local_tasks_lane ON pgflow._local_tasks (run_id, step_slug, lane, visible_at) WHERE lane IS NOT NULL;

-- Ad-hoc SQL tasks: one-off runs of the built-in flow pgflow_adhoc, each with its statement.
CREATE TABLE pgflow._adhoc_tasks (
    run_id    uuid NOT NULL,
    statement text NOT NULL,
    run_as    regrole NOT NULL,
    CONSTRAINT _adhoc_tasks_pkey PRIMARY KEY (run_id)
);

-- Concurrency pools: at most max_running tasks of a pool's steps run at once, on executors and
-- external workers together. A task runs while it holds one of its pool's slots: an executor
-- holds a slot's row lock for its transaction; an external worker's task is written into the
-- slot by start_tasks, and the slot is free again once that task is no longer started.
CREATE TABLE pgflow._pools (
    pool_name   text    NOT NULL,
    max_running integer NOT NULL,
    owner       regrole NOT NULL,
    CONSTRAINT _pools_pkey PRIMARY KEY (pool_name),
    CONSTRAINT _pools_max_running_check CHECK (max_running > 0)
);

CREATE TABLE pgflow._pool_slots (
    pool_name  text    NOT NULL,
    slot       integer NOT NULL,
    run_id     uuid,
    step_slug  text,
    task_index integer,
    CONSTRAINT _pool_slots_pkey PRIMARY KEY (pool_name, slot),
    CONSTRAINT _pool_slots_pool_fkey FOREIGN KEY (pool_name)
        REFERENCES pgflow._pools (pool_name) ON DELETE CASCADE
);

-- Which pool a flow's steps (step_slug '') or one step runs in.
CREATE TABLE pgflow._pool_assignments (
    flow_slug text NOT NULL,
    step_slug text NOT NULL DEFAULT '',
    pool_name text NOT NULL,
    CONSTRAINT _pool_assignments_pkey PRIMARY KEY (flow_slug, step_slug),
    CONSTRAINT _pool_assignments_flow_fkey FOREIGN KEY (flow_slug)
        REFERENCES pgflow.flows (flow_slug) ON DELETE CASCADE,
    CONSTRAINT _pool_assignments_pool_fkey FOREIGN KEY (pool_name)
        REFERENCES pgflow._pools (pool_name) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('pgflow._pools', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._pool_slots', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._pool_assignments', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._flow_owners', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._step_handlers', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._local_tasks', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._adhoc_tasks', '');
