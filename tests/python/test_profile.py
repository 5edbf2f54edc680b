"""Model(profile=True): the same numbers as without it, and op_profile() accounts for every op of a forward."""
# ctest labels: unit

import json

import numpy as np
import pytest

import dinov3
from conftest import MODELS, read_safetensors


def test_profile_counts_every_op_and_changes_no_number():
    plain = dinov3.Model(str(MODELS / "tiny"), threads=2)
    profiled = dinov3.Model(str(MODELS / "tiny"), threads=2, profile=True)
    x = read_safetensors(MODELS / "tiny" / "expected.safetensors")["input"]
    want, got = plain.forward(x), profiled.forward(x)
    np.testing.assert_array_equal(got.features, want.features)
    np.testing.assert_array_equal(got.pooled, want.pooled)

    profiled.op_profile(reset=True)  # the first forward also uploaded the RoPE table
    profiled.forward(x)
    ops = profiled.op_profile()
    names = [o["op"] for o in ops]
    assert len(names) == len(set(names))
    depth = json.loads((MODELS / "tiny" / "config.json").read_text())["model_args"]["depth"]
    attention = [o for o in ops if o["op"].startswith("attention ")]
    assert len(attention) == 1 and attention[0]["calls"] == depth
    assert sum(o["calls"] for o in ops if o["op"].startswith("linear")) == 4 * depth
    assert all(o["calls"] > 0 and o["seconds"] >= 0 for o in ops)
    # One forward's arithmetic is the model's: 12.49 GFLOP per image for ViT-S/16 at 256 px; here the tiny
    # model's, from the same formula (patch embedding, qkv, q k^T, attention x v, proj, MLP) per image.
    c = profiled.config
    b, _, h, w = x.shape
    t = c["num_reg_tokens"] + 1 + (h // c["patch_size"]) * (w // c["patch_size"])
    d, p = c["embed_dim"], c["patch_size"]
    hidden = next(o for o in ops if o["op"].startswith("linear+gelu"))["op"].split("->")[1]
    per_block = 2 * t * d * 3 * d + 4 * t * t * d + 2 * t * d * d + 4 * t * d * int(hidden)
    want_gflop = b * (2 * (t - c["num_reg_tokens"] - 1) * d * 3 * p * p + c["depth"] * per_block) * 1e-9
    assert sum(o["gflop"] for o in ops) == pytest.approx(want_gflop, rel=1e-9)

    assert profiled.op_profile(reset=True) == ops
    assert profiled.op_profile() == []


def test_profile_needs_profile_true():
    with pytest.raises(ValueError, match="profile=True"):
        dinov3.Model(str(MODELS / "tiny")).op_profile()
