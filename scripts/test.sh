#!/usr/bin/env bash
# The whole test suite. Run as root on Debian 12:  bash scripts/test.sh
#
#   scripts/test.sh            install what is missing, build, install, run every suite
#   scripts/test.sh SUITE...   run only these suites (lint unit sql client python workers bouncer fuzz dump upgrade graph isolation durability crash worker executor readme)
#   SKIP_BUILD=1               reuse the installed extension
#
# Suites run against a dedicated cluster "pgflow_test" on port $PGFLOW_TEST_PORT (5439) with
# pgflow_core in shared_preload_libraries, made afresh on every run and dropped at the end.
# durability, worker and executor make their own clusters the same way ($PGFLOW_DURABILITY_PORT 5440,
# $PGFLOW_WORKER_PORT 5442, $PGFLOW_WORKER_STANDBY_PORT 5443, $PGFLOW_EXECUTOR_PORT 5446,
# $PGFLOW_UPGRADE_PORT 5448).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export PGFLOW_TEST_PORT=${PGFLOW_TEST_PORT:-5439}
export PGHOST=localhost PGPORT=$PGFLOW_TEST_PORT PGUSER=postgres
export PGFLOW_TEST_DSN="host=localhost port=$PGFLOW_TEST_PORT user=postgres dbname=pgflow_client_test"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(lint unit sql client python workers bouncer fuzz dump upgrade graph isolation durability crash worker executor readme)

passed=0
failed=0
failures=()
record() { # record NAME PASSED FAILED
  passed=$((passed + $2)); failed=$((failed + $3))
  [ "$3" -gt 0 ] && failures+=("$1")
  echo "--> $1: $2 passed, $3 failed"
}

set -e
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/install-deps.sh
  echo "==> building and installing pgflow_core"
  bash scripts/install-extension.sh >/tmp/pgflow_core-install.log 2>&1 \
    || { cat /tmp/pgflow_core-install.log; exit 1; }
fi
# A new cluster on every run: nothing may survive from an earlier one (scripts/cluster.sh stops at
# once when the port is taken). PGFLOW_KEEP_CLUSTER=1 keeps it after the run, for debugging.
bash scripts/cluster.sh --fresh pgflow_test "$PGFLOW_TEST_PORT"
[ "${PGFLOW_KEEP_CLUSTER:-0}" == 1 ] || trap 'pg_dropcluster --stop 15 pgflow_test >/dev/null 2>&1 || true' EXIT
set +e

fresh_db() { # fresh_db NAME EXTENSIONS...
  local db=$1; shift
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null || return 1
  fresh_db_extensions "$db" "$@"
}
fresh_db_extensions() { # fresh_db_extensions NAME EXTENSIONS...
  local db=$1; shift
  for ext in "$@"; do psql -q -d "$db" -c "CREATE EXTENSION $ext" >/dev/null || return 1; done
}

# Counts "test result: ok. N passed; M failed" lines of cargo test output.
cargo_counts() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { print p + 0, f + 0 }' "$1"
}

for suite in "${suites[@]}"; do
  echo "==> suite: $suite"
  case $suite in
    lint)
      # cargo fmt --check and clippy with warnings as errors; a check each.
      p=0; f=0
      if cargo fmt --check; then p=$((p + 1)); else f=$((f + 1)); fi
      if cargo clippy --all-targets --features pg15 --no-default-features -- -D warnings; then
        p=$((p + 1)); else f=$((f + 1)); fi
      record lint "$p" "$f"
      ;;
    unit)
      log=$(mktemp)
      cargo test --lib --features pg15 --no-default-features 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      read -r p f < <(cargo_counts "$log")
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      record unit "$p" "$f"
      ;;
    sql)
      fresh_db pgflow_sql_test pgflow_core pgtap || { record sql 0 1; continue; }
      log=$(mktemp)
      pg_prove -v -d pgflow_sql_test tests/sql/pgmq/*.sql tests/sql/pgflow/*.sql 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      # The queue-name rules again where lower() changes only ASCII letters.
      psql -q -d postgres -c "DROP DATABASE IF EXISTS pgflow_sql_c_test WITH (FORCE)" \
        -c "CREATE DATABASE pgflow_sql_c_test TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'" >/dev/null \
        && fresh_db_extensions pgflow_sql_c_test pgflow_core pgtap \
        && pg_prove -v -d pgflow_sql_c_test tests/sql/pgmq/11_case_rules.sql 2>&1 | tee -a "$log"
      [ "${PIPESTATUS[0]}" -ne 0 ] && status=1
      p=$(grep -cE '^ok [0-9]' "$log"); f=$(grep -cE '^not ok [0-9]' "$log")
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      record sql "$p" "$f"
      ;;
    client)
      fresh_db pgflow_client_test pgflow_core || { record client 0 1; continue; }
      log=$(mktemp)
      cargo test --manifest-path tests/client/Cargo.toml --release --no-fail-fast 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      read -r p f < <(cargo_counts "$log")
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      record client "$p" "$f"
      ;;
    python)
      fresh_db pgflow_python_test pgflow_core || { record python 0 1; continue; }
      venv=$root/target/pyvenv
      # pgmq[async] adds asyncpg, which the client's AsyncPGMQueue needs.
      if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/pip" show pgmq 2>/dev/null | grep -q '^Version: 1.1.4' \
         || ! "$venv/bin/pip" show asyncpg >/dev/null 2>&1; then
        python3 -m venv "$venv" && "$venv/bin/pip" install -q 'pgmq[async]==1.1.4' pytest
      fi
      log=$(mktemp)
      PGFLOW_TEST_DB=pgflow_python_test "$venv/bin/pytest" -q tests/python 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      p=$(grep -oE '[0-9]+ passed' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
      f=$(grep -oE '[0-9]+ (failed|error)' "$log" | awk '{ s += $1 } END { print s + 0 }')
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      record python "${p:-0}" "$f"
      ;;
    workers)
      # The worker libraries of workers/, each against a database of its own. Python (psycopg):
      fresh_db pgflow_worker_py pgflow_core || { record workers 0 1; continue; }
      venv=$root/target/pyvenv-psycopg
      if ! "$venv/bin/python" -c "import psycopg, pytest" 2>/dev/null; then
        python3 -m venv "$venv" && "$venv/bin/pip" install -q 'psycopg[binary]==3.2.*' pytest
      fi
      log=$(mktemp)
      PGFLOW_WORKER_DSN="host=localhost port=$PGFLOW_TEST_PORT user=postgres dbname=pgflow_worker_py" \
        "$venv/bin/pytest" -q workers/python/tests 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      p=$(grep -oE '[0-9]+ passed' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
      f=$(grep -oE '[0-9]+ (failed|error)' "$log" | awk '{ s += $1 } END { print s + 0 }')
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      # Node (node-postgres, installed from the lock file), node:test.
      if fresh_db pgflow_worker_node pgflow_core \
         && { [ -d workers/node/node_modules/pg ] || (cd workers/node && npm ci --no-audit --no-fund --silent); }; then
        (cd workers/node && PGFLOW_WORKER_URL="postgres://postgres@localhost:$PGFLOW_TEST_PORT/pgflow_worker_node" \
           node --test test/) 2>&1 | tee "$log"
        [ "${PIPESTATUS[0]}" -ne 0 ] && status=1
        np=$(awk '/^# pass / { print $3 }' "$log" | tail -1); nf=$(awk '/^# fail / { print $3 }' "$log" | tail -1)
        p=$((p + ${np:-0})); f=$((f + ${nf:-0}))
        [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      else
        f=$((f + 1))
      fi
      record workers "${p:-0}" "$f"
      ;;
    bouncer|dump|upgrade|graph|durability|worker|executor|isolation|crash|fuzz)
      log=$(mktemp)
      bash "tests/$suite.sh" 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      p=$(grep -c '^ok ' "$log"); f=$(grep -c '^not ok ' "$log")
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      record "$suite" "$p" "$f"
      ;;
    readme)
      log=$(mktemp)
      bash tests/readme_examples.sh 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      p=$(grep -c '^ok ' "$log"); f=$(grep -c '^not ok ' "$log")
      [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      record readme "$p" "$f"
      ;;
    *) echo "unknown suite: $suite" >&2; record "$suite" 0 1 ;;
  esac
done

echo
[ ${#failures[@]} -gt 0 ] && echo "failing suites: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
