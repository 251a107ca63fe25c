#!/usr/bin/env bash
# The background worker, in a cluster of its own with pgflow_core (and pg_cron) preloaded.
# Run as root:  bash tests/worker.sh      (or: SKIP_BUILD=1 bash scripts/test.sh worker)
#
# Cluster "pgflow_worker" on port $PGFLOW_WORKER_PORT (5442), made afresh on every run and dropped
# at the end; a standby of it on $PGFLOW_WORKER_STANDBY_PORT (5443). Prints TAP lines and exits
# non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=15
CLUSTER=pgflow_worker
PORT=${PGFLOW_WORKER_PORT:-5442}
DB=pgflow_worker_test
LOG=/var/log/postgresql/postgresql-$PG_MAJOR-$CLUSTER.log

n=0
failures=0
pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1"; echo "#   expected: $2"; echo "#   got:      $3"; fi
}

export PGOPTIONS="-c client_min_messages=warning -c lock_timeout=20s -c statement_timeout=120s"
psql_base=(psql -h localhost -p "$PORT" -U postgres -X -Atq -v ON_ERROR_STOP=1)
sql() { "${psql_base[@]}" -d "$DB" -c "$1" 2>&1; }
admin() { "${psql_base[@]}" -d postgres -c "$1" 2>&1; }

# wait_for SECONDS SQL-BOOLEAN: true when the condition held within the time.
wait_for() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt "$deadline" ]; do
    [ "$(sql "SELECT ($2)::boolean" 2>/dev/null)" == t ] && return 0
    sleep 0.2
  done
  return 1
}
worker_pid() { sql "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker' AND datname = '$DB'"; }

cleanup() { pg_dropcluster --stop $PG_MAJOR $CLUSTER >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Settings go into postgresql.conf when the cluster is made: cron.database_name can't be set
# with ALTER SYSTEM before pg_cron is loaded.
bash scripts/cluster.sh --fresh $CLUSTER $PORT "$DB" "shared_preload_libraries=pgflow_core,pg_cron" \
  "cron.database_name=$DB" "pgflow.worker_interval_ms=200" "pgflow.timeout_grace=1" \
  "pgflow.schedule_grace=1" >/dev/null \
  || { echo "not ok 1 - cluster starts"; exit 1; }
check "the cluster starts with pg_cron serving $DB" "pgflow_core,pg_cron|$DB" \
  "$(admin "SELECT current_setting('shared_preload_libraries') || '|' || current_setting('cron.database_name')")"
: > /dev/null
log_start=$(stat -c %s "$LOG" 2>/dev/null || echo 0)

# The launcher waits quietly while the database does not exist.
sleep 2
if tail -c +"$((log_start + 1))" "$LOG" | grep -qE 'pgflow_core.*(ERROR|FATAL|WARNING|exited with exit code [1-9])'; then
  fail "no error is logged while the database does not exist"
else
  pass "no error is logged while the database does not exist"
fi

admin "CREATE DATABASE $DB" >/dev/null
sql "CREATE EXTENSION pgflow_core" >/dev/null
sql "CREATE EXTENSION pg_cron" >/dev/null
if wait_for 25 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker' AND datname = '$DB')"; then
  pass "a worker serves the database once the extension exists"
else
  fail "a worker serves the database once the extension exists"
fi
check "the launcher runs" t "$(sql "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pgflow_core launcher')")"

sql "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES
       ('00000000-0000-0000-0000-00000000000a', 'any', 'dead'), ('00000000-0000-0000-0000-00000000000b', 'any', 'alive')" >/dev/null

# 1. Stalled task: started by a worker that disappears; requeued and finished by another.
sql "SELECT pgflow.create_flow('stall', timeout => 1); SELECT pgflow.add_step('stall', 'only')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('stall', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('stall', ARRAY(SELECT msg_id FROM pgmq.read('stall', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
if wait_for 15 "(SELECT status = 'queued' AND requeued_count = 1 FROM pgflow.step_tasks WHERE run_id = '$run')"; then
  pass "a stalled task is requeued by the worker"
else
  fail "a stalled task is requeued by the worker"
fi
started=$(sql "SELECT count(*) FROM pgflow.start_tasks('stall', ARRAY(SELECT msg_id FROM pgmq.read('stall', 60, 1)), '00000000-0000-0000-0000-00000000000b')")
check "another worker gets the requeued task at once" 1 "$started"
sql "SELECT count(*) FROM pgflow.complete_task('$run', 'only', 0, '\"done\"')" >/dev/null
check "the run completes; the restart counted as an attempt, the requeue once" "completed|2|1" \
  "$(sql "SELECT r.status || '|' || t.attempts_count || '|' || t.requeued_count FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"

# 2. Hard timeout: the step's own timeout (1 s) fails the attempt, which is retried.
sql "SELECT pgflow.create_flow('slow', max_attempts => 3, base_delay => 0, timeout => 60);
     SELECT pgflow.add_step('slow', 'only', timeout => 1)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('slow', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('slow', ARRAY(SELECT msg_id FROM pgmq.read('slow', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
if wait_for 15 "(SELECT status = 'queued' AND attempts_count = 1 FROM pgflow.step_tasks WHERE run_id = '$run')"; then
  pass "a timed-out task counts as a failed attempt and is queued for a retry"
else
  fail "a timed-out task counts as a failed attempt and is queued for a retry"
fi
check "the attempt failed with a timeout message" "Task timed out after 1 seconds" \
  "$(sql "SELECT error_message FROM pgflow.step_tasks WHERE run_id = '$run'")"
started=$(sql "SELECT count(*) FROM pgflow.start_tasks('slow', ARRAY(SELECT msg_id FROM pgmq.read('slow', 60, 1)), '00000000-0000-0000-0000-00000000000b')")
check "the retry can be started" 1 "$started"
sql "SELECT count(*) FROM pgflow.complete_task('$run', 'only', 0, '\"done\"')" >/dev/null
check "the retried run completes after two attempts" "completed|2" \
  "$(sql "SELECT r.status || '|' || t.attempts_count FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"

# 2b. Exhausted by timeouts: the step fails as when_exhausted says (here: the run fails).
sql "SELECT pgflow.create_flow('hang', max_attempts => 1, base_delay => 0, timeout => 60);
     SELECT pgflow.add_step('hang', 'only', timeout => 1)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('hang', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('hang', ARRAY(SELECT msg_id FROM pgmq.read('hang', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
if wait_for 15 "(SELECT status = 'failed' FROM pgflow.runs WHERE run_id = '$run')"; then
  pass "a task that times out on its last attempt fails the run"
else
  fail "a task that times out on its last attempt fails the run"
fi

# 2c. A step with a long timeout of its own is not stalled once the flow's (shorter) timeout passed.
sql "SELECT pgflow.create_flow('long', timeout => 1); SELECT pgflow.add_step('long', 'only', timeout => 600)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('long', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('long', ARRAY(SELECT msg_id FROM pgmq.read('long', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
sleep 4
check "a task of a step with timeout 600 still runs 4 s later (flow timeout 1 s, grace 1 s)" "started|0|1" \
  "$(sql "SELECT status || '|' || requeued_count || '|' || attempts_count FROM pgflow.step_tasks WHERE run_id = '$run'")"
check "and its message was not made visible again" 0 "$(sql "SELECT count(*) FROM pgmq.q_long WHERE vt <= clock_timestamp()")"

# 2d. A run locked by a long transaction does not hold up the worker's other work.
sql "SELECT pgflow.create_flow('locked', max_attempts => 3, base_delay => 0, timeout => 60);
     SELECT pgflow.add_step('locked', 'only', timeout => 1)" >/dev/null
run_a=$(sql "SELECT run_id FROM pgflow.start_flow('locked', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('locked', ARRAY(SELECT msg_id FROM pgmq.read('locked', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
"${psql_base[@]}" -d "$DB" -c "BEGIN; SELECT 1 FROM pgflow.runs WHERE run_id = '$run_a' FOR UPDATE; SELECT pg_sleep(12); COMMIT" >/dev/null 2>&1 &
holder=$!
sleep 0.5
run_b=$(sql "SELECT run_id FROM pgflow.start_flow('locked', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('locked', ARRAY(SELECT msg_id FROM pgmq.read('locked', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
if wait_for 8 "(SELECT status = 'queued' AND attempts_count = 1 FROM pgflow.step_tasks WHERE run_id = '$run_b')"; then
  pass "a timed-out task is handled while an older one's run is locked by another transaction"
else
  fail "a timed-out task is handled while an older one's run is locked by another transaction"
fi
check "the locked run's task is left alone while the lock is held" started \
  "$(sql "SELECT status FROM pgflow.step_tasks WHERE run_id = '$run_a'")"
wait $holder
if wait_for 8 "(SELECT status = 'queued' FROM pgflow.step_tasks WHERE run_id = '$run_a')"; then
  pass "once the lock is gone, the locked run's timed-out task is handled too"
else
  fail "once the lock is gone, the locked run's timed-out task is handled too"
fi

# 3. A failing iteration is logged and the worker goes on.
pid_before=$(worker_pid)
definition=$(sql "SELECT pg_get_functiondef('pgflow._requeue_stalled_tasks(interval, boolean)'::regprocedure)")
sql "CREATE OR REPLACE FUNCTION pgflow._requeue_stalled_tasks(grace interval, leave_step_timeouts boolean DEFAULT false) RETURNS integer
     LANGUAGE plpgsql AS \$\$ BEGIN RAISE EXCEPTION 'deliberate failure for the worker test'; END \$\$" >/dev/null
deadline=$((SECONDS + 10)); seen=no
while [ $SECONDS -lt $deadline ]; do
  if tail -c +"$((log_start + 1))" "$LOG" | grep -q 'WARNING:.*deliberate failure for the worker test'; then seen=yes; break; fi
  sleep 0.2
done
check "a failing iteration is logged as a WARNING" yes "$seen"
sleep 1
check "the worker survives failing iterations (same process)" "$pid_before" "$(worker_pid)"
printf '%s\n' "$definition" | "${psql_base[@]}" -d "$DB" >/dev/null
sql "SELECT pgflow.create_flow('after', timeout => 1); SELECT pgflow.add_step('after', 'only')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('after', '{}')")
sql "SELECT count(*) FROM pgflow.start_tasks('after', ARRAY(SELECT msg_id FROM pgmq.read('after', 60, 1)), '00000000-0000-0000-0000-00000000000a')" >/dev/null
if wait_for 15 "(SELECT requeued_count = 1 FROM pgflow.step_tasks WHERE run_id = '$run')"; then
  pass "after the failures the worker recovers stalled tasks again"
else
  fail "after the failures the worker recovers stalled tasks again"
fi

# 4. pg_cron: pruning scheduled with pg_cron runs (pg_cron 1.4 schedules by the minute).
sql "UPDATE pgflow.runs SET completed_at = now() - interval '2 days', started_at = now() - interval '3 days'
     WHERE status = 'completed'" >/dev/null
old=$(sql "SELECT count(*) FROM pgflow.runs WHERE completed_at < now() - interval '1 day'")
[ "$old" -gt 0 ] && pass "there are old completed runs to prune" || fail "there are old completed runs to prune"
sql "SELECT cron.schedule('pgflow_prune', '* * * * *', \$\$SELECT pgflow.prune_data_older_than('1 day')\$\$)" >/dev/null
if wait_for 75 "NOT EXISTS (SELECT 1 FROM pgflow.runs WHERE completed_at < now() - interval '1 day')"; then
  pass "pg_cron runs the scheduled prune: old runs are gone"
else
  fail "pg_cron runs the scheduled prune: old runs are gone"
fi
check "the prune left running and recent runs alone" 0 \
  "$(sql "SELECT count(*) FROM pgflow.runs WHERE status = 'started' AND run_id NOT IN (SELECT run_id FROM pgflow.step_tasks)")"
check "cron recorded a successful run of the job" t \
  "$(sql "SELECT EXISTS (SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'pgflow_prune' AND d.status = 'succeeded')")"
msg=$(sql "SELECT pgflow.setup_requeue_stalled_tasks_cron('15 seconds')" 2>&1)
case $msg in
  *"second"*) pass "setup_requeue_stalled_tasks_cron explains that pg_cron 1.4 has no second-level schedules" ;;
  *) fail "setup_requeue_stalled_tasks_cron explains that pg_cron 1.4 has no second-level schedules"; echo "#   got: $msg" ;;
esac
check "setup_requeue_stalled_tasks_cron accepts a cron expression" \
  "Scheduled pgflow_requeue_stalled_tasks (every * * * * *, job_id=" \
  "$(sql "SELECT pgflow.setup_requeue_stalled_tasks_cron('* * * * *')" | sed 's/job_id=.*/job_id=/')"

# 4b. Schedules: every second, on time, each tick once; across a stop of the server, a schedule
# that catches up fires every tick it missed, and one that skips leaves them out
# (pgflow.schedule_grace = 1 here).
sql "SELECT pgflow.create_flow('ticks'); SELECT pgflow.add_step('ticks', 'only');
     CREATE TABLE tick_schedules AS
       SELECT pgflow.schedule_flow('ticks', '* * * * * *', '{\"mode\": \"catch-up\"}', catch_up => true) AS catch_up,
              pgflow.schedule_flow('ticks', '* * * * * *', '{\"mode\": \"skip\"}') AS skip;
     CREATE VIEW tick_runs AS
       SELECT r.input ->> 'mode' AS mode, r.started_at,
              substring(o.idempotency_key FROM ' at (.*)\$')::timestamptz AS tick
       FROM pgflow.runs r JOIN pgflow._run_options o USING (run_id) WHERE r.flow_slug = 'ticks'" >/dev/null
sleep 3.5
check "both schedules fired 3 or 4 ticks in 3.5 seconds" "true|true" \
  "$(sql "SELECT string_agg(ok::text, '|' ORDER BY mode)
          FROM (SELECT mode, count(*) BETWEEN 3 AND 4 AS ok FROM tick_runs GROUP BY mode) c")"
check "each run started within 300 ms of its tick" t \
  "$(sql "SELECT bool_and(started_at - tick BETWEEN interval '0' AND interval '300 ms') FROM tick_runs")"
pg_ctlcluster $PG_MAJOR $CLUSTER stop
sleep 4
pg_ctlcluster $PG_MAJOR $CLUSTER start
wait_for 25 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker' AND datname = '$DB')" || true
sleep 2.5
check "no tick fired twice" 0 "$(sql "SELECT count(*) - count(DISTINCT (mode, tick)) FROM tick_runs")"
check "the schedule that catches up fired every tick across the stop, one second apart" "t" \
  "$(sql "SELECT count(*) = extract(epoch FROM max(tick) - min(tick)) + 1 AND count(*) >= 9 FROM tick_runs WHERE mode = 'catch-up'")"
check "the one that skips left out the ticks of the stop" "t" \
  "$(sql "SELECT max(gap) >= interval '3 seconds' FROM (SELECT tick - lag(tick) OVER (ORDER BY tick) AS gap FROM tick_runs WHERE mode = 'skip') g")"
check "list_schedules shows the last tick and run of each" "t" \
  "$(sql "SELECT bool_and(last_fire_at > now() - interval '3 seconds' AND last_run_status = 'started' AND next_fire_at > last_fire_at)
          FROM pgflow.list_schedules() WHERE flow_slug = 'ticks'")"
sql "SELECT pgflow.pause_schedule(catch_up), pgflow.pause_schedule(skip) FROM tick_schedules" >/dev/null
before=$(sql "SELECT count(*) FROM tick_runs")
sleep 1.5
check "paused schedules fire nothing" "$before" "$(sql "SELECT count(*) FROM tick_runs")"

# 5. SIGTERM stops the worker promptly; a restart brings it back.
pid=$(worker_pid)
t0=$(date +%s%N)
sql "SELECT pg_terminate_backend($pid)" >/dev/null
gone=no
for _ in $(seq 1 50); do
  if ! kill -0 "$pid" 2>/dev/null; then gone=yes; break; fi
  sleep 0.02
done
elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "SIGTERM stops the worker within a second (took ${elapsed_ms} ms)" yes "$gone"
pg_ctlcluster $PG_MAJOR $CLUSTER restart
if wait_for 25 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker' AND datname = '$DB')"; then
  pass "a server restart brings the worker back"
else
  fail "a server restart brings the worker back"
fi

# 5b. A crashed worker: the postmaster resets the cluster and everything comes back.
pid=$(worker_pid)
kill -9 "$pid" 2>/dev/null
sleep 1
for _ in $(seq 1 50); do pg_isready -q -h localhost -p $PORT && break; sleep 0.2; done
if wait_for 30 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker' AND datname = '$DB' AND pid <> $pid)"; then
  pass "after a worker crash (SIGKILL) a new worker serves the database"
else
  fail "after a worker crash (SIGKILL) a new worker serves the database"
fi

# 5c. The other cron helpers with pg_cron installed.
check "setup_ensure_workers_cron schedules both jobs" \
  "Scheduled pgflow_ensure_workers (every * * * * *, job_id=) and pgflow_cleanup_logs (hourly, job_id=)" \
  "$(sql "SELECT pgflow.setup_ensure_workers_cron('* * * * *')" | sed 's/job_id=[0-9]*/job_id=/g')"
check "the scheduled jobs are in cron.job" "pgflow_cleanup_logs|0 * * * *;pgflow_ensure_workers|* * * * *" \
  "$(sql "SELECT string_agg(jobname || '|' || schedule, ';' ORDER BY jobname) FROM cron.job WHERE jobname IN ('pgflow_ensure_workers', 'pgflow_cleanup_logs')")"
check "cleanup_ensure_workers_logs deletes old cron run details" 1 \
  "$(sql "INSERT INTO cron.job_run_details (jobid, runid, status, start_time, end_time) VALUES (1, 999999, 'succeeded', now() - interval '3 days', now() - interval '3 days');
          SELECT cron_deleted FROM pgflow.cleanup_ensure_workers_logs(24)")"

# 6. Switching it off.
admin "ALTER SYSTEM SET pgflow.worker_enabled = off" >/dev/null
admin "SELECT pg_reload_conf()" >/dev/null
if wait_for 10 "NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker')"; then
  pass "pgflow.worker_enabled = off stops the worker"
else
  fail "pgflow.worker_enabled = off stops the worker"
fi
admin "ALTER SYSTEM RESET pgflow.worker_enabled" >/dev/null
admin "SELECT pg_reload_conf()" >/dev/null

# 7. On a standby nothing runs; after promotion the worker starts.
STANDBY_DIR=/var/lib/postgresql/pgflow_worker_standby
STANDBY_PORT=${PGFLOW_WORKER_STANDBY_PORT:-5443}
rm -rf "$STANDBY_DIR"
hba=/etc/postgresql/$PG_MAJOR/$CLUSTER/pg_hba.conf
if ! grep -q '^host *replication' "$hba"; then
  echo "host    replication all 127.0.0.1/32   trust" >> "$hba"
  admin "SELECT pg_reload_conf()" >/dev/null
fi
if sudo -u postgres pg_basebackup -h localhost -p $PORT -U postgres -D "$STANDBY_DIR" -R -X stream >/dev/null 2>&1; then
  standby_ctl() { sudo -u postgres /usr/lib/postgresql/$PG_MAJOR/bin/pg_ctl -D "$STANDBY_DIR" -l "$STANDBY_DIR/log" -w "$@" >/dev/null 2>&1; }
  standby_ctl start -o "-p $STANDBY_PORT -c config_file=/etc/postgresql/$PG_MAJOR/$CLUSTER/postgresql.conf -c data_directory=$STANDBY_DIR -c hba_file=/etc/postgresql/$PG_MAJOR/$CLUSTER/pg_hba.conf -c external_pid_file= -c log_directory=$STANDBY_DIR -c logging_collector=off"
  ssql() { psql -h localhost -p $STANDBY_PORT -U postgres -X -Atq -d "$DB" -c "$1" 2>&1; }
  sleep 3
  check "the standby is in recovery" t "$(ssql "SELECT pg_is_in_recovery()")"
  sql "SELECT pgflow.schedule_flow('ticks', '* * * * * *', '{\"mode\": \"standby\"}')" >/dev/null
  check "no pgflow_core process runs on the standby" 0 \
    "$(ssql "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pgflow_core%'")"
  standby_ctl promote
  promoted=no
  for _ in $(seq 1 100); do
    [ "$(ssql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgflow_core worker' AND datname = '$DB'")" == 1 ] && { promoted=yes; break; }
    sleep 0.3
  done
  check "after promotion the worker serves the database" yes "$promoted"
  sleep 2.5
  check "the promoted server fires the schedule that was replicated to it, each tick once" "true|0" \
    "$(ssql "SELECT (max(tick) > now() - interval '2 seconds')::text || '|' || (count(*) - count(DISTINCT tick))
             FROM tick_runs WHERE mode = 'standby'")"
  standby_ctl stop -m fast
  sql "SELECT pgflow.pause_schedule(schedule_id) FROM pgflow.list_schedules() WHERE NOT paused" >/dev/null
else
  fail "a standby can be made with pg_basebackup"
fi
rm -rf "$STANDBY_DIR"

# 8. Postmaster death: the worker exits at once.
pid=$(worker_pid)
postmaster=$(head -1 /var/lib/postgresql/$PG_MAJOR/$CLUSTER/postmaster.pid)
if [ "$pid" -gt 0 ]; then
  kill -9 "$postmaster"
  gone=no
  for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then gone=yes; break; fi
    sleep 0.05
  done
  check "when the postmaster dies the worker exits within 2.5 s" yes "$gone"
  # Leftover backends end on their own; then the cluster can start again.
  sleep 1
  pkill -9 -f "postgres: $PG_MAJOR/$CLUSTER" 2>/dev/null
  sleep 1
  pg_ctlcluster $PG_MAJOR $CLUSTER start >/dev/null 2>&1
else
  fail "when the postmaster dies the worker exits within 2.5 s"
fi

# 9. Without the library preloaded, CREATE EXTENSION says so once.
admin "ALTER SYSTEM SET shared_preload_libraries = pg_cron" >/dev/null
pg_ctlcluster $PG_MAJOR $CLUSTER restart
admin "DROP DATABASE IF EXISTS ${DB}_plain WITH (FORCE)" >/dev/null
admin "CREATE DATABASE ${DB}_plain" >/dev/null
notice=$(PGOPTIONS="-c client_min_messages=notice" "${psql_base[@]}" -d "${DB}_plain" -c "CREATE EXTENSION pgflow_core" 2>&1)
check "without preloading, CREATE EXTENSION emits one NOTICE about the worker" 1 \
  "$(grep -c 'NOTICE:  pgflow_core: the background worker is not running' <<<"$notice")"
case $notice in
  *shared_preload_libraries*cron.schedule*) pass "the NOTICE says how to enable the worker and how to use pg_cron instead" ;;
  *) fail "the NOTICE says how to enable the worker and how to use pg_cron instead"; echo "#   got: $notice" ;;
esac
check "the extension works without the worker" completed \
  "$("${psql_base[@]}" -d "${DB}_plain" -c "SELECT pgflow.create_flow('p'); SELECT pgflow.add_step('p', 'x'); SELECT 1 FROM pgflow.start_flow('p', '{}', '00000000-0000-0000-0000-0000000000f1');
      INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ('00000000-0000-0000-0000-0000000000f2', 'p', 'w');
      SELECT count(*) FROM pgflow.start_tasks('p', ARRAY(SELECT msg_id FROM pgmq.read('p', 30, 1)), '00000000-0000-0000-0000-0000000000f2');
      SELECT count(*) FROM pgflow.complete_task('00000000-0000-0000-0000-0000000000f1', 'x', 0, '1');
      SELECT status FROM pgflow.runs" | tail -1)"
check "a poll without shared memory still works (plain polling)" 0 \
  "$("${psql_base[@]}" -d "${DB}_plain" -c "SELECT count(*) FROM pgmq.read_with_poll('p', 30, 1, 1, 50)")"
admin "DROP DATABASE ${DB}_plain WITH (FORCE)" >/dev/null
admin "ALTER SYSTEM SET shared_preload_libraries = pgflow_core, pg_cron" >/dev/null

if tail -c +"$((log_start + 1))" "$LOG" | grep -qE 'pgflow_core (launcher|worker).*exited with exit code [1-9]'; then
  fail "no pgflow_core process exited with an error during the test"
  tail -c +"$((log_start + 1))" "$LOG" | grep -B1 -E 'pgflow_core (launcher|worker).*exited with exit code [1-9]' | sed 's/^/#   /' | head -10
else
  pass "no pgflow_core process exited with an error during the test"
fi

echo "1..$n"
[ "$failures" -eq 0 ]
