-- Pictures of flows and runs (docs/observability.md#pictures): pgflow.flow_graph and
-- pgflow.run_graph, in Mermaid or Graphviz DOT. One renderer draws both; a run's picture adds
-- each step's state, duration and attempts.

-- A duration the way people read it: 850 ms, 2.4 s, 3 min 5 s, 2 h 10 min.
CREATE FUNCTION pgflow._format_duration(d interval)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = '' AS $$
    SELECT CASE
        WHEN d IS NULL THEN NULL
        WHEN extract(epoch FROM d) < 1 THEN round(extract(epoch FROM d) * 1000) || ' ms'
        WHEN extract(epoch FROM d) < 60 THEN round(extract(epoch FROM d), 1) || ' s'
        WHEN extract(epoch FROM d) < 3600 THEN floor(extract(epoch FROM d) / 60) || ' min '
                                               || floor(extract(epoch FROM d)::numeric % 60) || ' s'
        ELSE floor(extract(epoch FROM d) / 3600) || ' h ' || floor(extract(epoch FROM d)::numeric % 3600 / 60) || ' min'
    END
$$;

-- The picture of a flow's steps (run_id NULL) or of one run's.
CREATE FUNCTION pgflow._graph(flow_slug text, run_id uuid, format text, title text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
    step record;
    edge record;
    lines text[] := ARRAY[]::text[];
    label text[];
    attrs text;
    shape text;
    palette CONSTANT jsonb := '{
        "created":   {"fill": "#eeeeee", "stroke": "#9e9e9e"},
        "started":   {"fill": "#d0e4ff", "stroke": "#1565c0"},
        "completed": {"fill": "#d4edda", "stroke": "#2e7d32"},
        "failed":    {"fill": "#f8d7da", "stroke": "#c62828"},
        "skipped":   {"fill": "#ffffff", "stroke": "#9e9e9e"}}';
BEGIN
    IF format IS NULL OR format NOT IN ('mermaid', 'dot') THEN
        RAISE EXCEPTION 'format must be ''mermaid'' or ''dot'', not %', coalesce(pg_catalog.quote_literal(format), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF format = 'mermaid' THEN
        -- Slugs and run ids need no escaping in YAML's double quotes.
        lines := ARRAY['---', 'title: "' || title || '"', '---', 'flowchart TD'];
    ELSE
        lines := ARRAY['digraph ' || pgflow._dot_string(flow_slug) || ' {',
                       '    label=' || pgflow._dot_string(title) || '; labelloc=t; fontname="Helvetica";',
                       '    node [shape=box, style="rounded", fontname="Helvetica"];',
                       '    edge [color="#555555"];'];
    END IF;

    FOR step IN
        SELECT st.step_index, st.step_slug, st.step_type, h.kind AS handler,
               st.required_input_pattern, st.forbidden_input_pattern,
               s.status, s.initial_tasks,
               coalesce(s.completed_at, s.failed_at, s.skipped_at, CASE WHEN s.status = 'started' THEN now() END)
                   - s.started_at AS duration,
               (SELECT max(t.attempts_count) FROM pgflow.step_tasks t
                WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug) AS attempts
        FROM pgflow.steps st
        LEFT JOIN pgflow._step_handlers h ON h.flow_slug = st.flow_slug AND h.step_slug = st.step_slug
        LEFT JOIN pgflow.step_states s ON s.run_id = _graph.run_id AND s.step_slug = st.step_slug
        WHERE st.flow_slug = _graph.flow_slug AND (_graph.run_id IS NULL OR s.run_id IS NOT NULL)
        ORDER BY st.step_index
    LOOP
        label := ARRAY[step.step_slug];
        label := label || NULLIF(concat_ws(' · ',
            CASE WHEN step.step_type = 'map' THEN 'map' END,
            CASE step.handler WHEN 'sql' THEN 'SQL' WHEN 'program' THEN 'program' WHEN 'adhoc' THEN 'ad-hoc SQL' END), '');
        IF step.required_input_pattern IS NOT NULL THEN
            label := label || ('if ' || step.required_input_pattern::text);
        END IF;
        IF step.forbidden_input_pattern IS NOT NULL THEN
            label := label || ('unless ' || step.forbidden_input_pattern::text);
        END IF;
        IF run_id IS NOT NULL THEN
            label := label || concat_ws(' · ', step.status, pgflow._format_duration(step.duration),
                CASE WHEN step.attempts = 1 THEN '1 attempt' WHEN step.attempts > 1 THEN step.attempts || ' attempts' END,
                CASE WHEN step.step_type = 'map' AND step.initial_tasks IS NOT NULL THEN step.initial_tasks || ' tasks' END);
        END IF;
        shape := CASE WHEN step.handler = 'program' THEN 'program' WHEN step.handler IS NOT NULL THEN 'sql'
                      WHEN step.step_type = 'map' THEN 'map' ELSE 'single' END;

        IF format = 'mermaid' THEN
            attrs := '"' || array_to_string(ARRAY(SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
                         l, '"', '#quot;'), '<', '#60;'), '>', '#62;') FROM unnest(label) WITH ORDINALITY u(l, i) ORDER BY i), '<br/>') || '"';
            lines := lines || ('    s' || step.step_index || CASE shape
                WHEN 'program' THEN '{{' || attrs || '}}' WHEN 'sql' THEN '[(' || attrs || ')]'
                WHEN 'map' THEN '[[' || attrs || ']]' ELSE '[' || attrs || ']' END);
            IF step.status IS NOT NULL THEN
                lines := lines || ('    class s' || step.step_index || ' ' || step.status);
            END IF;
        ELSE
            attrs := 'label=' || pgflow._dot_string(array_to_string(label, E'\n')) || CASE shape
                WHEN 'program' THEN ', shape=hexagon' WHEN 'sql' THEN ', shape=cylinder'
                WHEN 'map' THEN ', shape=box3d' ELSE '' END;
            IF step.status IS NOT NULL THEN
                attrs := attrs || pg_catalog.format(', style="%s", fillcolor="%s", color="%s"',
                    CASE WHEN step.status = 'skipped' THEN 'rounded,dashed' ELSE 'rounded,filled' END,
                    palette -> step.status ->> 'fill', palette -> step.status ->> 'stroke');
            END IF;
            lines := lines || ('    s' || step.step_index || ' [' || attrs || '];');
        END IF;
    END LOOP;

    FOR edge IN
        SELECT a.step_index AS from_index, b.step_index AS to_index
        FROM pgflow.deps d
        JOIN pgflow.steps a ON a.flow_slug = d.flow_slug AND a.step_slug = d.dep_slug
        JOIN pgflow.steps b ON b.flow_slug = d.flow_slug AND b.step_slug = d.step_slug
        WHERE d.flow_slug = _graph.flow_slug
          AND (_graph.run_id IS NULL OR EXISTS (SELECT 1 FROM pgflow.step_states s
                                                WHERE s.run_id = _graph.run_id AND s.step_slug = d.step_slug))
        ORDER BY b.step_index, a.step_index
    LOOP
        lines := lines || ('    s' || edge.from_index || CASE WHEN format = 'mermaid' THEN ' --> s' ELSE ' -> s' END
                           || edge.to_index || CASE WHEN format = 'dot' THEN ';' ELSE '' END);
    END LOOP;

    IF format = 'mermaid' AND run_id IS NOT NULL THEN
        lines := lines || ARRAY(SELECT pg_catalog.format('    classDef %s fill:%s,stroke:%s%s', p.key, p.value ->> 'fill',
                                       p.value ->> 'stroke', CASE WHEN p.key = 'skipped' THEN ',stroke-dasharray:4 3' ELSE '' END)
                                FROM jsonb_each(palette) p ORDER BY p.key);
    ELSIF format = 'dot' THEN
        lines := lines || '}'::text;
    END IF;
    RETURN array_to_string(lines, E'\n') || E'\n';
END;
$$;

-- A DOT string literal.
CREATE FUNCTION pgflow._dot_string(s text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = '' AS $$
    SELECT '"' || pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(s, '\', '\\'), '"', '\"'), E'\n', '\n') || '"'
$$;

-- A flow as a graph: steps (map steps, SQL and program steps, conditions) and dependencies.
CREATE FUNCTION pgflow.flow_graph(flow_slug text, format text DEFAULT 'mermaid')
RETURNS text LANGUAGE plpgsql STABLE SET search_path = '' AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgflow.flows f WHERE f.flow_slug = flow_graph.flow_slug) THEN
        RAISE EXCEPTION 'flow "%" does not exist', flow_slug USING ERRCODE = 'undefined_object';
    END IF;
    RETURN pgflow._graph(flow_slug, NULL, format, 'flow ' || flow_slug);
END;
$$;

-- A run as a graph: its flow's picture with each step coloured by its state and labelled with
-- its duration, attempts and (map steps) tasks.
CREATE FUNCTION pgflow.run_graph(run_id uuid, format text DEFAULT 'mermaid')
RETURNS text LANGUAGE plpgsql STABLE SET search_path = '' AS $$
DECLARE
    run record;
BEGIN
    SELECT r.flow_slug, r.status, c.state AS control INTO run
    FROM pgflow.runs r LEFT JOIN pgflow._run_control c ON c.run_id = r.run_id
    WHERE r.run_id = run_graph.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', run_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN pgflow._graph(run.flow_slug, run_id, format,
        pg_catalog.format('run %s of %s: %s', run_id, run.flow_slug,
                          CASE WHEN run.control IS NOT NULL AND (run.status = 'started' OR run.control = 'cancelled')
                               THEN run.control ELSE run.status END));
END;
$$;
