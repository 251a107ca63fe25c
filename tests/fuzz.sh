#!/usr/bin/env bash
# Hostile input over the whole SQL API (tests/fuzz/fuzz_test.py): 10,000 generated calls, the
# invariants after each, the server log checked at the end.
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh fuzz   (uses the suite cluster on $PGFLOW_TEST_PORT)
# FUZZ_SEED replays a run (its seed is printed first); FUZZ_CASES changes the number of calls.
set -uo pipefail
cd "$(dirname "$0")/.."

PORT=${PGFLOW_TEST_PORT:-5439}
DB=pgflow_fuzz_test
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres
log=$(pg_lsclusters -h | awk -v p="$PORT" '$3 == p { print $7 }')
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null \
  && psql -X -q -d $DB -c "CREATE EXTENSION pgflow_core" >/dev/null || { echo "not ok 1 - database"; exit 1; }
venv=$(pwd)/target/pyvenv-psycopg
if ! "$venv/bin/python" -c "import psycopg" 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q 'psycopg[binary]==3.2.*' || { echo "not ok 1 - psycopg"; exit 1; }
fi
FUZZ_DSN="host=localhost port=$PORT user=postgres dbname=$DB" FUZZ_LOG=$log \
FUZZ_LOG_OFFSET=$(stat -c %s "$log") "$venv/bin/python" tests/fuzz/fuzz_test.py
status=$?
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
exit $status
