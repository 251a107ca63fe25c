#!/usr/bin/env bash
# Steps run by the database itself, end to end with the executor background workers: SQL and
# program handlers, pools observed in pg_stat_activity, timeouts, cancels, SIGTERM and SIGKILL of
# an executing backend, ad-hoc tasks and targets in other databases.
# Run as root:  bash tests/executor.sh      (or: SKIP_BUILD=1 bash scripts/test.sh executor)
#
# Cluster "pgflow_executor" on port $PGFLOW_EXECUTOR_PORT (5446), made afresh on every run and
# dropped at the end. Prints TAP lines and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=15
CLUSTER=pgflow_executor
PORT=${PGFLOW_EXECUTOR_PORT:-5446}
DB=pgflow_executor_test
OTHER=pgflow_executor_other

n=0
failures=0
pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1"; echo "#   expected: $2"; echo "#   got:      $3"; fi
}
ok_if() { # ok_if DESCRIPTION SQL-BOOLEAN
  local got; got=$(sql "SELECT ($2)::boolean")
  if [ "$got" == t ]; then pass "$1"; else fail "$1"; echo "#   condition: $2"; echo "#   got: $got"; fi
}

export PGOPTIONS="-c client_min_messages=warning"
psql_base=(psql -h localhost -p "$PORT" -U postgres -X -Atq -v ON_ERROR_STOP=1)
sql() { "${psql_base[@]}" -d "$DB" -c "$1" 2>&1; }
other() { "${psql_base[@]}" -d "$OTHER" -c "$1" 2>&1; }
admin() { "${psql_base[@]}" -d postgres -c "$1" 2>&1; }

# wait_for SECONDS SQL-BOOLEAN: true when the condition held within the time.
wait_for() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt "$deadline" ]; do
    [ "$(sql "SELECT ($2)::boolean" 2>/dev/null)" == t ] && return 0
    sleep 0.1
  done
  return 1
}
run_done() { wait_for "$2" "(SELECT status <> 'started' FROM pgflow.runs WHERE run_id = '$1')"; }

cleanup() { pg_dropcluster --stop $PG_MAJOR $CLUSTER >/dev/null 2>&1 || true; }
trap cleanup EXIT

bash scripts/cluster.sh --fresh $CLUSTER "$PORT" "$DB" "pgflow.executors=4" "max_worker_processes=16" \
  "pgflow.worker_interval_ms=200" >/dev/null || { echo "not ok 1 - cluster starts"; exit 1; }
admin "CREATE DATABASE $DB" >/dev/null
admin "CREATE DATABASE $OTHER" >/dev/null
sql "CREATE EXTENSION pgflow_core; CREATE EXTENSION dblink" >/dev/null
executors="SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgflow_core executor' AND datname = '$DB'"
if wait_for 25 "($executors) = 4"; then pass "four executors serve the database (pgflow.executors = 4)"
else fail "four executors serve the database (pgflow.executors = 4)"; fi

# 1. A pure-SQL ETL flow completes with no external worker.
sql "CREATE TABLE src (id int PRIMARY KEY, name text);
     CREATE TABLE dst (id int PRIMARY KEY, name text, loaded_by int);
     INSERT INTO src SELECT g, 'item ' || g FROM generate_series(1, 20) g;
     SELECT pgflow.create_flow('etl');
     SELECT pgflow.add_step('etl', 'extract');
     SELECT pgflow.add_step('etl', 'transform', ARRAY['extract'], step_type => 'map');
     SELECT pgflow.add_step('etl', 'load', ARRAY['transform']);
     SELECT pgflow.set_sql_handler('etl', 'extract', 'SELECT jsonb_agg(to_jsonb(s) ORDER BY id) FROM src s');
     SELECT pgflow.set_sql_handler('etl', 'transform', \$\$SELECT \$1 || jsonb_build_object('name', upper(\$1->>'name'))\$\$);
     SELECT pgflow.set_sql_handler('etl', 'load', \$\$INSERT INTO dst SELECT (e->>'id')::int, e->>'name', pg_backend_pid()
                                                    FROM jsonb_array_elements(\$1->'transform') e RETURNING id\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('etl', '{}')")
run_done "$run" 20
check "the ETL run completes with the executors alone" "completed|20" \
  "$(sql "SELECT status || '|' || jsonb_array_length(output->'load') FROM pgflow.runs WHERE run_id = '$run'")"
check "load inserted every transformed row" "20|ITEM 7" "$(sql "SELECT count(*) || '|' || max(name) FILTER (WHERE id = 7) FROM dst")"
check "no external worker took part" 0 "$(sql "SELECT count(*) FROM pgflow.step_tasks WHERE run_id = '$run' AND last_worker_id IS NOT NULL")"
check "and the flow's queue never had a message" "0|0" "$(sql "SELECT (SELECT count(*) FROM pgmq.q_etl) || '|' || (SELECT count(*) FROM pgmq.a_etl)")"

# 2. Start latency: an idle executor is woken by the commit, not by its one-second poll.
sql "SELECT pgflow.create_flow('quick'); SELECT pgflow.add_step('quick', 'one');
     SELECT pgflow.set_sql_handler('quick', 'one', 'SELECT 1')" >/dev/null
for _ in $(seq 1 10); do
  run=$(sql "SELECT run_id FROM pgflow.start_flow('quick', '{}')"); run_done "$run" 5; sleep 0.3
done
latency=$(sql "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at) * 1000))
               FROM pgflow.runs WHERE flow_slug = 'quick'")
ok_if "an idle executor starts a task within milliseconds of the commit (median ${latency} ms over 10 runs)" "$latency < 50"

# 3. A map over 1,000 elements runs as 1,000 tasks on several executors.
sql "SELECT pgflow.create_flow('wide'); SELECT pgflow.add_step('wide', 'each', step_type => 'map');
     SELECT pgflow.set_sql_handler('wide', 'each', 'SELECT pg_backend_pid()')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('wide', (SELECT jsonb_agg(g) FROM generate_series(1, 1000) g))")
run_done "$run" 60
check "the map run completes with 1,000 completed tasks" "completed|1000" \
  "$(sql "SELECT r.status || '|' || count(*) FILTER (WHERE t.status = 'completed') FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run' GROUP BY r.status")"
ok_if "its tasks ran on several executing backends" \
  "(SELECT count(DISTINCT output) FROM pgflow.step_tasks WHERE run_id = '$run') >= 2"

# 4. SQL and external steps in one flow; an external reader never receives the SQL task.
sql "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ('00000000-0000-0000-0000-0000000000e1', 'mix', 'test');
     SELECT pgflow.create_flow('mix'); SELECT pgflow.add_step('mix', 'fetch');
     SELECT pgflow.add_step('mix', 'double', ARRAY['fetch']); SELECT pgflow.add_step('mix', 'report', ARRAY['double']);
     SELECT pgflow.set_sql_handler('mix', 'double', \$\$SELECT (\$1->'fetch'->>'n')::int * 2\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('mix', '{}')")
external_step() { # external_step STEP OUTPUT: read one message, start and complete its task as a worker would
  local msg; msg=$(sql "SELECT msg_id FROM pgmq.read_with_poll('mix', 30, 1, 3)")
  [ -z "$msg" ] && { echo none; return; }
  sql "SELECT step_slug FROM pgflow.start_tasks('mix', ARRAY[$msg]::bigint[], '00000000-0000-0000-0000-0000000000e1')" | tr -d '\n'
  sql "SELECT pgflow.complete_task('$run', '$1', 0, '$2')" >/dev/null
}
check "the external worker gets the first step" fetch "$(external_step fetch '{"n": 21}')"
check "then the step after the SQL step, never the SQL step itself" report "$(external_step report '"ok"')"
check "the mixed run completes; the SQL step's output reached the external step" "completed|42" \
  "$(sql "SELECT r.status || '|' || s.output FROM pgflow.runs r JOIN pgflow.step_states s USING (run_id) WHERE r.run_id = '$run' AND s.step_slug = 'double'")"

# 5. A pool of 3, observed: 30 one-second tasks never run more than 3 at once.
sql "SELECT pgflow.create_pool('three', 3); SELECT pgflow.create_flow('sleepy');
     SELECT pgflow.add_step('sleepy', 'nap', step_type => 'map');
     SELECT pgflow.set_sql_handler('sleepy', 'nap', 'SELECT pg_sleep(1)'); SELECT pgflow.set_pool('sleepy', 'three')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('sleepy', (SELECT jsonb_agg(g) FROM generate_series(1, 30) g))")
max=0; samples=0
running="SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgflow_core executor' AND query LIKE 'pgflow task sleepy/nap%' AND state = 'active'"
while [ "$(sql "SELECT status FROM pgflow.runs WHERE run_id = '$run'")" == started ] && [ $samples -lt 400 ]; do
  c=$(sql "$running"); samples=$((samples + 1)); [ "$c" -gt "$max" ] && max=$c; sleep 0.1
done
check "pg_stat_activity shows at most and at least 3 of them running at once ($samples samples)" 3 "$max"
check "all 30 completed" "completed|30" \
  "$(sql "SELECT r.status || '|' || count(*) FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run' AND t.status = 'completed' GROUP BY r.status")"
ok_if "and it took about ten seconds (30 tasks / 3 slots; completed_at is the start of the last task's transaction)" \
  "(SELECT completed_at - started_at BETWEEN interval '8.5 seconds' AND interval '30 seconds' FROM pgflow.runs WHERE run_id = '$run')"

# 6. A failing SQL step leaves no effects, retries, then fails the run.
sql "CREATE TABLE effects (note text);
     SELECT pgflow.create_flow('bad', max_attempts => 3, base_delay => 0); SELECT pgflow.add_step('bad', 'boom');
     SELECT pgflow.set_sql_handler('bad', 'boom', \$\$INSERT INTO effects VALUES ('bad'); SELECT 1 / 0\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('bad', '{}')")
run_done "$run" 20
check "the run fails after three attempts with the handler's error" "failed|3|division by zero" \
  "$(sql "SELECT r.status || '|' || t.attempts_count || '|' || t.error_message FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"
check "none of the three attempts left an effect" 0 "$(sql "SELECT count(*) FROM effects WHERE note = 'bad'")"

# 7. A long SQL step is cancelled at its timeout.
sql "SELECT pgflow.create_flow('long', max_attempts => 1); SELECT pgflow.add_step('long', 'wait', timeout => 1);
     SELECT pgflow.set_sql_handler('long', 'wait', \$\$INSERT INTO effects VALUES ('long'); SELECT pg_sleep(60)\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('long', '{}')")
run_done "$run" 10
check "the long step fails with the timeout message" "failed|Task timed out after 1 seconds" \
  "$(sql "SELECT r.status || '|' || t.error_message FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"
ok_if "after about one second" "(SELECT failed_at - started_at < interval '5 seconds' FROM pgflow.runs WHERE run_id = '$run')"
check "and left no effect" 0 "$(sql "SELECT count(*) FROM effects WHERE note = 'long'")"

# 8. A cancel request (pg_cancel_backend) fails the attempt.
sql "SELECT pgflow.create_flow('cancel', max_attempts => 1); SELECT pgflow.add_step('cancel', 'wait', timeout => 120);
     SELECT pgflow.set_sql_handler('cancel', 'wait', 'SELECT pg_sleep(60)')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('cancel', '{}')")
wait_for 10 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'pgflow task cancel/wait%')"
sql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'pgflow task cancel/wait%'" >/dev/null
run_done "$run" 10
check "a cancelled SQL task counts as a failed attempt" "failed|canceling statement due to user request" \
  "$(sql "SELECT r.status || '|' || t.error_message FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"

# 9. Program steps: success, failure, killed at the timeout.
sql "SELECT pgflow.create_flow('prog', max_attempts => 1);
     SELECT pgflow.add_step('prog', 'echo'); SELECT pgflow.add_step('prog', 'env', ARRAY['echo']);
     SELECT pgflow.set_program_handler('prog', 'echo', ARRAY['/bin/sh', '-c', 'printf ''{\"stdin\": %s}'' \"\$(cat)\"']);
     SELECT pgflow.set_program_handler('prog', 'env', ARRAY['/bin/sh', '-c', 'printf ''{\"step\": \"%s\", \"flow\": %s}'' \"\$PGFLOW_STEP_SLUG\" \"\$PGFLOW_FLOW_INPUT\"'])" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('prog', '{\"k\": 1}')")
run_done "$run" 10
check "a program's stdout is its output, its stdin the task's input" '{"stdin": {}}' \
  "$(sql "SELECT output FROM pgflow.step_states WHERE run_id = '$run' AND step_slug = 'echo'")"
check "its environment names the step and carries the flow input" '{"flow": {"k": 1}, "step": "env"}' \
  "$(sql "SELECT output FROM pgflow.step_states WHERE run_id = '$run' AND step_slug = 'env'")"
sql "SELECT pgflow.create_flow('progfail', max_attempts => 1); SELECT pgflow.add_step('progfail', 'boom');
     SELECT pgflow.set_program_handler('progfail', 'boom', ARRAY['/bin/sh', '-c', 'echo starting; echo something broke >&2; exit 3'])" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('progfail', '{}')")
run_done "$run" 10
check "a non-zero exit fails the attempt with the tail of stderr" 'failed|program "/bin/sh" failed with exit code 3: something broke' \
  "$(sql "SELECT r.status || '|' || t.error_message FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"
sql "SELECT pgflow.create_flow('progslow', max_attempts => 1); SELECT pgflow.add_step('progslow', 'nap', timeout => 1);
     SELECT pgflow.set_program_handler('progslow', 'nap', ARRAY['/bin/sh', '-c', 'sleep 47.25; echo 1'])" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('progslow', '{}')")
run_done "$run" 10
check "a program running past its timeout fails the attempt with the timeout message" "failed|Task timed out after 1 seconds" \
  "$(sql "SELECT r.status || '|' || t.error_message FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$run'")"
sleep 0.3
check "and it was killed, with its children" 0 "$(pgrep -fc 'sleep 47.25')"

# 10. SIGKILL of the backend running a handler: the server restarts, the task runs again,
# its effect happens exactly once.
sql "CREATE TABLE kill_effects (task int, note text);
     SELECT pgflow.create_flow('kill'); SELECT pgflow.add_step('kill', 'slow');
     SELECT pgflow.set_sql_handler('kill', 'slow', \$\$INSERT INTO kill_effects VALUES (0, 'slow'); SELECT pg_sleep(2)\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('kill', '{}')")
wait_for 10 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'pgflow task kill/slow%' AND state = 'active')"
pid=$(sql "SELECT pid FROM pg_stat_activity WHERE query LIKE 'pgflow task kill/slow%' LIMIT 1")
kill -9 "$pid"
sleep 2
for _ in $(seq 1 50); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
run_done "$run" 40
check "after SIGKILL of the executing backend, the run completes" completed "$(sql "SELECT status FROM pgflow.runs WHERE run_id = '$run'")"
check "and the handler's effect is there exactly once" 1 "$(sql "SELECT count(*) FROM kill_effects WHERE note = 'slow'")"
sql "SELECT pgflow.create_flow('killmap'); SELECT pgflow.add_step('killmap', 'each', step_type => 'map');
     SELECT pgflow.set_sql_handler('killmap', 'each', \$\$INSERT INTO kill_effects SELECT (\$1)::int, 'map'; SELECT pg_sleep(0.01)\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('killmap', (SELECT jsonb_agg(g) FROM generate_series(1, 500) g))")
wait_for 20 "(SELECT count(*) FROM kill_effects WHERE note = 'map') > 50"
sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgflow_core executor' AND datname = '$DB' LIMIT 1" | xargs -r kill -9
sleep 2
for _ in $(seq 1 50); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
run_done "$run" 60
check "a map killed midway completes" completed "$(sql "SELECT status FROM pgflow.runs WHERE run_id = '$run'")"
check "each of its 500 effects happened exactly once" "500|500" \
  "$(sql "SELECT count(*) || '|' || count(DISTINCT task) FROM kill_effects WHERE note = 'map'")"

# 11. SIGTERM (pg_terminate_backend) of an executor mid-task: rolled back and run again.
sql "SELECT pgflow.create_flow('term'); SELECT pgflow.add_step('term', 'slow');
     SELECT pgflow.set_sql_handler('term', 'slow', \$\$INSERT INTO kill_effects VALUES (0, 'term'); SELECT pg_sleep(2)\$\$)" >/dev/null
wait_for 30 "($executors) = 4"
run=$(sql "SELECT run_id FROM pgflow.start_flow('term', '{}')")
wait_for 10 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'pgflow task term/slow%' AND state = 'active')"
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'pgflow task term/slow%'" >/dev/null
run_done "$run" 40
check "a terminated executor's task runs again and completes, its effect once" "completed|1" \
  "$(sql "SELECT r.status || '|' || (SELECT count(*) FROM kill_effects WHERE note = 'term') FROM pgflow.runs r WHERE r.run_id = '$run'")"

# 12. Ad-hoc tasks: 1,000 queued at once all complete within the pool's limit of 2.
sql "SELECT pgflow.create_pool('two', 2); SELECT pgflow.push_sql('SELECT 1');
     SELECT pgflow.set_pool('pgflow_adhoc', 'two')" >/dev/null
sql "SELECT count(*) FROM pgflow.push_sql_batch(ARRAY(
       SELECT 'SELECT count(*) FROM pg_stat_activity WHERE query LIKE ''pgflow task pgflow_adhoc/%'' AND state = ''active'''
       FROM generate_series(1, 1000)))" >/dev/null
wait_for 120 "(SELECT count(*) FROM pgflow.runs WHERE flow_slug = 'pgflow_adhoc' AND status = 'started') = 0"
check "all 1,001 ad-hoc runs completed" 1001 "$(sql "SELECT count(*) FROM pgflow.runs WHERE flow_slug = 'pgflow_adhoc' AND status = 'completed'")"
check "no ad-hoc task saw more than 2 of them running (itself included)" 2 \
  "$(sql "SELECT max((output->>'sql')::int) FROM pgflow.runs WHERE flow_slug = 'pgflow_adhoc' AND output->>'sql' <> '1'")"

# 13. Targets: another database of the cluster by name, and a dblink connection string.
other "CREATE TABLE remote_rows (id int, db text)" >/dev/null
sql "SELECT pgflow.create_flow('remote'); SELECT pgflow.add_step('remote', 'by_name', step_type => 'map');
     SELECT pgflow.add_step('remote', 'by_conninfo', ARRAY['by_name']);
     SELECT pgflow.set_sql_handler('remote', 'by_name',
       \$\$INSERT INTO remote_rows VALUES ((\$1)::int, current_database()) RETURNING pg_backend_pid()\$\$, '$OTHER');
     SELECT pgflow.set_sql_handler('remote', 'by_conninfo',
       'SELECT count(*) AS n, current_database() AS db FROM remote_rows', 'host=localhost port=$PORT dbname=$OTHER user=postgres')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('remote', (SELECT jsonb_agg(g) FROM generate_series(1, 40) g))")
run_done "$run" 30
check "a step with a target ran in the other database" "40|$OTHER" "$(other "SELECT count(*) || '|' || max(db) FROM remote_rows")"
check "a target given as a connection string reads them there" "completed|[{\"n\": 40, \"db\": \"$OTHER\"}]" \
  "$(sql "SELECT r.status || '|' || s.output FROM pgflow.runs r JOIN pgflow.step_states s USING (run_id) WHERE r.run_id = '$run' AND s.step_slug = 'by_conninfo'")"
ok_if "connections are reused: 40 remote tasks used at most one remote backend per executor" \
  "(SELECT count(DISTINCT output) FROM pgflow.step_tasks WHERE run_id = '$run' AND step_slug = 'by_name') <= 4"

# 14. cancel_run while a SQL task and while a program step is running: the executor running
# the run's task is interrupted at once (and no other), nothing of the handler stays, and the
# task's late failure changes nothing.
sql "CREATE TABLE cancel_effects (note text);
     SELECT pgflow.create_flow('stop'); SELECT pgflow.add_step('stop', 'slow', timeout => 120);
     SELECT pgflow.add_step('stop', 'after', ARRAY['slow']);
     SELECT pgflow.set_sql_handler('stop', 'slow', \$\$INSERT INTO cancel_effects VALUES ('slow'); SELECT pg_sleep(60)\$\$);
     SELECT pgflow.set_sql_handler('stop', 'after', \$\$INSERT INTO cancel_effects VALUES ('after')\$\$);
     SELECT pgflow.create_flow('bystander'); SELECT pgflow.add_step('bystander', 'nap');
     SELECT pgflow.set_sql_handler('bystander', 'nap', \$\$INSERT INTO cancel_effects VALUES ('bystander'); SELECT pg_sleep(1.5)\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('stop', '{}')")
other_run=$(sql "SELECT run_id FROM pgflow.start_flow('bystander', '{}')")
wait_for 10 "(SELECT count(*) FROM pg_stat_activity WHERE (query LIKE 'pgflow task stop/slow%' OR query LIKE 'pgflow task bystander/nap%') AND state = 'active') = 2"
check "cancel_run returns the run as failed" failed "$(sql "SELECT status FROM pgflow.cancel_run('$run')")"
if wait_for 2 "NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'pgflow task stop/slow%')"; then
  pass "the executor running the run's SQL task is interrupted within two seconds"
else fail "the executor running the run's SQL task is interrupted within two seconds"; fi
check "run_status says cancelled; the task is left as it was, its step never completed" "cancelled|started|1|started|created" \
  "$(sql "SELECT pgflow.run_status('$run') || '|' || t.status || '|' || t.attempts_count || '|'
               || (SELECT string_agg(status, '|' ORDER BY step_index) FROM pgflow.step_states ss
                   JOIN pgflow.steps s USING (flow_slug, step_slug) WHERE ss.run_id = '$run')
          FROM pgflow.step_tasks t WHERE t.run_id = '$run'")"
run_done "$other_run" 10
check "another run's task on another executor was not touched" "completed|1" \
  "$(sql "SELECT r.status || '|' || t.attempts_count FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id) WHERE r.run_id = '$other_run'")"
check "the interrupted handler left no effect, and the step after it never ran" "bystander" \
  "$(sql "SELECT string_agg(note, ',') FROM cancel_effects")"
sql "SELECT pgflow.create_flow('stopprog'); SELECT pgflow.add_step('stopprog', 'nap', timeout => 120);
     SELECT pgflow.set_program_handler('stopprog', 'nap', ARRAY['/bin/sh', '-c', 'sleep 58.5; echo 1'])" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('stopprog', '{}')")
for _ in $(seq 1 100); do [ "$(pgrep -fc 'sleep 58.5')" -gt 0 ] && break; sleep 0.1; done
sql "SELECT pgflow.cancel_run('$run')" >/dev/null
for _ in $(seq 1 20); do [ "$(pgrep -fc 'sleep 58.5')" -eq 0 ] && break; sleep 0.1; done
check "cancel_run kills a running program step" "0|cancelled" "$(pgrep -fc 'sleep 58.5')|$(sql "SELECT pgflow.run_status('$run')")"

# 15. A run that fails while one of its SQL tasks runs: the handler's effects do not commit
# without the task's completion.
sql "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ('00000000-0000-0000-0000-0000000000e2', 'split', 'test');
     SELECT pgflow.create_flow('split', max_attempts => 1); SELECT pgflow.add_step('split', 'local');
     SELECT pgflow.add_step('split', 'remote');
     SELECT pgflow.set_sql_handler('split', 'local', \$\$INSERT INTO cancel_effects VALUES ('split'); SELECT pg_sleep(2)\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('split', '{}')")
wait_for 10 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'pgflow task split/local%' AND state = 'active')"
msg=$(sql "SELECT msg_id FROM pgmq.read_with_poll('split', 30, 1, 3)")
sql "SELECT pgflow.start_tasks('split', ARRAY[$msg]::bigint[], '00000000-0000-0000-0000-0000000000e2');
     SELECT pgflow.fail_task('$run', 'remote', 0, 'remote broke')" >/dev/null
# (the executor's claim commits with the rest of its transaction: until then the task looks queued)
wait_for 10 "(SELECT status NOT IN ('queued', 'started') FROM pgflow.step_tasks WHERE run_id = '$run' AND step_slug = 'local')"
check "the SQL task of the failed run is failed, and its handler's insert rolled back" \
  "failed|the task did not complete: its run or step is no longer running|0" \
  "$(sql "SELECT t.status || '|' || coalesce(t.error_message, '-') || '|' || (SELECT count(*) FROM cancel_effects WHERE note = 'split')
          FROM pgflow.step_tasks t WHERE t.run_id = '$run' AND t.step_slug = 'local'")"

# 17. pause_run in the middle of a SQL map on the executors: once the tasks started before the
# pause are done, no handler runs until resume_run; then the map completes, each task once.
sql "CREATE TABLE pause_effects (task int);
     SELECT pgflow.create_flow('pausemap'); SELECT pgflow.add_step('pausemap', 'each', step_type => 'map');
     SELECT pgflow.set_sql_handler('pausemap', 'each', \$\$INSERT INTO pause_effects VALUES ((\$1)::int); SELECT pg_sleep(0.02)\$\$)" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('pausemap', (SELECT jsonb_agg(g) FROM generate_series(1, 300) g))")
wait_for 20 "(SELECT count(*) FROM pause_effects) >= 20"
check "pause_run returns the run, started" started "$(sql "SELECT status FROM pgflow.pause_run('$run')")"
sleep 1
before=$(sql "SELECT count(*) FROM pause_effects")
sleep 1.5
check "while paused no handler runs (and run_status says paused)" "$before|paused" \
  "$(sql "SELECT count(*) || '|' || pgflow.run_status('$run') FROM pause_effects")"
ok_if "the pause came before the map's end" "$before < 300"
sql "SELECT pgflow.resume_run('$run')" >/dev/null
run_done "$run" 60
check "after resume_run the map completes, each of its 300 effects once" "completed|300|300" \
  "$(sql "SELECT (SELECT status FROM pgflow.runs WHERE run_id = '$run') || '|' || count(*) || '|' || count(DISTINCT task) FROM pause_effects")"

# 18. Flow concurrency on the executors: a SQL flow limited to 2 active runs, 12 runs of a
# 0.2-second task on 4 executors. The executors end runs in transactions of several tasks and
# start waiting runs at their end: every run completes, and no more than 2 handlers ever ran at
# the same moment.
sql "CREATE TABLE conc_effects (s timestamptz, e timestamptz);
     CREATE FUNCTION conc_task() RETURNS void LANGUAGE plpgsql AS \$\$
     DECLARE s timestamptz := clock_timestamp();
     BEGIN PERFORM pg_sleep(0.2); INSERT INTO conc_effects VALUES (s, clock_timestamp()); END \$\$;
     SELECT pgflow.create_flow('limited'); SELECT pgflow.add_step('limited', 'work');
     SELECT pgflow.set_sql_handler('limited', 'work', 'SELECT conc_task()');
     SELECT pgflow.set_flow_concurrency('limited', 2);
     SELECT count(*) FROM generate_series(1, 12) g, pgflow.start_flow('limited', jsonb_build_object('n', g))" >/dev/null
wait_for 60 "(SELECT count(*) = 12 FROM pgflow.runs WHERE flow_slug = 'limited' AND status = 'completed')"
check "all 12 runs of the limited flow complete" 12 \
  "$(sql "SELECT count(*) FROM pgflow.runs WHERE flow_slug = 'limited' AND status = 'completed'")"
check "at most, and at least, 2 of their handlers ran at the same moment" 2 \
  "$(sql "SELECT max((SELECT count(*) FROM conc_effects o WHERE o.s <= x.s AND o.e > x.s)) FROM conc_effects x")"

# 19. Priorities on the executors: ten runs of a SQL flow in a pool of 1 (one task at a time
# across the 4 executors), queued in one transaction, the last five with priority 5: the
# executors run the five of priority 5 first, each priority in the order queued.
sql "CREATE TABLE prio_effects (n int, at timestamptz);
     SELECT pgflow.create_flow('prio'); SELECT pgflow.add_step('prio', 'work');
     SELECT pgflow.set_sql_handler('prio', 'work',
       \$\$INSERT INTO prio_effects VALUES ((\$2 ->> 'n')::int, clock_timestamp()); SELECT pg_sleep(0.05)\$\$);
     SELECT pgflow.create_pool('one_at_a_time', 1); SELECT pgflow.set_pool('prio', 'one_at_a_time');
     SELECT count(*) FROM generate_series(1, 10) g,
            pgflow.start_run('prio', jsonb_build_object('n', g), CASE WHEN g > 5 THEN 5 ELSE 0 END)" >/dev/null
wait_for 30 "(SELECT count(*) = 10 FROM prio_effects)"
check "the executors run higher priorities first, FIFO within one" "6,7,8,9,10,1,2,3,4,5" \
  "$(sql "SELECT string_agg(n::text, ',' ORDER BY at) FROM prio_effects")"

# 20. A SQL task queued with a delay starts when its delay ends, not at the executors' next
# look (every second): three runs of a step with a 1-second start delay, started a third of a
# second apart.
sql "SELECT pgflow.create_flow('later'); SELECT pgflow.add_step('later', 'work', start_delay => 1);
     SELECT pgflow.set_sql_handler('later', 'work', 'SELECT 1')" >/dev/null
for _ in 1 2 3; do sql "SELECT pgflow.start_flow('later', '{}')" >/dev/null; sleep 0.33; done
wait_for 10 "(SELECT count(*) = 3 FROM pgflow.runs WHERE flow_slug = 'later' AND status = 'completed')"
ok_if "each delayed task started within 300 ms of its delay's end" \
  "(SELECT max(started_at - queued_at) < interval '1.3 seconds' AND min(started_at - queued_at) >= interval '1 second'
    FROM pgflow.step_tasks WHERE flow_slug = 'later')"

# 21. retry_run while an executor still runs a task of the failed run: refused (55006) until the
# task ends, then the run runs again.
sql "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ('00000000-0000-0000-0000-0000000000e3', 'busy', 'test');
     SELECT pgflow.create_flow('busy', max_attempts => 1); SELECT pgflow.add_step('busy', 'slow');
     SELECT pgflow.add_step('busy', 'bad');
     SELECT pgflow.set_sql_handler('busy', 'slow', 'SELECT pg_sleep(2)')" >/dev/null
run=$(sql "SELECT run_id FROM pgflow.start_flow('busy', '{}')")
wait_for 10 "EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'pgflow task busy/slow%' AND state = 'active')"
msg=$(sql "SELECT msg_id FROM pgmq.read_with_poll('busy', 30, 1, 3)")
sql "SELECT pgflow.start_tasks('busy', ARRAY[$msg]::bigint[], '00000000-0000-0000-0000-0000000000e3');
     SELECT pgflow.fail_task('$run', 'bad', 0, 'bad broke')" >/dev/null
check "retry_run of a failed run whose SQL task is still running is refused" \
  "ERROR:  run $run has tasks that an executor is still running" \
  "$(sql "SELECT pgflow.retry_run('$run')" | head -1)"
wait_for 10 "(SELECT status = 'failed' FROM pgflow.step_tasks WHERE run_id = '$run' AND step_slug = 'slow')"
check "once it ended, the run is retried" started "$(sql "SELECT status FROM pgflow.retry_run('$run')")"

# 16. The demo's pure-SQL workflow (scripts/demo.sh runs it) completes on the executors.
check "examples/demo_sql_workflow.sql runs and checks its own result" "demo_sql_workflow: OK" \
  "$("${psql_base[@]}" -d "$DB" -f examples/demo_sql_workflow.sql 2>&1 | tail -1)"

echo "1..$n"
[ $failures -eq 0 ]
