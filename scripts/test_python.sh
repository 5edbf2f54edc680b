#!/usr/bin/env bash
# The Python package's tests: pytest on Debian's python3 against the package built in BUILD_DIR
# (default build/), which CTest runs as the test python_pytest. The log lands in BUILD_DIR/pytest.log.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
export PYTHONPATH=$build/python${PYTHONPATH:+:$PYTHONPATH}
export DINOV3_CLI=${DINOV3_CLI:-$build/bin/dinov3}
export DINOV3_SHARED_DIR=${DINOV3_SHARED_DIR:-$(cd ../shared && pwd)}
/usr/bin/python3 -m pytest -p no:cacheprovider -q tests/python 2>&1 | tee "$build/pytest.log"
