"""The same numbers whatever floating-point environment the program set (src/util/float_env.h): a Python process
may run under another rounding mode or with exceptions unmasked (set by a C extension); the package's results are
bit for bit those of the default environment, without a trap, and the mode is left as it was."""
# ctest labels: golden

import ctypes
import ctypes.util
import platform
from contextlib import contextmanager

import numpy as np
import pytest

import dinov3

from conftest import IMAGES, MODELS

if platform.machine() not in ("x86_64", "AMD64"):
    pytest.skip("the fenv.h constants below are x86's", allow_module_level=True)

LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO = 0, 0x400, 0x800, 0xC00
FE_INVALID, FE_DIVBYZERO, FE_OVERFLOW = 0x01, 0x04, 0x08
TRAPS = FE_INVALID | FE_DIVBYZERO | FE_OVERFLOW
PHOTOS = [str(IMAGES / n) for n in ("rocket.jpg", "chelsea.png")]


@contextmanager
def environment(rounding, traps):
    assert LIBM.fesetround(rounding) == 0
    if traps:
        LIBM.feenableexcept(traps)
    try:
        yield
    finally:
        after = (LIBM.fegetround(), LIBM.fegetexcept())
        LIBM.fedisableexcept(TRAPS)
        LIBM.fesetround(FE_TONEAREST)
    assert after == (rounding, traps), "the package did not give the environment back"


def everything(tmp_path, tag):
    """Pixels, features in each precision and backend, dense features, PCA, similarity and an int8 plan."""
    out = {}
    for name in ("tiny", "tiny_swiglu_qkvb"):
        path = str(MODELS / name)
        model = dinov3.Model(path, threads=2)
        pixels = model.preprocess(PHOTOS)
        out[name, "pixels"] = pixels
        for backend, precision in (("cpu", "fp32"), ("cpu", "bf16"), ("cpu", "int8"), ("reference", "fp32")):
            r = dinov3.Model(path, backend=backend, precision=precision, threads=2).forward(pixels)
            out[name, backend, precision] = np.concatenate([r.features.ravel(), r.pooled.ravel()])
        dense = model.dense_features(PHOTOS[1], long_side=80)
        out[name, "dense"] = dense.patches
        out[name, "pca"] = model.pca([dense]).pca.components
        out[name, "similarity"] = model.similarity(dense, (200, 150)).similarity
        # The plan as the library wrote it (the dict calibrate_int8 returns is parsed by Python's json, whose
        # float parsing itself follows the rounding mode).
        folder = tmp_path / tag
        folder.mkdir(exist_ok=True)
        dinov3.calibrate_int8(path, pixels, str(folder / f"{name}.json"))
        out[name, "plan"] = (folder / f"{name}.json").read_bytes() + (folder / f"{name}.weights.safetensors").read_bytes()
    return out


@pytest.mark.parametrize("rounding,traps", [(FE_UPWARD, 0), (FE_DOWNWARD, 0), (FE_TOWARDZERO, 0),
                                            (FE_TONEAREST, TRAPS)],
                         ids=["upward", "downward", "toward_zero", "traps"])
def test_the_callers_environment_changes_no_bits(tmp_path, rounding, traps):
    want = everything(tmp_path, "default")
    with environment(rounding, traps):
        got = everything(tmp_path, "changed")
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], bytes):
            assert got[key] == want[key], key
        else:
            assert got[key].dtype == want[key].dtype and np.array_equal(got[key].view(np.uint8), want[key].view(np.uint8)), key
