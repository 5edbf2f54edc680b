#!/usr/bin/env bash
# The whole test suite: install dependencies, build, run every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
jobs=$(nproc 2>/dev/null || echo 2)
rm -f build/pytest.log  # written by the python_pytest test (scripts/test_python.sh)
ctest --test-dir build --output-on-failure -j"$jobs" "$@"
if [ -f build/pytest.log ]; then echo "pytest: $(tail -n 1 build/pytest.log)"; fi
