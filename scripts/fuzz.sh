#!/usr/bin/env bash
# Runs a libFuzzer harness from fuzz/ for a while on its seed corpus:
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]   one target (fuzz_safetensors, fuzz_image_png, ...)
#   scripts/fuzz.sh all SECONDS [libFuzzer options...]      every target, two at a time (a line of stats each)
#   scripts/fuzz.sh list                                    the targets
# The harnesses are built first if needed, with clang, AddressSanitizer and UBSan, in build-fuzz/ (the
# `fuzz` preset; DINOV3_FUZZ_BUILD_DIR picks another folder). New inputs the fuzzer finds go to
# build-fuzz/corpus/TARGET (the checked-in seeds in fuzz/corpus/TARGET are only read); a crash, leak,
# timeout or sanitizer report is written to build-fuzz/findings/TARGET/ and the run fails. Keep a finding's
# input in fuzz/regressions/TARGET/ once fixed: every build replays it (ctest -L fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cmake_env.sh

build=${DINOV3_FUZZ_BUILD_DIR:-build-fuzz}
mapfile -t targets < <(sed -n 's/^dinov3_add_fuzzer(\([A-Za-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt)

usage() {
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer options...] | list" >&2
  echo "targets: ${targets[*]}" >&2
  exit 2
}

[ $# -ge 1 ] || usage
if [ "$1" = list ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
[ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || usage
target=$1
seconds=$2
shift 2
if [ "$target" = all ]; then
  selected=("${targets[@]}")
else
  printf '%s\n' "${targets[@]}" | grep -qx "$target" || usage
  selected=("$target")
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake --preset fuzz -B "$build" >/dev/null
fi
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target "${selected[@]}"

# A dictionary may name others to include ("#include fuzz_zip.dict"): libFuzzer takes one file.
expand_dict() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "#include "*) expand_dict "fuzz/dict/${line#\#include }" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$1"
}

# Runs one target; its log ends with libFuzzer's final stats. Prints one summary line.
run_one() {
  local t=$1 log dict=()
  shift
  mkdir -p "$build/corpus/$t" "$build/findings/$t" "$build/logs"
  if [ -f "fuzz/dict/$t.dict" ]; then
    expand_dict "fuzz/dict/$t.dict" >"$build/corpus/$t.dict"
    dict=(-dict="$build/corpus/$t.dict")
  fi
  local seeds=(fuzz/corpus/"$t")
  [ -d "fuzz/regressions/$t" ] && seeds+=(fuzz/regressions/"$t")
  log="$build/logs/$t.log"
  local status=0
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$build/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$build/findings/$t/" "${dict[@]}" "$@" "$build/corpus/$t" "${seeds[@]}" >"$log" 2>&1 ||
    status=$?
  local execs cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ "$status" -ne 0 ]; then
    echo "$t: FAILED after ${execs:-?} executions (exit $status); see $log and $build/findings/$t/"
    grep -m3 -E '^==[0-9]+==ERROR|runtime error|property violated|^SUMMARY' "$log" | sed 's/^/  /' || true
    return 1
  fi
  echo "$t: ${seconds}s, ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, no findings"
}

if [ ${#selected[@]} -eq 1 ]; then
  run_one "${selected[0]}" "$@"
  exit $?
fi
# Two at a time: a pair shares the machine's two cores.
failed=0
pids=()
for t in "${selected[@]}"; do
  run_one "$t" "$@" &
  pids+=($!)
  if [ ${#pids[@]} -eq 2 ]; then
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    pids=()
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit $failed
