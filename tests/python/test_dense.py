"""Dense features through Python: patch features at a chosen size, the PCA pictures and the similarity maps,
checked against numpy computations from the same features and against Model.forward."""
# ctest labels: golden

import os

import numpy as np
import pytest

import dinov3

from conftest import IMAGES, load_model

CHELSEA = str(IMAGES / "chelsea.png")  # 451 x 300
ROCKET = str(IMAGES / "rocket.jpg")    # 640 x 427


@pytest.fixture(scope="module")
def vits():
    return load_model("vits16")


def round16(x):
    return max(16, 16 * int(np.floor(x / 16 + 0.5)))


def test_default_size_equals_forward(vits):
    f = vits.dense_features(CHELSEA)
    out = vits.forward(vits.preprocess(CHELSEA))
    prefix = 1 + vits.config["num_reg_tokens"]
    gh, gw = f.grid
    assert f.input_size == (256, 256) and (gh, gw) == (16, 16)
    np.testing.assert_allclose(f.patches, out.features[0, prefix:].reshape(gh, gw, -1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size,long_side,image,want", [
    (500, None, CHELSEA, (496, 496)),
    (None, 700, CHELSEA, (round16(700 * 300 / 451), 704)),
    (None, 200, ROCKET, (round16(200 * 427 / 640), 208)),
])
def test_size_rules(vits, size, long_side, image, want):
    f = vits.dense_features(image, size=size, long_side=long_side)
    assert f.input_size == want
    assert f.grid == (want[0] // 16, want[1] // 16)
    assert f.patches.shape == (want[0] // 16, want[1] // 16, 384)
    assert np.isfinite(f.patches).all()


def numpy_pca(x):
    """mean, [3, D] axes (largest coefficient positive), explained variance ratios, in float64."""
    mean = x.mean(axis=0)
    c = (x - mean).T @ (x - mean) / x.shape[0]
    w, v = np.linalg.eigh(c)
    order = np.argsort(w)[::-1][:3]
    axes = v[:, order].T
    for k in range(3):
        if axes[k][np.argmax(np.abs(axes[k]))] < 0:
            axes[k] = -axes[k]
    return mean, axes, w[order] / w.sum()


def test_pca_equals_numpy_and_pictures_are_the_mapping(vits):
    res = vits.pca([CHELSEA, ROCKET], long_side=192)
    feats = [f.patches.reshape(-1, f.patches.shape[-1]).astype(np.float64) for f in res.features]
    mean, axes, ratio = numpy_pca(np.concatenate(feats))
    np.testing.assert_allclose(res.pca.explained_variance_ratio, ratio, rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.pca.mean, mean, rtol=0, atol=1e-5)
    for k in range(3):
        assert abs(float(res.pca.components[k] @ axes[k])) > 1 - 1e-4, k
    low, high = res.pca.score_range[:, 0].astype(np.float64), res.pca.score_range[:, 1].astype(np.float64)
    scores_all = np.concatenate(feats) @ res.pca.components.T.astype(np.float64) - mean @ res.pca.components.T
    np.testing.assert_allclose(low, scores_all.min(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(high, scores_all.max(axis=0), rtol=0, atol=1e-4)
    for f, picture in zip(res.features, res.pictures):
        assert picture.shape == f.image_size + (3,) and picture.dtype == np.uint8
        scores = res.pca.project(f)
        colour = np.rint(255 * np.clip((scores.astype(np.float64) - low) / (high - low), 0, 1))
        h, w = f.image_size
        checked = 0
        for y in range(0, h, 7):
            for x in range(0, w, 11):
                r, c = f.patch_at(x, y)
                assert np.abs(picture[y, x].astype(int) - colour[r, c]).max() <= 1, (x, y)
                checked += 1
        assert checked > 500


def test_foreground_is_deterministic_and_masks_the_picture(vits):
    a = vits.pca(CHELSEA, foreground=True, long_side=256)
    b = vits.pca(CHELSEA, foreground=True, long_side=256)
    assert len(a.masks) == 1 and a.masks[0].dtype == np.bool_ and a.masks[0].shape == a.features[0].grid
    np.testing.assert_array_equal(a.masks[0], b.masks[0])
    np.testing.assert_array_equal(a.pictures[0], b.pictures[0])
    assert 0 < a.masks[0].sum() < a.masks[0].size
    f = a.features[0]
    for y in range(0, f.image_size[0], 13):
        for x in range(0, f.image_size[1], 13):
            try:
                r, c = f.patch_at(x, y)
            except ValueError:  # cropped away (the rounding margin): black as well
                assert (a.pictures[0][y, x] == 0).all()
                continue
            if not a.masks[0][r, c]:
                assert (a.pictures[0][y, x] == 0).all()


def test_saved_components_reproduce_the_pictures(vits, tmp_path):
    fitted = vits.pca(CHELSEA, size=128)
    path = tmp_path / "pca.safetensors"
    fitted.pca.save(path)
    with pytest.raises((OSError, ValueError)):
        fitted.pca.save(path)  # never overwritten without asking
    loaded = dinov3.PatchPca.load(path)
    np.testing.assert_array_equal(loaded.components, fitted.pca.components)
    again = vits.pca(fitted.features, components=loaded)
    np.testing.assert_array_equal(again.pictures[0], fitted.pictures[0])


def test_similarity_equals_numpy_cosine(vits):
    res = vits.similarity(CHELSEA, point=(200, 150), to=ROCKET, long_side=192)
    src = vits.dense_features(CHELSEA, long_side=192)
    dst = vits.dense_features(ROCKET, long_side=192)
    r, c = src.patch_at(200, 150)
    assert res.patch == (r, c)
    q = src.patches[r, c].astype(np.float64)
    t = dst.patches.astype(np.float64)
    want = t @ q / (np.linalg.norm(t, axis=-1) * np.linalg.norm(q))
    np.testing.assert_allclose(res.similarity, want, rtol=0, atol=1e-5)
    assert res.picture.shape == dst.image_size + (3,)
    same = vits.similarity(src, point=(200, 150))
    assert same.similarity[r, c] == pytest.approx(1.0, abs=1e-5)


def test_bad_input(vits):
    with pytest.raises(ValueError, match="not both"):
        vits.dense_features(CHELSEA, size=256, long_side=256)
    with pytest.raises(ValueError):
        vits.similarity(CHELSEA, point=(451, 10))
    with pytest.raises(ValueError):
        vits.similarity(CHELSEA, point=(-1, 10))
    with pytest.raises(ValueError):
        vits.dense_features(np.zeros((8, 8, 3), np.uint8), long_side=8000)
    with pytest.raises(ValueError):
        vits.dense_features(CHELSEA, size=0)
    with pytest.raises(FileNotFoundError):
        vits.pca(str(IMAGES / "no_such.png"))
    with pytest.raises(FileNotFoundError, match=r"caf\\xe9"):  # a name that is not UTF-8, in the message
        vits.dense_features(os.fsdecode(b"/nonexistent/caf\xe9.png"))
    with pytest.raises(ValueError):
        vits.similarity(CHELSEA, point=(10, 10), alpha=2.0)
