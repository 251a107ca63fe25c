-- Loaded into the isolation database once, before the specs (tests/isolation.sh).
CREATE EXTENSION pgflow_core;

-- The run every spec races on, and its worker.
CREATE FUNCTION rid(n integer DEFAULT 1) RETURNS uuid LANGUAGE sql IMMUTABLE AS
$$ SELECT ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION wid() RETURNS uuid LANGUAGE sql IMMUTABLE AS
$$ SELECT '00000000-0000-0000-0000-0000000000aa'::uuid $$;

-- Flow r: roots a and c, b after a. A run of it (unless not run) whose root tasks are started
-- (unless not start), as an external worker would have them.
CREATE PROCEDURE make_run(max_attempts integer DEFAULT 1, start boolean DEFAULT true, run boolean DEFAULT true)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgflow.create_flow('r', max_attempts => max_attempts, base_delay => 0, timeout => 5);
    PERFORM pgflow.add_step('r', 'a');
    PERFORM pgflow.add_step('r', 'c');
    PERFORM pgflow.add_step('r', 'b', ARRAY['a']);
    INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES (wid(), 'r', 'w')
    ON CONFLICT DO NOTHING;
    IF NOT run THEN
        RETURN;
    END IF;
    PERFORM pgflow.start_flow('r', '{}', rid());
    IF start THEN
        PERFORM pgflow.start_tasks('r', ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = rid()), wid());
    END IF;
END;
$$;

CREATE PROCEDURE drop_run() LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pgflow.flows WHERE flow_slug = 'r') THEN
        PERFORM pgflow.delete_flow_and_data('r');
    END IF;
    DELETE FROM pgflow.workers;
END;
$$;

-- What each run of flow r looks like: statuses (with its run control state), step states, tasks
-- as step+index:status/attempts, and the flow queue's messages as visible/hidden.
CREATE FUNCTION state()
RETURNS TABLE (run text, status text, steps text, tasks text, messages text) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT right(r.run_id::text, 2), r.status || coalesce('/' || c.state, ''),
           (SELECT string_agg(ss.step_slug || ':' || ss.status, ' ' ORDER BY ss.step_slug)
              FROM pgflow.step_states ss WHERE ss.run_id = r.run_id),
           (SELECT string_agg(t.step_slug || t.task_index || ':' || t.status || '/' || t.attempts_count, ' '
                              ORDER BY t.step_slug, t.task_index)
              FROM pgflow.step_tasks t WHERE t.run_id = r.run_id),
           NULL::text
      FROM pgflow.runs r LEFT JOIN pgflow._run_control c ON c.run_id = r.run_id
     ORDER BY r.run_id;
    IF to_regclass('pgmq.q_r') IS NOT NULL THEN
        RETURN QUERY
        SELECT 'queue', NULL::text, NULL::text, NULL::text,
               format('%s visible, %s hidden',
                      count(*) FILTER (WHERE q.vt <= clock_timestamp()),
                      count(*) FILTER (WHERE q.vt > clock_timestamp()))
          FROM pgmq.q_r q;
    END IF;
END;
$$;

CREATE VIEW violations AS SELECT invariant, step_slug, detail FROM pgflow.check_invariants();
