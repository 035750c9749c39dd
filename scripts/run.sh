#!/usr/bin/env bash
# Build tessera and start a single node with its data under ./tessera-data.
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --bin tessera
exec "$CARGO_TARGET_DIR/debug/tessera" start-single-node --store ./tessera-data "$@"
