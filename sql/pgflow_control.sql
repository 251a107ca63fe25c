-- Run control (src/run): runs that were cancelled, are paused, or wait for a slot of their
-- flow's concurrency limit. The contract's runs table keeps its three statuses: a cancelled run
-- is 'failed' there, a paused or waiting one 'started'.
CREATE TABLE pgflow._run_control (
    run_id     uuid        NOT NULL,
    state      text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT _run_control_pkey PRIMARY KEY (run_id),
    CONSTRAINT _run_control_state_check CHECK (state IN ('cancelled', 'paused', 'waiting'))
);

SELECT pg_catalog.pg_extension_config_dump('pgflow._run_control', '');

-- A flow's run options: the priority its runs get unless started with their own, and how many
-- of its runs may be active at once (NULL: any number). Starts and ends of runs of a flow with
-- a limit lock its row (src/run/flow_concurrency.rs).
CREATE TABLE pgflow._flow_options (
    flow_slug       text    NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    max_active_runs integer,
    CONSTRAINT _flow_options_pkey PRIMARY KEY (flow_slug),
    CONSTRAINT _flow_options_max_active_runs_check CHECK (max_active_runs > 0),
    CONSTRAINT _flow_options_flow_slug_fkey FOREIGN KEY (flow_slug)
        REFERENCES pgflow.flows (flow_slug) ON DELETE CASCADE
);

-- A run's options, for runs that have any: its priority (0 has no row unless the run has a
-- key), and the idempotency key it was started with (unique per flow while the run is kept).
CREATE TABLE pgflow._run_options (
    run_id          uuid    NOT NULL,
    flow_slug       text    NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    idempotency_key text,
    CONSTRAINT _run_options_pkey PRIMARY KEY (run_id),
    CONSTRAINT _run_options_key UNIQUE (flow_slug, idempotency_key)
);
-- Whether any run has a priority (`executor::features`).
CREATE INDEX _run_options_prioritized ON pgflow._run_options (run_id) WHERE priority <> 0;

-- Waiting runs, in the order they were started.
CREATE INDEX _run_control_waiting ON pgflow._run_control (changed_at) WHERE state = 'waiting';

SELECT pg_catalog.pg_extension_config_dump('pgflow._flow_options', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._run_options', '');

-- Reruns of runs (retry_run): each has a number, from 1, and the step it reran from, if any.
CREATE TABLE pgflow._run_reruns (
    run_id          uuid        NOT NULL,
    rerun           integer     NOT NULL,
    from_step       text,
    previous_status text        NOT NULL,
    rerun_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT _run_reruns_pkey PRIMARY KEY (run_id, rerun)
);

-- The tasks that a rerun replaced, as they were then (pgflow.run_history); pruning deletes
-- their archived messages with the run.
CREATE TABLE pgflow._task_history (
    run_id         uuid        NOT NULL,
    rerun          integer     NOT NULL,
    step_slug      text        NOT NULL,
    task_index     integer     NOT NULL,
    flow_slug      text        NOT NULL,
    message_id     bigint,
    status         text        NOT NULL,
    attempts_count integer     NOT NULL,
    error_message  text,
    output         jsonb,
    queued_at      timestamptz NOT NULL,
    started_at     timestamptz,
    completed_at   timestamptz,
    failed_at      timestamptz,
    CONSTRAINT _task_history_pkey PRIMARY KEY (run_id, rerun, step_slug, task_index)
);

SELECT pg_catalog.pg_extension_config_dump('pgflow._run_reruns', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._task_history', '');

-- Every attempt of a run's tasks: rerun N is a task as it was when rerun N replaced it (see
-- retry_run), rerun NULL a task as it is now.
CREATE FUNCTION pgflow.run_history(run_id uuid)
RETURNS TABLE (rerun integer, step_slug text, task_index integer, status text, attempts_count integer,
               error_message text, output jsonb, queued_at timestamptz, started_at timestamptz,
               completed_at timestamptz, failed_at timestamptz)
LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT h.rerun, h.step_slug, h.task_index, h.status, h.attempts_count, h.error_message, h.output,
           h.queued_at, h.started_at, h.completed_at, h.failed_at
    FROM pgflow._task_history h WHERE h.run_id = run_history.run_id
    UNION ALL
    SELECT NULL, t.step_slug, t.task_index, t.status, t.attempts_count, t.error_message, t.output,
           t.queued_at, t.started_at, t.completed_at, t.failed_at
    FROM pgflow.step_tasks t WHERE t.run_id = run_history.run_id
    ORDER BY 1 NULLS LAST, 2, 3
$$;
