# The fixture of the dump and upgrade suites: a database holding every kind of object, with runs
# in every state, and the checks that it goes on. Sourced by a suite that defines q and check.
# The upgrade suite creates it with the previous release: use only that release's functions here.

# Every row of every table of schemas pgflow and pgmq (read from the catalog, so a new table is
# compared without a change here), and the queue's id sequence: the comparison key.
snapshot() {
  q "$1" "
    SELECT string_agg(format('SELECT %L AS t, count(*) AS n, md5(coalesce(string_agg(x::text, ''|'' ORDER BY x::text), '''')) FROM %s x',
                             c.oid::regclass, c.oid::regclass), ' UNION ALL ' ORDER BY c.oid::regclass::text)
    FROM pg_class c WHERE c.relnamespace IN ('pgflow'::regnamespace, 'pgmq'::regnamespace) AND c.relkind IN ('r', 'p')
    \\gexec
    SELECT 'queue ids', last_value, is_called::text FROM pgmq.q_dumpflow_msg_id_seq"
}

# Works off every task of the flow until no run is started; returns the number of completions.
drain() {
  q "$1" "
    DO \$\$
    DECLARE
        w uuid := '00000000-0000-0000-0000-0000000000d1';
        t record;
        ids bigint[];
        rounds int := 0;
    BEGIN
        LOOP
            ids := ARRAY(SELECT msg_id FROM pgmq.read('dumpflow', 30, 100));
            EXIT WHEN cardinality(ids) = 0 OR rounds > 100;
            rounds := rounds + 1;
            FOR t IN SELECT * FROM pgflow.start_tasks('dumpflow', ids, w) LOOP
                PERFORM pgflow.complete_task(t.run_id, t.step_slug, t.task_index,
                    CASE t.step_slug WHEN 'list' THEN '[1, 2, 3, 4]'::jsonb
                                     WHEN 'double' THEN to_jsonb((t.input #>> '{}')::int * 2)
                                     ELSE jsonb_build_object('sum', (SELECT sum(x::int) FROM jsonb_array_elements_text(t.input -> 'double') x)) END);
            END LOOP;
        END LOOP;
    END \$\$;
    SELECT count(*) FILTER (WHERE status = 'completed') || '/' || count(*) FROM pgflow.runs WHERE flow_slug = 'dumpflow'"
}


# fixture_create DB: the flows, runs, handlers, pools, schedules and roles (pgflow_core installed).
fixture_create() {
  local db=$1
  q $db "
    SELECT pgflow.create_flow('dumpflow');
    SELECT pgflow.add_step('dumpflow', 'list');
    SELECT pgflow.add_step('dumpflow', 'double', ARRAY['list'], step_type => 'map');
    SELECT pgflow.add_step('dumpflow', 'total', ARRAY['double']);
    INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
    VALUES ('00000000-0000-0000-0000-0000000000d1', 'dumpflow', 'dump-test');
    SELECT pgflow.track_worker_function('dump-test');
    SELECT count(*) FROM generate_series(1, 5) i, pgflow.start_flow('dumpflow', jsonb_build_object('i', i));" >/dev/null
  # Take two runs to their map step, and one map task further: runs in three different states.
  q $db "
    DO \$\$
    DECLARE t record;
    BEGIN
        FOR t IN SELECT * FROM pgflow.start_tasks('dumpflow',
                     ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'list' ORDER BY run_id LIMIT 2),
                     '00000000-0000-0000-0000-0000000000d1') LOOP
            PERFORM pgflow.complete_task(t.run_id, t.step_slug, t.task_index, '[1, 2, 3, 4]');
        END LOOP;
        FOR t IN SELECT * FROM pgflow.start_tasks('dumpflow',
                     ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE step_slug = 'double' AND task_index = 0),
                     '00000000-0000-0000-0000-0000000000d1') LOOP
            PERFORM pgflow.complete_task(t.run_id, t.step_slug, t.task_index, '2');
        END LOOP;
    END \$\$;" >/dev/null
  # Every other kind of object: a SQL handler in a pool with a queued task, a flow with a priority
  # and a concurrency limit whose runs are paused, waiting and cancelled, a rerun with its
  # history, idempotency keys, and a schedule.
  q $db "
    SELECT pgflow.create_flow('dumpsql');
    SELECT pgflow.add_step('dumpsql', 's');
    SELECT pgflow.set_sql_handler('dumpsql', 's', 'SELECT jsonb_build_object(''got'', \$2)');
    SELECT pgflow.create_pool('dumppool', 1);
    SELECT pgflow.set_pool('dumpsql', 'dumppool');
    SELECT pgflow.start_flow('dumpsql', '{\"n\": 1}', '00000000-0000-0000-0000-00000000d501');
    SELECT pgflow.create_flow('dumpctl', max_attempts => 1);
    SELECT pgflow.add_step('dumpctl', 'a');
    SELECT pgflow.set_flow_priority('dumpctl', 5);
    SELECT pgflow.set_flow_concurrency('dumpctl', 1);
    SELECT pgflow.start_run('dumpctl', '{}', idempotency_key => 'k1', run_id => '00000000-0000-0000-0000-00000000d601');
    SELECT pgflow.start_run('dumpctl', '{}', idempotency_key => 'k2', run_id => '00000000-0000-0000-0000-00000000d602');
    SELECT pgflow.start_run('dumpctl', '{}', idempotency_key => 'k3', run_id => '00000000-0000-0000-0000-00000000d603');
    SELECT pgflow.pause_run('00000000-0000-0000-0000-00000000d601');
    SELECT pgflow.cancel_run('00000000-0000-0000-0000-00000000d603');
    SELECT pgflow.create_flow('dumpretry', max_attempts => 1);
    SELECT pgflow.add_step('dumpretry', 'a');
    SELECT pgflow.start_flow('dumpretry', '{}', '00000000-0000-0000-0000-00000000d701');
    SELECT pgflow.start_tasks('dumpretry', ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000d701'),
                              '00000000-0000-0000-0000-0000000000d1');
    SELECT pgflow.fail_task('00000000-0000-0000-0000-00000000d701', 'a', 0, 'first try');
    SELECT pgflow.retry_run('00000000-0000-0000-0000-00000000d701');
    SELECT pgflow.schedule_flow('dumpctl', '1 hour', '{\"scheduled\": true}');" >/dev/null
  # The least-privilege roles' grants in this database.
  q $db "SELECT pgflow.create_roles()" >/dev/null
  # A plain queue: a visible message, a delayed one and an archived one.
  q $db "SELECT pgmq.create('fx_plain');
         SELECT pgmq.send('fx_plain', '{\"k\": 1}');
         SELECT pgmq.send('fx_plain', '{\"k\": 2}', 3600);
         SELECT pgmq.archive('fx_plain', pgmq.send('fx_plain', '{\"k\": 3}'));" >/dev/null
  # The SQL step runs as a role of its own, which is dropped and made again (with a new OID)
  # between the dump and the restores: the restore must find it by name.
  q $db "CREATE ROLE pgflow_dump_role;
          UPDATE pgflow._step_handlers SET run_as = 'pgflow_dump_role' WHERE flow_slug = 'dumpsql';
          UPDATE pgflow._flow_owners SET owner = 'pgflow_dump_role' WHERE flow_slug = 'dumpsql';" >/dev/null
}

# fixture_check_source DB: the fixture holds what it should.
fixture_check_source() {
  local db=$1
  check "the source holds runs paused, waiting, cancelled and rerun, a SQL task, a pool and a schedule" \
    "d601:paused d602:waiting d603:cancelled d701:started|1|1|1" \
    "$(q $db "SELECT (SELECT string_agg(right(r::text, 4) || ':' || pgflow.run_status(r), ' ' ORDER BY r)
                 FROM unnest('{00000000-0000-0000-0000-00000000d601,00000000-0000-0000-0000-00000000d602,
                               00000000-0000-0000-0000-00000000d603,00000000-0000-0000-0000-00000000d701}'::uuid[]) r)
               || '|' || (SELECT count(*) FROM pgflow._local_tasks) || '|' || (SELECT count(*) FROM pgflow._schedules)
               || '|' || (SELECT count(*) FROM pgflow._task_history)")"
  check "the source has started runs, map tasks done and shards" "t" \
    "$(q $db "SELECT count(*) = 5 AND (SELECT count(*) FROM pgflow._step_shards) > 0
                      AND (SELECT count(*) FROM pgflow.step_tasks WHERE status = 'completed' AND flow_slug = 'dumpflow') = 4
                 FROM pgflow.runs WHERE flow_slug = 'dumpflow'")"
}

# fixture_goes_on DB: everything in the fixture is there ($before holds the snapshot taken
# after fixture_create) and goes on where it stopped.
fixture_goes_on() {
  local db=$1
  check "$db: every flow, step, dep, run, step state, task, shard, worker and message is there ($before: the source's snapshot)" "$before" "$(snapshot $db)"
  check "$db: the runs go on to completion" "5/5" "$(drain $db)"
  check "$db: start_flow works on the flow" "1" \
    "$(q $db "SELECT count(*) FROM pgflow.start_flow('dumpflow', '{}')")"
  check "$db: and that run completes too" "6/6" "$(drain $db)"
  check "$db: the SQL step's role and owner are found by name" "pgflow_dump_role|pgflow_dump_role" \
    "$(q $db "SELECT h.run_as::text || '|' || o.owner::text FROM pgflow._step_handlers h
              JOIN pgflow._flow_owners o USING (flow_slug) WHERE flow_slug = 'dumpsql'")"
  check "$db: the schedule, its flow's limit and priority are back" "dumpctl|1 hour|false|5|1" \
    "$(q $db "SELECT s.flow_slug || '|' || s.schedule || '|' || s.paused || '|' || o.priority || '|' || o.max_active_runs
                FROM pgflow.list_schedules() s JOIN pgflow._flow_options o USING (flow_slug)")"
  check "$db: the SQL task runs as its handler says (in its pool)" "completed|{\"s\": {\"got\": {\"n\": 1}}}" \
    "$(q $db "SELECT pgflow.run_local_tasks(); SELECT status || '|' || output FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-00000000d501'" | tail -1)"
  check "$db: the paused run resumes and completes; the waiting run then starts" "completed|started" \
    "$(q $db "SELECT pgflow.resume_run('00000000-0000-0000-0000-00000000d601');
              SELECT pgflow.start_tasks('dumpctl', ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000d601'),
                                        '00000000-0000-0000-0000-0000000000d1');
              SELECT pgflow.complete_task('00000000-0000-0000-0000-00000000d601', 'a', 0, '1');
              SELECT pgflow.run_status('00000000-0000-0000-0000-00000000d601') || '|' || pgflow.run_status('00000000-0000-0000-0000-00000000d602')" | tail -1)"
  check "$db: the cancelled run stays cancelled; the key k1 still names its run" "cancelled|00000000-0000-0000-0000-00000000d601" \
    "$(q $db "SELECT pgflow.run_status('00000000-0000-0000-0000-00000000d603') || '|' ||
                     (SELECT run_id FROM pgflow.start_run('dumpctl', '{}', idempotency_key => 'k1'))")"
  check "$db: the rerun keeps its history and completes" "1|completed" \
    "$(q $db "SELECT pgflow.start_tasks('dumpretry', ARRAY(SELECT message_id FROM pgflow.step_tasks WHERE run_id = '00000000-0000-0000-0000-00000000d701'),
                                        '00000000-0000-0000-0000-0000000000d1');
              SELECT pgflow.complete_task('00000000-0000-0000-0000-00000000d701', 'a', 0, '1');
              SELECT (SELECT count(*) FROM pgflow.run_history('00000000-0000-0000-0000-00000000d701') WHERE rerun = 1)
                     || '|' || status FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-00000000d701'" | tail -1)"
  check "$db: the schedule fires" "1" \
    "$(q $db "UPDATE pgflow._schedules SET created_at = created_at - interval '1 hour', next_fire_at = next_fire_at - interval '1 hour';
              SELECT pgflow._fire_schedules()" | tail -1)"
  check "$db: the plain queue's visible message is read; the delayed and archived ones stay" '{"k": 1}|1|1' \
    "$(q $db "SELECT message::text FROM pgmq.pop('fx_plain')")|$(q $db "SELECT count(*) FROM pgmq.q_fx_plain")|$(q $db "SELECT count(*) FROM pgmq.a_fx_plain")"
  check "$db: the invariants hold" "" "$(q $db "SELECT invariant || ': ' || detail FROM pgflow.check_invariants()")"
}
