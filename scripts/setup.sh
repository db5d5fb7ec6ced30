#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install lmmkit into it. Usage: bash scripts/setup.sh [extras]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "lmmkit needs Python >= 3.11; '$PY' is $("$PY" --version 2>&1 || echo missing)." >&2
  echo "Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "python3 -m venv is unavailable; installing Debian's python3-venv" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
      "$PY" -m venv .venv
    else
      echo "python3 -m venv failed: install python3-venv (Debian: sudo apt-get install python3-venv)." >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
target="."
[ -n "$extras" ] && target=".[${extras}]"
.venv/bin/python -m pip install -q -e "$target" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import lmmkit" || { echo "lmmkit did not install; see the pip output above." >&2; exit 1; }
# Compile lmmkit's numba kernels into the on-disk cache now, so no first real call pays for it.
.venv/bin/python -m lmmkit._warmup || echo "lmmkit: the numba warm-up failed; kernels will compile on first use." >&2
