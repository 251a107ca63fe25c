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
trap 'rm -rf "$WORK"; for d in $SRC pgflow_dump_plain pgflow_dump_custom; do q postgres "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null; done' EXIT

# Every row of every table that holds state, in a stable order (the comparison key).
snapshot() {
  q "$1" "
    SELECT 'flows', count(*), md5(coalesce(string_agg(f::text, '|' ORDER BY flow_slug), '')) FROM pgflow.flows f
    UNION ALL SELECT 'steps', count(*), md5(coalesce(string_agg(s::text, '|' ORDER BY flow_slug, step_slug), '')) FROM pgflow.steps s
    UNION ALL SELECT 'deps', count(*), md5(coalesce(string_agg(d::text, '|' ORDER BY flow_slug, step_slug, dep_slug), '')) FROM pgflow.deps d
    UNION ALL SELECT 'runs', count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY run_id), '')) FROM pgflow.runs r
    UNION ALL SELECT 'step_states', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY run_id, step_slug), '')) FROM pgflow.step_states x
    UNION ALL SELECT 'step_tasks', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY run_id, step_slug, task_index), '')) FROM pgflow.step_tasks t
    UNION ALL SELECT '_step_shards', count(*), md5(coalesce(string_agg(h::text, '|' ORDER BY run_id, step_slug, shard), '')) FROM pgflow._step_shards h
    UNION ALL SELECT 'workers', count(*), md5(coalesce(string_agg(w::text, '|' ORDER BY worker_id), '')) FROM pgflow.workers w
    UNION ALL SELECT 'worker_functions', count(*), md5(coalesce(string_agg(w::text, '|' ORDER BY function_name), '')) FROM pgflow.worker_functions w
    UNION ALL SELECT 'queue', count(*), md5(coalesce(string_agg(m::text, '|' ORDER BY msg_id), '')) FROM pgmq.q_dumpflow m
    UNION ALL SELECT 'archive', count(*), md5(coalesce(string_agg(m::text, '|' ORDER BY msg_id), '')) FROM pgmq.a_dumpflow m
    UNION ALL SELECT 'meta', count(*), md5(coalesce(string_agg(m.queue_name, '|' ORDER BY queue_name), '')) FROM pgmq.meta m
    UNION ALL SELECT 'queue ids', last_value, is_called::text FROM pgmq.q_dumpflow_msg_id_seq"
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
    SELECT count(*) FILTER (WHERE status = 'completed') || '/' || count(*) FROM pgflow.runs"
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
check "the source has started runs, map tasks done and shards" "t" \
  "$(q $SRC "SELECT count(*) = 5 AND (SELECT count(*) FROM pgflow._step_shards) > 0
                    AND (SELECT count(*) FROM pgflow.step_tasks WHERE status = 'completed') = 4 FROM pgflow.runs")"
before=$(snapshot $SRC)

pg_dump -d $SRC -f "$WORK/plain.sql" 2>"$WORK/plain.err" \
  && pass "pg_dump, plain format" || { fail "pg_dump, plain format"; sed 's/^/#   /' "$WORK/plain.err"; }
pg_dump -d $SRC -Fc -f "$WORK/custom.dump" 2>"$WORK/custom.err" \
  && pass "pg_dump, custom format" || { fail "pg_dump, custom format"; sed 's/^/#   /' "$WORK/custom.err"; }

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
done
check "the source runs go on as well (same outputs as the restored ones)" "5/5" "$(drain $SRC)"
check "the restored outputs equal the source's" \
  "$(q $SRC "SELECT string_agg(output::text, ',' ORDER BY input::text) FROM pgflow.runs")" \
  "$(q pgflow_dump_custom "SELECT string_agg(output::text, ',' ORDER BY input::text) FROM pgflow.runs WHERE input <> '{}'")"

echo "1..$n"
[ "$failures" -eq 0 ]
