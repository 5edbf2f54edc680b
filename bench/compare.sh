#!/usr/bin/env bash
# Side-by-side speed of dinov3.cpp and ONNX Runtime on this machine, in one run. Builds Release, then runs
# `--rounds` rounds, each the ONNX Runtime anchor (../shared/anchors) followed at once by `dinov3 bench`
# for each precision, and prints one table: each figure is the median over the rounds, and each ratio the
# median of the rounds' own ratios. A shared machine drifts between fast and slow stretches that last
# minutes, and each engine can catch one alone; alternating them in short rounds keeps such a stretch from
# deciding a ratio. The reference backend runs once (batch 1, few runs).
#
#   bench/compare.sh [--threads 2] [--runs 20] [--rounds 5] [--model DIR] [--precisions fp32,bf16,int8,int8-plan]
#                    [--no-pin]
#
# int8-plan: int8 with the per-layer plan `dinov3 calibrate` writes for the model first (on the bundled
# sample photos; the plan and its report land in output/compare/calibrate).
#
# Cores: every timed program of a round (the ONNX Runtime anchor, peak_bench, `dinov3 bench`) runs pinned to
# the same `--threads` cores (taskset: the first that this process may use), so a ratio to the floor divides
# a forward's time by the peak of the cores it ran on. Unpinned, each process lands wherever the scheduler
# puts it, and the virtual cores of a shared VM are not alike (README, "Speed"). --no-pin: unpinned.
#
# Peak figures: each round also measures the machine's per-core arithmetic peak with build/bin/peak_bench
# (register-only loops of fp32 FMA, bf16 and int8 dot products on `--threads` threads at once), so "of peak"
# and "x floor" (ms at batch 1 over the flops at that peak) compare with the machine as it ran that round.
# Without those measurements PEAK_GFLOPS_FP32 / PEAK_GFLOPS_BF16 / PEAK_GFLOPS_INT8 per core apply
# (defaults: this machine's anchors README: 287 fp32 FMA, 528 bf16 dot products; int8 VNNI taken as 2x bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 runs=20 rounds=5 model=../shared/fixtures/models/vits16 precisions=fp32 pin=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --no-pin) pin=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v node >/dev/null && command -v npm >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
}
scripts/install_deps.sh
scripts/build.sh >/dev/null
out=output/compare
on_cores=()
if [ "$pin" = 1 ]; then
  # The first `threads` cores this process may run on.
  cores=$(/usr/bin/python3 -c "import os, sys; c = sorted(os.sched_getaffinity(0)); n = int(sys.argv[1])
print(','.join(map(str, c[:n])) if n <= len(c) else '')" "$threads" 2>/dev/null || true)
  if [ -n "$cores" ] && command -v taskset >/dev/null; then
    on_cores=(taskset -c "$cores")
    echo "# pinned to cores $cores"
  else
    echo "# not pinned: $threads threads on $(nproc) cores, or no taskset" >&2
  fi
fi
mkdir -p "$out"
rm -rf "$out"/round-* "$out"/reference-* "$out"/cpu-* "$out"/calibrate "$out"/ort.jsonl "$out"/ort.txt  # no stale rows from an earlier run

plan=$out/calibrate/int8_plan.json
if [[ ",$precisions," == *,int8-plan,* ]]; then
  echo "# int8 plan for $model"
  build/bin/dinov3 calibrate --model "$model" --threads "$threads" --plan "$plan" --overwrite \
    --output-dir "$out/calibrate" | grep -E '^(errors|plan):'
fi

ort_home=$(../shared/anchors/setup.sh)
for r in $(seq 1 "$rounds"); do
  dir=$out/round-$r
  mkdir -p "$dir"
  echo "# round $r of $rounds: ONNX Runtime anchor"
  ORT_HOME=$ort_home "${on_cores[@]}" node ../shared/anchors/ort_bench.mjs --batches 1,2,4,8 --runs "$runs" --threads "$threads" \
    --json "$dir/ort.jsonl" | tee "$dir/ort.txt"
  if [ -x build/bin/peak_bench ]; then
    echo "# round $r of $rounds: arithmetic peak per core (GFLOP/s)"
    "${on_cores[@]}" build/bin/peak_bench --threads "$threads" --seconds 0.1 --json "$dir/peak.json" | grep -E "^(fp32|bf16|int8) +$threads "
  fi
  for p in ${precisions//,/ }; do
    echo "# round $r of $rounds: dinov3 cpu backend, $p"
    if [ "$p" = int8-plan ]; then flags=(--precision int8 --int8-plan "$plan"); else flags=(--precision "$p"); fi
    "${on_cores[@]}" build/bin/dinov3 bench --model "$model" --backend cpu "${flags[@]}" --threads "$threads" --iterations "$runs" \
      --warmup 5 --batch-sizes 1,2,4,8 --output-dir "$dir/cpu-$p" >/dev/null
    grep -E '^ +[0-9]+ ' "$dir/cpu-$p/bench.log"
  done
done
echo "# dinov3 reference backend (plain loops: batch 1, few runs)"
build/bin/dinov3 bench --model "$model" --backend reference --threads "$threads" --iterations 2 --warmup 1 \
  --batch-sizes 1 --output-dir "$out/reference-fp32" >/dev/null
echo
node bench/table.mjs "$out" "$threads"
