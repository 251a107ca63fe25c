-- Schedules (src/schedule): runs of a flow started by the background worker on a cron
-- expression or an interval. Ids are numbered by schedule_flow under a lock (schema pgflow has no
-- sequences).
CREATE TABLE pgflow._schedules (
    schedule_id  bigint      NOT NULL,
    flow_slug    text        NOT NULL,
    schedule     text        NOT NULL,
    every        interval,
    time_zone    text        NOT NULL,
    input        jsonb       NOT NULL,
    catch_up     boolean     NOT NULL,
    paused       boolean     NOT NULL DEFAULT false,
    next_fire_at timestamptz,
    last_fire_at timestamptz,
    last_run_id  uuid,
    owner        regrole     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT _schedules_pkey PRIMARY KEY (schedule_id),
    CONSTRAINT _schedules_flow_slug_fkey FOREIGN KEY (flow_slug)
        REFERENCES pgflow.flows (flow_slug) ON DELETE CASCADE
);
-- The worker's look for due schedules, and for when the next one is due.
CREATE INDEX _schedules_due ON pgflow._schedules (next_fire_at) WHERE NOT paused;

SELECT pg_catalog.pg_extension_config_dump('pgflow._schedules', '');

-- Every schedule, with its next tick and its last run.
CREATE FUNCTION pgflow.list_schedules()
RETURNS TABLE (schedule_id bigint, flow_slug text, schedule text, time_zone text, input jsonb,
               catch_up boolean, paused boolean, next_fire_at timestamptz, last_fire_at timestamptz,
               last_run_id uuid, last_run_status text)
LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT s.schedule_id, s.flow_slug, s.schedule, s.time_zone, s.input, s.catch_up, s.paused,
           s.next_fire_at, s.last_fire_at, s.last_run_id,
           (SELECT r.status FROM pgflow.runs r WHERE r.run_id = s.last_run_id)
    FROM pgflow._schedules s
    ORDER BY s.schedule_id
$$;
