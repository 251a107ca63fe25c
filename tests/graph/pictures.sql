-- The flows and runs that the graph suite draws (tests/graph.sh), the docs' pictures among
-- them. Times are set by hand, so the pictures come out the same on every run.
SET client_min_messages = warning;
\set QUIET on
\pset tuples_only on

-- The README's example flow, and a run of it that failed: sentiment's handler failed three times.
SELECT pgflow.create_flow('analyze_website', max_attempts => 3, base_delay => 0);
SELECT pgflow.add_step('analyze_website', 'website');
SELECT pgflow.add_step('analyze_website', 'sentiment', ARRAY['website']);
SELECT pgflow.add_step('analyze_website', 'summary', ARRAY['website']);
SELECT pgflow.add_step('analyze_website', 'saveToDb', ARRAY['sentiment', 'summary']);
INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
VALUES ('00000000-0000-0000-0000-0000000009a1', 'analyze_website', 'pictures-worker');

CREATE FUNCTION pg_temp.work(run uuid, step text, output jsonb, error text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM pgflow.start_tasks((SELECT flow_slug FROM pgflow.runs WHERE run_id = run),
                 ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = run AND step_slug = step AND status = 'queued'),
                 '00000000-0000-0000-0000-0000000009a1') LOOP
        IF error IS NULL THEN
            PERFORM pgflow.complete_task(t.run_id, t.step_slug, t.task_index, output -> t.task_index);
        ELSE
            PERFORM pgflow.fail_task(t.run_id, t.step_slug, t.task_index, error);
        END IF;
    END LOOP;
END;
$$;
-- Step times: started `s` seconds after 10:00, `d` seconds long.
CREATE FUNCTION pg_temp.times(run uuid, step text, s numeric, d numeric) RETURNS void LANGUAGE sql AS $$
    UPDATE pgflow.step_states
    SET created_at = '2026-01-01 10:00:00+00', started_at = timestamptz '2026-01-01 10:00:00+00' + s * interval '1 second',
        completed_at = CASE WHEN completed_at IS NOT NULL THEN timestamptz '2026-01-01 10:00:00+00' + (s + d) * interval '1 second' END,
        failed_at = CASE WHEN failed_at IS NOT NULL THEN timestamptz '2026-01-01 10:00:00+00' + (s + d) * interval '1 second' END
    WHERE run_id = run AND step_slug = step;
$$;

SELECT pgflow.start_flow('analyze_website', '{"url": "https://example.com"}', '00000000-0000-0000-0000-00000000f001');
SELECT pg_temp.work('00000000-0000-0000-0000-00000000f001', 'website', '[{"content": "The page is great"}]');
SELECT pg_temp.work('00000000-0000-0000-0000-00000000f001', 'summary', '["The page is great"]');
SELECT pg_temp.work('00000000-0000-0000-0000-00000000f001', 'sentiment', NULL, 'model timed out');
SELECT pg_temp.work('00000000-0000-0000-0000-00000000f001', 'sentiment', NULL, 'model timed out');
SELECT pg_temp.work('00000000-0000-0000-0000-00000000f001', 'sentiment', NULL, 'model timed out');
SELECT pg_temp.times('00000000-0000-0000-0000-00000000f001', 'website', 0, 1.2);
SELECT pg_temp.times('00000000-0000-0000-0000-00000000f001', 'summary', 1.2, 0.35);
SELECT pg_temp.times('00000000-0000-0000-0000-00000000f001', 'sentiment', 1.2, 95);

-- Every kind of step: a SQL step, a map step run by SQL, a program step, conditions.
SELECT pgflow.create_flow('every_kind');
SELECT pgflow.add_step('every_kind', 'orders');
SELECT pgflow.add_step('every_kind', 'regions', ARRAY['orders'], step_type => 'map');
SELECT pgflow.add_step('every_kind', 'report', ARRAY['regions'], required_input_pattern => '{"orders": {"ok": true}}');
SELECT pgflow.add_step('every_kind', 'archive', ARRAY['orders'], forbidden_input_pattern => '{"orders": {"dry_run": true}}');
SELECT pgflow.add_step('every_kind', 'notify', ARRAY['report', 'archive']);
SELECT pgflow.set_sql_handler('every_kind', 'regions', 'SELECT jsonb_build_object(''region'', $1)');
SELECT pgflow.set_sql_handler('every_kind', 'report', 'SELECT 1');
SELECT pgflow.set_program_handler('every_kind', 'archive', ARRAY['/bin/true']);
-- Runs of it in other states: skipped steps (report's condition unmet), started, paused, cancelled.
SELECT pgflow.start_flow('every_kind', '{}', '00000000-0000-0000-0000-00000000f002');
SELECT pg_temp.work('00000000-0000-0000-0000-00000000f002', 'orders', '[["eu", "us"]]');
SELECT pgflow.start_flow('every_kind', '{}', '00000000-0000-0000-0000-00000000f003');
SELECT pgflow.start_flow('every_kind', '{}', '00000000-0000-0000-0000-00000000f004');
SELECT pgflow.pause_run('00000000-0000-0000-0000-00000000f004');
SELECT pgflow.start_flow('every_kind', '{}', '00000000-0000-0000-0000-00000000f005');
SELECT pgflow.cancel_run('00000000-0000-0000-0000-00000000f005');
