#!/usr/bin/env bash
# End-to-end tests of handoff in front of a real IdP (node oidc-provider with the
# integration in deploy/oidc-provider), with a real redis-server, all on loopback
# with free ports. Also runs the integration's stand-alone tests.
#
#   tests/e2e/run.sh                      # uses target/debug/handoff
#   HANDOFF_BIN=target/release/handoff tests/e2e/run.sh
#
# Needs: node >= 20.19 with npm, redis-server, a built handoff binary
# (cargo build --bin handoff). Installs the npm packages with `npm ci` from the
# committed lockfiles. E2E_TIMEOUT (seconds, default 180) bounds the whole run;
# E2E_VERBOSE=1 prints the IdP's log and handoff's stderr; E2E_KEEP=1 keeps the
# temp dirs (config, rules, key).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
say() { printf '==> e2e: %s\n' "$*" >&2; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (Node.js >= 20.19 is needed)"
command -v npm >/dev/null || die "npm not found"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || die "Node.js $(node --version) is too old: oidc-provider 9 and jose 6 need >= 20.19"
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"

if [[ -n "${HANDOFF_BIN:-}" ]]; then
  HANDOFF_BIN="$(cd "$(dirname "$HANDOFF_BIN")" && pwd)/$(basename "$HANDOFF_BIN")"
else
  HANDOFF_BIN="$repo/target/debug/handoff"
fi
[[ -x "$HANDOFF_BIN" ]] || die "no handoff binary at $HANDOFF_BIN (cargo build --bin handoff, or set HANDOFF_BIN)"
export HANDOFF_BIN

for dir in deploy/oidc-provider tests/e2e; do
  say "npm ci in $dir (packages from its package-lock.json)"
  (cd "$repo/$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
done

say "node --test with $HANDOFF_BIN (at most ${E2E_TIMEOUT:-180} s)"
cd "$here"
# The oidc-provider warnings (Node 20 is not its preferred runtime; in-memory
# adapter) are expected here.
exec timeout --kill-after=10 "${E2E_TIMEOUT:-180}" \
  node --test --test-reporter=spec --test-concurrency=2 --test-timeout=90000 \
  "$repo"/deploy/oidc-provider/test/*.test.js test/*.test.js
