# Shared setup for scripts/run.sh and scripts/test.sh: system packages and the cargo
# target directory (kept outside the checkout so that builds are reused).
set -euo pipefail

need_apt=()
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# apt_install WHY PACKAGE...: install Debian packages (as root, or with sudo).
apt_install() {
  local why="$1"
  shift
  echo "installing $* ($why)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if [ "${#need_apt[@]}" -gt 0 ]; then
  apt_install "needed to build RocksDB bindings / to connect" "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust (rustup) first" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
mkdir -p "$CARGO_TARGET_DIR"
