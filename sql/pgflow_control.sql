-- Run control (src/control): runs that were cancelled or are paused. The contract's runs table
-- keeps its three statuses: a cancelled run is 'failed' there, a paused one 'started'.
CREATE TABLE pgflow._run_control (
    run_id     uuid        NOT NULL,
    state      text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT _run_control_pkey PRIMARY KEY (run_id),
    CONSTRAINT _run_control_state_check CHECK (state IN ('cancelled', 'paused'))
);

SELECT pg_catalog.pg_extension_config_dump('pgflow._run_control', '');
