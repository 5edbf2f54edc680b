"""1000 forwards of the tiny model leave the resident memory flat (outputs are freed with their arrays)."""
# ctest labels: unit

import os

import numpy as np


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
