#!/usr/bin/env bash
# Setup and demo. Run as root on Debian 12:  bash scripts/demo.sh
#
# Installs what is missing (PostgreSQL 15 dev files, cargo-pgrx), builds pgflow_core in
# release mode, installs it into the system PostgreSQL 15, creates and starts the cluster
# "pgflow_demo" on port $PGFLOW_DEMO_PORT (5433) with the library preloaded, creates the
# extension in database pgflow_demo (recreated on every run) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PGFLOW_DEMO_PORT:-5433}

bash scripts/install-deps.sh
echo "==> building and installing pgflow_core (release)"
bash scripts/install-extension.sh --release >/tmp/pgflow_core-install.log 2>&1 \
  || { cat /tmp/pgflow_core-install.log; exit 1; }
bash scripts/cluster.sh pgflow_demo "$port" pgflow_demo

export PGHOST=localhost PGPORT=$port PGUSER=postgres
psql -q -d postgres -c "DROP DATABASE IF EXISTS pgflow_demo WITH (FORCE)" -c "CREATE DATABASE pgflow_demo"
psql -q -d pgflow_demo -c "CREATE EXTENSION pgflow_core"

echo "==> demo"
psql -d pgflow_demo -v ON_ERROR_STOP=1 -f examples/demo.sql
psql -d pgflow_demo -v ON_ERROR_STOP=1 -f examples/demo_workflow.sql
psql -d pgflow_demo -v ON_ERROR_STOP=1 -f examples/demo_sql_workflow.sql

echo
echo "Connect to the demo cluster with:  psql -h localhost -p $port -U postgres -d pgflow_demo"
