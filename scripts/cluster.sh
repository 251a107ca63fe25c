#!/usr/bin/env bash
# Creates (if needed) and starts a PostgreSQL 15 cluster with pgflow_core preloaded.
#   scripts/cluster.sh NAME PORT [DATABASES]
# DATABASES (comma-separated) become pgflow.worker_databases, the databases the background
# worker serves (the setting's default is postgres).
# Local connections are trusted: these clusters are for demos and tests on this machine only.
set -euo pipefail
name=${1:?cluster name}
port=${2:?port}
databases=${3:-}
PG_MAJOR=15

if ! pg_lsclusters -h | awk -v n="$name" '$1=="'$PG_MAJOR'" && $2==n' | grep -q .; then
  pg_createcluster $PG_MAJOR "$name" -p "$port" \
    -o "shared_preload_libraries=pgflow_core" \
    -o "listen_addresses=localhost" \
    -o "max_connections=200" \
    -o "fsync=on" >/dev/null
  conf=/etc/postgresql/$PG_MAJOR/$name
  cat > "$conf/pg_hba.conf" <<HBA
local   all         all                trust
host    all         all 127.0.0.1/32   trust
host    all         all ::1/128        trust
local   replication all                trust
host    replication all 127.0.0.1/32   trust
HBA
fi

lib=$(/usr/lib/postgresql/$PG_MAJOR/bin/pg_config --pkglibdir)/pgflow_core.so
pidfile=/var/lib/postgresql/$PG_MAJOR/$name/postmaster.pid
if pg_lsclusters -h | awk -v n="$name" '$1=="'$PG_MAJOR'" && $2==n && $4=="online"' | grep -q .; then
  # Restart only when the installed library is newer than the running server.
  if [ "$lib" -nt "$pidfile" ]; then pg_ctlcluster $PG_MAJOR "$name" restart; fi
else
  pg_ctlcluster $PG_MAJOR "$name" start
fi
for _ in $(seq 1 50); do
  if pg_isready -q -h localhost -p "$port"; then
    if [ -n "$databases" ]; then
      psql -q -X -h localhost -p "$port" -U postgres -d postgres \
        -c "ALTER SYSTEM SET pgflow.worker_databases = '$databases'" -c "SELECT pg_reload_conf()" >/dev/null
    fi
    exit 0
  fi
  sleep 0.2
done
echo "cluster $name did not become ready" >&2
exit 1
