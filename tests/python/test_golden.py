"""Every golden fixture (timm, Meta and Hugging Face layouts) through the Python API equals its expected tensors."""
# ctest labels: golden

import numpy as np
import pytest

import dinov3

from conftest import MODELS, assert_close_per_image, load_model, read_safetensors

CASES = sorted((d.name, f.name) for d in MODELS.iterdir() if d.is_dir() for f in d.glob("expected*.safetensors"))


def test_every_model_folder_has_cases():
    folders = {d.name for d in MODELS.iterdir() if d.is_dir()}
    assert folders == {name for name, _ in CASES}
    assert {"tiny", "tiny_meta", "tiny_hf", "vits16"} <= folders


@pytest.mark.parametrize("model_name,expected", CASES, ids=[f"{m}/{e}" for m, e in CASES])
def test_golden(model_name, expected):
    model = load_model(model_name)
    want = read_safetensors(MODELS / model_name / expected)
    layers = [0] if "stage.blocks.0" in want else None
    out = model.forward(want["input"], layers=layers)
    assert_close_per_image(out.features, want["features"])
    assert_close_per_image(out.pooled, want["pooled"])  # timm: patch mean; Meta and HF: the class token
    if layers:
        assert len(out.blocks) == 1
        assert_close_per_image(out.blocks[0], want["stage.blocks.0"])
    else:
        assert out.blocks == []


def test_pool_modes_are_the_token_and_the_patch_mean(tiny):
    want = read_safetensors(MODELS / "tiny" / "expected.safetensors")
    prefix = 1 + tiny.config["num_reg_tokens"]
    token = tiny.forward(want["input"], pool="token")
    avg = tiny.forward(want["input"], pool="avg")
    np.testing.assert_array_equal(token.pooled, token.features[:, 0])
    np.testing.assert_allclose(avg.pooled, token.features[:, prefix:].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_other_float_inputs_are_converted(tiny):
    want = read_safetensors(MODELS / "tiny" / "expected.safetensors")
    x = want["input"]
    ref = tiny.forward(x).features
    # float64 and a non-contiguous view give the same numbers as the C-contiguous float32 input.
    np.testing.assert_array_equal(tiny.forward(x.astype(np.float64)).features, ref)
    strided = np.asfortranarray(x)
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(tiny.forward(strided).features, ref)


def test_torch_tensor_input(tiny):
    torch = pytest.importorskip("torch")
    want = read_safetensors(MODELS / "tiny" / "expected.safetensors")
    out = tiny.forward(torch.from_numpy(want["input"].copy()))
    assert_close_per_image(out.features, want["features"])


def test_config_describes_the_model():
    c = load_model("vits16").config
    assert (c["layout"], c["architecture"]) == ("timm", "vit_small_patch16_dinov3")
    assert (c["embed_dim"], c["depth"], c["num_heads"], c["patch_size"]) == (384, 12, 6, 16)
    assert c["global_pool"] == "avg"
    assert c["input_size"] == (3, 256, 256)
    assert c["interpolation"] == "bicubic"
    hf = load_model("tiny_hf").config
    assert (hf["layout"], hf["global_pool"], hf["interpolation"], hf["crop_mode"]) == ("hf", "token", "bilinear", "squash")
    assert load_model("tiny_meta").config["layout"] == "meta"


def test_a_meta_pth_file_loads_as_its_folder():
    folder = MODELS / "tiny_meta"
    (pth,) = folder.glob("*.pth")
    from_file = dinov3.Model(str(pth))
    want = read_safetensors(folder / "expected.safetensors")
    assert_close_per_image(from_file.forward(want["input"]).pooled, want["pooled"])
