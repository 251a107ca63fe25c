#!/usr/bin/env bash
# Workers behind PgBouncer in transaction mode (tests/bouncer/bouncer_test.py): 64 client
# connections of the Python worker library onto 8 server connections, and the wake-up of a
# waiting read_with_poll. PgBouncer runs on port $PGFLOW_BOUNCER_PORT (6439) in front of the suite
# cluster, with the settings of docs/poolers.md, and stops at the end.
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh bouncer
set -uo pipefail
cd "$(dirname "$0")/.."

PORT=${PGFLOW_TEST_PORT:-5439}
BPORT=${PGFLOW_BOUNCER_PORT:-6439}
DB=pgflow_bouncer
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres
WORK=$(mktemp -d)
chown postgres "$WORK"
cleanup() {
  [ -f "$WORK/pgbouncer.pid" ] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v pgbouncer >/dev/null; then echo "not ok 1 - pgbouncer is installed (scripts/install-deps.sh)"; exit 1; fi
if (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null; then
  echo "not ok 1 - port $BPORT is free for PgBouncer (set PGFLOW_BOUNCER_PORT)"; exit 1
fi
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
psql -X -q -d $DB -c "CREATE EXTENSION pgflow_core" >/dev/null

cat > "$WORK/userlist.txt" <<USERS
"postgres" ""
USERS
# The settings of docs/poolers.md (its ini block), for this cluster, port and database.
python3 - "$WORK/pgbouncer.ini" <<PY
import sys
doc = open("docs/poolers.md").read()
ini = doc[doc.index("\`\`\`ini\n") + 7:]
ini = ini[:ini.index("\`\`\`")]
for old, new in (("app = host=127.0.0.1 port=5432 dbname=app", "$DB = host=127.0.0.1 port=$PORT dbname=$DB"),
                 ("listen_port = 6432", "listen_port = $BPORT")):
    assert old in ini, old
    ini = ini.replace(old, new)
ini += """unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
admin_users = postgres
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
"""
open(sys.argv[1], "w").write(ini)
PY
chown postgres "$WORK"/*
pgbouncer -d -u postgres "$WORK/pgbouncer.ini" || { echo "not ok 1 - PgBouncer starts"; exit 1; }
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break; sleep 0.1; done

venv=$(pwd)/target/pyvenv-psycopg
if ! "$venv/bin/python" -c "import psycopg" 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q 'psycopg[binary]==3.2.*' || { echo "not ok 1 - psycopg"; exit 1; }
fi
BOUNCER_DSN="host=127.0.0.1 port=$BPORT user=postgres dbname=$DB" \
DIRECT_DSN="host=localhost port=$PORT user=postgres dbname=$DB" \
BOUNCER_ADMIN="-h 127.0.0.1 -p $BPORT -U postgres -d pgbouncer" \
  "$venv/bin/python" tests/bouncer/bouncer_test.py
status=$?
[ $status -ne 0 ] && sed 's/^/# pgbouncer: /' "$WORK/pgbouncer.log" | grep -iE 'error|warning' | head -20
exit $status
