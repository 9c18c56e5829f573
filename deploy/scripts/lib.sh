# Shared by run.sh and test.sh: install what a fresh Debian machine lacks, saying so.
# Only the Rust toolchain is assumed.

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    say "need root to run: $*"; return 1; fi
}

# ensure_packages CMD:PACKAGE ... — installs PACKAGE with apt-get when CMD is missing.
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing missing Debian packages: ${missing[*]} (apt-get install -y ${missing[*]})"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# pingora's zlib (libz-ng-sys) builds with cmake.
ensure_build_deps() {
  ensure_packages cmake:cmake
  command -v cargo >/dev/null 2>&1 || { say "cargo not found: install the Rust toolchain (rustup) first"; exit 1; }
}
