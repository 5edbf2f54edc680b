"""Model.preprocess equals timm's eval transform (preprocess_vits16.safetensors) for paths, PIL images and arrays."""
# ctest labels: golden

import numpy as np
import pytest

from conftest import FIXTURES, IMAGES, load_model, read_safetensors

EXPECTED = read_safetensors(FIXTURES / "preprocess_vits16.safetensors")


@pytest.fixture(scope="module")
def vits16():
    return load_model("vits16")


def test_fixture_covers_the_images():
    assert len(EXPECTED) >= 10


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_path_matches_timm(vits16, name):
    got = vits16.preprocess(str(IMAGES / name))
    assert got.dtype == np.float32 and got.shape == (1,) + EXPECTED[name].shape
    assert np.abs(got[0] - EXPECTED[name]).max() <= 1e-6


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pil_and_array_match_the_file(vits16, name):
    Image = pytest.importorskip("PIL.Image")
    with Image.open(IMAGES / name) as img:
        from_pil = vits16.preprocess(img)
        rgb = np.asarray(img.convert("RGB"))
    from_array = vits16.preprocess(rgb)
    assert np.abs(from_pil[0] - EXPECTED[name]).max() <= 1e-6
    np.testing.assert_array_equal(from_array, from_pil)


def test_a_mixed_list_is_one_batch(vits16):
    names = sorted(EXPECTED)[:3]
    Image = pytest.importorskip("PIL.Image")
    with Image.open(IMAGES / names[1]) as img:
        batch = vits16.preprocess([IMAGES / names[0], img, np.asarray(Image.open(IMAGES / names[2]).convert("RGB"))])
    assert batch.shape == (3, 3, 256, 256)
    for i, name in enumerate(names):
        assert np.abs(batch[i] - EXPECTED[name]).max() <= 1e-6


def test_non_contiguous_array(vits16):
    name = sorted(EXPECTED)[0]
    Image = pytest.importorskip("PIL.Image")
    rgb = np.asarray(Image.open(IMAGES / name).convert("RGB"))
    strided = np.ascontiguousarray(rgb.transpose(1, 0, 2)).transpose(1, 0, 2)  # same pixels, column-major
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(vits16.preprocess(strided), vits16.preprocess(rgb))
