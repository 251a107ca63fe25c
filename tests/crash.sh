#!/usr/bin/env bash
# Crashes and kills under load (tests/crash/crash_test.py): the postmaster SIGKILLed while 8
# workers and the executors process 1,000 runs, and a worker's backend SIGKILLed mid-task.
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh crash
#
# Uses its own cluster "pgflow_crash" on port $PGFLOW_CRASH_PORT (5447) with the background
# worker and 2 executors in its database (pgflow.timeout_grace = 0: a stalled task is requeued as
# soon as its timeout has passed), made afresh on every run and dropped at the end.
# CRASH_SEED replays a run's choices (the seed is printed first). Prints TAP lines.
set -uo pipefail
cd "$(dirname "$0")/.."

CLUSTER=pgflow_crash
PORT=${PGFLOW_CRASH_PORT:-5447}
DB=pgflow_crash_test
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres

bash scripts/cluster.sh --fresh $CLUSTER "$PORT" "$DB" "pgflow.executors=2" "pgflow.worker_interval_ms=200" "pgflow.timeout_grace=0" \
  >/dev/null || { echo "not ok 1 - cluster starts"; exit 1; }
psql -X -q -d postgres -c "CREATE DATABASE $DB" >/dev/null && psql -X -q -d $DB -c "CREATE EXTENSION pgflow_core" >/dev/null \
  || { echo "not ok 1 - database and extension"; exit 1; }

# A 1 MB file system for a tablespace that fills up (disk full).
tiny=$(mktemp -d /tmp/pgflow_crash_tiny.XXXXXX)
mount -t tmpfs -o size=1M,mode=700 tmpfs "$tiny" || { echo "not ok 1 - mount a 1 MB tmpfs (needs root)"; exit 1; }
chown postgres: "$tiny"
[ "${PGFLOW_KEEP_CLUSTER:-0}" == 1 ] \
  || trap 'pg_dropcluster --stop 15 $CLUSTER >/dev/null 2>&1; umount "$tiny"; rmdir "$tiny"' EXIT
: >"/var/log/postgresql/postgresql-15-$CLUSTER.log"  # this run's lines only
venv=$(pwd)/target/pyvenv-psycopg
if ! "$venv/bin/python" -c "import psycopg" 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q 'psycopg[binary]==3.2.*' || { echo "not ok 1 - psycopg"; exit 1; }
fi
CRASH_DSN="host=localhost port=$PORT user=postgres dbname=$DB" \
CRASH_PGDATA=/var/lib/postgresql/15/$CLUSTER CRASH_CLUSTER=$CLUSTER \
CRASH_LOG=/var/log/postgresql/postgresql-15-$CLUSTER.log CRASH_TINY_SPACE=$tiny \
  "$venv/bin/python" tests/crash/crash_test.py
