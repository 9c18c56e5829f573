#!/usr/bin/env bash
# Runs handoff's whole test suite: unit, store (memory + a real redis-server),
# end-to-end flows against the IdP stand-in, CLI, and the rules crate.
# Installs what is missing on a fresh Debian machine (cmake, redis-server).
#   ./deploy/scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/scripts/lib.sh
ensure_build_deps
ensure_packages redis-server:redis-server
say "cargo test --workspace --locked"
cargo test --workspace --locked
