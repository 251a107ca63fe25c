#!/usr/bin/env bash
# Races between our own transitions, driven step by step by PostgreSQL's isolationtester: each
# spec in tests/isolation/specs runs its permutations (deterministic interleavings, with the
# blocked steps shown as <waiting ...>) and its output must equal tests/isolation/expected.
# A deadlock, an unexpected error or a violated invariant (pgflow.check_invariants) changes the
# output and fails the spec.
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh isolation   (uses the suite cluster on $PGFLOW_TEST_PORT)
#   ISOLATION_ACCEPT=1   write the output as the new expected file (review it before committing)
# Prints TAP lines ("ok N - spec", "not ok N - spec" with the diff) and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

PORT=${PGFLOW_TEST_PORT:-5439}
DB=pgflow_isolation_test
TESTER=/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/isolationtester
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres
# A step that waits longer than this is cancelled (and the spec fails).
export PGISOLATIONTIMEOUT=${PGISOLATIONTIMEOUT:-30}

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null || exit 1
psql -X -q -v ON_ERROR_STOP=1 -d $DB -f tests/isolation/helpers.sql >/dev/null || exit 1

n=0
failures=0
for spec in tests/isolation/specs/*.spec; do
  name=$(basename "$spec" .spec)
  n=$((n + 1))
  "$TESTER" "host=localhost port=$PORT user=postgres dbname=$DB" <"$spec" >"$OUT/$name.out" 2>&1
  expected=tests/isolation/expected/$name.out
  if [ "${ISOLATION_ACCEPT:-0}" == 1 ]; then cp "$OUT/$name.out" "$expected"; fi
  if diff -u "$expected" "$OUT/$name.out" >"$OUT/$name.diff" 2>&1; then
    echo "ok $n - $name"
  else
    failures=$((failures + 1))
    echo "not ok $n - $name"
    sed 's/^/#   /' "$OUT/$name.diff"
  fi
done
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
echo "1..$n"
[ "$failures" -eq 0 ]
