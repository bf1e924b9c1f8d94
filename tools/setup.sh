#!/usr/bin/env bash
# Set up fmnist-edge on a fresh Debian machine: the real data, a venv, the package with extras.
# Usage: bash tools/setup.sh [EXTRAS]   (EXTRAS defaults to "train,dev"; "runtime" for the runtime only)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1-train,dev}"
[ "$extras" = "runtime" ] && extras=""

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

# Debian packages: the real data for training and tests (the runtime alone needs none), and
# venv support, which a fresh Debian lacks (python3-venv).
packages=()
if [ -n "$extras" ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    packages+=(dataset-fashion-mnist)
fi
if [ ! -x .venv/bin/python ] && ! "$PY" -c "import ensurepip" 2>/dev/null; then
    packages+=(python3-venv)
fi
if [ ${#packages[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
if [[ ",$extras," == *",train,"* ]]; then
    # The pair that installs and imports together here; pip takes both from local wheels when present.
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v '^WARNING: Location' || true
fi
spec="."; [ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m pip install -q -e "$spec" 2>&1 | grep -vE '^WARNING: Location|^\s*$|!!|setuptools|wheel_obj|WheelFile|########|\*\*\*\*' || true
# Byte-compile the package once: an editable install is not compiled, and where
# PYTHONDONTWRITEBYTECODE is set (as on these machines) every `fmnist-edge classify` would
# otherwise compile the runtime's modules again before answering.
.venv/bin/python -m compileall -q fmnist_edge >/dev/null
.venv/bin/fmnist-edge --help >/dev/null
echo "fmnist-edge is set up in .venv (extras: ${extras:-none})"
