-- pgflow.check_invariants: what must always hold of the engine's bookkeeping, as one row per
-- violation (no row: all is well). It reads one snapshot, so it may run while workers work. The
-- race, crash and fuzz tests call it after every case; operators may call it after trouble.
-- SECURITY DEFINER, so that pgflow_observer may run it: it shows ids, statuses and counts, never
-- inputs or outputs (EXECUTE is revoked from PUBLIC with the others, pgflow_api.sql).
CREATE FUNCTION pgflow.check_invariants(flow_slug text DEFAULT NULL)
RETURNS TABLE (invariant text, run_id uuid, step_slug text, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    only_flow CONSTANT text := check_invariants.flow_slug;
    f record;
BEGIN
    -- Counters agree with the rows they count (a skipped dependency is resolved, as a completed
    -- one is).
    RETURN QUERY
    WITH s AS (
        SELECT ss.run_id, ss.step_slug, ss.status, ss.remaining_tasks, ss.remaining_deps, ss.initial_tasks,
               st.deps_count,
               (SELECT count(*) FROM pgflow.step_tasks t
                 WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug AND t.status = 'completed') AS done,
               (SELECT count(*) FROM pgflow.step_tasks t
                 WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug) AS tasks,
               (SELECT count(*) FROM pgflow.deps d
                  JOIN pgflow.step_states p ON p.run_id = ss.run_id AND p.step_slug = d.dep_slug
                 WHERE d.flow_slug = ss.flow_slug AND d.step_slug = ss.step_slug
                   AND p.status IN ('completed', 'skipped')) AS done_deps,
               (SELECT sum(x.remaining) FROM pgflow._step_shards x
                 WHERE x.run_id = ss.run_id AND x.step_slug = ss.step_slug) AS shard_sum
          FROM pgflow.step_states ss
          JOIN pgflow.steps st ON st.flow_slug = ss.flow_slug AND st.step_slug = ss.step_slug
         WHERE only_flow IS NULL OR ss.flow_slug = only_flow
    )
    SELECT 'step counters', s.run_id, s.step_slug,
           format('status %s, remaining_tasks %s, initial_tasks %s, tasks %s (completed %s), '
                  'remaining_deps %s, deps %s (resolved %s), shards'' sum %s',
                  s.status, s.remaining_tasks, s.initial_tasks, s.tasks, s.done,
                  s.remaining_deps, s.deps_count, s.done_deps, s.shard_sum)
      FROM s
     WHERE (s.status IN ('created', 'started') AND s.remaining_deps <> s.deps_count - s.done_deps)
        -- A map step with shards counts down on its shard rows; its own counter may lag behind
        -- the completed tasks (never ahead of them) until the step completes.
        OR (s.status = 'started' AND s.shard_sum IS NULL AND s.remaining_tasks <> s.initial_tasks - s.done)
        OR (s.status = 'started' AND s.shard_sum IS NOT NULL
            AND (s.shard_sum <> s.initial_tasks - s.done OR s.remaining_tasks < s.shard_sum))
        OR (s.status = 'completed' AND s.done <> s.tasks)
        OR (s.status = 'completed' AND s.shard_sum IS NOT NULL)
        OR (s.status = 'created' AND s.tasks > 0)
        OR (s.status IN ('started', 'completed') AND s.tasks <> s.initial_tasks);

    RETURN QUERY
    WITH r AS (
        SELECT r.run_id, r.status, r.remaining_steps,
               -- The run's own steps: a step added to its flow later is not one of them.
               (SELECT count(*) FROM pgflow.step_states x WHERE x.run_id = r.run_id) AS steps,
               (SELECT count(*) FROM pgflow.step_states x
                 WHERE x.run_id = r.run_id AND x.status IN ('completed', 'skipped')) AS finished,
               (SELECT count(*) FROM pgflow.step_states x
                 WHERE x.run_id = r.run_id AND x.status = 'failed') AS failed
          FROM pgflow.runs r
         WHERE only_flow IS NULL OR r.flow_slug = only_flow
    )
    SELECT 'run counters', r.run_id, NULL::text,
           format('status %s, remaining_steps %s, steps %s (finished %s, failed %s)',
                  r.status, r.remaining_steps, r.steps, r.finished, r.failed)
      FROM r
     WHERE r.remaining_steps <> r.steps - r.finished
        OR (r.status = 'completed') <> (r.remaining_steps = 0)
        OR (r.status <> 'failed' AND r.failed > 0);

    -- A task is queued or started only while its step is started.
    RETURN QUERY
    SELECT 'task of a finished step', t.run_id, t.step_slug,
           format('task %s is %s, its step is %s', t.task_index, t.status, ss.status)
      FROM pgflow.step_tasks t
      JOIN pgflow.step_states ss ON ss.run_id = t.run_id AND ss.step_slug = t.step_slug
     WHERE (only_flow IS NULL OR t.flow_slug = only_flow)
       AND t.status IN ('queued', 'started') AND ss.status IN ('completed', 'skipped');

    -- Messages match tasks: each message of a flow's queue belongs to one task of the flow, each
    -- queued task of a started run has its message (or, for a step with a handler, its row in
    -- the executors' queue), and a completed task's message has left the queue.
    FOR f IN
        SELECT fl.flow_slug, c.oid IS NOT NULL AS has_queue
          FROM pgflow.flows fl
          LEFT JOIN pg_class c ON c.relname = 'q_' || fl.flow_slug
                              AND c.relnamespace = 'pgmq'::regnamespace
         WHERE only_flow IS NULL OR fl.flow_slug = only_flow
    LOOP
        IF f.has_queue THEN
            RETURN QUERY EXECUTE format(
                $q$
                SELECT 'message without exactly one task', NULL::uuid, NULL::text,
                       format('message %%s of queue %%s', m.msg_id, %1$L)
                  FROM pgmq.%2$I m
                 WHERE (SELECT count(*) FROM pgflow.step_tasks t
                         WHERE t.flow_slug = %1$L AND t.message_id = m.msg_id) <> 1
                UNION ALL
                SELECT 'queued task without a message', t.run_id, t.step_slug,
                       format('task %%s (message %%s)', t.task_index, t.message_id)
                  FROM pgflow.step_tasks t
                  JOIN pgflow.runs r ON r.run_id = t.run_id AND r.status = 'started'
                 WHERE t.flow_slug = %1$L AND t.status = 'queued'
                   AND NOT EXISTS (SELECT 1 FROM pgflow._step_handlers h
                                    WHERE h.flow_slug = t.flow_slug AND h.step_slug = t.step_slug)
                   AND NOT EXISTS (SELECT 1 FROM pgmq.%2$I m WHERE m.msg_id = t.message_id)
                UNION ALL
                SELECT 'completed task with a queued message', t.run_id, t.step_slug,
                       format('task %%s (message %%s)', t.task_index, t.message_id)
                  FROM pgflow.step_tasks t
                  JOIN pgmq.%2$I m ON m.msg_id = t.message_id
                 WHERE t.flow_slug = %1$L AND t.status = 'completed'
                $q$,
                f.flow_slug, 'q_' || f.flow_slug);
        END IF;
    END LOOP;

    RETURN QUERY
    SELECT 'queued task not in the executors'' queue', t.run_id, t.step_slug,
           format('task %s', t.task_index)
      FROM pgflow.step_tasks t
      JOIN pgflow.runs r ON r.run_id = t.run_id AND r.status = 'started'
      JOIN pgflow._step_handlers h ON h.flow_slug = t.flow_slug AND h.step_slug = t.step_slug
     WHERE (only_flow IS NULL OR t.flow_slug = only_flow) AND t.status = 'queued'
       AND NOT EXISTS (SELECT 1 FROM pgflow._local_tasks l
                        WHERE l.run_id = t.run_id AND l.step_slug = t.step_slug
                          AND l.task_index = t.task_index);
END;
$$;
