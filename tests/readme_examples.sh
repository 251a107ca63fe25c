#!/usr/bin/env bash
# Runs every ```sql example of README.md and of each docs/*.md, and prints TAP: one line per
# example, "ok N - FILE:L" or "not ok N - FILE:L" followed by the psql error (with its position
# as FILE:line), where L is the line of the block's opening fence in FILE.
# Exits non-zero when any example fails.
#
# Files run in a fixed order: README.md first, then docs/*.md sorted by name (C collation). Each
# file gets a fresh database pgflow_readme_test (dropped, created, CREATE EXTENSION pgflow_core),
# so that one file's examples can't depend on another file's; within a file the blocks run in
# order, in that one database, each block in its own psql session (later examples use objects
# made by earlier ones).
#
# A ```sql block whose preceding non-blank line is <!-- not run --> or <!-- not run: reason --> is
# skipped (printed as a TAP comment with its reason). Fences may be indented (list items).
# So that a renamed file or a changed fence cannot silently run nothing, README.md, docs/queue.md
# and docs/engine.md must each have at least one example that runs.
# Server: localhost, port $PGFLOW_TEST_PORT (5439), user postgres. Only database
# pgflow_readme_test is dropped and recreated.
# README_EXAMPLES_VERBOSE=1 also prints each example's output as TAP comments.
set -uo pipefail
cd "$(dirname "$0")/.."

db=pgflow_readme_test
required=(README.md docs/queue.md docs/engine.md)
export PGHOST=localhost PGPORT=${PGFLOW_TEST_PORT:-5439} PGUSER=postgres
unset PGDATABASE PGOPTIONS

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

diag() { sed 's/^/#   /'; }

files=(README.md)
while IFS= read -r f; do files+=("$f"); done < <(LC_ALL=C ls docs/*.md 2>/dev/null | LC_ALL=C sort)

# Split each file's sql blocks into $work/K/NNN.sql (K: the file's position in $files); the index
# $work/K/index lists "N fence_line skip reason" per block.
for k in "${!files[@]}"; do
  mkdir -p "$work/$k"
  awk -v dir="$work/$k" '
    BEGIN { n = 0; infence = 0; cur = 0; prev = "" }
    infence {
      if ($0 ~ /^[[:space:]]*```[[:space:]]*$/) { infence = 0; if (cur) close(file); cur = 0; prev = "```"; next }
      if (cur) print > file
      next
    }
    /^[[:space:]]*```/ {
      infence = 1; cur = 0
      if ($0 ~ /^[[:space:]]*```sql[[:space:]]*$/) {
        n++
        skip = 0; reason = "-"
        if (prev ~ /^[[:space:]]*<!--[[:space:]]*not run([[:space:]]*:.*)?-->[[:space:]]*$/) {
          skip = 1; reason = prev
          sub(/^[[:space:]]*<!--[[:space:]]*not run[[:space:]]*:?[[:space:]]*/, "", reason)
          sub(/[[:space:]]*-->[[:space:]]*$/, "", reason)
          if (reason == "") reason = "-"
        }
        file = sprintf("%s/%03d.sql", dir, n)
        printf "" > file
        cur = 1
        print n, NR, skip, reason
      }
      next
    }
    $0 !~ /^[[:space:]]*$/ { prev = $0 }
  ' "${files[$k]}" >"$work/$k/index"
done

runnable() { awk '$3 == 0' "$work/$1/index" | wc -l; }

for req in "${required[@]}"; do
  found=0
  for k in "${!files[@]}"; do
    [ "${files[$k]}" = "$req" ] && [ "$(runnable "$k")" -gt 0 ] && found=1
  done
  if [ $found = 0 ]; then
    echo "1..1"
    echo "not ok 1 - no runnable \`\`\`sql examples found in $req"
    exit 1
  fi
done

total=0
for k in "${!files[@]}"; do total=$((total + $(runnable "$k"))); done
echo "1..$total"

i=0
failed=0
for k in "${!files[@]}"; do
  src=${files[$k]}
  [ -s "$work/$k/index" ] || continue
  if ! out=$( { psql -X -q -v ON_ERROR_STOP=1 -d postgres \
                  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" &&
                psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION pgflow_core"; } 2>&1); then
    # Every example of this file fails with the reason.
    while read -r n start skip _; do
      [ "$skip" = 1 ] && continue
      i=$((i + 1)); failed=$((failed + 1))
      echo "not ok $i - $src:$start"
      printf 'could not create database %s with extension pgflow_core:\n%s\n' "$db" "$out" | diag
    done <"$work/$k/index"
    continue
  fi
  while read -r n start skip reason; do
    if [ "$skip" = 1 ]; then
      [ "$reason" = - ] && reason="no reason given"
      echo "# $src:$start: skipped, marked not run: $reason"
      continue
    fi
    i=$((i + 1))
    file=$work/$k/$(printf '%03d' "$n").sql
    if psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$file" >"$work/out" 2>"$work/err"; then
      echo "ok $i - $src:$start"
    else
      failed=$((failed + 1))
      echo "not ok $i - $src:$start"
      if grep -q 'ERROR:' "$work/err"; then
        # from the first ERROR on, with psql's file:line turned into FILE:line
        awk -v base="$start" -v prefix="psql:$file:" -v src="$src" '
          /ERROR:/ { on = 1 }
          on {
            if (index($0, prefix) == 1) {
              rest = substr($0, length(prefix) + 1)
              k = rest + 0
              sub(/^[0-9]+: /, "", rest)
              $0 = src ":" (base + k) ": " rest
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
  done <"$work/$k/index"
done

echo "# $total examples, $failed failed"
[ "$failed" -eq 0 ]
