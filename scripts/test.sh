#!/usr/bin/env bash
# Run the whole test suite as CI does: formatting, lints, every crate's tests and the
# process-level tests against real tessera processes.
cd "$(dirname "$0")/.."
source scripts/env.sh
set -x
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The process-level tests start the tessera binary of this same (dev) profile.
cargo build --bin tessera
cargo test --workspace
