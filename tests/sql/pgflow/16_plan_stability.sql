-- The hot path keeps its plans when statistics were taken while the engine was idle (no run
-- started, no task queued) and work then arrives: such statistics make `status = 'started'` and
-- the `queued` partial indexes look like one row, and a plan led by them visits every running
-- run or queued task on each call. Index reads are counted with pg_stat_get_xact_tuples_returned
-- (this transaction's counters), so the checks do not depend on timing.
BEGIN;
SELECT plan(9);
\ir helpers/common.psql

SELECT pgflow.create_flow('idle');
SELECT pgflow.add_step('idle', 'a');
SELECT pgflow.add_step('idle', 'b', ARRAY['a']);

-- Some finished runs, then statistics taken while nothing runs.
SELECT count(*) FROM generate_series(1, 20) i,
    LATERAL pgflow.start_flow('idle', '{}', ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid);
SELECT count(pg_temp.complete_step(('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid, s, '1'))
FROM generate_series(1, 20) i, unnest(ARRAY['a', 'b']) s;
SELECT is((SELECT count(*)::int FROM pgflow.runs WHERE flow_slug = 'idle' AND status = 'completed'), 20,
          'setup: 20 runs completed');
ANALYZE pgflow.runs, pgflow.step_states, pgflow.step_tasks;

-- Then 300 runs arrive.
SELECT count(*) FROM generate_series(1, 300) i,
    LATERAL pgflow.start_flow('idle', '{}', ('00000000-0000-0000-0001-' || lpad(i::text, 12, '0'))::uuid);

-- Runs one call; returns its result and the index tuples it read in schema pgflow: all of them
-- but those of idx_step_tasks_message_id (how many tasks share a message id depends on other
-- flows and on rolled-back earlier runs of this file), and those of indexes led by a status.
CREATE FUNCTION pg_temp.reads_of(call text, OUT result text, OUT status_led bigint, OUT total bigint)
LANGUAGE plpgsql AS $$
DECLARE
    before jsonb;
BEGIN
    SELECT jsonb_object_agg(c.relname, pg_stat_get_xact_tuples_returned(c.oid)) INTO before
    FROM pg_class c WHERE c.relnamespace = 'pgflow'::regnamespace AND c.relkind = 'i';
    EXECUTE call INTO result;
    SELECT coalesce(sum(d.n) FILTER (WHERE d.relname <> 'idx_step_tasks_message_id'), 0),
           coalesce(sum(d.n) FILTER (WHERE d.relname IN ('idx_runs_status', 'idx_step_tasks_queued',
               'idx_step_tasks_queued_msg', 'idx_step_tasks_completed', 'idx_step_states_ready')), 0)
      INTO total, status_led
    FROM (SELECT c.relname, pg_stat_get_xact_tuples_returned(c.oid) - (before ->> c.relname)::bigint AS n
          FROM pg_class c WHERE c.relnamespace = 'pgflow'::regnamespace AND c.relkind = 'i') d;
END;
$$;

CREATE TEMP TABLE calls AS
SELECT 'start' AS call, * FROM pg_temp.reads_of(format(
    'SELECT count(*)::text FROM pgflow.start_tasks(%L, %L, %L)', 'idle',
    ARRAY(SELECT message_id FROM pgflow.step_tasks
          WHERE run_id = '00000000-0000-0000-0001-000000000007' AND step_slug = 'a'),
    pg_temp.worker()));
INSERT INTO calls SELECT 'complete', * FROM pg_temp.reads_of(
    $$SELECT count(*)::text FROM pgflow.complete_task('00000000-0000-0000-0001-000000000007', 'a', 0, '1')$$);
SELECT count(*) FROM pgflow.start_tasks('idle',
    ARRAY(SELECT message_id FROM pgflow.step_tasks
          WHERE run_id = '00000000-0000-0000-0001-000000000007' AND step_slug = 'b'),
    pg_temp.worker());
INSERT INTO calls SELECT 'fail', * FROM pg_temp.reads_of(
    $$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0001-000000000007', 'b', 0, 'boom')$$);

SELECT results_eq($$SELECT call, result FROM calls WHERE call <> 'start map' ORDER BY call$$,
                  $$VALUES ('complete', '1'), ('fail', 'queued'), ('start', '1')$$,
                  'start_tasks claims the task, complete_task completes it, fail_task queues the next one again');
SELECT is((SELECT status_led FROM calls WHERE call = 'start'), 0::bigint,
          'start_tasks reads no index led by a status (it starts from the message id)');
SELECT is((SELECT status_led FROM calls WHERE call = 'complete'), 0::bigint,
          'complete_task (and the start of the next step) reads no index led by a status');
-- A plan led by a status reads at least one index entry per started run (300).
SELECT cmp_ok(total, '<=', 60::bigint, call || ' reads at most 60 index tuples with 300 runs started')
FROM calls WHERE call <> 'start map' ORDER BY call;

-- A map step's tasks are claimed by key: reaching them through (flow_slug, run_id, step_slug)
-- would read every task of the step for each one claimed.
SELECT pgflow.create_flow('wide');
SELECT pgflow.add_step('wide', 'items', step_type => 'map');
SELECT count(*) FROM pgflow.start_flow('wide', (SELECT jsonb_agg(i) FROM generate_series(1, 500) i),
                                       '00000000-0000-0000-0002-000000000001');
INSERT INTO calls SELECT 'start map', * FROM pg_temp.reads_of(format(
    'SELECT count(*)::text FROM pgflow.start_tasks(%L, %L, %L)', 'wide',
    ARRAY(SELECT message_id FROM pgflow.step_tasks
          WHERE run_id = '00000000-0000-0000-0002-000000000001' AND task_index >= 490),
    pg_temp.worker()));
SELECT is((SELECT result FROM calls WHERE call = 'start map'), '10', 'start_tasks claims 10 tasks of a 500-task map');
SELECT cmp_ok((SELECT total FROM calls WHERE call = 'start map'), '<=', 100::bigint,
              '... reading at most 10 index tuples per task (a key prefix reads 500 per task)');

SELECT * FROM finish();
ROLLBACK;
