"""Shared helpers for the Python package's tests: fixture paths, a numpy safetensors reader, cached models."""

import functools
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dinov3

SHARED = Path(os.environ.get("DINOV3_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared"))
FIXTURES = SHARED / "fixtures"
MODELS = FIXTURES / "models"
IMAGES = FIXTURES / "images"
CLI = os.environ.get("DINOV3_CLI", str(Path(__file__).resolve().parents[2] / "build" / "bin" / "dinov3"))

# Golden tolerances (fixtures/README.md): per image, relative L2 error and cosine similarity.
REL_L2 = 1e-5
COSINE = 0.99999

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "U8": np.uint8}


def read_safetensors(path):
    """{name: array} from a .safetensors file: 8-byte little-endian header length, JSON header, data."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(body[begin:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def assert_close_per_image(got, want):
    """Each image (first axis) within the golden relative L2 error and cosine similarity."""
    assert got.dtype == np.float32
    assert got.shape == want.shape, (got.shape, want.shape)
    for i in range(want.shape[0]):
        g = got[i].astype(np.float64).ravel()
        w = want[i].astype(np.float64).ravel()
        rel = np.linalg.norm(g - w) / np.linalg.norm(w)
        cos = float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w)))
        assert rel <= REL_L2, f"image {i}: relative L2 error {rel:.3g}"
        assert cos >= COSINE, f"image {i}: cosine {cos:.7f}"


def run_python(script, timeout):
    """Runs `script` in a child interpreter that imports the same dinov3 as the tests; CompletedProcess with
    text stdout and stderr. For what must not happen in the test process itself: an exit, a fork, a signal,
    a lowered memory limit."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@functools.lru_cache(maxsize=None)
def load_model(name):
    return dinov3.Model(str(MODELS / name))


def image_files():
    """The fixture photographs (readable), sorted."""
    exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    return sorted(str(p) for p in IMAGES.iterdir() if p.is_file() and p.suffix.lower() in exts)


def bad_files():
    return sorted(str(p) for p in (IMAGES / "bad").iterdir() if p.is_file())


@pytest.fixture(scope="session")
def tiny():
    return load_model("tiny")
