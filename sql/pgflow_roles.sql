-- Roles for least privilege (docs/security.md). pgflow.create_roles() makes the roles once per
-- cluster and grants them what they need in this database; pgflow.grant_flow lets a role work
-- the tasks of one flow.

-- Refuses unless the current user is a superuser or a member of the extension's owner.
CREATE FUNCTION pgflow._require_extension_owner(action text)
RETURNS void LANGUAGE plpgsql STABLE SET search_path = '' AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(
        (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pgflow'), 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to %', action USING ERRCODE = 'insufficient_privilege',
            HINT = 'Only a superuser or the owner of pgflow_core may.';
    END IF;
END;
$$;

CREATE FUNCTION pgflow.create_roles()
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    r text;
BEGIN
    PERFORM pgflow._require_extension_owner('create pgflow_core''s roles');
    FOREACH r IN ARRAY ARRAY['pgflow_worker', 'pgflow_observer', 'pgflow_definer'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    GRANT USAGE ON SCHEMA pgflow, pgmq TO pgflow_worker, pgflow_observer, pgflow_definer;
    -- Definers: the functions check that the flow or run is theirs (src/privileges.rs); they
    -- read definitions directly.
    GRANT SELECT ON pgflow.flows, pgflow.steps, pgflow.deps TO pgflow_definer;
    -- Workers: their heartbeat rows; the tasks of the flows that grant_flow names.
    GRANT SELECT, INSERT, UPDATE ON pgflow.workers TO pgflow_worker;
    -- Observers: definitions and states, never a run's input or a step's output.
    GRANT SELECT ON pgflow.flows, pgflow.steps, pgflow.deps, pgflow.workers, pgflow.worker_functions,
                    pgflow._run_control, pgflow._flow_options TO pgflow_observer;
    GRANT SELECT (run_id, flow_slug, status, remaining_steps, started_at, completed_at, failed_at)
        ON pgflow.runs TO pgflow_observer;
    GRANT SELECT (flow_slug, run_id, step_slug, status, remaining_tasks, remaining_deps, initial_tasks,
                  created_at, started_at, completed_at, failed_at, skipped_at, skip_reason, error_message)
        ON pgflow.step_states TO pgflow_observer;
    GRANT SELECT (flow_slug, run_id, step_slug, task_index, message_id, status, attempts_count, error_message,
                  queued_at, started_at, completed_at, failed_at, last_worker_id, requeued_count,
                  last_requeued_at, permanently_stalled_at)
        ON pgflow.step_tasks TO pgflow_observer;
    GRANT EXECUTE ON FUNCTION pgflow.check_invariants(text) TO pgflow_observer;
    -- What runs and why it failed (docs/observability.md); the pictures need the steps' handler kinds.
    GRANT SELECT ON pgflow.flow_stats, pgflow.failing_and_stalled_tasks TO pgflow_observer;
    GRANT SELECT (flow_slug, step_slug, kind) ON pgflow._step_handlers TO pgflow_observer;
END;
$$;

-- The queue table of a flow (it must exist).
CREATE FUNCTION pgflow._flow_queue_table(flow_slug text)
RETURNS regclass LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
    queue regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgflow.flows f WHERE f.flow_slug = _flow_queue_table.flow_slug) THEN
        RAISE EXCEPTION 'flow "%" does not exist', flow_slug USING ERRCODE = 'undefined_object';
    END IF;
    queue := pg_catalog.to_regclass('pgmq.' || pg_catalog.quote_ident(pgmq.format_table_name(flow_slug, 'q')));
    IF queue IS NULL THEN
        RAISE EXCEPTION 'flow "%" has no queue', flow_slug USING ERRCODE = 'undefined_table';
    END IF;
    RETURN queue;
END;
$$;

-- Lets a role read the flow's queue and start, complete and fail its tasks (and nothing else
-- of the flow); revoke_flow takes that back.
CREATE FUNCTION pgflow._change_flow_grant(statement text, action text, flow_slug text, role_name text)
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    PERFORM pgflow._require_extension_owner(action);
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'role_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    EXECUTE pg_catalog.format(statement, pgflow._flow_queue_table(flow_slug), role_name);
END;
$$;

CREATE FUNCTION pgflow.grant_flow(flow_slug text, role_name text)
RETURNS void LANGUAGE sql SET search_path = '' AS $$
    SELECT pgflow._change_flow_grant('GRANT SELECT, UPDATE ON %s TO %I', 'grant a flow', flow_slug, role_name)
$$;

CREATE FUNCTION pgflow.revoke_flow(flow_slug text, role_name text)
RETURNS void LANGUAGE sql SET search_path = '' AS $$
    SELECT pgflow._change_flow_grant('REVOKE SELECT, UPDATE ON %s FROM %I', 'revoke a flow', flow_slug, role_name)
$$;
