#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs the dependencies, then
#   release   builds Release into build/ and runs every test (the Python package's too)
#   sanitize  builds with clang, AddressSanitizer + UndefinedBehaviorSanitizer and the libFuzzer harnesses
#             into build-fuzz/ (the `fuzz` preset) and runs every test there except those labelled slow
#   fuzz      runs every fuzz/ harness on its corpus for DINOV3_FUZZ_SECONDS (default 30) each
# `scripts/test.sh release` (or sanitize, or fuzz) runs one stage; arguments after it go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
source scripts/cmake_env.sh  # after the install: it picks Ninja when installed

# pytest's summary line in log $1 (its last line if there is none: a crash, an interrupted run).
pytest_result() {
  local line
  line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)|no tests ran' "$1" | tail -n 1 || true)
  [ -n "$line" ] || line=$(tail -n 1 "$1")
  echo "$line"
}

stages=(release sanitize fuzz)
if [ $# -gt 0 ] && [[ " ${stages[*]} " == *" $1 "* ]]; then
  stages=("$1")
  shift
fi
jobs=$(nproc 2>/dev/null || echo 2)
for stage in "${stages[@]}"; do
  echo "== $stage"
  start=$SECONDS
  case $stage in
    release)
      scripts/build.sh
      rm -f build/pytest*.log  # written by the python.* tests (scripts/test_python.sh)
      ctest --test-dir build --output-on-failure -j"$jobs" "$@"
      # Each file's pytest result line ("7 passed, 1 warning in 42.9s"), not its last line: a library may
      # print after it as the interpreter exits (Dask's cluster teardown on a slow machine can).
      for log in build/pytest_*.log; do
        [ -f "$log" ] && echo "pytest $(basename "$log" .log | sed 's/^pytest_//'): $(pytest_result "$log")"
      done
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
  echo "== $stage: $((SECONDS - start)) s"
done
