#!/usr/bin/env bash
# Run the whole test suite as CI does: formatting, lints, every crate's tests and the
# process-level tests against real tessera processes.
cd "$(dirname "$0")/.."
source scripts/env.sh
# Real clients the process-level tests drive: psql (env.sh), pgbench 15 (Debian ships it
# in the server package), sysbench and pgjdbc; iptables, with which they partition nodes
# on their loopback addresses, and libfaketime, which skews a node's clock.
clients=()
command -v iptables >/dev/null 2>&1 || clients+=(iptables)
dpkg -s libfaketime >/dev/null 2>&1 || clients+=(libfaketime)
command -v sysbench >/dev/null 2>&1 || clients+=(sysbench)
[ -f /usr/share/java/postgresql.jar ] || clients+=(libpostgresql-jdbc-java)
command -v java >/dev/null 2>&1 || clients+=(openjdk-17-jre-headless)
pgbench --version 2>/dev/null | grep -q ' 15\.' || clients+=(postgresql-15)
if [ "${#clients[@]}" -gt 0 ]; then
  apt_install "clients the tests drive" "${clients[@]}"
fi
# Python and Node drivers, into folders of the checkout (not system-wide).
if [ ! -x .venv/bin/python ] || ! .venv/bin/pip freeze 2>/dev/null | grep -qi '^psycopg2-binary=='; then
  python3 -m venv .venv
  .venv/bin/pip install -q -r tests/clients/python/requirements.txt
fi
if [ ! -d tests/clients/node/node_modules/pg ]; then
  (cd tests/clients/node && npm ci --silent --no-audit --no-fund)
fi
set -x
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The process-level tests start the tessera binary of this same (dev) profile. Built
# with the tests, so that dependencies are compiled once with one set of features.
cargo build --workspace --tests --bins
cargo test --workspace
