#!/usr/bin/env bash
# Set everything up (tools/setup.sh) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh "train,dev"
# One pytest worker per core (pytest-xdist), each test taken by whichever worker is free; every
# worker keeps to one thread (torch, OpenMP, ONNX Runtime's default), or the workers' threads
# would spin against each other on the shared cores.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 FMNIST_EDGE_THREADS=1
set +e
.venv/bin/python -m pytest -q -n auto --dist worksteal "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"
