#!/usr/bin/env bash
# Runs handoff's whole test suite: unit, store (memory + a real redis-server),
# end-to-end flows against the IdP stand-in, CLI, the rules crate, and the
# end-to-end suite against a real IdP (node oidc-provider, tests/e2e), and a short
# smoke run of the load harness (benches/, release build).
# Installs what is missing on a fresh Debian machine (cmake, redis-server, and
# the npm packages from the committed lockfiles).
#   ./deploy/scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/scripts/lib.sh
ensure_build_deps
ensure_packages redis-server:redis-server node:nodejs npm:npm
say "cargo test --workspace --locked"
cargo test --workspace --locked
say "cargo build --bin handoff (for the real-IdP end-to-end suite)"
cargo build --locked --bin handoff
tests/e2e/run.sh
say "load harness smoke run (seconds; its numbers are printed, never asserted)"
cargo bench --locked --bench load -- --smoke
