"""1000 forwards of the tiny model leave the resident memory flat (outputs are freed with their arrays)."""
# ctest labels: unit

import os

import numpy as np

from conftest import IMAGES, MODELS, run_python


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_rss_flat_over_1000_forwards(tiny):
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for _ in range(100):  # warm up: activation buffers, allocator arenas
        out = tiny.forward(x, layers=[0, 1])
    start = rss_bytes()
    for _ in range(1000):
        out = tiny.forward(x, layers=[0, 1])
    growth = rss_bytes() - start
    per_call = out.features.nbytes + out.pooled.nbytes + sum(b.nbytes for b in out.blocks) + x.nbytes
    # Keeping one call's outputs or input alive per forward would add 1000 * per_call (~67 MB).
    assert growth < 100 * per_call, f"RSS grew {growth} bytes over 1000 forwards ({per_call} bytes per call)"


def test_embed_memory_follows_the_images_not_the_batch_size(tmp_path):
    # embed([one image], batch_size=4096) allocated the whole [4096, 3, 256, 256] batch (3.2 GB peak).
    script = f"""
import dinov3
model = dinov3.Model({str(MODELS / "tiny")!r}, threads=1)
rows = list(model.embed([{str(IMAGES / "chelsea.png")!r}], batch_size=4096))
with open("/proc/self/status") as f:  # this process's peak (ru_maxrss would count the parent's at the fork)
    print(len(rows), next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
"""
    r = run_python(script, timeout=120)
    assert r.returncode == 0, r.stderr
    count, peak_kib = map(int, r.stdout.split())
    assert count == 1
    # One 256x256 batch row is 0.75 MB; 4096 of them are 3 GB. Python, numpy and the engine take ~100 MB.
    assert peak_kib < 600 * 1024, f"peak RSS {peak_kib} KiB"
