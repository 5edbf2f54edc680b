"""Model.embed yields what `dinov3 embed` writes, row for row, and lists the unreadable files."""
# ctest labels: unit

import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import CLI, MODELS, bad_files, image_files


def cli_embed(tmp_path, files, *flags):
    out = tmp_path / "rows.npy"
    subprocess.run([CLI, "embed", "--model", str(MODELS / "tiny"), *files, "-o", str(out), "--batch-size", "4",
                    "--quiet", *flags], check=True)
    return np.load(out), (tmp_path / "rows.index.txt").read_text()


@pytest.fixture(scope="module")
def inputs():
    good = image_files()
    bad = bad_files() + [str(Path(good[0]).parent / "no_such_image.jpg")]
    assert len(good) >= 10 and len(bad) >= 4
    # The unreadable files in the middle of the list: the rows keep the input order around them.
    return good[:5] + bad + good[5:], good, bad


@pytest.mark.parametrize("flags", [(), ("--normalize",), ("--features",), ("--pool", "token")],
                         ids=["pooled", "normalize", "features", "token"])
def test_embed_equals_the_cli(tiny, tmp_path, inputs, flags):
    files, good, bad = inputs
    rows, index = cli_embed(tmp_path, files, *flags)
    it = tiny.embed(files, batch_size=4, normalize="--normalize" in flags, features="--features" in flags,
                    pool="token" if "token" in flags else None, workers=2)
    results = list(it)
    assert [r.path for r in results] == good
    for p in good:
        assert p in index
    got = np.stack([r.features if "--features" in flags else r.pooled for r in results])
    assert got.dtype == np.float32 and got.shape == rows.shape
    np.testing.assert_array_equal(got, rows)
    assert all(r.pooled.shape == (tiny.config["embed_dim"],) for r in results)
    assert [p for p, _ in it.skipped] == bad
    for path, reason in it.skipped:
        assert Path(path).name in reason
    if "--normalize" in flags:
        np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)


def test_embed_equals_forward_on_preprocessed_images(tiny):
    files = image_files()[:3]
    results = list(tiny.embed(files, batch_size=2))
    want = tiny.forward(tiny.preprocess(files)).pooled
    np.testing.assert_allclose(np.stack([r.pooled for r in results]), want, rtol=1e-5, atol=1e-6)
    assert results[0].features is None


def test_embed_of_nothing_readable(tiny):
    it = tiny.embed(bad_files())
    assert list(it) == []
    assert [p for p, _ in it.skipped] == bad_files()
