#!/usr/bin/env bash
# Pictures of flows and runs: the DOT that pgflow.flow_graph and pgflow.run_graph write parses and
# renders with Graphviz, for every kind of step and run state; and the pictures in docs/pictures
# are what the functions draw now (GRAPH_ACCEPT=1 writes them anew, to be reviewed).
# Run as root:  SKIP_BUILD=1 bash scripts/test.sh graph   (uses the suite cluster on $PGFLOW_TEST_PORT)
# Prints TAP lines and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

export PGHOST=localhost PGPORT=${PGFLOW_TEST_PORT:-5439} PGUSER=postgres
DB=pgflow_graph_test
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1' EXIT
. tests/tap.sh
q() { psql -X -Atq -v ON_ERROR_STOP=1 -d $DB -c "$1"; }

command -v dot >/dev/null || { fail "graphviz's dot is installed (scripts/install-deps.sh)"; echo "1..$n"; exit 1; }
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
q "CREATE EXTENSION pgflow_core" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d $DB -f tests/graph/pictures.sql >"$WORK/setup.log" 2>&1 \
  && pass "the flows and runs to draw are made" || { fail "the flows and runs to draw are made"; sed 's/^/#   /' "$WORK/setup.log"; }

# render NAME SQL: the DOT that SQL returns renders to SVG, with nothing on stderr.
render() {
  q "$2" >"$WORK/$1.dot" 2>"$WORK/$1.err" && dot -Tsvg "$WORK/$1.dot" -o "$WORK/$1.svg" 2>>"$WORK/$1.err" \
    && [ ! -s "$WORK/$1.err" ] && grep -q '<svg' "$WORK/$1.svg"
}
for flow in analyze_website every_kind; do
  render "flow-$flow" "SELECT pgflow.flow_graph('$flow', 'dot')" \
    && pass "flow $flow: Graphviz renders its DOT" \
    || { fail "flow $flow: Graphviz renders its DOT"; sed 's/^/#   /' "$WORK/flow-$flow.err" "$WORK/flow-$flow.dot"; }
done
states=$(q "SELECT string_agg(right(run_id::text, 4) || ':' || pgflow.run_status(run_id), ' ' ORDER BY run_id) FROM pgflow.runs")
check "runs in every state to draw" "f001:failed f002:started f003:started f004:paused f005:cancelled" "$states"
for run in $(q "SELECT run_id FROM pgflow.runs ORDER BY run_id"); do
  render "run-$run" "SELECT pgflow.run_graph('$run', 'dot')" \
    && pass "run ${run: -4}: Graphviz renders its DOT" \
    || { fail "run ${run: -4}: Graphviz renders its DOT"; sed 's/^/#   /' "$WORK/run-$run.err" "$WORK/run-$run.dot"; }
done
check "the SVG of each step of the failed run names its state" "4" \
  "$(grep -cE '>(website|summary|sentiment|saveToDb)<' "$WORK/run-00000000-0000-0000-0000-00000000f001.svg")"
# A DOT that Graphviz rejects is reported: the check above can fail.
echo 'digraph "x" { s0 [label="a"; }' >"$WORK/bad.dot"
dot -Tsvg "$WORK/bad.dot" -o /dev/null 2>/dev/null && fail "Graphviz rejects broken DOT" || pass "Graphviz rejects broken DOT"

# The docs' pictures: SVG from Graphviz and the Mermaid text, as committed.
picture() { # picture FILE SQL [svg]
  local out=$WORK/picture
  # The function's text ends with a newline, to which psql adds one.
  printf '%s\n' "$(q "$2")" >"$out.txt"
  if [ "${3:-}" == svg ]; then dot -Tsvg -o "$out" "$out.txt"; else cp "$out.txt" "$out"; fi
  if [ "${GRAPH_ACCEPT:-0}" == 1 ]; then cp "$out" "docs/pictures/$1"; fi
  if cmp -s "$out" "docs/pictures/$1"; then pass "docs/pictures/$1 is what the functions draw now"; else
    fail "docs/pictures/$1 is what the functions draw now (GRAPH_ACCEPT=1 writes it)"
    diff "docs/pictures/$1" "$out" 2>&1 | head -20 | sed 's/^/#   /'
  fi
}
picture analyze_website.svg "SELECT pgflow.flow_graph('analyze_website', 'dot')" svg
picture analyze_website-failed-run.svg "SELECT pgflow.run_graph('00000000-0000-0000-0000-00000000f001', 'dot')" svg
picture every_kind.svg "SELECT pgflow.flow_graph('every_kind', 'dot')" svg
picture analyze_website.mmd "SELECT pgflow.flow_graph('analyze_website')"
picture analyze_website-failed-run.mmd "SELECT pgflow.run_graph('00000000-0000-0000-0000-00000000f001')"
# docs/observability.md shows the Mermaid text verbatim.
for f in analyze_website.mmd analyze_website-failed-run.mmd; do
  if python3 - "docs/pictures/$f" docs/observability.md <<'PY'
import sys
text = open(sys.argv[1]).read()
sys.exit(0 if "```mermaid\n" + text + "```" in open(sys.argv[2]).read() else 1)
PY
  then pass "docs/observability.md shows docs/pictures/$f"; else fail "docs/observability.md shows docs/pictures/$f"; fi
done

echo "1..$n"
[ "$failures" -eq 0 ]
