-- Observability (docs/observability.md): pgflow.flow_stats, pgflow.explain_run and
-- pgflow.failing_and_stalled_tasks. Their cost follows the recent and the active tasks, and the
-- number of runs a flow keeps, not all the tasks ever kept.

-- Finished tasks of a flow by time; the covering columns give durations and waits. These two
-- are the only indexes added for observability: every other figure comes from pgflow's own
-- indexes, since each index costs every task its entries.
CREATE INDEX idx_step_tasks_flow_completed ON pgflow.step_tasks (flow_slug, completed_at)
    INCLUDE (started_at, queued_at) WHERE status = 'completed';
CREATE INDEX idx_step_tasks_flow_failed ON pgflow.step_tasks (flow_slug, failed_at) WHERE status = 'failed';

-- The figures of one flow (flow_stats). Its statements are planned per flow, without JIT: with
-- a big history the planner's estimates would otherwise pass jit_above_cost, and compiling
-- costs far more than these index reads.
CREATE FUNCTION pgflow._flow_stats(flow_slug text)
RETURNS TABLE (
    runs_running bigint, runs_paused bigint, runs_waiting bigint, runs_completed bigint, runs_failed bigint,
    runs_cancelled bigint, tasks_completed_last_minute bigint, tasks_completed_last_hour bigint,
    tasks_failed_last_minute bigint, tasks_failed_last_hour bigint,
    task_duration_p50 interval, task_duration_p95 interval, queue_wait_p50 interval, queue_wait_p95 interval,
    tasks_queued bigint, tasks_started bigint, oldest_queued_age interval, last_error text, last_error_at timestamptz)
LANGUAGE sql STABLE SET search_path = '' SET jit = off AS $$
SELECT coalesce(r.running, 0), coalesce(r.paused, 0), coalesce(r.waiting, 0), coalesce(r.completed, 0),
       coalesce(r.failed, 0), coalesce(r.cancelled, 0),
       d.completed_last_minute, d.completed_last_hour, e.failed_last_minute, e.failed_last_hour,
       d.duration_p50, d.duration_p95, d.wait_p50, d.wait_p95,
       q.queued, s.started, now() - q.oldest, l.error_message, l.failed_at
FROM (SELECT _flow_stats.flow_slug AS slug) f
LEFT JOIN LATERAL (
    -- All runs of the flow (idx_runs_flow_slug) less the started and the failed ones
    -- (idx_runs_status: they are few next to the completed ones); controlled runs among those.
    SELECT (a.total - st.n - fl.n)::bigint AS completed, (fl.n - fl.cancelled)::bigint AS failed,
           fl.cancelled, (st.n - st.paused - st.waiting)::bigint AS running, st.paused, st.waiting
    FROM (SELECT count(*) AS total FROM pgflow.runs x WHERE x.flow_slug = f.slug) a,
         (SELECT count(*) AS n, count(*) FILTER (WHERE c.state = 'paused') AS paused,
                 count(*) FILTER (WHERE c.state = 'waiting') AS waiting
          FROM pgflow.runs x LEFT JOIN pgflow._run_control c ON c.run_id = x.run_id
          WHERE x.status = 'started' AND x.flow_slug = f.slug) st,
         (SELECT count(*) AS n, count(*) FILTER (WHERE c.state = 'cancelled') AS cancelled
          FROM pgflow.runs x LEFT JOIN pgflow._run_control c ON c.run_id = x.run_id
          WHERE x.status = 'failed' AND x.flow_slug = f.slug) fl
) r ON true
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.completed_at > now() - interval '1 minute') AS completed_last_minute,
           count(*) AS completed_last_hour,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY t.completed_at - t.started_at) AS duration_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY t.completed_at - t.started_at) AS duration_p95,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY t.started_at - t.queued_at) AS wait_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY t.started_at - t.queued_at) AS wait_p95
    FROM pgflow.step_tasks t
    WHERE t.flow_slug = f.slug AND t.status = 'completed' AND t.completed_at > now() - interval '1 hour'
) d
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.failed_at > now() - interval '1 minute') AS failed_last_minute,
           count(*) AS failed_last_hour
    FROM pgflow.step_tasks t
    WHERE t.flow_slug = f.slug AND t.status = 'failed' AND t.failed_at > now() - interval '1 hour'
) e
CROSS JOIN LATERAL (
    -- Through the flow's started runs (idx_runs_status, idx_step_tasks_queued); tasks of
    -- steps that are over (a sibling failed the step, or it was skipped) are not waiting.
    SELECT count(*) AS queued, min(t.queued_at) AS oldest
    FROM pgflow.runs x JOIN pgflow.step_tasks t ON t.run_id = x.run_id AND t.status = 'queued'
    JOIN pgflow.step_states ss ON ss.run_id = t.run_id AND ss.step_slug = t.step_slug AND ss.status = 'started'
    WHERE x.flow_slug = f.slug AND x.status = 'started'
      AND NOT EXISTS (SELECT 1 FROM pgflow._run_control c WHERE c.run_id = x.run_id)
) q
CROSS JOIN LATERAL (
    -- Tasks of runs and steps still going: a finished run or step keeps its tasks' statuses.
    SELECT count(*) AS started
    FROM pgflow.step_tasks t
    JOIN pgflow.runs x ON x.run_id = t.run_id AND x.status = 'started'
    JOIN pgflow.step_states ss ON ss.run_id = t.run_id AND ss.step_slug = t.step_slug AND ss.status = 'started'
    WHERE t.status = 'started' AND t.flow_slug = f.slug
) s
LEFT JOIN LATERAL (
    SELECT t.error_message, t.failed_at
    FROM pgflow.step_tasks t WHERE t.flow_slug = f.slug AND t.status = 'failed'
    ORDER BY t.failed_at DESC LIMIT 1
) l ON true;
$$;

-- One row per flow: its runs by status; its tasks finished in the last minute and hour, their
-- p50 and p95 duration and queue wait (over the last hour); started tasks; tasks queued in
-- running runs (not paused, waiting or cancelled) and the age of the oldest; the last task that
-- failed for good.
CREATE VIEW pgflow.flow_stats AS
SELECT f.flow_slug, s.*
FROM pgflow.flows f CROSS JOIN LATERAL pgflow._flow_stats(f.flow_slug) s;

-- Tasks that need a look, across flows: failed for good in the last day; and, in runs and steps
-- still going (a finished one keeps its tasks' statuses), tasks queued again after a failed
-- attempt, and started ones that ran past their timeout, whose worker went silent (no
-- heartbeat for a minute, or stopped), or that stalled for good.
CREATE VIEW pgflow.failing_and_stalled_tasks AS
SELECT t.problem, t.flow_slug, t.run_id, t.step_slug, t.task_index, t.attempts_count AS attempts,
       t.since, now() - t.since AS age, t.last_worker_id AS worker_id, w.function_name AS worker_function,
       t.error_message
FROM (
    SELECT 'failed'::text AS problem, t.flow_slug, t.run_id, t.step_slug, t.task_index, t.attempts_count,
           t.failed_at AS since, t.last_worker_id, t.error_message
    FROM pgflow.flows f
    JOIN pgflow.step_tasks t ON t.flow_slug = f.flow_slug AND t.status = 'failed'
                            AND t.failed_at > now() - interval '1 day'
    UNION ALL
    SELECT 'retrying', t.flow_slug, t.run_id, t.step_slug, t.task_index, t.attempts_count,
           t.queued_at, t.last_worker_id, t.error_message
    FROM pgflow.flows f
    JOIN pgflow.step_tasks t ON t.flow_slug = f.flow_slug AND t.status = 'queued' AND t.attempts_count > 0
    JOIN pgflow.runs x ON x.run_id = t.run_id AND x.status = 'started'
    JOIN pgflow.step_states ss ON ss.run_id = t.run_id AND ss.step_slug = t.step_slug AND ss.status = 'started'
    UNION ALL
    SELECT CASE WHEN t.permanently_stalled_at IS NOT NULL THEN 'stalled for good'
                WHEN t.started_at < now() - make_interval(secs => coalesce(st.opt_timeout, fl.opt_timeout))
                     THEN 'past its timeout'
                ELSE 'worker silent' END,
           t.flow_slug, t.run_id, t.step_slug, t.task_index, t.attempts_count,
           coalesce(t.permanently_stalled_at, t.started_at), t.last_worker_id, t.error_message
    FROM pgflow.step_tasks t
    JOIN pgflow.flows fl ON fl.flow_slug = t.flow_slug
    JOIN pgflow.steps st ON st.flow_slug = t.flow_slug AND st.step_slug = t.step_slug
    JOIN pgflow.runs x ON x.run_id = t.run_id AND x.status = 'started'
    JOIN pgflow.step_states ss ON ss.run_id = t.run_id AND ss.step_slug = t.step_slug AND ss.status = 'started'
    LEFT JOIN pgflow.workers wk ON wk.worker_id = t.last_worker_id
    WHERE t.status = 'started'
      AND (t.permanently_stalled_at IS NOT NULL
           OR t.started_at < now() - make_interval(secs => coalesce(st.opt_timeout, fl.opt_timeout))
           OR wk.stopped_at IS NOT NULL
           OR wk.last_heartbeat_at < now() - interval '1 minute')
) t
LEFT JOIN pgflow.workers w ON w.worker_id = t.last_worker_id;

-- One run, step by step and task by task: a row for the run, one per step (task_index NULL)
-- and one per task, with status, attempts, times, worker and error. note says why: the step
-- whose failure failed the run, why a step was skipped, what a waiting step waits for.
CREATE FUNCTION pgflow.explain_run(run_id uuid)
RETURNS TABLE (
    kind text, step_slug text, step_type text, task_index integer, status text, attempts integer,
    queued_at timestamptz, started_at timestamptz, finished_at timestamptz,
    queue_wait interval, duration interval, worker_id uuid, worker_function text,
    error_message text, note text)
LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
    run record;
    control text;
    cause text;
BEGIN
    SELECT r.status, r.remaining_steps, r.started_at, r.completed_at, r.failed_at INTO run
    FROM pgflow.runs r WHERE r.run_id = explain_run.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', explain_run.run_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.state INTO control FROM pgflow._run_control c WHERE c.run_id = explain_run.run_id;
    -- The step that failed first failed the run (a cancelled run has none).
    IF run.status = 'failed' AND control IS DISTINCT FROM 'cancelled' THEN
        SELECT s.step_slug INTO cause FROM pgflow.step_states s
        WHERE s.run_id = explain_run.run_id AND s.status = 'failed'
        ORDER BY s.failed_at, s.step_slug LIMIT 1;
    END IF;

    RETURN QUERY
    SELECT 'run', NULL::text, NULL::text, NULL::integer,
           CASE WHEN control IS NOT NULL AND (run.status = 'started' OR control = 'cancelled')
                THEN control ELSE run.status END,
           NULL::integer, NULL::timestamptz, run.started_at, coalesce(run.completed_at, run.failed_at),
           NULL::interval, coalesce(run.completed_at, run.failed_at, now()) - run.started_at,
           NULL::uuid, NULL::text, NULL::text,
           CASE WHEN cause IS NOT NULL THEN pg_catalog.format('step %s failed', cause)
                WHEN run.status = 'started' THEN pg_catalog.format('%s steps to go', run.remaining_steps) END;

    RETURN QUERY
    SELECT x.kind, x.step_slug, x.step_type, x.task_index, x.status, x.attempts, x.queued_at, x.started_at,
           x.finished_at, x.started_at - x.queued_at,
           CASE WHEN x.started_at IS NOT NULL THEN coalesce(x.finished_at, now()) - x.started_at END,
           x.worker_id, w.function_name, x.error_message, x.note
    FROM (
        SELECT 'step' AS kind, st.step_index, s.step_slug, st.step_type, NULL::integer AS task_index, s.status,
               (SELECT max(t.attempts_count) FROM pgflow.step_tasks t
                WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug) AS attempts,
               s.created_at AS queued_at, s.started_at,
               coalesce(s.completed_at, s.failed_at, s.skipped_at) AS finished_at,
               NULL::uuid AS worker_id, s.error_message,
               CASE WHEN s.step_slug = cause THEN 'failed the run'
                    WHEN s.status = 'skipped' THEN 'skipped: ' || s.skip_reason
                    WHEN s.status = 'created' AND run.status <> 'started' THEN 'not run'
                    WHEN s.status = 'created' AND s.remaining_deps > 0 THEN
                        'waits for ' || (SELECT string_agg(d.dep_slug, ', ' ORDER BY d.dep_slug)
                                         FROM pgflow.deps d JOIN pgflow.step_states ds
                                           ON ds.run_id = s.run_id AND ds.step_slug = d.dep_slug
                                         WHERE d.flow_slug = s.flow_slug AND d.step_slug = s.step_slug
                                           AND ds.status NOT IN ('completed', 'skipped'))
                    WHEN s.status = 'started' THEN pg_catalog.format('%s of %s tasks to go', s.remaining_tasks, s.initial_tasks)
               END AS note
        FROM pgflow.step_states s
        JOIN pgflow.steps st ON st.flow_slug = s.flow_slug AND st.step_slug = s.step_slug
        WHERE s.run_id = explain_run.run_id
        UNION ALL
        SELECT 'task', st.step_index, t.step_slug, st.step_type, t.task_index, t.status, t.attempts_count,
               t.queued_at, t.started_at, coalesce(t.completed_at, t.failed_at), t.last_worker_id, t.error_message,
               CASE WHEN t.permanently_stalled_at IS NOT NULL THEN 'stalled for good'
                    WHEN t.requeued_count > 0 THEN pg_catalog.format('requeued %s times after its worker stalled', t.requeued_count)
                    WHEN t.status = 'queued' AND t.attempts_count > 0 THEN 'queued again after a failed attempt' END
        FROM pgflow.step_tasks t
        JOIN pgflow.steps st ON st.flow_slug = t.flow_slug AND st.step_slug = t.step_slug
        WHERE t.run_id = explain_run.run_id
    ) x
    LEFT JOIN pgflow.workers w ON w.worker_id = x.worker_id
    ORDER BY x.step_index, x.task_index NULLS FIRST;
END;
$$;
