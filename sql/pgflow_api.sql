-- The pgflow functions written in SQL.
-- The core (create_flow, add_step, start_flow, start_tasks, complete_task, fail_task and the
-- cascades) is in Rust, under src/flow and src/run.

---------------------------------------------------------------------------------------------------
-- Utilities
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgflow.is_local()
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE SET search_path = '' AS $$
    SELECT coalesce(
        current_setting('app.settings.jwt_secret', true)
            = 'super-secret-jwt-token-with-at-least-32-characters-long',
        false);
$$;

CREATE FUNCTION pgflow.calculate_retry_delay(base_delay numeric, attempts_count integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
    SELECT floor(base_delay::double precision * power(2::double precision, attempts_count::double precision))::integer;
$$;

CREATE FUNCTION pgflow._archive_task_message(p_run_id uuid, p_step_slug text, p_task_index integer)
RETURNS void LANGUAGE sql SET search_path = '' AS $$
    SELECT pgmq.archive(t.flow_slug, t.message_id)
    FROM pgflow.step_tasks t
    WHERE t.run_id = p_run_id AND t.step_slug = p_step_slug AND t.task_index = p_task_index
      AND t.message_id IS NOT NULL;
$$;

CREATE FUNCTION pgflow.set_vt_batch(queue_name text, msg_ids bigint[], vt_offsets integer[])
RETURNS TABLE(msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb, headers jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    IF msg_ids IS NULL OR vt_offsets IS NULL THEN
        RETURN;
    END IF;
    -- IS DISTINCT FROM, spelled out: its = cannot be qualified.
    IF (pg_catalog.array_length(msg_ids, 1) IS NULL) OPERATOR(pg_catalog.<>) (pg_catalog.array_length(vt_offsets, 1) IS NULL)
       OR pg_catalog.array_length(msg_ids, 1) OPERATOR(pg_catalog.<>) pg_catalog.array_length(vt_offsets, 1) THEN
        RAISE EXCEPTION 'msg_ids length (%) must equal vt_offsets length (%)',
            pg_catalog.array_length(msg_ids, 1), pg_catalog.array_length(vt_offsets, 1);
    END IF;
    PERFORM pgmq._signal_queue(queue_name, pg_catalog.cardinality(msg_ids));
    -- ROWS FROM (unnest(a), unnest(b)) is what unnest(a, b) in FROM stands for; only the
    -- unqualified spelling has that meaning.
    RETURN QUERY EXECUTE pg_catalog.format(
        'WITH input AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::integer[]))
                                       AS i(msg_id, vt_offset))
         UPDATE pgmq.%I q
         SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => input.vt_offset)
         FROM input
         WHERE q.msg_id OPERATOR(pg_catalog.=) input.msg_id
         RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
        pgmq.format_table_name(queue_name, 'q'))
    USING msg_ids, vt_offsets;
END;
$$;

CREATE FUNCTION pgflow.poll_for_tasks(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgflow.step_task_record LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    RAISE NOTICE 'DEPRECATED: poll_for_tasks is deprecated and will be removed. Please update pgflow via "npx pgflow install".';
END;
$$;

---------------------------------------------------------------------------------------------------
-- Client read helpers
---------------------------------------------------------------------------------------------------

-- SECURITY DEFINER as in the contract; search_path is pinned because it is SECURITY DEFINER.
CREATE FUNCTION pgflow.get_run_with_states(run_id uuid)
RETURNS jsonb LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
    SELECT jsonb_build_object(
        'run', to_jsonb(r),
        'steps', coalesce((SELECT jsonb_agg(to_jsonb(s)) FROM pgflow.step_states s WHERE s.run_id = r.run_id),
                          '[]'::jsonb))
    FROM pgflow.runs r
    WHERE r.run_id = $1;
$$;

CREATE FUNCTION pgflow.start_flow_with_states(flow_slug text, input jsonb, run_id uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    started uuid;
BEGIN
    SELECT r.run_id INTO started FROM pgflow.start_flow($1, $2, $3) r;
    RETURN pgflow.get_run_with_states(started);
END;
$$;

---------------------------------------------------------------------------------------------------
-- Flow shapes and compilation
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgflow._get_flow_shape(p_flow_slug text)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT jsonb_build_object('steps', coalesce(jsonb_agg(
        jsonb_build_object(
            'slug', s.step_slug,
            'stepType', s.step_type,
            'dependencies', coalesce((SELECT jsonb_agg(d.dep_slug ORDER BY d.dep_slug)
                                      FROM pgflow.deps d
                                      WHERE d.flow_slug = s.flow_slug AND d.step_slug = s.step_slug),
                                     '[]'::jsonb),
            'whenUnmet', s.when_unmet,
            'whenExhausted', s.when_exhausted,
            'requiredInputPattern',
                CASE WHEN s.required_input_pattern IS NULL THEN '{"defined": false}'::jsonb
                     ELSE jsonb_build_object('defined', true, 'value', s.required_input_pattern) END,
            'forbiddenInputPattern',
                CASE WHEN s.forbidden_input_pattern IS NULL THEN '{"defined": false}'::jsonb
                     ELSE jsonb_build_object('defined', true, 'value', s.forbidden_input_pattern) END)
        ORDER BY s.step_index), '[]'::jsonb))
    FROM pgflow.steps s
    WHERE s.flow_slug = p_flow_slug;
$$;

CREATE FUNCTION pgflow._compare_flow_shapes(p_local jsonb, p_db jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
    local_steps jsonb := coalesce(p_local -> 'steps', '[]'::jsonb);
    db_steps jsonb := coalesce(p_db -> 'steps', '[]'::jsonb);
    local_count integer := jsonb_array_length(local_steps);
    db_count integer := jsonb_array_length(db_steps);
    differences text[] := '{}';
    l jsonb;
    d jsonb;
    l_deps text;
    d_deps text;
BEGIN
    IF local_count <> db_count THEN
        differences := differences || format('Step count differs: %s vs %s', local_count, db_count);
    END IF;

    FOR i IN 0 .. greatest(local_count, db_count) - 1 LOOP
        l := local_steps -> i;
        d := db_steps -> i;
        IF l IS NULL THEN
            differences := differences
                || format('Step at index %s: missing in first shape (second has ''%s'')', i, d ->> 'slug');
        ELSIF d IS NULL THEN
            differences := differences
                || format('Step at index %s: missing in second shape (first has ''%s'')', i, l ->> 'slug');
        ELSE
            -- Text comparisons with <>: a key missing on either side is no difference.
            IF (l ->> 'slug') <> (d ->> 'slug') THEN
                differences := differences
                    || format('Step at index %s: slug differs ''%s'' vs ''%s''', i, l ->> 'slug', d ->> 'slug');
            END IF;
            IF (l ->> 'stepType') <> (d ->> 'stepType') THEN
                differences := differences
                    || format('Step at index %s: type differs ''%s'' vs ''%s''', i, l ->> 'stepType', d ->> 'stepType');
            END IF;
            SELECT coalesce(string_agg(x, ', ' ORDER BY x), '') INTO l_deps
            FROM jsonb_array_elements_text(coalesce(l -> 'dependencies', '[]'::jsonb)) AS x;
            SELECT coalesce(string_agg(x, ', ' ORDER BY x), '') INTO d_deps
            FROM jsonb_array_elements_text(coalesce(d -> 'dependencies', '[]'::jsonb)) AS x;
            IF l_deps <> d_deps THEN
                differences := differences
                    || format('Step at index %s: dependencies differ [%s] vs [%s]', i, l_deps, d_deps);
            END IF;
            IF (l ->> 'whenUnmet') <> (d ->> 'whenUnmet') THEN
                differences := differences
                    || format('Step at index %s: whenUnmet differs ''%s'' vs ''%s''', i, l ->> 'whenUnmet', d ->> 'whenUnmet');
            END IF;
            IF (l ->> 'whenExhausted') <> (d ->> 'whenExhausted') THEN
                differences := differences
                    || format('Step at index %s: whenExhausted differs ''%s'' vs ''%s''', i, l ->> 'whenExhausted', d ->> 'whenExhausted');
            END IF;
            -- Patterns compare as jsonb: missing vs present is a difference.
            IF (l -> 'requiredInputPattern') IS DISTINCT FROM (d -> 'requiredInputPattern') THEN
                differences := differences
                    || format('Step at index %s: requiredInputPattern differs ''%s'' vs ''%s''', i,
                              coalesce((l -> 'requiredInputPattern')::text, ''),
                              coalesce((d -> 'requiredInputPattern')::text, ''));
            END IF;
            IF (l -> 'forbiddenInputPattern') IS DISTINCT FROM (d -> 'forbiddenInputPattern') THEN
                differences := differences
                    || format('Step at index %s: forbiddenInputPattern differs ''%s'' vs ''%s''', i,
                              coalesce((l -> 'forbiddenInputPattern')::text, ''),
                              coalesce((d -> 'forbiddenInputPattern')::text, ''));
            END IF;
        END IF;
    END LOOP;
    RETURN differences;
END;
$$;

CREATE FUNCTION pgflow._create_flow_from_shape(p_flow_slug text, p_shape jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    options jsonb := p_shape -> 'options';
    step jsonb;
BEGIN
    PERFORM pgflow.create_flow(p_flow_slug,
                               (options ->> 'maxAttempts')::integer,
                               (options ->> 'baseDelay')::integer,
                               (options ->> 'timeout')::integer);
    FOR step IN
        SELECT e.value FROM jsonb_array_elements(coalesce(p_shape -> 'steps', '[]'::jsonb)) WITH ORDINALITY AS e(value, ord)
        ORDER BY e.ord
    LOOP
        PERFORM pgflow.add_step(
            flow_slug => p_flow_slug,
            step_slug => step ->> 'slug',
            deps_slugs => ARRAY(SELECT x.dep FROM jsonb_array_elements_text(coalesce(step -> 'dependencies', '[]'::jsonb))
                                WITH ORDINALITY AS x(dep, ord) ORDER BY x.ord),
            max_attempts => (step -> 'options' ->> 'maxAttempts')::integer,
            base_delay => (step -> 'options' ->> 'baseDelay')::integer,
            timeout => (step -> 'options' ->> 'timeout')::integer,
            start_delay => (step -> 'options' ->> 'startDelay')::integer,
            step_type => step ->> 'stepType',
            required_input_pattern => CASE WHEN (step -> 'requiredInputPattern' ->> 'defined')::boolean
                                           THEN step -> 'requiredInputPattern' -> 'value' END,
            forbidden_input_pattern => CASE WHEN (step -> 'forbiddenInputPattern' ->> 'defined')::boolean
                                            THEN step -> 'forbiddenInputPattern' -> 'value' END,
            when_unmet => coalesce(step ->> 'whenUnmet', 'skip'),
            when_exhausted => coalesce(step ->> 'whenExhausted', 'fail'));
    END LOOP;
END;
$$;

-- Flow queues are read in priority order once runs have priorities (src/queue/messages.rs):
-- a flow's queue gets an index on the priority its messages carry in header x-pgflow-priority
-- (none: 0). A queue that another role owns keeps pgmq's order.
CREATE FUNCTION pgflow._prioritize_queue(queue_name text)
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('pgmq.%I', qtable || '_priority_idx')) IS NULL
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
               WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('pgmq.%I', qtable))
                 AND pg_catalog.pg_has_role(c.relowner, 'USAGE')) THEN
        EXECUTE pg_catalog.format(
            'CREATE INDEX %I ON pgmq.%I '
            '((coalesce((headers OPERATOR(pg_catalog.->>) ''x-pgflow-priority'')::pg_catalog.int4, 0)) DESC, msg_id)',
            qtable || '_priority_idx', qtable);
    END IF;
END;
$$;

CREATE FUNCTION pgflow.delete_flow_and_data(p_flow_slug text)
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    PERFORM pgmq.drop_queue(p_flow_slug);
    DELETE FROM pgflow._step_shards WHERE run_id IN (SELECT run_id FROM pgflow.runs WHERE flow_slug = p_flow_slug);
    DELETE FROM pgflow._local_tasks WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow._adhoc_tasks WHERE run_id IN (SELECT run_id FROM pgflow.runs WHERE flow_slug = p_flow_slug);
    DELETE FROM pgflow._run_control WHERE run_id IN (SELECT run_id FROM pgflow.runs WHERE flow_slug = p_flow_slug);
    DELETE FROM pgflow._run_options WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow._run_reruns WHERE run_id IN (SELECT run_id FROM pgflow.runs WHERE flow_slug = p_flow_slug);
    DELETE FROM pgflow._task_history WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow.step_tasks WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow.step_states WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow.runs WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow.deps WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow.steps WHERE flow_slug = p_flow_slug;
    DELETE FROM pgflow.flows WHERE flow_slug = p_flow_slug;
END;
$$;

CREATE FUNCTION pgflow.ensure_flow_compiled(flow_slug text, shape jsonb, allow_data_loss boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    differences text[];
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1, pg_catalog.hashtext($1));

    IF NOT EXISTS (SELECT 1 FROM pgflow.flows f WHERE f.flow_slug = $1) THEN
        PERFORM pgflow._create_flow_from_shape($1, shape);
        RETURN jsonb_build_object('status', 'compiled', 'differences', '[]'::jsonb);
    END IF;

    differences := pgflow._compare_flow_shapes(shape, pgflow._get_flow_shape($1));
    IF cardinality(differences) = 0 THEN
        RETURN jsonb_build_object('status', 'verified', 'differences', '[]'::jsonb);
    END IF;

    IF pgflow.is_local() OR coalesce(allow_data_loss, false) THEN
        PERFORM pgflow.delete_flow_and_data($1);
        PERFORM pgflow._create_flow_from_shape($1, shape);
        RETURN jsonb_build_object('status', 'recompiled', 'differences', to_jsonb(differences));
    END IF;
    RETURN jsonb_build_object('status', 'mismatch', 'differences', to_jsonb(differences));
END;
$$;

---------------------------------------------------------------------------------------------------
-- Stalled task recovery
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgflow.requeue_stalled_tasks()
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    RETURN pgflow._requeue_stalled_tasks(interval '30 seconds');
END;
$$;

-- pg_cron helpers. They need the pg_cron extension in this database.
CREATE FUNCTION pgflow._require_pg_cron()
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF to_regnamespace('cron') IS NULL OR to_regproc('cron.schedule') IS NULL AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'cron' AND p.proname = 'schedule')
    THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_function',
                  HINT = 'Run CREATE EXTENSION pg_cron (it must be in shared_preload_libraries). Without it, pgflow_core''s background worker requeues stalled tasks itself.';
    END IF;
END;
$$;

-- Unschedules a pg_cron job by name; a job that does not exist is no error.
CREATE FUNCTION pgflow._cron_unschedule(job_name text)
RETURNS void LANGUAGE plpgsql SET search_path = pgflow, cron, pg_temp AS $$
BEGIN
    PERFORM cron.unschedule(job_name);
EXCEPTION WHEN OTHERS THEN
    NULL;
END;
$$;

-- pg_cron before 1.5 (Debian 12 ships 1.4) has no second-level schedules such as '15 seconds'.
CREATE FUNCTION pgflow._check_cron_schedule(schedule text)
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    version text := (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_cron');
BEGIN
    IF schedule ~* '^\s*[0-9]+\s*seconds?\s*$'
       AND string_to_array(split_part(version, '-', 1), '.')::integer[] < ARRAY[1, 5] THEN
        RAISE EXCEPTION 'pg_cron % has no second-level schedules: "%" needs pg_cron 1.5 or later', version, schedule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a cron expression such as ''* * * * *'' (every minute), or let pgflow_core''s background worker do this every pgflow.worker_interval_ms.';
    END IF;
END;
$$;

CREATE FUNCTION pgflow.setup_requeue_stalled_tasks_cron(cron_interval text DEFAULT '15 seconds')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgflow, cron, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM pgflow._require_pg_cron();
    PERFORM pgflow._check_cron_schedule(cron_interval);
    PERFORM pgflow._cron_unschedule('pgflow_requeue_stalled_tasks');
    SELECT cron.schedule(job_name => 'pgflow_requeue_stalled_tasks', schedule => cron_interval,
                         command => 'select pgflow.requeue_stalled_tasks()')
    INTO job;
    RETURN format('Scheduled pgflow_requeue_stalled_tasks (every %s, job_id=%s)', cron_interval, job);
END;
$$;

---------------------------------------------------------------------------------------------------
-- Workers and Supabase edge-function management
---------------------------------------------------------------------------------------------------

CREATE FUNCTION pgflow.track_worker_function(function_name text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO pgflow.worker_functions (function_name, updated_at)
    VALUES ($1, pg_catalog.clock_timestamp())
    ON CONFLICT (function_name) DO UPDATE SET updated_at = pg_catalog.clock_timestamp();
$$;

CREATE FUNCTION pgflow.mark_worker_stopped(worker_id uuid)
RETURNS void LANGUAGE sql AS $$
    UPDATE pgflow.workers SET stopped_at = pg_catalog.clock_timestamp() WHERE workers.worker_id OPERATOR(pg_catalog.=) $1;
$$;

CREATE FUNCTION pgflow.ensure_workers()
RETURNS TABLE(function_name text, invoked boolean, request_id bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    local boolean := pgflow.is_local();
    base_url pg_catalog.text;
    auth_key pg_catalog.text;
    project_id pg_catalog.text;
    target pg_catalog.record;
    request bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                   WHERE n.nspname OPERATOR(pg_catalog.=) 'net' AND p.proname OPERATOR(pg_catalog.=) 'http_post') THEN
        RAISE NOTICE 'pgflow.ensure_workers: pg_net (net.http_post) is not installed, so no worker was invoked';
        RETURN;
    END IF;

    IF local THEN
        base_url := 'http://kong:8000/functions/v1';
    ELSE
        IF pg_catalog.to_regclass('vault.decrypted_secrets') IS NULL THEN
            RAISE NOTICE 'pgflow.ensure_workers: Supabase Vault (vault.decrypted_secrets) is not installed, so no worker was invoked';
            RETURN;
        END IF;
        EXECUTE 'SELECT CASE WHEN decrypted_secret OPERATOR(pg_catalog.=) '''' THEN NULL ELSE decrypted_secret END
                 FROM vault.decrypted_secrets WHERE name OPERATOR(pg_catalog.=) $1 LIMIT 1'
            INTO project_id USING 'supabase_project_id';
        EXECUTE 'SELECT CASE WHEN decrypted_secret OPERATOR(pg_catalog.=) '''' THEN NULL ELSE decrypted_secret END
                 FROM vault.decrypted_secrets WHERE name OPERATOR(pg_catalog.=) $1 LIMIT 1'
            INTO auth_key USING 'pgflow_auth_secret';
        IF auth_key IS NULL THEN
            EXECUTE 'SELECT CASE WHEN decrypted_secret OPERATOR(pg_catalog.=) '''' THEN NULL ELSE decrypted_secret END
                 FROM vault.decrypted_secrets WHERE name OPERATOR(pg_catalog.=) $1 LIMIT 1'
                INTO auth_key USING 'supabase_service_role_key';
        END IF;
        base_url := 'https://' OPERATOR(pg_catalog.||) project_id OPERATOR(pg_catalog.||) '.supabase.co/functions/v1';
        IF base_url IS NULL OR auth_key IS NULL THEN
            RETURN;
        END IF;
    END IF;

    FOR target IN
        SELECT wf.function_name AS name
        FROM pgflow.worker_functions wf
        WHERE wf.enabled
          AND (local OR (
                (wf.last_invoked_at IS NULL
                 OR wf.last_invoked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) wf.debounce))
                AND NOT EXISTS (SELECT 1 FROM pgflow.workers w
                                WHERE w.function_name OPERATOR(pg_catalog.=) wf.function_name
                                  AND w.stopped_at IS NULL AND w.deprecated_at IS NULL
                                  AND w.last_heartbeat_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) wf.debounce))))
        ORDER BY wf.function_name
    LOOP
        EXECUTE 'SELECT net.http_post(url => $1, headers => $2, body => $3)'
            INTO request
            USING base_url OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) target.name,
                  CASE WHEN local THEN '{}'::pg_catalog.jsonb
                       ELSE pg_catalog.jsonb_build_object('Content-Type', 'application/json',
                                                          'Authorization', 'Bearer ' OPERATOR(pg_catalog.||) auth_key) END,
                  '{}'::pg_catalog.jsonb;
        UPDATE pgflow.worker_functions wf SET last_invoked_at = pg_catalog.clock_timestamp()
        WHERE wf.function_name OPERATOR(pg_catalog.=) target.name;
        function_name := target.name;
        invoked := true;
        request_id := request;
        RETURN NEXT;
    END LOOP;
END;
$$;

CREATE FUNCTION pgflow.cleanup_ensure_workers_logs(retention_hours integer DEFAULT 24)
RETURNS TABLE(cron_deleted bigint) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgflow, cron, pg_temp AS $$
BEGIN
    PERFORM pgflow._require_pg_cron();
    EXECUTE 'WITH gone AS (DELETE FROM cron.job_run_details WHERE end_time < now() - make_interval(hours => $1) RETURNING 1)
             SELECT count(*) FROM gone'
        INTO cron_deleted USING retention_hours;
    RETURN NEXT;
END;
$$;

CREATE FUNCTION pgflow.setup_ensure_workers_cron(cron_interval text DEFAULT '1 second')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgflow, cron, pg_temp AS $$
DECLARE
    workers_job bigint;
    cleanup_job bigint;
BEGIN
    PERFORM pgflow._require_pg_cron();
    PERFORM pgflow._check_cron_schedule(cron_interval);
    PERFORM pgflow._cron_unschedule('pgflow_ensure_workers');
    PERFORM pgflow._cron_unschedule('pgflow_cleanup_logs');
    SELECT cron.schedule(job_name => 'pgflow_ensure_workers', schedule => cron_interval,
                         command => 'select pgflow.ensure_workers()')
    INTO workers_job;
    SELECT cron.schedule(job_name => 'pgflow_cleanup_logs', schedule => '0 * * * *',
                         command => 'select pgflow.cleanup_ensure_workers_logs()')
    INTO cleanup_job;
    RETURN format('Scheduled pgflow_ensure_workers (every %s, job_id=%s) and pgflow_cleanup_logs (hourly, job_id=%s)',
                  cron_interval, workers_job, cleanup_job);
END;
$$;

---------------------------------------------------------------------------------------------------
-- Installed without the background worker: say so once.
---------------------------------------------------------------------------------------------------

-- CREATE EXTENSION hides notices raised by its script; this one is emitted at commit.
SELECT pgflow._notice_worker_not_running();

-- Inserts the task rows of a big map step without per-row foreign-key checks, which are most of
-- start_flow's time for a map over 10,000 elements. The rows can only reference a step that is
-- started (so its run, step state and flow exist): the WHERE clause makes sure. Replica mode
-- would also skip user triggers, so start_ready_steps uses this only while pgflow.step_tasks has
-- none. SECURITY DEFINER because session_replication_role is a superuser setting.
CREATE FUNCTION pgflow._insert_map_tasks(p_flow_slug text, p_run_id uuid, p_step_slug text, p_message_ids bigint[])
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = '' SET session_replication_role = replica AS $$
    INSERT INTO pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id)
    SELECT p_flow_slug, p_run_id, p_step_slug, (m.ord - 1)::int, m.id
    FROM unnest(p_message_ids) WITH ORDINALITY AS m(id, ord)
    WHERE EXISTS (SELECT 1 FROM pgflow.step_states ss
                  WHERE ss.run_id = p_run_id AND ss.step_slug = p_step_slug AND ss.flow_slug = p_flow_slug
                    AND ss.status = 'started' AND ss.initial_tasks = cardinality(p_message_ids));
$$;

-- No SECURITY DEFINER function runs for whoever can reach the schema: EXECUTE is granted by
-- name (README, "Privileges"). start_flow uses _insert_map_tasks only when its caller may.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pgflow'::regnamespace AND p.prosecdef LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END;
$$;

-- The contract runs these with an empty search_path (their statements are fully qualified).
ALTER FUNCTION pgflow.create_flow(text, integer, integer, integer) SET search_path = '';
ALTER FUNCTION pgflow.add_step(text, text, text[], integer, integer, integer, integer, text, jsonb, jsonb, text, text) SET search_path = '';
ALTER FUNCTION pgflow.start_flow(text, jsonb, uuid) SET search_path = '';
ALTER FUNCTION pgflow.start_ready_steps(uuid) SET search_path = '';
ALTER FUNCTION pgflow.cascade_resolve_conditions(uuid) SET search_path = '';
ALTER FUNCTION pgflow.start_tasks(text, bigint[], uuid) SET search_path = '';
ALTER FUNCTION pgflow.complete_task(uuid, text, integer, jsonb) SET search_path = '';
ALTER FUNCTION pgflow.fail_task(uuid, text, integer, text) SET search_path = '';
ALTER FUNCTION pgflow.maybe_complete_run(uuid) SET search_path = '';

-- Our own functions too (the contract's keep what the contract gives them): no statement of
-- theirs resolves a function or operator in a schema that a caller put ahead in its search_path.
-- run_local_tasks is not among them: the handlers it runs are the users' statements.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pgflow'::regnamespace AND p.proconfig IS NULL
               AND p.proname = ANY (ARRAY[
                   'cancel_run', 'pause_run', 'resume_run', 'retry_run', 'run_status', 'start_run',
                   'set_flow_priority', 'set_flow_concurrency', 'create_pool', 'drop_pool', 'set_pool',
                   'set_sql_handler', 'set_program_handler', 'remove_handler', 'push_sql', 'push_sql_batch',
                   'schedule_flow', 'pause_schedule', 'resume_schedule', 'unschedule',
                   '_fire_schedules', '_next_tick', '_release_waiting_runs', 'release_task', 'run_input']) LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = %L', f, '');
    END LOOP;
END;
$$;
