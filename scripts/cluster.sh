#!/usr/bin/env bash
# Creates (if needed) and starts a PostgreSQL 15 cluster with pgflow_core preloaded.
#   scripts/cluster.sh [--fresh] NAME PORT [DATABASES] [SETTING=VALUE ...]
# --fresh     drop the cluster first when it exists, so nothing survives from an earlier run
#             (the test suites use it).
# DATABASES   (comma-separated, may be empty) become pgflow.worker_databases, the databases the
#             background worker serves (the setting's default is postgres).
# SETTING=VALUE  further settings, written to the cluster's postgresql.conf when it is created
#             (so settings of libraries that are not loaded yet, such as cron.database_name, work).
# Stops at once when PORT is taken by another cluster or program.
# Local connections are trusted: these clusters are for demos and tests on this machine only.
set -euo pipefail
fresh=no
if [ "${1:-}" == --fresh ]; then fresh=yes; shift; fi
name=${1:?cluster name}
port=${2:?port}
databases=${3:-}
shift $(( $# < 3 ? $# : 3 ))
PG_MAJOR=15

exists() { pg_lsclusters -h | awk -v n="$name" '$1=="'$PG_MAJOR'" && $2==n' | grep -q .; }

if [ $fresh == yes ] && exists; then
  pg_dropcluster --stop $PG_MAJOR "$name"
fi

if ! exists; then
  # The port must be free: neither another cluster's nor any other program's.
  other=$(pg_lsclusters -h | awk -v p="$port" '$3==p { print $1 "/" $2 }' | head -1)
  if [ -n "$other" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken${other:+ by cluster $other}; cluster $name needs it." >&2
    echo "Free the port, or choose another one with the setting named in README.md (\"Test clusters and ports\")." >&2
    exit 3
  fi
  options=(-o "shared_preload_libraries=pgflow_core" -o "listen_addresses=localhost"
           -o "max_connections=200" -o "fsync=on")
  [ -n "$databases" ] && options+=(-o "pgflow.worker_databases=$databases")
  for setting in "$@"; do options+=(-o "$setting"); done
  pg_createcluster $PG_MAJOR "$name" -p "$port" "${options[@]}" >/dev/null
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
    if [ -n "$databases" ] && [ $fresh == no ]; then
      psql -q -X -h localhost -p "$port" -U postgres -d postgres \
        -c "ALTER SYSTEM SET pgflow.worker_databases = '$databases'" -c "SELECT pg_reload_conf()" >/dev/null
    fi
    exit 0
  fi
  sleep 0.2
done
echo "cluster $name did not become ready on port $port" >&2
exit 1
