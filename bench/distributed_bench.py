#!/usr/bin/python3
"""dinov3.distributed against `dinov3 embed` on this machine, on the same images and model.

    PYTHONPATH=build/python /usr/bin/python3 bench/distributed_bench.py [--images 500] [--rounds 2]
        [--model ../shared/fixtures/models/vits16] [--cli build/bin/dinov3] [--partition-size 256]

Four runs per round, interleaved so that a noisy neighbour hits them alike:
  embed-1t      dinov3 embed --threads 1
  dask-2x1      dinov3.distributed, local cluster of 2 worker processes x 1 engine thread
  embed         dinov3 embed (every core)
  dask-1x2      dinov3.distributed, 1 worker process x 2 engine threads
Each dask run is timed twice: end to end (cluster start included, as `python3 -m dinov3.distributed` does
it) and the embed() call alone on a cluster already started (as with a long-lived scheduler). The images are
links to the fixture photographs, repeated to the count asked for. Prints per-round figures, medians and the
ratios the cluster runner is held to (2x1 vs embed-1t: speed-up; 1x2 vs embed: overhead).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import distributed

import dinov3.distributed as dd

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, count: int) -> None:
    photos = sorted(p for p in (ROOT.parent / "shared" / "fixtures" / "images").iterdir() if p.is_file())
    for i in range(count):
        p = photos[i % len(photos)]
        (folder / f"img{i:05d}{p.suffix}").symlink_to(p)


def time_cli(cli: str, model: str, images: Path, out: Path, threads: int) -> float:
    args = [cli, "embed", "--model", model, str(images), "-o", str(out), "--overwrite", "-q"]
    if threads:
        args += ["--threads", str(threads)]
    t0 = time.perf_counter()
    subprocess.run(args, check=True)
    return time.perf_counter() - t0


def time_dask(model: str, images: Path, out: Path, workers: int, threads: int, partition_size: int):
    """(end to end including the cluster's start, embed() alone)."""
    t0 = time.perf_counter()
    cluster = dd.local_cluster(workers)  # as embed() and `python3 -m dinov3.distributed` start it
    client = distributed.Client(cluster)
    client.wait_for_workers(workers)
    t1 = time.perf_counter()
    try:
        summary = dd.embed([str(images)], model, out, client=client, threads=threads, partition_size=partition_size,
                           overwrite=True)
    finally:
        client.close()
        cluster.close()
    t2 = time.perf_counter()
    assert summary.rows > 0
    return t2 - t0, summary.seconds, t1 - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT.parent / "shared" / "fixtures" / "models" / "vits16"))
    ap.add_argument("--cli", default=str(ROOT / "build" / "bin" / "dinov3"))
    ap.add_argument("--partition-size", type=int, default=dd.DEFAULT_PARTITION_SIZE)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"# {a.images} images, model {a.model}, {cores} cores, partition size {a.partition_size}, "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    results = {k: [] for k in ("embed-1t", "dask-2x1", "dask-2x1 call", "embed", "dask-1x2", "dask-1x2 call")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        make_images(images, a.images)
        for r in range(a.rounds):
            results["embed-1t"].append(time_cli(a.cli, a.model, images, tmp / "a.npy", 1))
            e2e, call, start = time_dask(a.model, images, tmp / "b.npy", 2, 1, a.partition_size)
            results["dask-2x1"].append(e2e)
            results["dask-2x1 call"].append(call)
            results["embed"].append(time_cli(a.cli, a.model, images, tmp / "c.npy", 0))
            e2e, call, start2 = time_dask(a.model, images, tmp / "d.npy", 1, cores, a.partition_size)
            results["dask-1x2"].append(e2e)
            results["dask-1x2 call"].append(call)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.1f}s" for k, v in results.items()) +
                  f"  (cluster starts {start:.1f}s, {start2:.1f}s)", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print("\n| run | seconds (median) | img/s |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} | {a.images / v:.2f} |")
    print(f"\nspeed-up 2 workers x 1 thread vs embed --threads 1: end to end {med['embed-1t'] / med['dask-2x1']:.2f}x, "
          f"embed() call {med['embed-1t'] / med['dask-2x1 call']:.2f}x (target >= 1.8x)")
    print(f"overhead 1 worker x {cores} threads vs embed: end to end {100 * (med['dask-1x2'] / med['embed'] - 1):+.1f}%, "
          f"embed() call {100 * (med['dask-1x2 call'] / med['embed'] - 1):+.1f}% (target <= 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
