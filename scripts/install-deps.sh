#!/usr/bin/env bash
# Installs everything pgflow_core needs to build and test on Debian 12, as root.
# Safe to run again: each step checks whether it is already done.
set -euo pipefail

PG_MAJOR=15
PGRX_VERSION=0.18.1
export DEBIAN_FRONTEND=noninteractive

need_pkgs=()
for p in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-pgtap \
         libtap-parser-sourcehandler-pgtap-perl postgresql-$PG_MAJOR-cron postgresql-$PG_MAJOR-partman \
         graphviz pgbouncer sudo pkg-config libssl-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_pkgs[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The test command's lint suite runs cargo fmt and clippy.
if command -v rustup >/dev/null && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  echo "==> rustup component add rustfmt clippy"
  rustup component add rustfmt clippy
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  echo "==> cargo install cargo-pgrx $PGRX_VERSION (takes a few minutes)"
  cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

if ! grep -qs "^pg$PG_MAJOR" "$HOME/.pgrx/config.toml"; then
  echo "==> cargo pgrx init --pg$PG_MAJOR"
  cargo pgrx init --pg$PG_MAJOR /usr/lib/postgresql/$PG_MAJOR/bin/pg_config
fi
