#!/usr/bin/env bash
# The test suite. `scripts/test.sh` (what CI runs, .ci/run) installs the dependencies and runs the release
# stage; `scripts/test.sh all` runs all three stages:
#   release   builds Release into build/ and runs every test (CTest, with pytest and the fuzz replays)
#   sanitize  builds with clang, AddressSanitizer + UndefinedBehaviorSanitizer and the libFuzzer harnesses
#             into build-fuzz/ (the `fuzz` preset) and runs every test there except those labelled slow
#   fuzz      runs every fuzz/ harness on its corpus for DINOV3_FUZZ_SECONDS (default 30) each
# `scripts/test.sh release` (or sanitize, or fuzz) runs one stage; arguments after it go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh

stages=(release)
if [ $# -gt 0 ] && [ "$1" = all ]; then
  stages=(release sanitize fuzz)
  shift
elif [ $# -gt 0 ] && [[ " release sanitize fuzz " == *" $1 "* ]]; then
  stages=("$1")
  shift
fi
jobs=$(nproc 2>/dev/null || echo 2)
for stage in "${stages[@]}"; do
  echo "== $stage"
  case $stage in
    release)
      scripts/build.sh
      rm -f build/pytest.log  # written by the python_pytest test (scripts/test_python.sh)
      ctest --test-dir build --output-on-failure -j"$jobs" "$@"
      if [ -f build/pytest.log ]; then echo "pytest: $(tail -n 1 build/pytest.log)"; fi
      ;;
    sanitize)
      cmake --preset fuzz >/dev/null
      cmake --build --preset fuzz -j"$jobs"
      ctest --preset fuzz -j"$jobs" "$@"
      ;;
    fuzz)
      scripts/fuzz.sh all "${DINOV3_FUZZ_SECONDS:-30}"
      ;;
  esac
done
