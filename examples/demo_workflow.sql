-- A whole workflow: define a flow, start runs, process them with a worker loop, show outputs.
\pset footer off
\echo '--- define the flow: website -> (sentiment, summary) -> saveToDb'
SELECT flow_slug FROM pgflow.create_flow('analyze_website', max_attempts => 3, base_delay => 0);
SELECT step_slug, step_index FROM pgflow.add_step('analyze_website', 'website');
SELECT step_slug, step_index FROM pgflow.add_step('analyze_website', 'sentiment', ARRAY['website']);
SELECT step_slug, step_index FROM pgflow.add_step('analyze_website', 'summary', ARRAY['website']);
SELECT step_slug, step_index FROM pgflow.add_step('analyze_website', 'saveToDb', ARRAY['sentiment', 'summary']);

\echo '--- start three runs'
SELECT run_id, status, remaining_steps
FROM (VALUES ('https://example.com'), ('https://postgresql.org'), ('https://rust-lang.org')) AS v(url),
     LATERAL pgflow.start_flow('analyze_website', jsonb_build_object('url', url));

\echo '--- a worker loop in SQL: read, start, run the handler, complete (one transaction per batch)'
INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
VALUES ('00000000-0000-0000-0000-00000000de30', 'analyze_website', 'demo-worker');

DO $worker$
DECLARE
    task pgflow.step_task_record;
    output jsonb;
    handled integer := 0;
    attempts integer := 0;
BEGIN
    WHILE EXISTS (SELECT 1 FROM pgflow.runs WHERE status = 'started') AND attempts < 100 LOOP
        attempts := attempts + 1;
        FOR task IN
            SELECT * FROM pgflow.start_tasks(
                'analyze_website',
                ARRAY(SELECT msg_id FROM pgmq.read_with_poll('analyze_website', vt => 30, qty => 10,
                                                             max_poll_seconds => 1, poll_interval_ms => 50)),
                '00000000-0000-0000-0000-00000000de30')
        LOOP
            -- The handlers: each step computes its output from its input.
            output := CASE task.step_slug
                WHEN 'website' THEN jsonb_build_object(
                    'content', 'The page at ' || (task.flow_input ->> 'url') || ' is great')
                WHEN 'sentiment' THEN jsonb_build_object(
                    'score', round(length(task.input -> 'website' ->> 'content') / 100.0, 2))
                WHEN 'summary' THEN to_jsonb(left(task.input -> 'website' ->> 'content', 24) || '...')
                WHEN 'saveToDb' THEN jsonb_build_object(
                    'saved', true, 'score', task.input -> 'sentiment' -> 'score', 'summary', task.input -> 'summary')
            END;
            PERFORM pgflow.complete_task(task.run_id, task.step_slug, task.task_index, output);
            handled := handled + 1;
        END LOOP;
        COMMIT;
    END LOOP;
    RAISE NOTICE 'worker handled % tasks', handled;
END
$worker$;

\echo '--- the runs and their outputs'
SELECT run_id, status, output FROM pgflow.runs ORDER BY started_at, run_id;
SELECT step_slug, count(*) AS tasks, sum(attempts_count) AS attempts
FROM pgflow.step_tasks GROUP BY step_slug ORDER BY step_slug;
