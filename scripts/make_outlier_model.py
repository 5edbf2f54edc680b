#!/usr/bin/python3
"""Make a copy of a timm-layout DINOv3 checkpoint folder whose qkv and fc1 inputs carry outlier channels.

Trained ViTs carry a few activation channels that run tens of times larger than the rest into qkv and fc1
(the inputs right after norm1 and norm2). This copies a model folder and, in every block, multiplies a few
channels of norm1 / norm2 (weight and bias) by a factor and divides the matching input columns of qkv / fc1 by
the same factor: the model computes the same function in exact arithmetic, but those channels of the
LayerNorm outputs are `factor` times larger, as in trained weights. Only numpy is needed.

    /usr/bin/python3 scripts/make_outlier_model.py SRC_FOLDER DST_FOLDER [--channels 4] [--factor 20,60]
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors, meta = {}, header.pop("__metadata__", None)
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: only F32 tensors are supported, not {info['dtype']}")
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"]).copy()
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header, offset = {}, 0
    if meta:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            f.write(np.ascontiguousarray(t, dtype="<f4").tobytes())


def add_outliers(tensors, channels=4, factor=(20.0, 60.0), seed=0):
    """Returns {block: (channel indices, factors)}; changes `tensors` in place."""
    rng = np.random.default_rng(seed)
    depth = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("blocks."))
    dim = tensors["blocks.0.norm1.weight"].shape[0]
    # The same few channels in every block (trained models keep their outliers in fixed residual channels).
    picked = np.sort(rng.choice(dim, size=channels, replace=False))
    done = {}
    for b in range(depth):
        scale = rng.uniform(factor[0], factor[1], size=channels).astype(np.float32)
        for norm, linear in (("norm1", "attn.qkv"), ("norm2", "mlp.fc1")):
            p = f"blocks.{b}."
            tensors[p + norm + ".weight"][picked] *= scale
            tensors[p + norm + ".bias"][picked] *= scale
            tensors[p + linear + ".weight"][:, picked] /= scale
        done[b] = (picked.tolist(), scale.tolist())
    return done


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--factor", default="20,60", help="range of the scale factors: LOW,HIGH")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    low, high = (float(v) for v in a.factor.split(","))
    if os.path.exists(a.dst):
        sys.exit(f"{a.dst} exists: not replacing it")
    tensors, meta = read_safetensors(os.path.join(a.src, "model.safetensors"))
    done = add_outliers(tensors, a.channels, (low, high), a.seed)
    os.makedirs(a.dst)
    for name in os.listdir(a.src):
        if name.endswith(".json"):
            shutil.copy(os.path.join(a.src, name), os.path.join(a.dst, name))
    write_safetensors(os.path.join(a.dst, "model.safetensors"), tensors, meta)
    ch, _ = done[0]
    print(f"{a.dst}: channels {ch} of norm1/norm2 scaled by {low:g}-{high:g} in {len(done)} blocks")


if __name__ == "__main__":
    main(sys.argv[1:])
