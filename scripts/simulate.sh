#!/usr/bin/env bash
# Run the deterministic simulations with many seeds (CI runs a couple of hundred):
#   bash scripts/simulate.sh [NEMESIS_SEEDS] [HISTORY_SEEDS]
# A failing seed is printed; replay it alone with
#   TESSERA_NEMESIS_SEED=<seed> TESSERA_NEMESIS_TRACE=1 cargo test --workspace --test nemesis -- --nocapture
cd "$(dirname "$0")/.."
source scripts/env.sh
set -x
TESSERA_NEMESIS_SEEDS="${1:-2000}" cargo test --workspace --test nemesis
TESSERA_HISTORY_SEEDS="${2:-500}" cargo test --workspace --test history
