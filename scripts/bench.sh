#!/usr/bin/env bash
# Benchmarks pgflow_core. Run as root on Debian 12:  bash scripts/bench.sh [pgflow-bench options]
#
# Installs what is missing, builds and installs the extension in release mode, creates/starts
# the cluster "pgflow_bench" on port $PGFLOW_BENCH_PORT (5444), recreates database pgflow_bench
# with the extension, builds benches/ (pgflow-bench) in release mode and runs every workload
# (`pgflow-bench all`), ending with a summary table. The cluster gets 8 executors serving the
# database (pgflow.executors, pgflow.worker_databases, max_worker_processes = 16) for the sql-*
# workloads. Extra arguments go to pgflow-bench, e.g.
#   bash scripts/bench.sh --quick          # smoke test
#   bash scripts/bench.sh dag --workers 4  # one workload
# Takes about 3-5 minutes on a 2-core machine with the default sizes.
#
# PGFLOW_BENCH_SETTINGS="name=value ..." sets server settings for the run (ALTER SYSTEM and a
# reload; scripts/soak.sh uses it). Without it those settings go back to PostgreSQL's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PGFLOW_BENCH_PORT:-5444}
db=pgflow_bench

bash scripts/install-deps.sh
echo "==> building and installing pgflow_core (release)"
bash scripts/install-extension.sh --release >/tmp/pgflow_core-bench-install.log 2>&1 \
  || { cat /tmp/pgflow_core-bench-install.log; exit 1; }
bash scripts/cluster.sh pgflow_bench "$port"

export PGHOST=localhost PGPORT=$port PGUSER=postgres
# The sql-* workloads need executors serving the database: 8 (the largest pool), and background
# worker slots for them (max_worker_processes takes a restart).
psql -q -X -v ON_ERROR_STOP=1 -d postgres -c "ALTER SYSTEM SET pgflow.worker_databases = '$db'" \
  -c "ALTER SYSTEM SET pgflow.executors = 8" -c "ALTER SYSTEM SET max_worker_processes = 16" >/dev/null
if [ "$(psql -X -Atq -d postgres -c "SHOW max_worker_processes")" -lt 16 ]; then
  pg_ctlcluster 15 pgflow_bench restart
fi
settings=(-c "ALTER SYSTEM RESET autovacuum_naptime")
for kv in ${PGFLOW_BENCH_SETTINGS:-}; do
  settings+=(-c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'")
done
psql -q -X -v ON_ERROR_STOP=1 -d postgres "${settings[@]}" -c "SELECT pg_reload_conf()" >/dev/null
psql -q -X -v ON_ERROR_STOP=1 -d postgres \
  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
psql -q -X -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION pgflow_core"
# The launcher starts the executors within 10 seconds of the extension's creation.
for _ in $(seq 1 150); do
  [ "$(psql -X -Atq -d "$db" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgflow_core executor' AND datname = current_database()")" -ge 8 ] && break
  sleep 0.2
done

echo "==> building pgflow-bench (release)"
cargo build --release --quiet --manifest-path benches/Cargo.toml

echo "==> pgflow-bench all"
exec benches/target/release/pgflow-bench all \
  --dsn "host=localhost port=$port user=postgres dbname=$db" "$@"
