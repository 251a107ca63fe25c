-- Map steps: root and dependent maps, task inputs (NULL elements), aggregated
-- output ordered by task_index, sizes learned from parents, empty arrays cascading, map task
-- idempotency and failure, and the type-violation path of complete_task.
BEGIN;
SELECT plan(45);
\ir helpers/common.psql

SELECT pgflow.create_flow('mp');
SELECT pgflow.add_step('mp', 'm1', step_type => 'map');
SELECT pgflow.add_step('mp', 'm2', ARRAY['m1'], step_type => 'map');
SELECT pgflow.add_step('mp', 'sum', ARRAY['m2']);
SELECT pgflow.start_flow('mp', '[1, null, {"k": 2}]', '00000000-0000-0000-0000-000000000601');

---------------------------------------------------------------------------------------------------
-- Root map
---------------------------------------------------------------------------------------------------
SELECT results_eq($$SELECT step_slug, task_index, input, flow_input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000601', 'm1')
                    ORDER BY task_index$$,
                  $$VALUES ('m1'::text, 0, '1'::jsonb, NULL::jsonb), ('m1', 1, 'null', NULL), ('m1', 2, '{"k": 2}', NULL)$$,
                  'root map task i gets input element i (a JSON null element gives JSON null); flow_input NULL for maps');
SELECT results_eq($$SELECT msg_id FROM pgflow.start_tasks('mp', pg_temp.task_msgs('00000000-0000-0000-0000-000000000601'), pg_temp.worker())$$,
                  $$SELECT NULL::bigint WHERE false$$, 'all three are started already');

SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000601', 'm1', 2, '"o2"')$$,
                  $$VALUES ('completed'::text, '"o2"'::jsonb)$$, 'complete task 2 first');
SELECT results_eq($$SELECT status, remaining_tasks, output, completed_at FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000601' AND step_slug = 'm1'$$,
                  $$VALUES ('started'::text, 2, NULL::jsonb, NULL::timestamptz)$$, 'map step: remaining_tasks 3 -> 2, still started, no output');
SELECT is((SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000601'), 3,
          'run remaining_steps unchanged while the map step runs');
-- Idempotency within a running map step
SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000601', 'm1', 2, '"changed"')$$,
                  $$VALUES ('completed'::text, '"o2"'::jsonb)$$, 'completing a completed task of a started step changes nothing');
SELECT is((SELECT remaining_tasks FROM pgflow.step_states WHERE run_id = '00000000-0000-0000-0000-000000000601' AND step_slug = 'm1'), 2,
          'remaining_tasks not decremented twice');
SELECT results_eq($$SELECT status, error_message FROM pgflow.fail_task('00000000-0000-0000-0000-000000000601', 'm1', 2, 'nope')$$,
                  $$VALUES ('completed'::text, NULL::text)$$, 'failing a completed task of a started step changes nothing');
SELECT results_eq($$SELECT status, remaining_tasks, error_message FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000601' AND step_slug = 'm1'$$,
                  $$VALUES ('started'::text, 2, NULL::text)$$, 'step unchanged');

SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000601', 'm1', 1, NULL);
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000601', 'm1', 0, '"o0"');
SELECT results_eq($$SELECT status, remaining_tasks, output, completed_at FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000601' AND step_slug = 'm1'$$,
                  $$VALUES ('completed'::text, 0, '["o0", null, "o2"]'::jsonb, now())$$,
                  'map output = outputs ordered by task_index (not completion order), SQL NULL output -> JSON null');
SELECT results_eq($$SELECT status, initial_tasks, remaining_tasks, remaining_deps FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000601' AND step_slug = 'm2'$$,
                  $$VALUES ('started'::text, 3, 3, 0)$$, 'dependent map learns its size from the completed parent tasks and starts');
SELECT results_eq($$SELECT task_index, input, flow_input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000601', 'm2') ORDER BY task_index$$,
                  $$VALUES (0, '"o0"'::jsonb, NULL::jsonb), (1, 'null', NULL), (2, '"o2"', NULL)$$,
                  'dependent map task i gets element i of the parent''s output');
SELECT results_eq($$SELECT t.task_index FROM pgflow.step_tasks t WHERE t.run_id = '00000000-0000-0000-0000-000000000601' AND t.step_slug = 'm2'
                    ORDER BY t.message_id$$,
                  $$VALUES (0), (1), (2)$$, 'message ids ascend with task_index');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-000000000601', 'm2', '[10, 20, 30]');
SELECT results_eq($$SELECT input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000601', 'sum')$$,
                  $$VALUES ('{"m2": [10, 20, 30]}'::jsonb)$$, 'single step after a map gets {map: array}');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000601', 'sum', 0, '60');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000601'$$,
                  $$VALUES ('completed'::text, '{"sum": 60}'::jsonb)$$, 'run completes');
SELECT is(pg_temp.archived_ids('mp'), pg_temp.task_msgs('00000000-0000-0000-0000-000000000601'),
          'all seven task messages archived');

---------------------------------------------------------------------------------------------------
-- Single -> map
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('sm');
SELECT pgflow.add_step('sm', 'list');
SELECT pgflow.add_step('sm', 'each', ARRAY['list'], step_type => 'map');
SELECT pgflow.add_step('sm', 'again', ARRAY['each'], step_type => 'map');
SELECT pgflow.add_step('sm', 'done', ARRAY['again']);
SELECT pgflow.add_step('sm', 'side');
SELECT pgflow.start_flow('sm', '{"go": true}', '00000000-0000-0000-0000-000000000602');
SELECT results_eq($$SELECT input, flow_input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000602', 'list')$$,
                  $$VALUES ('{}'::jsonb, '{"go": true}'::jsonb)$$, 'root single step: input {}, flow_input = run input');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000602', 'list', 0, '["x", "y"]');
SELECT results_eq($$SELECT status, initial_tasks, remaining_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000602' AND step_slug = 'each'$$,
                  $$VALUES ('started'::text, 2, 2)$$, 'map after a single step: size = length of the array output');
SELECT results_eq($$SELECT task_index, input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000602', 'each') ORDER BY task_index$$,
                  $$VALUES (0, '"x"'::jsonb), (1, '"y"')$$, 'its tasks get the elements');

-- Empty array from a single step: the maps downstream complete without tasks.
SELECT pgflow.start_flow('sm', '{}', '00000000-0000-0000-0000-000000000603');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000603', 'list');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000603', 'list', 0, '[]');
SELECT results_eq($$SELECT step_slug, status, initial_tasks, remaining_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000603' ORDER BY step_slug$$,
                  $$VALUES ('again'::text, 'completed'::text, 0, 0, '[]'::jsonb),
                           ('done', 'started', 1, 1, NULL),
                           ('each', 'completed', 0, 0, '[]'),
                           ('list', 'completed', 1, 0, '[]'),
                           ('side', 'started', 1, 1, NULL)$$,
                  'empty array: both maps complete with [] in one cascade; the single step after them starts');
SELECT is((SELECT remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000603'), 2,
          'remaining_steps 5 -> 2');
SELECT results_eq($$SELECT input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000603', 'done')$$,
                  $$VALUES ('{"again": []}'::jsonb)$$, 'done gets the empty array');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000603', 'done', 0, '"d"');
SELECT pg_temp.complete_step('00000000-0000-0000-0000-000000000603', 'side', '"s"');
SELECT results_eq($$SELECT status, output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000603'$$,
                  $$VALUES ('completed'::text, '{"done": "d", "side": "s"}'::jsonb)$$, 'run completes with both leaves');

-- Map task failure exhausts the map step and fails the run.
SELECT pgflow.create_flow('mf', 1);
SELECT pgflow.add_step('mf', 'm', step_type => 'map');
SELECT pgflow.start_flow('mf', '[1, 2, 3]', '00000000-0000-0000-0000-000000000604');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000604', 'm');
SELECT pgflow.complete_task('00000000-0000-0000-0000-000000000604', 'm', 0, '"ok"');
SELECT results_eq($$SELECT status FROM pgflow.fail_task('00000000-0000-0000-0000-000000000604', 'm', 1, 'bad item')$$,
                  $$VALUES ('failed'::text)$$, 'a map task fails for good (max_attempts 1)');
SELECT results_eq($$SELECT status, remaining_tasks, error_message, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000604' AND step_slug = 'm'$$,
                  $$VALUES ('failed'::text, 2, 'bad item'::text, NULL::jsonb)$$, 'the map step fails');
SELECT results_eq($$SELECT task_index, status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000604' ORDER BY task_index$$,
                  $$VALUES (0, 'completed'::text), (1, 'failed'), (2, 'started')$$, 'sibling tasks keep their status');
SELECT is(pg_temp.queued_ids('mf'), '{}'::bigint[], 'no message of the run is left in the queue');

---------------------------------------------------------------------------------------------------
-- Type violation
---------------------------------------------------------------------------------------------------
SELECT pgflow.create_flow('tv');
SELECT pgflow.add_step('tv', 'src', when_exhausted => 'skip');
SELECT pgflow.add_step('tv', 'fan', ARRAY['src'], step_type => 'map');
SELECT pgflow.add_step('tv', 'other');
SELECT pgflow.start_flow('tv', '{}', '00000000-0000-0000-0000-000000000605');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000605', 'src');
SELECT results_eq(
    $$SELECT * FROM pgflow.complete_task('00000000-0000-0000-0000-000000000605', 'src', 0, '{"not": "array"}')$$,
    $$SELECT 'tv'::text, '00000000-0000-0000-0000-000000000605'::uuid, 'src'::text, t.message_id, 0, 'failed'::text, 1,
             '[TYPE_VIOLATION] Produced object instead of array'::text, '{"not": "array"}'::jsonb, now(), NULL::timestamptz,
             now(), now(), '00000000-0000-0000-0000-0000000000aa'::uuid, 0, NULL::timestamptz, NULL::timestamptz
      FROM pgflow.step_tasks t WHERE t.run_id = '00000000-0000-0000-0000-000000000605' AND t.step_slug = 'src'$$,
    'type violation: task failed with its output and [TYPE_VIOLATION] Produced object instead of array');
SELECT results_eq($$SELECT status, failed_at, error_message, remaining_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000605' AND step_slug = 'src'$$,
                  $$VALUES ('failed'::text, now(), '[TYPE_VIOLATION] Map step fan expects array input but dependency src produced object'::text,
                            1, NULL::jsonb)$$,
                  'type violation: step failed with the map-step message; remaining_tasks untouched');
SELECT results_eq($$SELECT status, failed_at, remaining_steps FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000605'$$,
                  $$VALUES ('failed'::text, now(), 3)$$,
                  'type violation: run failed regardless of when_exhausted skip; remaining_steps untouched');
SELECT results_eq($$SELECT step_slug, status, initial_tasks FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000605' AND step_slug <> 'src' ORDER BY step_slug$$,
                  $$VALUES ('fan'::text, 'created'::text, NULL::int), ('other', 'started', 1)$$, 'other states untouched');
SELECT is(pg_temp.queued_ids('tv'), '{}'::bigint[], 'type violation: the run''s messages (this task and the sibling) are archived');
SELECT is(pg_temp.archived_ids('tv'), pg_temp.task_msgs('00000000-0000-0000-0000-000000000605'), 'into the archive');
SELECT results_eq($$SELECT status FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-000000000605' AND step_slug = 'other'$$,
                  $$VALUES ('queued'::text)$$, 'the sibling task row keeps its status');

CREATE FUNCTION pg_temp.violation(p_run uuid, p_output jsonb) RETURNS TABLE(task_error text, task_output jsonb, step_error text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgflow.start_flow('tv', '{}', p_run);
    PERFORM pg_temp.start_step(p_run, 'src');
    PERFORM pgflow.complete_task(p_run, 'src', 0, p_output);
    RETURN QUERY SELECT t.error_message, t.output, s.error_message
                 FROM pgflow.step_tasks t JOIN pgflow.step_states s USING (run_id, step_slug)
                 WHERE t.run_id = p_run AND t.step_slug = 'src';
END;
$$;
SELECT results_eq($$SELECT * FROM pg_temp.violation('00000000-0000-0000-0000-000000000606', NULL)$$,
                  $$VALUES ('[TYPE_VIOLATION] Produced null instead of array'::text, NULL::jsonb,
                            '[TYPE_VIOLATION] Map step fan expects array input but dependency src produced null'::text)$$,
                  'SQL NULL output: produced null');
SELECT results_eq($$SELECT * FROM pg_temp.violation('00000000-0000-0000-0000-000000000607', 'null')$$,
                  $$VALUES ('[TYPE_VIOLATION] Produced null instead of array'::text, 'null'::jsonb,
                            '[TYPE_VIOLATION] Map step fan expects array input but dependency src produced null'::text)$$,
                  'JSON null output: produced null');
SELECT results_eq($$SELECT * FROM pg_temp.violation('00000000-0000-0000-0000-000000000608', '"text"')$$,
                  $$VALUES ('[TYPE_VIOLATION] Produced string instead of array'::text, '"text"'::jsonb,
                            '[TYPE_VIOLATION] Map step fan expects array input but dependency src produced string'::text)$$,
                  'string output: produced string');
SELECT results_eq($$SELECT * FROM pg_temp.violation('00000000-0000-0000-0000-000000000609', '42')$$,
                  $$VALUES ('[TYPE_VIOLATION] Produced number instead of array'::text, '42'::jsonb,
                            '[TYPE_VIOLATION] Map step fan expects array input but dependency src produced number'::text)$$,
                  'number output: produced number');
SELECT results_eq($$SELECT * FROM pg_temp.violation('00000000-0000-0000-0000-000000000610', 'false')$$,
                  $$VALUES ('[TYPE_VIOLATION] Produced boolean instead of array'::text, 'false'::jsonb,
                            '[TYPE_VIOLATION] Map step fan expects array input but dependency src produced boolean'::text)$$,
                  'boolean output: produced boolean');
SELECT results_eq($$SELECT * FROM pg_temp.violation('00000000-0000-0000-0000-000000000611', '[]')$$,
                  $$VALUES (NULL::text, '[]'::jsonb, NULL::text)$$, 'an array output is no violation');
SELECT results_eq($$SELECT status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-000000000611'$$,
                  $$VALUES ('started'::text)$$, 'and the run goes on');
-- Late call after the violation: the run is failed, nothing changes.
SELECT results_eq($$SELECT status, error_message FROM pgflow.complete_task('00000000-0000-0000-0000-000000000605', 'src', 0, '[1]')$$,
                  $$VALUES ('failed'::text, '[TYPE_VIOLATION] Produced object instead of array'::text)$$,
                  'completing the violating task again changes nothing');

-- No violation when the map is not a dependent of this step or already knows its size.
SELECT pgflow.create_flow('tv2');
SELECT pgflow.add_step('tv2', 'src');
SELECT pgflow.add_step('tv2', 'plain', ARRAY['src']);
SELECT pgflow.start_flow('tv2', '{}', '00000000-0000-0000-0000-000000000612');
SELECT pg_temp.start_step('00000000-0000-0000-0000-000000000612', 'src');
SELECT results_eq($$SELECT status, output FROM pgflow.complete_task('00000000-0000-0000-0000-000000000612', 'src', 0, '{"obj": 1}')$$,
                  $$VALUES ('completed'::text, '{"obj": 1}'::jsonb)$$, 'no dependent map: any output is fine');
-- A map step's own output is never type-checked (its dependent map learns the size from the task count).
SELECT pgflow.create_flow('tv3');
SELECT pgflow.add_step('tv3', 'm', step_type => 'map');
SELECT pgflow.add_step('tv3', 'mm', ARRAY['m'], step_type => 'map');
SELECT pgflow.start_flow('tv3', '[1, 2]', '00000000-0000-0000-0000-000000000613');
SELECT pg_temp.complete_map('00000000-0000-0000-0000-000000000613', 'm', '[{"a": 1}, "b"]');
SELECT results_eq($$SELECT step_slug, status, initial_tasks, output FROM pgflow.step_states
                    WHERE run_id = '00000000-0000-0000-0000-000000000613' ORDER BY step_slug$$,
                  $$VALUES ('m'::text, 'completed'::text, 2, '[{"a": 1}, "b"]'::jsonb), ('mm', 'started', 2, NULL)$$,
                  'map -> map: non-array task outputs are fine, the child gets the parent task count');
SELECT results_eq($$SELECT task_index, input FROM pg_temp.start_step('00000000-0000-0000-0000-000000000613', 'mm') ORDER BY task_index$$,
                  $$VALUES (0, '{"a": 1}'::jsonb), (1, '"b"')$$, 'and element inputs');

SELECT * FROM finish();
ROLLBACK;
