-- A pure-SQL workflow, run by the database itself: no worker of any kind is started here. The
-- extension's executors (background workers serving this database) run each step's SQL handler
-- in the transaction that completes its task.
--   psql -d pgflow_demo -v ON_ERROR_STOP=1 -f examples/demo_sql_workflow.sql
\set QUIET on
SET client_min_messages = warning;

CREATE TABLE sales (id int PRIMARY KEY, region text, amount numeric);
INSERT INTO sales SELECT g, (ARRAY['eu', 'us', 'apac'])[1 + g % 3], 10 + g FROM generate_series(1, 30) g;
CREATE TABLE sales_report (region text PRIMARY KEY, total numeric, orders int);

-- extract -> summarize (a map step: one task per region, run in parallel) -> publish
SELECT pgflow.create_flow('sales_report') \g /dev/null
SELECT pgflow.add_step('sales_report', 'regions') \g /dev/null
SELECT pgflow.add_step('sales_report', 'summarize', ARRAY['regions'], step_type => 'map') \g /dev/null
SELECT pgflow.add_step('sales_report', 'publish', ARRAY['summarize']) \g /dev/null

SELECT pgflow.set_sql_handler('sales_report', 'regions',
  'SELECT jsonb_agg(DISTINCT region) FROM sales');
SELECT pgflow.set_sql_handler('sales_report', 'summarize',
  $$SELECT jsonb_build_object('region', $1 #>> '{}', 'total', sum(amount), 'orders', count(*))
    FROM sales WHERE region = $1 #>> '{}'$$);
SELECT pgflow.set_sql_handler('sales_report', 'publish',
  $$INSERT INTO sales_report
    SELECT s->>'region', (s->>'total')::numeric, (s->>'orders')::int FROM jsonb_array_elements($1->'summarize') s
    RETURNING region$$);

\echo '==> starting a run of flow sales_report; the executors run it'
SELECT run_id AS run FROM pgflow.start_flow('sales_report', '{}') \gset

-- The executors start within seconds of CREATE EXTENSION (the launcher looks every 10 s).
SELECT set_config('demo.run', :'run', false) AS demo_run \gset
DO $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
  WHILE (SELECT status FROM pgflow.runs WHERE run_id = current_setting('demo.run')::uuid) = 'started' AND clock_timestamp() < deadline LOOP
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;

\echo '==> the run'
SELECT status, completed_at - started_at AS took, output FROM pgflow.runs WHERE run_id = :'run';
\echo '==> its tasks: no message in any queue, no worker id'
SELECT step_slug, task_index, status, message_id, last_worker_id, output
FROM pgflow.step_tasks WHERE run_id = :'run' ORDER BY step_slug, task_index;
\echo '==> the table the last step loaded'
TABLE sales_report;

DO $$
BEGIN
  IF (SELECT status FROM pgflow.runs WHERE run_id = current_setting('demo.run')::uuid) IS DISTINCT FROM 'completed'
     OR (SELECT sum(orders) FROM sales_report) IS DISTINCT FROM 30 THEN
    RAISE EXCEPTION 'the SQL workflow did not complete as expected (are the executors running? pgflow.executors, pgflow.worker_databases)';
  END IF;
END $$;
\echo 'demo_sql_workflow: OK'
