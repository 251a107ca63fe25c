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
. tests/tap.sh

export PGOPTIONS="-c client_min_messages=warning -c lock_timeout=20s -c statement_timeout=120s"
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres
q() { local db=$1; shift; psql -X -Atq -v ON_ERROR_STOP=1 -d "$db" -c "$1" 2>&1; }
recreate() { q postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null; q postgres "CREATE DATABASE $1" >/dev/null; }
trap 'rm -rf "$WORK"; for d in $SRC pgflow_dump_plain pgflow_dump_custom; do q postgres "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null; done
      q postgres "DROP ROLE IF EXISTS pgflow_dump_role" >/dev/null' EXIT

. tests/fixture.sh

recreate $SRC
q $SRC "CREATE EXTENSION pgflow_core" >/dev/null
fixture_create $SRC
fixture_check_source $SRC
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
  fixture_goes_on $db
done
check "the source runs go on as well (same outputs as the restored ones)" "5/5" "$(drain $SRC)"
check "the restored outputs equal the source's" \
  "$(q $SRC "SELECT string_agg(output::text, ',' ORDER BY input::text) FROM pgflow.runs WHERE flow_slug = 'dumpflow'")" \
  "$(q pgflow_dump_custom "SELECT string_agg(output::text, ',' ORDER BY input::text) FROM pgflow.runs WHERE flow_slug = 'dumpflow' AND input <> '{}'")"

echo "1..$n"
[ "$failures" -eq 0 ]
