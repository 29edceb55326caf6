# Shell helpers for scripts/* and bench/run; source it after `cd` to the repo root:
#   source scripts/lib.sh
# One definition of "a tool is missing", so every script fails (or installs) the same way.

die() {
  echo "error: $*" >&2
  exit 1
}

# need COMMAND DEBIAN_PACKAGE: return when COMMAND (a name or a path) is there; else install
# the package when we may (root with apt-get), else stop with a message saying how.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 (for '$1')" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required: apt-get install $2"
}

# Rust comes from rustup, not a Debian package, so it is only checked.
need_cargo() {
  command -v cargo >/dev/null 2>&1 || die "cargo is required: install Rust with rustup"
}

# new_venv DIR: a Python virtual environment at DIR.
new_venv() {
  python3 -m venv "$1" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
}
