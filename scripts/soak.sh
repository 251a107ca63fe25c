#!/usr/bin/env bash
# The long-lived-database benchmark: completes 1,000,000 tasks (pgflow-bench --soak) on the
# bench cluster with the maintenance settings the README recommends, and prints each round's
# tasks/s and table sizes. Run as root on Debian 12:
#   bash scripts/soak.sh              # autovacuum_naptime 10s, prune runs older than 60 s every 10 s
#   bash scripts/soak.sh --defaults   # PostgreSQL's default autovacuum, no pruning
# Further arguments go to pgflow-bench (e.g. --soak 200000). Takes about 12 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --defaults ]; then
  shift
  exec bash scripts/bench.sh --soak 1000000 --runs 10000 --workers 4 "$@"
fi
PGFLOW_BENCH_SETTINGS="autovacuum_naptime=10s" \
  exec bash scripts/bench.sh --soak 1000000 --runs 10000 --workers 4 --prune 60 --prune-every 10 "$@"
