-- Big map steps (1,000 tasks or more): task rows are inserted in bulk without per-row
-- foreign-key checks, unless pgflow.step_tasks has user triggers, which must still fire.
BEGIN;
SELECT plan(9);

SELECT pgflow.create_flow('big');
SELECT pgflow.add_step('big', 'items', step_type => 'map');
SELECT pgflow.add_step('big', 'total', ARRAY['items']);

SELECT pgflow.start_flow('big', (SELECT jsonb_agg(i) FROM generate_series(1, 1200) i),
                         '00000000-0000-0000-0000-00000000b001');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000b001'), 1200,
          'a map over 1,200 elements has 1,200 task rows');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks t JOIN pgmq.q_big q ON q.msg_id = t.message_id
           WHERE t.run_id = '00000000-0000-0000-0000-00000000b001'
             AND (q.message ->> 'task_index')::int = t.task_index
             AND q.message ->> 'run_id' = t.run_id::text AND t.status = 'queued'), 1200,
          'each task row holds the message with its own task_index, queued');
SELECT ok((SELECT bool_and(a.message_id < b.message_id) FROM pgflow.step_tasks a
           JOIN pgflow.step_tasks b ON b.run_id = a.run_id AND b.step_slug = a.step_slug AND b.task_index = a.task_index + 1
           WHERE a.run_id = '00000000-0000-0000-0000-00000000b001'),
          'message ids ascend with task_index');
SELECT is((SELECT sum(remaining)::int FROM pgflow._step_shards WHERE run_id = '00000000-0000-0000-0000-00000000b001'), 1200,
          'the step''s countdown shards add up to its tasks');

-- _insert_map_tasks only inserts for a started step with that many tasks.
SELECT lives_ok($$SELECT pgflow._insert_map_tasks('big', '00000000-0000-0000-0000-00000000b001', 'total', ARRAY[1, 2]::bigint[])$$,
                '_insert_map_tasks for a step that is not started');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000b001' AND step_slug = 'total'), 0,
          '... inserts nothing');

-- With a user trigger on step_tasks, the rows are inserted normally and the trigger fires.
CREATE TABLE pg_temp.seen (n integer);
CREATE FUNCTION pg_temp.count_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO pg_temp.seen VALUES (NEW.task_index); RETURN NEW; END $$;
CREATE TRIGGER user_trigger AFTER INSERT ON pgflow.step_tasks FOR EACH ROW EXECUTE FUNCTION pg_temp.count_task();
SELECT pgflow.start_flow('big', (SELECT jsonb_agg(i) FROM generate_series(1, 1000) i),
                         '00000000-0000-0000-0000-00000000b002');
SELECT is((SELECT count(*)::int FROM pg_temp.seen), 1000, 'a user trigger on step_tasks fires for every task row');
SELECT is((SELECT count(*)::int FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000b002'), 1000,
          'and all 1,000 task rows are there');
SELECT throws_ok($$INSERT INTO pgflow.step_tasks (flow_slug, run_id, step_slug, task_index)
                   VALUES ('big', '00000000-0000-0000-0000-0000000000ff', 'items', 0)$$,
                 '23503', NULL, 'direct inserts still get their foreign-key checks');

SELECT * FROM finish();
ROLLBACK;
