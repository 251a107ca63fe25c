-- The pgflow-compatible workflow engine: tables, constraints, indexes and types. Column order,
-- defaults and constraint names are pgflow's: clients read these tables and match constraint
-- errors.

CREATE SCHEMA IF NOT EXISTS pgflow;
REVOKE ALL ON SCHEMA pgflow FROM PUBLIC;

-- Used by CHECK constraints, so it exists before the tables.
CREATE FUNCTION pgflow.is_valid_slug(slug text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE SET search_path = '' AS $$
BEGIN
    RETURN slug IS NOT NULL
       AND slug <> ''
       AND length(slug) <= 128
       AND slug ~ '^[a-zA-Z_][a-zA-Z0-9_]*$'
       AND slug <> 'run';
END;
$$;

CREATE TYPE pgflow.step_task_record AS (
    flow_slug  text,
    run_id     uuid,
    step_slug  text,
    input      jsonb,
    msg_id     bigint,
    task_index integer,
    flow_input jsonb
);

CREATE TABLE pgflow.flows (
    flow_slug        text        NOT NULL,
    opt_max_attempts integer     NOT NULL DEFAULT 3,
    opt_base_delay   integer     NOT NULL DEFAULT 1,
    opt_timeout      integer     NOT NULL DEFAULT 60,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT flows_pkey PRIMARY KEY (flow_slug),
    CONSTRAINT slug_is_valid CHECK (pgflow.is_valid_slug(flow_slug)),
    CONSTRAINT opt_max_attempts_is_nonnegative CHECK (opt_max_attempts >= 0),
    CONSTRAINT opt_base_delay_is_nonnegative CHECK (opt_base_delay >= 0),
    CONSTRAINT opt_timeout_is_positive CHECK (opt_timeout > 0)
);

CREATE TABLE pgflow.steps (
    flow_slug               text        NOT NULL,
    step_slug               text        NOT NULL,
    step_type               text        NOT NULL DEFAULT 'single',
    step_index              integer     NOT NULL DEFAULT 0,
    deps_count              integer     NOT NULL DEFAULT 0,
    opt_max_attempts        integer,
    opt_base_delay          integer,
    opt_timeout             integer,
    created_at              timestamptz NOT NULL DEFAULT now(),
    opt_start_delay         integer,
    required_input_pattern  jsonb,
    forbidden_input_pattern jsonb,
    when_unmet              text        NOT NULL DEFAULT 'skip',
    when_exhausted          text        NOT NULL DEFAULT 'fail',
    CONSTRAINT steps_pkey PRIMARY KEY (flow_slug, step_slug),
    CONSTRAINT steps_flow_slug_step_index_key UNIQUE (flow_slug, step_index),
    CONSTRAINT steps_flow_slug_fkey FOREIGN KEY (flow_slug) REFERENCES pgflow.flows (flow_slug),
    CONSTRAINT steps_step_slug_check CHECK (pgflow.is_valid_slug(step_slug)),
    CONSTRAINT steps_step_type_check CHECK (step_type IN ('single', 'map')),
    CONSTRAINT steps_deps_count_check CHECK (deps_count >= 0),
    CONSTRAINT opt_max_attempts_is_nonnegative CHECK (opt_max_attempts IS NULL OR opt_max_attempts >= 0),
    CONSTRAINT opt_base_delay_is_nonnegative CHECK (opt_base_delay IS NULL OR opt_base_delay >= 0),
    CONSTRAINT opt_timeout_is_positive CHECK (opt_timeout IS NULL OR opt_timeout > 0),
    CONSTRAINT opt_start_delay_is_nonnegative CHECK (opt_start_delay IS NULL OR opt_start_delay >= 0),
    CONSTRAINT required_input_pattern_is_object
        CHECK (required_input_pattern IS NULL OR jsonb_typeof(required_input_pattern) = 'object'),
    CONSTRAINT forbidden_input_pattern_is_object
        CHECK (forbidden_input_pattern IS NULL OR jsonb_typeof(forbidden_input_pattern) = 'object'),
    CONSTRAINT when_unmet_is_valid CHECK (when_unmet IN ('fail', 'skip', 'skip-cascade')),
    CONSTRAINT when_exhausted_is_valid CHECK (when_exhausted IN ('fail', 'skip', 'skip-cascade'))
);

CREATE TABLE pgflow.deps (
    flow_slug  text        NOT NULL,
    dep_slug   text        NOT NULL,
    step_slug  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deps_pkey PRIMARY KEY (flow_slug, dep_slug, step_slug),
    CONSTRAINT deps_flow_slug_fkey FOREIGN KEY (flow_slug) REFERENCES pgflow.flows (flow_slug),
    CONSTRAINT deps_flow_slug_dep_slug_fkey FOREIGN KEY (flow_slug, dep_slug)
        REFERENCES pgflow.steps (flow_slug, step_slug),
    CONSTRAINT deps_flow_slug_step_slug_fkey FOREIGN KEY (flow_slug, step_slug)
        REFERENCES pgflow.steps (flow_slug, step_slug),
    CONSTRAINT deps_check CHECK (dep_slug <> step_slug)
);

CREATE TABLE pgflow.runs (
    run_id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    flow_slug       text        NOT NULL,
    status          text        NOT NULL DEFAULT 'started',
    input           jsonb       NOT NULL,
    output          jsonb,
    remaining_steps integer     NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    failed_at       timestamptz,
    CONSTRAINT runs_pkey PRIMARY KEY (run_id),
    CONSTRAINT runs_flow_slug_fkey FOREIGN KEY (flow_slug) REFERENCES pgflow.flows (flow_slug),
    CONSTRAINT runs_remaining_steps_check CHECK (remaining_steps >= 0),
    CONSTRAINT status_is_valid CHECK (status IN ('started', 'failed', 'completed')),
    CONSTRAINT completed_at_or_failed_at CHECK (NOT (completed_at IS NOT NULL AND failed_at IS NOT NULL)),
    CONSTRAINT completed_at_is_after_started_at CHECK (completed_at IS NULL OR completed_at >= started_at),
    CONSTRAINT failed_at_is_after_started_at CHECK (failed_at IS NULL OR failed_at >= started_at)
);

CREATE TABLE pgflow.step_states (
    flow_slug       text        NOT NULL,
    run_id          uuid        NOT NULL,
    step_slug       text        NOT NULL,
    status          text        NOT NULL DEFAULT 'created',
    remaining_tasks integer,
    remaining_deps  integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz,
    failed_at       timestamptz,
    error_message   text,
    initial_tasks   integer,
    output          jsonb,
    skip_reason     text,
    skipped_at      timestamptz,
    CONSTRAINT step_states_pkey PRIMARY KEY (run_id, step_slug),
    CONSTRAINT step_states_flow_slug_fkey FOREIGN KEY (flow_slug) REFERENCES pgflow.flows (flow_slug),
    CONSTRAINT step_states_run_id_fkey FOREIGN KEY (run_id) REFERENCES pgflow.runs (run_id),
    CONSTRAINT step_states_flow_slug_step_slug_fkey FOREIGN KEY (flow_slug, step_slug)
        REFERENCES pgflow.steps (flow_slug, step_slug),
    CONSTRAINT status_is_valid CHECK (status IN ('created', 'started', 'completed', 'failed', 'skipped')),
    CONSTRAINT status_and_remaining_tasks_match CHECK (status <> 'completed' OR remaining_tasks = 0),
    CONSTRAINT remaining_tasks_state_consistency
        CHECK (remaining_tasks IS NULL OR status NOT IN ('created', 'skipped')),
    CONSTRAINT initial_tasks_known_when_started CHECK (status <> 'started' OR initial_tasks IS NOT NULL),
    CONSTRAINT step_states_initial_tasks_check CHECK (initial_tasks IS NULL OR initial_tasks >= 0),
    CONSTRAINT step_states_remaining_deps_check CHECK (remaining_deps >= 0),
    CONSTRAINT output_only_for_completed_or_null CHECK (output IS NULL OR status = 'completed'),
    CONSTRAINT skip_reason_matches_status CHECK (
        (status = 'skipped' AND skip_reason IS NOT NULL) OR (status <> 'skipped' AND skip_reason IS NULL)),
    CONSTRAINT completed_at_or_failed_at_or_skipped_at CHECK (
        (CASE WHEN completed_at IS NOT NULL THEN 1 ELSE 0 END
         + CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END
         + CASE WHEN skipped_at IS NOT NULL THEN 1 ELSE 0 END) <= 1),
    CONSTRAINT started_at_is_after_created_at CHECK (started_at IS NULL OR started_at >= created_at),
    CONSTRAINT completed_at_is_after_started_at CHECK (completed_at IS NULL OR completed_at >= started_at),
    CONSTRAINT failed_at_is_after_started_at CHECK (failed_at IS NULL OR failed_at >= started_at),
    CONSTRAINT skipped_at_is_after_created_at CHECK (skipped_at IS NULL OR skipped_at >= created_at)
);

CREATE TABLE pgflow.workers (
    worker_id         uuid        NOT NULL,
    queue_name        text        NOT NULL,
    function_name     text        NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    deprecated_at     timestamptz,
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz,
    CONSTRAINT workers_pkey PRIMARY KEY (worker_id)
);

CREATE TABLE pgflow.step_tasks (
    flow_slug              text        NOT NULL,
    run_id                 uuid        NOT NULL,
    step_slug              text        NOT NULL,
    message_id             bigint,
    task_index             integer     NOT NULL DEFAULT 0,
    status                 text        NOT NULL DEFAULT 'queued',
    attempts_count         integer     NOT NULL DEFAULT 0,
    error_message          text,
    output                 jsonb,
    queued_at              timestamptz NOT NULL DEFAULT now(),
    completed_at           timestamptz,
    failed_at              timestamptz,
    started_at             timestamptz,
    last_worker_id         uuid,
    requeued_count         integer     NOT NULL DEFAULT 0,
    last_requeued_at       timestamptz,
    permanently_stalled_at timestamptz,
    CONSTRAINT step_tasks_pkey PRIMARY KEY (run_id, step_slug, task_index),
    CONSTRAINT step_tasks_flow_slug_fkey FOREIGN KEY (flow_slug) REFERENCES pgflow.flows (flow_slug),
    CONSTRAINT step_tasks_run_id_fkey FOREIGN KEY (run_id) REFERENCES pgflow.runs (run_id),
    CONSTRAINT step_tasks_run_id_step_slug_fkey FOREIGN KEY (run_id, step_slug)
        REFERENCES pgflow.step_states (run_id, step_slug),
    CONSTRAINT step_tasks_last_worker_id_fkey FOREIGN KEY (last_worker_id)
        REFERENCES pgflow.workers (worker_id) ON DELETE SET NULL,
    CONSTRAINT valid_status CHECK (status IN ('queued', 'started', 'completed', 'failed')),
    CONSTRAINT output_valid_only_for_completed CHECK (output IS NULL OR status IN ('completed', 'failed')),
    CONSTRAINT attempts_count_nonnegative CHECK (attempts_count >= 0),
    CONSTRAINT completed_at_or_failed_at CHECK (NOT (completed_at IS NOT NULL AND failed_at IS NOT NULL)),
    CONSTRAINT completed_at_is_after_queued_at CHECK (completed_at IS NULL OR completed_at >= queued_at),
    CONSTRAINT failed_at_is_after_queued_at CHECK (failed_at IS NULL OR failed_at >= queued_at),
    CONSTRAINT started_at_is_after_queued_at CHECK (started_at IS NULL OR started_at >= queued_at),
    CONSTRAINT completed_at_is_after_started_at
        CHECK (completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at),
    CONSTRAINT failed_at_is_after_started_at
        CHECK (failed_at IS NULL OR started_at IS NULL OR failed_at >= started_at)
);

CREATE TABLE pgflow.worker_functions (
    function_name   text        NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    debounce        interval    NOT NULL DEFAULT '00:00:06',
    last_invoked_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT worker_functions_pkey PRIMARY KEY (function_name),
    CONSTRAINT worker_functions_debounce_check CHECK (debounce >= '00:00:01')
);

-- Not part of the contract: the countdown of a map step's unfinished tasks, split into shards
-- (task_index % shards), so that completions of one step do not all wait for the lock on its
-- step_states row (src/run/tasks.rs). Rows go when the step completes or its run is pruned.
CREATE TABLE pgflow._step_shards (
    run_id    uuid    NOT NULL,
    step_slug text    NOT NULL,
    shard     integer NOT NULL,
    remaining integer NOT NULL,
    CONSTRAINT _step_shards_pkey PRIMARY KEY (run_id, step_slug, shard)
);

CREATE INDEX idx_deps_by_flow_dep ON pgflow.deps (flow_slug, dep_slug);
CREATE INDEX idx_deps_by_flow_step ON pgflow.deps (flow_slug, step_slug);
CREATE INDEX idx_runs_flow_slug ON pgflow.runs (flow_slug);
CREATE INDEX idx_runs_status ON pgflow.runs (status);
CREATE INDEX idx_step_states_ready ON pgflow.step_states (run_id, status, remaining_deps)
    WHERE status = 'created' AND remaining_deps = 0;
CREATE INDEX idx_step_states_failed ON pgflow.step_states (run_id, step_slug) WHERE status = 'failed';
CREATE INDEX idx_step_states_skipped ON pgflow.step_states (run_id, step_slug) WHERE status = 'skipped';
CREATE INDEX idx_step_states_flow_slug ON pgflow.step_states (flow_slug);
CREATE INDEX idx_step_states_run_id ON pgflow.step_states (run_id);
CREATE INDEX idx_step_tasks_message_id ON pgflow.step_tasks (message_id);
CREATE INDEX idx_step_tasks_queued ON pgflow.step_tasks (run_id, step_slug) WHERE status = 'queued';
CREATE INDEX idx_step_tasks_completed ON pgflow.step_tasks (run_id, step_slug) WHERE status = 'completed';
CREATE INDEX idx_step_tasks_failed ON pgflow.step_tasks (run_id, step_slug) WHERE status = 'failed';
CREATE INDEX idx_step_tasks_flow_run_step ON pgflow.step_tasks (flow_slug, run_id, step_slug);
CREATE INDEX idx_step_tasks_started ON pgflow.step_tasks (started_at) WHERE status = 'started';
CREATE INDEX idx_step_tasks_queued_msg ON pgflow.step_tasks (message_id) WHERE status = 'queued';
CREATE INDEX idx_step_tasks_last_worker ON pgflow.step_tasks (last_worker_id) WHERE status = 'started';
CREATE INDEX idx_workers_queue_name ON pgflow.workers (queue_name);
CREATE INDEX idx_workers_heartbeat ON pgflow.workers (last_heartbeat_at);

-- Every table holds user data: pg_dump dumps their rows (the extension recreates the tables).
SELECT pg_catalog.pg_extension_config_dump('pgflow.flows', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.steps', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.deps', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.runs', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.step_states', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.workers', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.step_tasks', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow.worker_functions', '');
SELECT pg_catalog.pg_extension_config_dump('pgflow._step_shards', '');
