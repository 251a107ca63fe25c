#!/usr/bin/env bash
# Builds pgflow_core and installs it into the system PostgreSQL 15.
#   scripts/install-extension.sh [--release]
# The old library is unlinked first: cargo-pgrx overwrites files in place, which would change
# the code under a running server that has the library mapped. Running servers keep the old
# file until they restart (scripts/cluster.sh restarts a cluster when the library is newer).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
rm -f "$("$PG_CONFIG" --pkglibdir)/pgflow_core.so"
cargo pgrx install --pg-config "$PG_CONFIG" "$@"
