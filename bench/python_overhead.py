#!/usr/bin/python3
"""What the Python binding costs on top of the C++ API, and Python's embed against `dinov3 embed`.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--model DIR] [--rounds 5] [--runs 20]

Forward: rounds alternate between build/bin/forward_latency (the C++ API, batch 1, a zero input) and
dinov3.Model.forward on the same input in this process, each `runs` timed forwards after warm-up; the
median of each side and the overhead (Python - C++) / C++ are printed. Embed: rounds alternate between
`dinov3 embed` (its own end-to-end images/s, model load excluded) and iterating dinov3.Model.embed over
the same files (timed from the first next() to exhaustion). The machine is shared: compare medians.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DINOV3_SHARED_DIR", ROOT / ".." / "shared"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(SHARED / "fixtures" / "models" / "vits16"))
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20, help="timed forwards per round")
    ap.add_argument("--threads", type=int, default=0, help="backend threads (0: one per core)")
    ap.add_argument("--size", type=int, default=0, help="square input size for the forward (0: the model's)")
    ap.add_argument("--no-embed", action="store_true", help="only the forward comparison")
    ap.add_argument("--images", default=str(SHARED / "fixtures" / "images"))
    ap.add_argument("--repeat", type=int, default=4, help="the image list repeated this many times for embed")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(a.build) / "python"))
    import dinov3

    model = dinov3.Model(a.model, threads=a.threads or None)
    _, h, w = model.config["input_size"]
    if a.size:
        h = w = a.size
    x = np.zeros((1, 3, h, w), np.float32)
    print(f"model {model.config['architecture']} at {h}x{w}, backend {model.backend} on {model.device}")

    cpp_ms, py_ms, cpp_min, py_min = [], [], [], []
    for r in range(a.rounds):
        out = subprocess.run([str(Path(a.build) / "bin" / "forward_latency"), a.model, str(a.runs), str(a.threads),
                              str(h)], check=True, capture_output=True, text=True).stdout
        cpp_times = [float(v) for v in out.split()]
        cpp = statistics.median(cpp_times)
        for _ in range(2):
            model.forward(x)
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            model.forward(x)
            times.append((time.perf_counter() - t0) * 1e3)
        py = statistics.median(times)
        cpp_ms.append(cpp)
        py_ms.append(py)
        cpp_min.append(min(cpp_times))
        py_min.append(min(times))
        print(f"round {r}: forward batch 1  C++ {cpp:.3f} ms  Python {py:.3f} ms  ({100 * (py - cpp) / cpp:+.2f}%)")
    cpp, py = statistics.median(cpp_ms), statistics.median(py_ms)
    print(f"forward batch 1, median of round medians: C++ {cpp:.3f} ms, Python {py:.3f} ms, "
          f"overhead {100 * (py - cpp) / cpp:+.2f}%")
    # The fastest run of each side is the least disturbed by other load on a shared machine.
    cpp, py = min(cpp_min), min(py_min)
    print(f"forward batch 1, fastest run: C++ {cpp:.3f} ms, Python {py:.3f} ms, "
          f"overhead {1e3 * (py - cpp):+.1f} us ({100 * (py - cpp) / cpp:+.2f}%)")
    if a.no_embed:
        return

    exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    files = sorted(str(p) for p in Path(a.images).iterdir() if p.suffix.lower() in exts) * a.repeat
    cli_ips, py_ips = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            err = subprocess.run([str(Path(a.build) / "bin" / "dinov3"), "embed", "--model", a.model, *files, "-o",
                                  f"{tmp}/e.npy", "--overwrite", "--batch-size", str(a.batch_size), "--workers",
                                  str(a.workers), "--threads", str(a.threads)],
                                 check=True, capture_output=True, text=True).stderr
            cli = float(re.search(r"end to end ([0-9.]+) img/s", err).group(1))
            t0 = time.perf_counter()
            n = sum(1 for _ in model.embed(files, batch_size=a.batch_size, workers=a.workers))
            py = n / (time.perf_counter() - t0)
            cli_ips.append(cli)
            py_ips.append(py)
            print(f"round {r}: embed {len(files)} images  dinov3 embed {cli:.2f} img/s  Python {py:.2f} img/s")
    print(f"embed, median: dinov3 embed {statistics.median(cli_ips):.2f} img/s, "
          f"Python {statistics.median(py_ips):.2f} img/s")


if __name__ == "__main__":
    main()
