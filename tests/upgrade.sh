#!/usr/bin/env bash
# ALTER EXTENSION pgflow_core UPDATE from the previous release keeps every flow, run, task and
# message, and they go on; the upgraded schema equals a fresh install's.
# Builds the previous release (docs/releases.md: its tag and commit) from git, installs it into a
# cluster of its own ("pgflow_upgrade", port $PGFLOW_UPGRADE_PORT, 5448), fills a database with
# the dump suite's fixture, then installs this build's library and upgrades.
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh upgrade   (this build must be installed)
# Prints TAP lines and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export PGFLOW_UPGRADE_PORT=${PGFLOW_UPGRADE_PORT:-5448}
export PGHOST=localhost PGPORT=$PGFLOW_UPGRADE_PORT PGUSER=postgres
export PGOPTIONS="-c client_min_messages=warning -c lock_timeout=20s -c statement_timeout=120s"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
LIB=$("$PG_CONFIG" --pkglibdir)/pgflow_core.so
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
CLUSTER=pgflow_upgrade
DB=pgflow_upgrade
BG=pgflow_upgrade_bg
WORK=$(mktemp -d)
. tests/tap.sh
q() { local db=$1; shift; psql -X -Atq -v ON_ERROR_STOP=1 -d "$db" -c "$1" 2>&1; }
bail() { fail "$1"; echo "1..$n"; exit 1; }
# Installs a library without writing into the file a running server may have mapped.
install_lib() { rm -f "$LIB" && cp "$1" "$LIB"; }

. tests/fixture.sh

current=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
# The newest release other than this version: "| version | tag | commit | ..." rows.
read -r previous tag commit < <(awk -F'|' -v cur="$current" '
  { for (i = 2; i <= 4; i++) gsub(/[ `]/, "", $i) }
  $2 ~ /^[0-9]+\.[0-9]+\.[0-9]+$/ && length($4) == 40 && $4 ~ /^[0-9a-f]+$/ && $2 != cur { print $2, $3, $4; exit }' docs/releases.md)
[ -n "${previous:-}" ] || bail "docs/releases.md names a release before $current"
echo "# upgrading $previous ($tag, $commit) to $current"

# The tag when this clone has it (it must not have moved); else the commit docs/releases.md names.
if tagged=$(git rev-parse -q --verify "refs/tags/$tag^{commit}"); then
  check "tag $tag is the commit docs/releases.md names" "$commit" "$tagged"
else
  echo "# tag $tag is not in this clone; building commit $commit"
fi

cp "$LIB" "$WORK/current.so" || bail "this build is installed ($LIB)"
trap 'install_lib "$WORK/current.so"; pg_dropcluster --stop 15 $CLUSTER >/dev/null 2>&1; rm -rf "$WORK"' EXIT

# Build the previous release with the shared target directory (its dependencies are built).
# Both crates' outputs are copied to the same file names (target/debug/libpgflow_core.so), and
# cargo copies only after a build: touching the sources makes it build the old release now, and
# the next build of this tree build it again.
mkdir -p "$WORK/src"
git archive "$commit" | tar -x -C "$WORK/src" || bail "git archive $commit"
find "$WORK/src/src" -name '*.rs' -exec touch {} +
(cd "$WORK/src" && CARGO_TARGET_DIR="$root/target" cargo pgrx package --pg-config "$PG_CONFIG" --debug \
   --out-dir "$WORK/pkg") >"$WORK/build.log" 2>&1
status=$?
touch "$root/src/lib.rs"
old_lib=$(find "$WORK/pkg" -name pgflow_core.so | head -1)
old_sql=$(find "$WORK/pkg" -name "pgflow_core--$previous.sql" | head -1)
if [ $status -ne 0 ] || [ -z "$old_lib" ] || [ -z "$old_sql" ]; then
  tail -30 "$WORK/build.log" | sed 's/^/#   /'
  bail "release $previous builds from git"
fi
pass "release $previous builds from git"
cp "$old_sql" "$EXTDIR/"
[ -f "$EXTDIR/pgflow_core--$previous--$current.sql" ] \
  && pass "the upgrade script pgflow_core--$previous--$current.sql is installed" \
  || fail "the upgrade script pgflow_core--$previous--$current.sql is installed"

# The old release in a cluster whose background worker serves $BG (not $DB: the fixture's checks
# run its tasks themselves).
install_lib "$old_lib"
bash scripts/cluster.sh --fresh $CLUSTER "$PGFLOW_UPGRADE_PORT" $BG >/dev/null || bail "cluster $CLUSTER starts"
log=/var/log/postgresql/postgresql-15-$CLUSTER.log
for db in $DB $BG; do q postgres "CREATE DATABASE $db" >/dev/null; done
check "$DB: CREATE EXTENSION pgflow_core VERSION '$previous'" "$previous" \
  "$(q $DB "CREATE EXTENSION pgflow_core VERSION '$previous'; SELECT extversion FROM pg_extension WHERE extname = 'pgflow_core'")"
fixture_create $DB
fixture_check_source $DB
before=$(snapshot $DB)

# A SQL step, which the executors run: under the old release it runs.
q $BG "CREATE EXTENSION pgflow_core VERSION '$previous';
       SELECT pgflow.create_flow('bgsql');
       SELECT pgflow.add_step('bgsql', 's');
       SELECT pgflow.set_sql_handler('bgsql', 's', 'SELECT jsonb_build_object(''n'', (\$2 ->> ''n'')::int + 1)');
       SELECT pgflow.start_flow('bgsql', '{\"n\": 1}', '00000000-0000-0000-0000-0000000000b1');" >/dev/null
wait_run() { # wait_run DB RUN_ID SECONDS: the run's status and output once it is not started
  local s
  for _ in $(seq 1 $(($3 * 5))); do
    s=$(q "$1" "SELECT status || '|' || coalesce(output::text, '') FROM pgflow.runs WHERE run_id = '$2'")
    [ "${s%%|*}" != started ] && break
    sleep 0.2
  done
  echo "$s"
}
check "$BG: the old release's executors run a SQL step" 'completed|{"s": {"n": 2}}' \
  "$(wait_run $BG 00000000-0000-0000-0000-0000000000b1 60)"

# This build's library, the schema still the old one.
pg_ctlcluster 15 $CLUSTER stop
install_lib "$WORK/current.so"
pg_ctlcluster 15 $CLUSTER start || bail "cluster $CLUSTER starts with this build's library"
for _ in $(seq 1 50); do pg_isready -q && break; sleep 0.2; done
q $BG "SELECT pgflow.start_flow('bgsql', '{\"n\": 10}', '00000000-0000-0000-0000-0000000000b2')" >/dev/null
sleep 3
check "$BG: before the upgrade, the new library's background processes leave the old schema alone" \
  "$previous|started" \
  "$(q $BG "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pgflow_core') || '|' || status
              FROM pgflow.runs WHERE run_id = '00000000-0000-0000-0000-0000000000b2'")"

for db in $DB $BG; do
  check "$db: ALTER EXTENSION pgflow_core UPDATE goes to $current" "$current" \
    "$(q $db "ALTER EXTENSION pgflow_core UPDATE; SELECT extversion FROM pg_extension WHERE extname = 'pgflow_core'")"
done
check "$BG: after the upgrade the executors run the waiting SQL step" 'completed|{"s": {"n": 11}}' \
  "$(wait_run $BG 00000000-0000-0000-0000-0000000000b2 60)"
fixture_goes_on $DB

# The upgraded schema is the fresh install's: every member object, column, constraint, index,
# function body, owner, grant (create_roles run again after the update, as docs/releases.md
# says; the fixture ran it before) and comment.
q $DB "SELECT pgflow.create_roles()" >/dev/null
q postgres "CREATE DATABASE pgflow_upgrade_fresh" >/dev/null
q pgflow_upgrade_fresh "CREATE EXTENSION pgflow_core; SELECT pgflow.create_roles()" >/dev/null
psql -X -Atq -v ON_ERROR_STOP=1 -d pgflow_upgrade_fresh -f tests/upgrade/schema.sql >"$WORK/fresh.txt" 2>&1 \
  && psql -X -Atq -v ON_ERROR_STOP=1 -d $DB -f tests/upgrade/schema.sql >"$WORK/upgraded.txt" 2>&1
status=$?
if [ $status -eq 0 ] && [ "$(grep -c '^member ' "$WORK/fresh.txt")" -gt 100 ] \
   && diff -u "$WORK/fresh.txt" "$WORK/upgraded.txt" >"$WORK/schema.diff"; then
  pass "the upgraded schema equals a fresh install of $current ($(grep -c '^member ' "$WORK/fresh.txt") objects)"
else
  fail "the upgraded schema equals a fresh install of $current (- fresh, + upgraded)"
  cat "$WORK/schema.diff" 2>/dev/null | head -80 | sed 's/^/#   /'
  [ $status -eq 0 ] || tail -5 "$WORK/fresh.txt" "$WORK/upgraded.txt" | sed 's/^/#   /'
fi
check "the server log has no error or warning of pgflow_core's background processes" "" \
  "$(grep -E 'WARNING|ERROR|PANIC' "$log" | grep -E 'pgflow_core (worker|executor)|PANIC')"

echo "1..$n"
[ "$failures" -eq 0 ]
