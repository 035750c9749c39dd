#!/usr/bin/env bash
# Side-by-side benchmark with PostgreSQL 15 (see README): a release build of tessera and
# of the comparison program, then the comparison. Arguments go to the program.
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --bin tessera --bin compare
exec "$CARGO_TARGET_DIR/release/compare" "$@"
