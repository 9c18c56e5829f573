#!/usr/bin/env bash
# Builds and runs handoff with the example config (embedded in-memory store, no
# Redis needed). Pass another config as the first argument.
#   ./deploy/scripts/run.sh [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/scripts/lib.sh
ensure_build_deps
config="${1:-deploy/examples/handoff.toml}"
say "building handoff (release)"
cargo build --release --locked --bin handoff
say "checking $config"
./target/release/handoff config check "$config"
say "starting handoff: public http://127.0.0.1:8080, admin http://127.0.0.1:9090 (Ctrl-C stops)"
exec ./target/release/handoff --config "$config"
