-- Background work: stalled-task recovery, hard timeouts and pruning. Called by the background
-- worker (src/worker) and callable from SQL or pg_cron.

-- requeue_stalled_tasks() with a configurable grace period (the contract's function uses 30 s).
-- With leave_step_timeouts (the background worker), tasks of steps with their own timeout are
-- left to _fail_timed_out_tasks, so no task is touched before its step's timeout has passed.
CREATE FUNCTION pgflow._requeue_stalled_tasks(grace interval, leave_step_timeouts boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    requeued integer;
    to_release jsonb;
    to_archive jsonb;
    batch jsonb;
    ids bigint[];
BEGIN
    WITH stalled AS (
        SELECT t.run_id, t.step_slug, t.task_index, t.requeued_count
        FROM pgflow.step_tasks t
        JOIN pgflow.flows f ON f.flow_slug = t.flow_slug
        JOIN pgflow.steps st ON st.flow_slug = t.flow_slug AND st.step_slug = t.step_slug
        WHERE t.status = 'started'
          AND t.permanently_stalled_at IS NULL
          AND t.started_at < now() - make_interval(secs => f.opt_timeout) - grace
          AND NOT (leave_step_timeouts AND st.opt_timeout IS NOT NULL)
        FOR UPDATE OF t SKIP LOCKED
    ), requeue AS (
        UPDATE pgflow.step_tasks t
        SET status = 'queued', started_at = NULL, last_worker_id = NULL,
            requeued_count = t.requeued_count + 1, last_requeued_at = now()
        FROM stalled s
        WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug AND t.task_index = s.task_index
          AND s.requeued_count < 3
        RETURNING t.flow_slug, t.message_id
    ), stuck AS (
        UPDATE pgflow.step_tasks t
        SET permanently_stalled_at = now()
        FROM stalled s
        WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug AND t.task_index = s.task_index
          AND s.requeued_count >= 3
        RETURNING t.flow_slug, t.message_id
    )
    SELECT (SELECT count(*) FROM requeue),
           (SELECT jsonb_agg(jsonb_build_object('queue', g.flow_slug, 'ids', g.ids))
            FROM (SELECT flow_slug, array_agg(message_id) AS ids FROM requeue
                  WHERE message_id IS NOT NULL GROUP BY flow_slug) g),
           (SELECT jsonb_agg(jsonb_build_object('queue', g.flow_slug, 'ids', g.ids))
            FROM (SELECT flow_slug, array_agg(message_id) AS ids FROM stuck
                  WHERE message_id IS NOT NULL GROUP BY flow_slug) g)
    INTO requeued, to_release, to_archive;

    FOR batch IN SELECT value FROM jsonb_array_elements(coalesce(to_release, '[]'::jsonb)) LOOP
        ids := ARRAY(SELECT jsonb_array_elements_text(batch -> 'ids')::bigint);
        PERFORM pgflow.set_vt_batch(batch ->> 'queue', ids, array_fill(0, ARRAY[cardinality(ids)]));
    END LOOP;
    -- Always archived, whatever pgflow does with it: a permanently stalled task is never picked again.
    FOR batch IN SELECT value FROM jsonb_array_elements(coalesce(to_archive, '[]'::jsonb)) LOOP
        ids := ARRAY(SELECT jsonb_array_elements_text(batch -> 'ids')::bigint);
        PERFORM pgmq.archive(batch ->> 'queue', ids);
    END LOOP;
    RETURN requeued;
END;
$$;

-- Tasks started longer ago than their step's timeout plus the grace period count as a failed
-- attempt, exactly as if fail_task had been called.
CREATE FUNCTION pgflow._fail_timed_out_tasks(grace interval, max_tasks integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    task record;
    failed integer := 0;
BEGIN
    FOR task IN
        SELECT t.run_id, t.step_slug, t.task_index, t.started_at,
               coalesce(s.opt_timeout, f.opt_timeout) AS timeout
        FROM pgflow.step_tasks t
        JOIN pgflow.steps s ON s.flow_slug = t.flow_slug AND s.step_slug = t.step_slug
        JOIN pgflow.flows f ON f.flow_slug = t.flow_slug
        WHERE t.status = 'started' AND t.permanently_stalled_at IS NULL
          AND t.started_at < now() - make_interval(secs => coalesce(s.opt_timeout, f.opt_timeout)) - grace
        ORDER BY t.started_at
        LIMIT max_tasks
    LOOP
        -- The transitions' lock order (run first), never waiting: a run locked by a long
        -- transaction is left for a later round. Then check the attempt is still that one.
        PERFORM 1 FROM pgflow.runs r WHERE r.run_id = task.run_id FOR UPDATE SKIP LOCKED;
        IF FOUND AND EXISTS (SELECT 1 FROM pgflow.step_tasks t
                   WHERE t.run_id = task.run_id AND t.step_slug = task.step_slug
                     AND t.task_index = task.task_index AND t.status = 'started'
                     AND t.started_at = task.started_at) THEN
            PERFORM pgflow.fail_task(task.run_id, task.step_slug, task.task_index,
                                     format('Task timed out after %s seconds', task.timeout));
            failed := failed + 1;
        END IF;
    END LOOP;
    RETURN failed;
END;
$$;

-- One batch of pruning: up to batch_size finished runs older than cutoff with their tasks,
-- step states and messages. Returns the number of runs removed.
CREATE FUNCTION pgflow._prune_runs(cutoff timestamptz, batch_size integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    old_runs uuid[];
    q record;
BEGIN
    SELECT array_agg(r.run_id) INTO old_runs
    FROM (SELECT run_id FROM pgflow.runs
          WHERE status <> 'started' AND (completed_at < cutoff OR failed_at < cutoff)
          LIMIT batch_size
          FOR UPDATE SKIP LOCKED) r;
    -- Shard rows come before runs in the transitions' lock order: a run whose shard rows a
    -- completion holds is left for a later batch instead of waiting for them.
    old_runs := ARRAY(
        SELECT u.run_id FROM unnest(old_runs) AS u(run_id)
        EXCEPT
        SELECT s.run_id FROM (SELECT run_id FROM pgflow._step_shards WHERE run_id = ANY(old_runs)
                              EXCEPT ALL
                              SELECT run_id FROM (SELECT run_id FROM pgflow._step_shards
                                                  WHERE run_id = ANY(old_runs)
                                                  FOR UPDATE SKIP LOCKED) locked) s);
    IF cardinality(old_runs) = 0 THEN
        RETURN 0;
    END IF;

    FOR q IN
        SELECT t.flow_slug, array_agg(t.message_id) AS ids
        FROM (SELECT flow_slug, run_id, message_id FROM pgflow.step_tasks
              UNION ALL
              SELECT flow_slug, run_id, message_id FROM pgflow._task_history) t
        WHERE t.run_id = ANY(old_runs) AND t.message_id IS NOT NULL
        GROUP BY t.flow_slug
    LOOP
        IF to_regclass(format('pgmq.%I', pgmq.format_table_name(q.flow_slug, 'q'))) IS NOT NULL THEN
            PERFORM pgmq.delete(q.flow_slug, q.ids);
        END IF;
        IF to_regclass(format('pgmq.%I', pgmq.format_table_name(q.flow_slug, 'a'))) IS NOT NULL THEN
            EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY($1)', pgmq.format_table_name(q.flow_slug, 'a'))
                USING q.ids;
        END IF;
    END LOOP;
    DELETE FROM pgflow._step_shards WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow._local_tasks WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow._adhoc_tasks WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow._run_control WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow._run_options WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow._run_reruns WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow._task_history WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow.step_tasks WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow.step_states WHERE run_id = ANY(old_runs);
    DELETE FROM pgflow.runs WHERE run_id = ANY(old_runs);
    RETURN cardinality(old_runs);
END;
$$;

-- One batch of pruning for the background worker: runs, then stale workers and old archive
-- rows. Returns the number of rows removed; the worker calls it until it returns 0.
CREATE FUNCTION pgflow._prune_step(retention_interval interval, batch_size integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    cutoff timestamptz := now() - retention_interval;
    removed integer;
    archived integer;
    q record;
BEGIN
    IF retention_interval < interval '0' THEN
        RAISE EXCEPTION 'retention interval must not be negative, got %', retention_interval
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A negative interval would prune every finished run, even those that finished moments ago.';
    END IF;
    removed := pgflow._prune_runs(cutoff, batch_size);
    IF removed > 0 THEN
        RETURN removed;
    END IF;
    DELETE FROM pgflow.workers WHERE last_heartbeat_at < cutoff;
    GET DIAGNOSTICS removed = ROW_COUNT;
    FOR q IN SELECT f.flow_slug FROM pgflow.flows f LOOP
        IF to_regclass(format('pgmq.%I', pgmq.format_table_name(q.flow_slug, 'a'))) IS NOT NULL THEN
            EXECUTE format(
                'DELETE FROM pgmq.%1$I WHERE ctid IN (SELECT ctid FROM pgmq.%1$I WHERE archived_at < $1 LIMIT $2)',
                pgmq.format_table_name(q.flow_slug, 'a'))
                USING cutoff, batch_size;
            GET DIAGNOSTICS archived = ROW_COUNT;
            removed := removed + archived;
        END IF;
    END LOOP;
    RETURN removed;
END;
$$;

-- The signature pgflow's callers may CREATE OR REPLACE themselves.
CREATE FUNCTION pgflow.prune_data_older_than(retention_interval interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        EXIT WHEN pgflow._prune_step(retention_interval) OPERATOR(pg_catalog.=) 0;
    END LOOP;
END;
$$;

-- One round of the background worker in a database.
CREATE FUNCTION pgflow._worker_tick(grace_seconds integer)
RETURNS jsonb LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    grace interval := make_interval(secs => grace_seconds);
    requeued integer;
    timed_out integer;
BEGIN
    requeued := pgflow._requeue_stalled_tasks(grace, leave_step_timeouts => true);
    timed_out := pgflow._fail_timed_out_tasks(grace);
    -- Waiting runs that a release passed by (their row was locked at that moment).
    PERFORM pgflow._release_waiting_runs();
    RETURN jsonb_build_object('requeued', requeued, 'timed_out', timed_out);
END;
$$;
