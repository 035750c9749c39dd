#!/usr/bin/env bash
# Build tessera (optimised) and start a single node with its data under ./tessera-data.
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --bin tessera
exec "$CARGO_TARGET_DIR/release/tessera" start-single-node --store ./tessera-data "$@"
