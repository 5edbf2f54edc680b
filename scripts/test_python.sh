#!/usr/bin/env bash
# The Python package's tests: pytest on Debian's python3 against the package built in BUILD_DIR
# (default build/): all of tests/python, or the test files given after BUILD_DIR (CTest runs one file per
# test, python.<file>). The log lands in BUILD_DIR/pytest.log, or BUILD_DIR/pytest_<file>.log for one file.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
export PYTHONPATH=$build/python${PYTHONPATH:+:$PYTHONPATH}
export DINOV3_CLI=${DINOV3_CLI:-$build/bin/dinov3}
export DINOV3_SHARED_DIR=${DINOV3_SHARED_DIR:-$(cd ../shared && pwd)}
shift || true
log=$build/pytest.log
[ $# -eq 1 ] && log=$build/pytest_$(basename "$1" .py).log
/usr/bin/python3 -m pytest -p no:cacheprovider -q "${@:-tests/python}" 2>&1 | tee "$log"
