#!/usr/bin/env bash
# pg_dump and pg_restore keep every flow, run, step state, task, worker and message, and the
# restored runs go on. Plain (psql) and custom (pg_restore) formats.
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh dump   (uses the suite cluster on $PGFLOW_TEST_PORT)
# Prints TAP lines ("ok N - ...", "not ok N - ...") and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

PORT=${PGFLOW_TEST_PORT:-5439}
SRC=pgflow_dump_src
WORK=$(mktemp -d)
n=0
failures=0

pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass "$1"; else
    fail "$1"; echo "#   expected:"; sed 's/^/#   /' <<<"$2"; echo "#   got:"; sed 's/^/#   /' <<<"$3"
  fi
}

export PGOPTIONS="-c client_min_messages=warning -c lock_timeout=20s -c statement_timeout=120s"
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres
q() { local db=$1; shift; psql -X -Atq -v ON_ERROR_STOP=1 -d "$db" -c "$1" 2>&1; }
recreate() { q postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null; q postgres "CREATE DATABASE $1" >/dev/null; }
trap 'rm -rf "$WORK"; for d in $SRC pgflow_dump_plain pgflow_dump_custom; do q postgres "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null; done
      q postgres "DROP ROLE IF EXISTS pgflow_dump_role" >/dev/null' EXIT

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

recreate $SRC
q $SRC "CREATE EXTENSION pgflow_core" >/dev/null
q $SRC "
  SELECT pgflow.create_flow('dumpflow');
  SELECT pgflow.add_step('dumpflow', 'list');
  SELECT pgflow.add_step('dumpflow', 'double', ARRAY['list'], step_type => 'map');
  SELECT pgflow.add_step('dumpflow', 'total', ARRAY['double']);
  INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
  VALUES ('00000000-0000-0000-0000-0000000000d1', 'dumpflow', 'dump-test');
  SELECT pgflow.track_worker_function('dump-test');
  SELECT count(*) FROM generate_series(1, 5) i, pgflow.start_flow('dumpflow', jsonb_build_object('i', i));" >/dev/null
# Take two runs to their map step, and one map task further: runs in three different states.
q $SRC "
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
q $SRC "
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
# The SQL step runs as a role of its own, which is dropped and made again (with a new OID)
# between the dump and the restores: the restore must find it by name.
q $SRC "CREATE ROLE pgflow_dump_role;
        UPDATE pgflow._step_handlers SET run_as = 'pgflow_dump_role' WHERE flow_slug = 'dumpsql';
        UPDATE pgflow._flow_owners SET owner = 'pgflow_dump_role' WHERE flow_slug = 'dumpsql';" >/dev/null
check "the source holds runs paused, waiting, cancelled and rerun, a SQL task, a pool and a schedule" \
  "d601:paused d602:waiting d603:cancelled d701:started|1|1|1" \
  "$(q $SRC "SELECT (SELECT string_agg(right(r::text, 4) || ':' || pgflow.run_status(r), ' ' ORDER BY r)
               FROM unnest('{00000000-0000-0000-0000-00000000d601,00000000-0000-0000-0000-00000000d602,
                             00000000-0000-0000-0000-00000000d603,00000000-0000-0000-0000-00000000d701}'::uuid[]) r)
             || '|' || (SELECT count(*) FROM pgflow._local_tasks) || '|' || (SELECT count(*) FROM pgflow._schedules)
             || '|' || (SELECT count(*) FROM pgflow._task_history)")"
check "the source has started runs, map tasks done and shards" "t" \
  "$(q $SRC "SELECT count(*) = 5 AND (SELECT count(*) FROM pgflow._step_shards) > 0
                    AND (SELECT count(*) FROM pgflow.step_tasks WHERE status = 'completed' AND flow_slug = 'dumpflow') = 4
               FROM pgflow.runs WHERE flow_slug = 'dumpflow'")"
before=$(snapshot $SRC)

pg_dump -d $SRC -f "$WORK/plain.sql" 2>"$WORK/plain.err" \
  && pass "pg_dump, plain format" || { fail "pg_dump, plain format"; sed 's/^/#   /' "$WORK/plain.err"; }
pg_dump -d $SRC -Fc -f "$WORK/custom.dump" 2>"$WORK/custom.err" \
  && pass "pg_dump, custom format" || { fail "pg_dump, custom format"; sed 's/^/#   /' "$WORK/custom.err"; }

old_oid=$(q postgres "SELECT 'pgflow_dump_role'::regrole::oid")
q postgres "DROP ROLE pgflow_dump_role; CREATE ROLE pgflow_dump_role" >/dev/null
check "the handler's role is made again with another OID" "t" \
  "$(q postgres "SELECT 'pgflow_dump_role'::regrole::oid <> $old_oid")"
recreate pgflow_dump_plain
psql -X -q -v ON_ERROR_STOP=1 -d pgflow_dump_plain -f "$WORK/plain.sql" >"$WORK/plain-restore.log" 2>&1 \
  && pass "the plain dump restores with psql, without errors" \
  || { fail "the plain dump restores with psql, without errors"; sed 's/^/#   /' "$WORK/plain-restore.log" | tail -20; }
recreate pgflow_dump_custom
pg_restore -d pgflow_dump_custom --exit-on-error "$WORK/custom.dump" >"$WORK/custom-restore.log" 2>&1 \
  && pass "the custom dump restores with pg_restore, without errors" \
  || { fail "the custom dump restores with pg_restore, without errors"; sed 's/^/#   /' "$WORK/custom-restore.log" | tail -20; }

for db in pgflow_dump_plain pgflow_dump_custom; do
  check "$db: every flow, step, dep, run, step state, task, shard, worker and message is restored" "$before" "$(snapshot $db)"
  check "$db: the restored runs go on to completion" "5/5" "$(drain $db)"
  check "$db: start_flow works on the restored flow" "1" \
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
  check "$db: the invariants hold" "" "$(q $db "SELECT invariant || ': ' || detail FROM pgflow.check_invariants()")"
done
check "the source runs go on as well (same outputs as the restored ones)" "5/5" "$(drain $SRC)"
check "the restored outputs equal the source's" \
  "$(q $SRC "SELECT string_agg(output::text, ',' ORDER BY input::text) FROM pgflow.runs WHERE flow_slug = 'dumpflow'")" \
  "$(q pgflow_dump_custom "SELECT string_agg(output::text, ',' ORDER BY input::text) FROM pgflow.runs WHERE flow_slug = 'dumpflow' AND input <> '{}'")"

echo "1..$n"
[ "$failures" -eq 0 ]
