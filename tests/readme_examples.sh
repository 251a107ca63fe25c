#!/usr/bin/env bash
# Runs every ```sql example of README.md's function reference sections, "### Function reference"
# (pgmq) and "### pgflow function reference" (pgflow), in README order, all in one fresh database
# pgflow_readme_test (CREATE EXTENSION pgflow_core), and prints TAP: one line per example,
# "ok N - README example N (line L)" or "not ok N - ..." followed by the psql error, where L is the
# README line of the block's opening fence. Exits non-zero when any example fails.
#
# A section runs from its heading to the next heading of level 1 to 3. A ```sql block whose
# preceding non-blank line is <!-- not run --> is skipped.
# Server: localhost, port $PGFLOW_TEST_PORT (5439), user postgres. Only database
# pgflow_readme_test is dropped and recreated.
# README_EXAMPLES_VERBOSE=1 also prints each example's output as TAP comments.
set -uo pipefail
cd "$(dirname "$0")/.."

readme=README.md
db=pgflow_readme_test
export PGHOST=localhost PGPORT=${PGFLOW_TEST_PORT:-5439} PGUSER=postgres
unset PGDATABASE PGOPTIONS

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

diag() { sed 's/^/#   /'; }

sections=("Function reference" "pgflow function reference")

# Split the sections' sql blocks into $work/NNN.sql; the index lists "N fence_line skip section",
# section being the heading's text.
awk -v dir="$work" -v names="$(printf '%s\n' "${sections[@]}")" '
  BEGIN {
    n = 0; insec = 0; infence = 0; cur = 0; prev = ""; sec = ""
    k = split(names, list, "\n"); for (j = 1; j <= k; j++) if (list[j] != "") wanted["### " list[j]] = list[j]
  }
  infence {
    if ($0 ~ /^```[[:space:]]*$/) { infence = 0; if (cur) close(file); cur = 0; prev = "```"; next }
    if (cur) print > file
    next
  }
  /^### / {
    h = $0; sub(/[[:space:]]+$/, "", h)
    if (h in wanted) { insec = 1; prev = ""; sec = wanted[h]; next }
  }
  insec && /^(#|##|###) / { insec = 0 }
  /^```/ {
    infence = 1; cur = 0
    if (insec && $0 ~ /^```sql[[:space:]]*$/) {
      n++
      skip = (prev ~ /^[[:space:]]*<!--[[:space:]]*not run[[:space:]]*-->[[:space:]]*$/) ? 1 : 0
      file = sprintf("%s/%03d.sql", dir, n)
      printf "" > file
      cur = 1
      print n, NR, skip, sec
    }
    next
  }
  $0 !~ /^[[:space:]]*$/ { prev = $0 }
' "$readme" >"$work/index"

# Every section must be there and have examples, so that a renamed heading cannot silently
# drop them from the run.
for section in "${sections[@]}"; do
  if ! awk -v sec="$section" '$3 == 0 { $1 = $2 = $3 = ""; sub(/^ +/, ""); if ($0 == sec) found = 1 }
                              END { exit !found }' "$work/index"; then
    echo "1..1"
    echo "not ok 1 - no \`\`\`sql examples found in section \"### $section\" of $readme"
    exit 1
  fi
done
total=$(awk '$3 == 0' "$work/index" | wc -l)

if ! out=$( { psql -X -q -v ON_ERROR_STOP=1 -d postgres \
                -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" &&
              psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION pgflow_core"; } 2>&1); then
  echo "1..1"
  echo "not ok 1 - create database $db with extension pgflow_core"
  printf '%s\n' "$out" | diag
  exit 1
fi

echo "1..$total"
i=0
failed=0
while read -r n start skip _; do
  if [ "$skip" = 1 ]; then
    echo "# README line $start: block marked <!-- not run -->, skipped"
    continue
  fi
  i=$((i + 1))
  file=$work/$(printf '%03d' "$n").sql
  if psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$file" >"$work/out" 2>"$work/err"; then
    echo "ok $i - README example $i (line $start)"
  else
    failed=$((failed + 1))
    echo "not ok $i - README example $i (line $start)"
    if grep -q 'ERROR:' "$work/err"; then
      # from the first ERROR on, with psql's file:line turned into README.md:line
      awk -v base="$start" -v prefix="psql:$file:" '
        /ERROR:/ { on = 1 }
        on {
          if (index($0, prefix) == 1) {
            rest = substr($0, length(prefix) + 1)
            k = rest + 0
            sub(/^[0-9]+: /, "", rest)
            $0 = "README.md:" (base + k) ": " rest
          }
          print
        }' "$work/err" | diag
    else
      diag <"$work/err"
    fi
  fi
  if [ "${README_EXAMPLES_VERBOSE:-0}" = 1 ]; then
    cat "$work/out" "$work/err" | diag
  fi
done <"$work/index"

echo "# $total examples, $failed failed"
[ "$failed" -eq 0 ]
