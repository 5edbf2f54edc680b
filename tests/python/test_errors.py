"""Bad inputs raise the exception type their status code maps to, with the engine's clear message."""
# ctest labels: hostile

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

import dinov3
from conftest import IMAGES, MODELS, run_python


def test_missing_model_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        dinov3.Model(str(tmp_path / "no_such_model"))


def test_missing_hub_id_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        dinov3.Model("nobody/no-such-dinov3")


def test_not_a_checkpoint_is_value_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="config.json"):
        dinov3.Model(str(tmp_path))


@pytest.mark.parametrize("kwargs,match", [({"precision": "fp64"}, "precision 'fp64'"),
                                          ({"backend": "nope"}, "backend 'nope'"),
                                          ({"threads": -1}, "threads"),
                                          ({"threads": 100000}, "100000 threads is more than")])
def test_bad_options_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dinov3.Model(str(MODELS / "tiny"), **kwargs)


def test_forward_rejects_bad_inputs(tiny):
    with pytest.raises(ValueError, match="multiple of the patch size|patch"):
        tiny.forward(np.zeros((1, 3, 60, 64), np.float32))
    with pytest.raises(ValueError, match=r"\[1, 3, 64\]"):
        tiny.forward(np.zeros((1, 3, 64), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        tiny.forward(np.zeros((1, 3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="pool 'max'"):
        tiny.forward(np.zeros((1, 3, 64, 64), np.float32), pool="max")
    with pytest.raises(ValueError, match="99"):
        tiny.forward(np.zeros((1, 3, 64, 64), np.float32), layers=[99])


def test_preprocess_rejects_bad_inputs(tiny):
    with pytest.raises(FileNotFoundError, match="no_such.jpg"):
        tiny.preprocess(str(IMAGES / "no_such.jpg"))
    for bad in sorted((IMAGES / "bad").iterdir()):
        with pytest.raises(ValueError, match=bad.name):
            tiny.preprocess(str(bad))
    with pytest.raises(ValueError, match=r"HxWx3 RGB array, got shape \[10, 10\]"):
        tiny.preprocess(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8 array, got dtype float32"):
        tiny.preprocess(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="expected a path, a PIL.Image or a HxWx3 uint8 array, got int"):
        tiny.preprocess([42])
    with pytest.raises(ValueError, match="no images"):
        tiny.preprocess([])


def test_forward_rejects_non_finite_values(tiny):
    x = np.zeros((1, 3, 64, 64), np.float32)
    x[0, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"input holds NaN \(image 0, channel 2, row 3, column 4\)"):
        tiny.forward(x)
    x[0, 2, 3, 4] = np.inf
    with pytest.raises(ValueError, match="input holds an infinity"):
        tiny.forward(x)


def test_paths_must_name_regular_files_without_nul(tiny, tmp_path):
    # A NUL ended the C string early: "cat\0.evil.png" decoded "cat"; a FIFO blocked, /dev/zero never ended.
    cat = str(IMAGES / "chelsea.png")
    with pytest.raises(ValueError, match="cannot hold a NUL byte"):
        tiny.preprocess(cat + "\0.evil.png")
    with pytest.raises(ValueError, match="cannot hold a NUL byte"):
        dinov3.Model(str(MODELS / "tiny") + "\0x")
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(ValueError, match="not a regular file"):
            tiny.preprocess(path)
    with pytest.raises(ValueError, match="is a directory"):
        tiny.preprocess(str(tmp_path))


def test_outputs_never_replace_inputs_or_special_files(tiny, tmp_path):
    # calibrate_int8(..., overwrite=True) wrote its plan over an input image or the model's weights, and
    # overwrite=True renamed a plain file over a FIFO (as root, over /dev/null).
    image = tmp_path / "cat.png"
    image.write_bytes((IMAGES / "chelsea.png").read_bytes())
    before = image.read_bytes()
    for plan in (image, MODELS / "tiny" / "config.json"):
        with pytest.raises(ValueError, match="is an input; it is never written over"):
            dinov3.calibrate_int8(str(MODELS / "tiny"), [str(image)], plan, overwrite=True, rounding="nearest")
    assert image.read_bytes() == before
    with pytest.raises(FileNotFoundError, match="does not exist"):  # found before calibrating, not after
        dinov3.calibrate_int8(str(MODELS / "tiny"), [str(image)], tmp_path / "no" / "plan.json", rounding="nearest")
    with pytest.raises(ValueError, match="is not a regular file"):
        dinov3.calibrate_int8(str(MODELS / "tiny"), [str(image)], tmp_path, overwrite=True, rounding="nearest")
    # A plan whose JSON would name a weights file that is not UTF-8: refused before calibrating (it was refused
    # only when written, after all the work), nothing written. Pixels the calibration would refuse show which
    # came first. (With rounding="nearest" the plan names no weights file, so any name works.)
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.json")
    with pytest.raises(ValueError, match="not UTF-8"):
        dinov3.calibrate_int8(str(MODELS / "tiny"), np.zeros((1, 3, 8, 8), np.float32), odd, rounding="gptq")
    with pytest.raises(ValueError, match="not UTF-8"):
        dinov3.calibrate_int8(str(MODELS / "tiny"), [str(image)], odd, rounding="gptq")
    assert not os.path.exists(odd) and not os.path.exists(odd[:-5] + b".weights.safetensors")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pca = tiny.pca(str(image)).pca
    with pytest.raises(ValueError, match="exists and is not a regular file"):
        pca.save(fifo, overwrite=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_preprocess_array_too_large_is_an_error_not_a_crash(tiny):
    # A broadcast array needs a contiguous copy; when that copy cannot be made the process segfaulted.
    pixel = np.zeros((1, 1, 3), np.uint8)
    # Arrays have the pixel bound image files have, checked before any copy (2^31 rows wrapped an int).
    for shape in ((1_000_000, 1_000_000, 3), (2**31, 1, 3), (13_400, 13_400, 3)):
        with pytest.raises(ValueError, match="too large: .* pixels \\(at most 178956970, as for image files\\)"):
            tiny.preprocess(np.broadcast_to(pixel, shape))
    # Within the bound, a copy the address space cannot hold is a MemoryError (a child process with its
    # address space capped 300 MB above what it uses; the copy needs 507 MB).
    script = f"""
import resource, numpy as np, dinov3
model = dinov3.Model({str(MODELS / "tiny")!r}, threads=1)
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (300 << 20), resource.RLIM_INFINITY))
try:
    model.preprocess(np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (13_000, 13_000, 3)))
except MemoryError as e:
    print("MemoryError:", e)
"""
    r = run_python(script, timeout=120)
    assert r.returncode == 0 and "MemoryError: image 0: cannot make a contiguous copy" in r.stdout, (r.stdout, r.stderr)


def test_embed_takes_a_single_path_as_one_file(tiny):
    path = str(IMAGES / "chelsea.png")
    one = list(tiny.embed(path))
    assert [r.path for r in one] == [path]
    np.testing.assert_array_equal(one[0].pooled, list(tiny.embed([path]))[0].pooled)


def test_embed_rejects_bad_options(tiny):
    with pytest.raises(ValueError, match="batch_size"):
        tiny.embed([], batch_size=0)
    with pytest.raises(ValueError, match="workers"):
        tiny.embed([], workers=0)


def test_documented():
    for obj in (dinov3, dinov3.Model, dinov3.Model.forward, dinov3.Model.preprocess, dinov3.Model.embed,
                dinov3.Model.config, dinov3.ForwardResult, dinov3.EmbedResult, dinov3.EmbedIterator):
        assert obj.__doc__ and len(obj.__doc__) > 40, obj


def test_file_names_need_not_be_utf8(tmp_path):
    # A model folder named with a byte that is not UTF-8 (a surrogate escape in Python) could not be loaded
    # (pybind11 could not encode the str) or described (config's path failed to decode).
    folder = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"mod\xe9le"))
    shutil.copytree(MODELS / "tiny", folder)
    for spec in (folder, os.fsencode(folder), Path(folder)):
        model = dinov3.Model(spec)
        assert model.config["path"] == folder
    pca = model.pca(str(IMAGES / "chelsea.png")).pca
    saved = os.path.join(folder, os.fsdecode(b"pca\xe9.safetensors"))
    pca.save(saved)
    np.testing.assert_array_equal(dinov3.PatchPca.load(saved).components, pca.components)


@pytest.mark.parametrize("call, match", [
    (lambda m: dinov3.Model(str(MODELS / "tiny"), threads=2**31), r"threads must be in \[-2147483648, 2147483647\]"),
    (lambda m: m.embed(["x.png"], batch_size=2**40), "batch_size must be in"),
    (lambda m: m.forward(np.zeros((1, 3, 32, 32), np.float32), layers=[1.5]), "layers must be an integer, not 1.5"),
    (lambda m: m.forward(np.zeros((1, 3, 32, 32), np.float32), layers="01"), "layers must be an integer, not '0'"),
    (lambda m: m.dense_features(str(IMAGES / "chelsea.png"), size=True), "size must be an integer, not True"),
    (lambda m: m.dense_features(str(IMAGES / "chelsea.png"), size=2**31), "size must be in"),
])
def test_integer_arguments_are_checked(tiny, call, match):
    # pybind11 raised a TypeError listing signatures for these, or silently converted 1.5, "01" and True.
    with pytest.raises(ValueError, match=match):
        call(tiny)
