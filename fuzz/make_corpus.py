#!/usr/bin/python3
"""Writes the seed corpora in fuzz/corpus/ from the golden fixtures (../shared/fixtures) and the bundled
assets: small, valid inputs of every layout the readers handle, so that the fuzzers start deep inside
each format. Deterministic; run it again only to change the seeds, and check the result in.

    /usr/bin/python3 fuzz/make_corpus.py [--shared ../shared]

Needs Debian's python3-numpy and python3-pil (for the image encoders); nothing here imports torch: the
PyTorch checkpoints are written in torch.save's layout (a stored zip holding data.pkl with persistent
ids for the storages) by the code below.
"""
import argparse
import collections
import io
import json
import pathlib
import pickle
import shutil
import struct
import sys
import types
import zipfile
import zlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"


def write(target, name, data):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ---- safetensors -----------------------------------------------------------------------------------------

def read_safetensors(path):
    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    dtypes = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        out[name] = np.frombuffer(body[begin:end], dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
    return out


def bf16_bytes(a):
    bits = np.asarray(a, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def safetensors_bytes(tensors, metadata=None):
    """tensors: list of (name, dtype name, shape, raw bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    body = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + body


def f32(name, a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    return (name, "F32", a.shape, a.tobytes())


# ---- torch.save layout -------------------------------------------------------------------------------------

class _Storage:
    def __init__(self, kind, key, data):
        self.kind, self.key, self.data = kind, key, data


def _install_torch_names():
    """Module objects named torch and torch._utils holding the globals torch.save pickles, so that
    pickle writes them by name (nothing of torch itself is used)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for kind in ("FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage"):
        cls = type(kind, (), {"__module__": "torch", "__qualname__": kind})
        setattr(torch, kind, cls)

    def _rebuild_tensor_v2(*args):
        raise NotImplementedError

    def _rebuild_parameter(*args):
        raise NotImplementedError

    for fn in (_rebuild_tensor_v2, _rebuild_parameter):
        fn.__module__, fn.__qualname__ = "torch._utils", fn.__name__
    utils._rebuild_tensor_v2, utils._rebuild_parameter = _rebuild_tensor_v2, _rebuild_parameter
    torch._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    return torch, utils


TORCH, TORCH_UTILS = _install_torch_names()


class _Tensor:
    def __init__(self, storage, offset, shape, stride, parameter=False):
        self.storage, self.offset, self.shape, self.stride, self.parameter = storage, offset, shape, stride, parameter

    def __reduce_ex__(self, protocol):
        rebuilt = (TORCH_UTILS._rebuild_tensor_v2,
                   (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False, collections.OrderedDict()))
        if not self.parameter:
            return rebuilt
        return (TORCH_UTILS._rebuild_parameter, (_Rebuilt(rebuilt), False, collections.OrderedDict()))


class _Rebuilt:
    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce_ex__(self, protocol):
        return self.reduced


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            itemsize = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "DoubleStorage": 8,
                        "LongStorage": 8}[obj.kind]
            return ("storage", getattr(TORCH, obj.kind), obj.key, "cpu", len(obj.data) // itemsize)
        return None


def torch_zip(state, storages, zip64=False, folder="archive"):
    """state: OrderedDict name -> _Tensor; storages: list of _Storage."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        def add(name, data):
            with z.open(f"{folder}/{name}", "w", force_zip64=zip64) as f:
                f.write(data)
        add("data.pkl", buf.getvalue())
        add("byteorder", b"little")
        for s in storages:
            add(f"data/{s.key}", s.data)
        add("version", b"3\n")
    return out.getvalue(), buf.getvalue()


def contiguous(storage, shape):
    stride, acc = [], 1
    for d in reversed(shape):
        stride.insert(0, acc)
        acc *= d
    return _Tensor(storage, 0, shape, stride)


def torch_checkpoint(arrays, kinds=None, zip64=False, parameters=False):
    """A state_dict of contiguous tensors, one storage each."""
    state, storages = collections.OrderedDict(), []
    for i, (name, a) in enumerate(arrays.items()):
        kind = (kinds or {}).get(name, "FloatStorage")
        a = np.asarray(a, dtype=np.float32)
        data = {"FloatStorage": lambda x: x.tobytes(), "HalfStorage": lambda x: x.astype(np.float16).tobytes(),
                "BFloat16Storage": bf16_bytes, "DoubleStorage": lambda x: x.astype(np.float64).tobytes()}[kind](a)
        s = _Storage(kind, str(i), data)
        storages.append(s)
        t = contiguous(s, list(a.shape))
        t.parameter = parameters
        state[name] = t
    return torch_zip(state, storages, zip64=zip64)


# ---- a micro model cut from the tiny fixture -----------------------------------------------------------------

MICRO = {"embed_dim": 8, "depth": 1, "num_heads": 2, "patch_size": 2, "num_reg_tokens": 1}
HIDDEN = 32


def micro_weights(tiny):
    """The tiny fixture's first block and embeddings, cut to embed_dim 8, MLP width 32, patch 2, one
    register: every tensor a timm DINOv3 checkpoint of the micro config holds, with real values."""
    D, full = MICRO["embed_dim"], tiny["norm.weight"].shape[0]
    out = {}
    for name, a in tiny.items():
        if not (name.startswith("blocks.0.") or not name.startswith("blocks.")):
            continue
        if name == "patch_embed.proj.weight":
            a = a[:D, :, :2, :2]
        elif name == "reg_token":
            a = a[:, :1, :D]
        elif name == "cls_token":
            a = a[:, :, :D]
        elif name.endswith("qkv.weight"):
            a = np.concatenate([a[j * full:j * full + D, :D] for j in range(3)])
        elif name.endswith("fc1.weight") or name.endswith("fc1_g.weight") or name.endswith("fc1_x.weight"):
            a = a[:HIDDEN, :D]
        elif name.endswith("fc1.bias") or name.endswith("fc1_g.bias") or name.endswith("fc1_x.bias"):
            a = a[:HIDDEN]
        elif name.endswith("fc2.weight"):
            a = a[:D, :HIDDEN]
        elif a.ndim == 2:
            a = a[:D, :D]
        else:
            a = a[:D]
        out[name] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def cut(name, a, full_dim, full_hidden):
    """Any layout's tensor cut to the micro model: embed dim -> 8, MLP width -> 32, fused qkv thirds cut
    alike, the patch kernel -> 2x2, registers -> 1, RoPE periods -> head_dim / 4 = 1."""
    D = MICRO["embed_dim"]
    if "periods" in name:
        return a[:1]
    if a.ndim == 4:  # patch conv [D, C, p, p]
        return a[:D, :, :2, :2]
    if a.ndim == 3:  # cls / register / storage tokens [1, n, D]
        return a[:, :1, :D]
    index = []
    for n in a.shape:
        if n == 3 * full_dim:
            index.append(np.concatenate([np.arange(j * full_dim, j * full_dim + D) for j in range(3)]))
        elif n == full_dim:
            index.append(np.arange(D))
        elif n == full_hidden:
            index.append(np.arange(HIDDEN))
        else:
            index.append(np.arange(n))
    return a[np.ix_(*index)] if index else a


def first_block_only(names, block_prefix):
    return [n for n in names if not n.startswith(block_prefix) or n.startswith(block_prefix + "0.")]


class _TorchReader(pickle.Unpickler):
    """Reads a torch.save state_dict's pickle into numpy arrays (nothing of torch runs)."""

    def __init__(self, data, records):
        super().__init__(io.BytesIO(data))
        self.records = records

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if name == "_rebuild_tensor_v2":
            return lambda storage, offset, shape, stride, *rest: np.lib.stride_tricks.as_strided(
                storage[offset:], shape, [s * storage.itemsize for s in stride]).copy()
        if name == "_rebuild_parameter":
            return lambda t, *rest: t
        return name  # a storage type: its name is the element type

    def persistent_load(self, pid):
        _, kind, key, _, _ = pid
        raw = self.records[key]
        if kind == "BFloat16Storage":
            return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(raw, {"FloatStorage": np.float32, "HalfStorage": np.float16}[kind])


def read_torch(path):
    with zipfile.ZipFile(path) as z:
        prefix = next(n for n in z.namelist() if n.endswith("/data.pkl"))[:-len("data.pkl")]
        records = {n[len(prefix) + 5:]: z.read(n) for n in z.namelist() if n.startswith(prefix + "data/")}
        return _TorchReader(z.read(prefix + "data.pkl"), records).load()


def micro_config(fixture_config):
    cfg = json.loads(pathlib.Path(fixture_config).read_text())
    cfg["model_args"] = dict(MICRO)
    return json.dumps(cfg, indent=2).encode()


# ---- images ------------------------------------------------------------------------------------------------

def exif_orientation(value):
    """A little-endian TIFF block with IFD0 holding only Orientation (Pillow's Image.Exif layout)."""
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(samples, color_type, bit_depth, interlace=False, extra=b""):
    """samples: uint array [h, w, channels] of values < 2**bit_depth."""
    h, w, c = samples.shape
    rows = []

    def pack_rows(img):
        packed = []
        for row in img:
            flat = row.reshape(-1)
            if bit_depth == 16:
                raw = flat.astype(">u2").tobytes()
            elif bit_depth == 8:
                raw = flat.astype(np.uint8).tobytes()
            else:
                per = 8 // bit_depth
                vals = list(flat) + [0] * ((-len(flat)) % per)
                raw = bytes(sum(int(v) << (8 - bit_depth * (k + 1)) for k, v in enumerate(vals[i:i + per]))
                            for i in range(0, len(vals), per))
            packed.append(b"\x00" + raw)
        return b"".join(packed)

    if not interlace:
        data = pack_rows(samples)
    else:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b"".join(pack_rows(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                        if samples[y0::dy, x0::dx].size)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(data, 9)) + \
        png_chunk(b"IEND", b"")


def bmp_bytes(rgb, bits, top_down=False, os2=False, bitfields=None, palette=None, indices=None):
    """A BMP written by hand for the layouts Pillow's encoder does not make."""
    h, w = rgb.shape[:2]
    stride = ((w * bits + 31) // 32) * 4
    rows = []
    for y in range(h):
        src = y if top_down else h - 1 - y
        if bits == 16:
            r, g, b = (rgb[src, :, k].astype(np.uint32) for k in range(3))
            v = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
            raw = v.astype("<u2").tobytes()
        elif bits == 4:
            idx = list(indices[src]) + [0] * (w % 2)
            raw = bytes((idx[i] << 4) | idx[i + 1] for i in range(0, len(idx), 2))
        else:
            raw = rgb[src, :, ::-1].astype(np.uint8).tobytes()
        rows.append(raw + b"\x00" * (stride - len(raw)))
    pixels = b"".join(rows)
    if os2:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
        pal = b"".join(bytes([c[2], c[1], c[0]]) for c in palette) if palette is not None else b""
    else:
        compression = 3 if bitfields else 0
        info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bits, compression, len(pixels), 2835,
                           2835, len(palette) if palette is not None else 0, 0)
        pal = b"".join(struct.pack("<I", m) for m in bitfields) if bitfields else b""
        if palette is not None:
            pal = b"".join(bytes([c[2], c[1], c[0], 0]) for c in palette)
    offset = 14 + len(info) + len(pal)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pal + pixels


def saved(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent.parent / "shared"))
    args = parser.parse_args()
    fixtures = pathlib.Path(args.shared) / "fixtures"
    if CORPUS.exists():
        shutil.rmtree(CORPUS)

    tiny = read_safetensors(fixtures / "models/tiny/model.safetensors")
    swiglu = read_safetensors(fixtures / "models/tiny_swiglu_qkvb/model.safetensors")
    small = {k: tiny[k] for k in ("cls_token", "reg_token", "norm.weight", "norm.bias", "blocks.0.gamma_1")}

    # safetensors: the tiny model's small tensors in every dtype, metadata, a scalar and an empty tensor.
    write("fuzz_safetensors", "f32_with_metadata.safetensors",
          safetensors_bytes([f32(k, v) for k, v in small.items()], {"format": "pt"}))
    mixed = [("cls_token", "F16", small["cls_token"].shape, small["cls_token"].astype(np.float16).tobytes()),
             ("reg_token", "BF16", small["reg_token"].shape, bf16_bytes(small["reg_token"])),
             ("norm.weight", "F64", small["norm.weight"].shape, small["norm.weight"].astype(np.float64).tobytes()),
             ("steps", "I64", (2,), np.array([1, 2], dtype="<i8").tobytes()),
             ("mask", "BOOL", (3,), b"\x01\x00\x01"),
             ("bytes", "U8", (2, 2), b"\x00\x01\x02\x03"),
             ("scalar", "F32", (), np.float32(0.5).tobytes()),
             ("empty", "F32", (0, 4), b"")]
    write("fuzz_safetensors", "every_dtype.safetensors", safetensors_bytes(mixed))
    write("fuzz_safetensors", "no_tensors.safetensors", safetensors_bytes([]))

    # Sharded safetensors: the same tensors over two shards and their index (NUL-separated).
    names = sorted(small)
    shards = [names[:2], names[2:]]
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {"metadata": {"total_size": sum(small[k].nbytes for k in names)},
             "weight_map": {k: files[i] for i, part in enumerate(shards) for k in part}}
    write("fuzz_sharded_index", "two_shards.seed", json.dumps(index, indent=2).encode() + b"".join(
        b"\0" + safetensors_bytes([f32(k, small[k]) for k in part]) for part in shards))
    write("fuzz_sharded_index", "one_shard_used.seed", json.dumps({"weight_map": {k: files[0] for k in names}}).encode() +
          b"\0" + safetensors_bytes([f32(k, small[k]) for k in names]) + b"\0")

    # pytorch_model.bin, zip and pickle: the same tensors in torch.save's layout.
    bins = {}
    bins["f32.bin"] = torch_checkpoint(small)
    bins["half_bf16_params.bin"] = torch_checkpoint(
        small, kinds={"cls_token": "HalfStorage", "reg_token": "BFloat16Storage", "norm.bias": "DoubleStorage"},
        parameters=True)
    bins["zip64.bin"] = torch_checkpoint({k: small[k] for k in ("norm.weight", "norm.bias")}, zip64=True)
    shared = _Storage("FloatStorage", "0", np.arange(12, dtype=np.float32).tobytes())
    bins["shared_storage_views.bin"] = torch_zip(
        collections.OrderedDict(t=_Tensor(shared, 0, [3, 2], [1, 3]), s=_Tensor(shared, 5, [2], [1])), [shared])
    for name, (data, pkl) in bins.items():
        write("fuzz_pytorch_bin", name, data)
        write("fuzz_zip", name.replace(".bin", ".zip"), data)
        write("fuzz_pickle", name.replace(".bin", ".pkl"), pkl)
    with zipfile.ZipFile(fixtures / "models/tiny/pytorch_model.bin") as z:
        write("fuzz_pickle", "tiny_fixture.pkl", z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        z.comment = b"a comment after the directory"
        # ZipInfo keeps the 1980 timestamp: the seed stays the same from run to run.
        z.writestr(zipfile.ZipInfo("archive/data.pkl"), bins["f32.bin"][1], zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("archive/notes.txt"), b"compressed records are refused when read", zipfile.ZIP_DEFLATED)
    write("fuzz_zip", "deflated_with_comment.zip", deflated.getvalue())

    # Whole model folders: config.json, NUL, weights. The micro model cut from each tiny fixture.
    for label, source, config in (("gelu", tiny, fixtures / "models/tiny/config.json"),
                                  ("swiglu_qkvb", swiglu, fixtures / "models/tiny_swiglu_qkvb/config.json")):
        weights = micro_weights(source)
        cfg = micro_config(config)
        write("fuzz_model_folder", f"{label}.safetensors.seed",
              cfg + b"\0" + safetensors_bytes([f32(k, v) for k, v in sorted(weights.items())]))
        write("fuzz_model_folder", f"{label}.bin.seed", cfg + b"\0" + torch_checkpoint(weights)[0])
    # A Hugging Face folder (config.json with HF keys, weights, preprocessor_config.json as a third part)
    # and a Meta .pth alone (an empty config part: the folder holds only the checkpoint).
    hf = read_safetensors(fixtures / "models/tiny_hf/model.safetensors")
    hf_micro = {k: cut(k, hf[k], 64, 256) for k in first_block_only(hf, "layer.")}
    hf_cfg = json.loads((fixtures / "models/tiny_hf/config.json").read_text())
    hf_cfg.update(hidden_size=8, intermediate_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                  num_register_tokens=1, patch_size=2)
    write("fuzz_model_folder", "hf.seed", json.dumps(hf_cfg, indent=2).encode() + b"\0" +
          safetensors_bytes([f32(k, v) for k, v in sorted(hf_micro.items())]) + b"\0" +
          (fixtures / "models/tiny_hf/preprocessor_config.json").read_bytes())
    meta = read_torch(fixtures / "models/tiny_meta/dinov3_tiny_pretrain_random.pth")
    meta_micro = {k: cut(k, meta[k], 64, 256) for k in first_block_only(meta, "blocks.")}
    write("fuzz_model_folder", "meta.seed", b"\0" + torch_checkpoint(
        meta_micro, kinds={"rope_embed.periods": "BFloat16Storage"})[0])
    half = micro_weights(tiny)
    write("fuzz_model_folder", "gelu_f16.safetensors.seed",
          micro_config(fixtures / "models/tiny/config.json") + b"\0" + safetensors_bytes(
              [(k, "F16", v.shape, v.astype(np.float16).tobytes()) for k, v in sorted(half.items())]))

    # Images: crops of the fixture photographs in the layouts each decoder handles, EXIF included.
    photo = Image.open(fixtures / "images/rocket.jpg").convert("RGB").crop((300, 100, 324, 116))
    gray = Image.open(fixtures / "images/moon_gray.jpg").convert("L").crop((100, 100, 120, 114))
    rgb = np.asarray(photo)
    jpeg = saved(photo, "JPEG", quality=80)
    write("fuzz_image_jpeg", "baseline.jpg", jpeg)
    write("fuzz_image_jpeg", "progressive.jpg", saved(photo, "JPEG", quality=70, progressive=True))
    write("fuzz_image_jpeg", "subsampling_444.jpg", saved(photo, "JPEG", quality=90, subsampling=0))
    write("fuzz_image_jpeg", "gray.jpg", saved(gray, "JPEG", quality=75))
    write("fuzz_image_jpeg", "cmyk.jpg", saved(photo.convert("CMYK"), "JPEG", quality=75))
    write("fuzz_image_jpeg", "exif_orientation_6.jpg", saved(photo, "JPEG", quality=60, exif=exif_orientation(6)))
    write("fuzz_image_jpeg", "cut_in_half.jpg", jpeg[:len(jpeg) // 2])

    write("fuzz_image_png", "rgb.png", saved(photo, "PNG"))
    write("fuzz_image_png", "rgba.png", saved(photo.convert("RGBA"), "PNG"))
    write("fuzz_image_png", "gray.png", saved(gray, "PNG"))
    write("fuzz_image_png", "gray_alpha.png", saved(gray.convert("LA"), "PNG"))
    palette = photo.convert("P", palette=Image.ADAPTIVE, colors=16)
    write("fuzz_image_png", "palette_transparency.png", saved(palette, "PNG", transparency=3))
    write("fuzz_image_png", "one_bit.png", saved(gray.convert("1"), "PNG"))
    write("fuzz_image_png", "gray16.png", saved(gray.convert("I").point(lambda v: v * 257), "PNG"))
    rgba16 = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], axis=2).astype(np.uint16) * 257
    write("fuzz_image_png", "rgba16_interlaced.png", png_bytes(rgba16, 6, 16, interlace=True))
    write("fuzz_image_png", "rgb16.png", png_bytes(rgb.astype(np.uint16) * 257, 2, 16))
    write("fuzz_image_png", "gray2_exif.png", png_bytes((np.asarray(gray)[..., None] >> 6), 0, 2,
                                                        extra=png_chunk(b"eXIf", exif_orientation(8))))

    write("fuzz_image_webp", "lossy.webp", saved(photo, "WEBP", quality=50))
    write("fuzz_image_webp", "lossless.webp", saved(photo, "WEBP", lossless=True))
    write("fuzz_image_webp", "alpha_exif.webp", saved(photo.convert("RGBA"), "WEBP", quality=60,
                                                     exif=exif_orientation(3)))

    write("fuzz_image_bmp", "rgb24.bmp", saved(photo, "BMP"))
    write("fuzz_image_bmp", "palette8.bmp", saved(palette, "BMP"))
    write("fuzz_image_bmp", "one_bit.bmp", saved(gray.convert("1"), "BMP"))
    write("fuzz_image_bmp", "bgra32.bmp", saved(photo.convert("RGBA"), "BMP"))
    write("fuzz_image_bmp", "rgb565_top_down.bmp", bmp_bytes(rgb, 16, top_down=True,
                                                             bitfields=(0xF800, 0x07E0, 0x001F)))
    pal = [tuple(int(c) for c in palette.getpalette()[3 * i:3 * i + 3]) for i in range(16)]
    write("fuzz_image_bmp", "palette4_os2.bmp", bmp_bytes(rgb, 4, os2=True, palette=pal,
                                                          indices=np.asarray(palette)))

    # embed --resume states: inputs.txt, shape.txt, done.txt, rows.f32, NUL-separated; paths with a
    # newline, a tab, a backslash, a control byte and UTF-8 in them.
    paths = ["photos/a.jpg", "photos/new\nline.jpg", "photos/tab\there.png", "photos/back\\slash.webp",
             "photos/\x01ctrl.bmp", "photos/caf\u00e9.jpg"]

    def esc(text):
        out = ""
        for ch in text.encode("utf-8"):
            c = chr(ch)
            if c == "\\":
                out += "\\\\"
            elif c == "\n":
                out += "\\n"
            elif c == "\r":
                out += "\\r"
            elif c == "\t":
                out += "\\t"
            elif ch < 0x20 or ch == 0x7F:
                out += "\\x%02x" % ch
            else:
                out += c if ch < 0x80 else bytes([ch]).decode("latin-1")
        return out.encode("latin-1")

    inputs = b"".join(esc(p) + b"\n" for p in paths)
    done = b"".join((b"ok\t" + esc(p) if i % 3 else b"skip\t" + esc(p) + b"\t" + esc(p + ": truncated JPEG data")) + b"\n"
                    for i, p in enumerate(paths[:4]))
    rows = np.arange(4 * 3, dtype=np.float32).tobytes()
    write("fuzz_embed_state", "four_done.state", inputs + b"\0[4]\0" + done + b"\0" + rows)
    write("fuzz_embed_state", "cut_mid_line.state", inputs + b"\0[4]\0" + done[:-5] + b"\0" + rows)
    write("fuzz_embed_state", "nothing_done.state", inputs + b"\0[4]\0\0")

    # int8 plans for the harness's small models (2 blocks; GELU or SwiGLU MLP): mixed, SwiGLU's gate and up
    # tied, and split (the check refuses it).
    def plan_layers(swiglu):
        names = ["patch_embed.proj"]
        for b in range(2):
            names += [f"blocks.{b}.attn.qkv", f"blocks.{b}.attn.proj"]
            names += [f"blocks.{b}.mlp.fc1_g", f"blocks.{b}.mlp.fc1_x"] if swiglu else [f"blocks.{b}.mlp.fc1"]
            names.append(f"blocks.{b}.mlp.fc2")
        return names

    def plan(swiglu, precision, weights=None):
        calibration = {"images": 3, "budget": 0.008, "bf16_error": 0.0045, "int8_error": 0.019,
                       "predicted_error": 0.0079, "measured_error": 0.0079, "measured_cosine": 0.99997}
        if weights:
            calibration["rounding"] = "gptq"
        layers = [{"name": n, "precision": precision(i, n), "contribution": 0.001 * i}
                  for i, n in enumerate(plan_layers(swiglu))]
        doc = {"format": "dinov3-int8-plan", "version": 1, "architecture": "vit_small_patch16_dinov3",
               "int8_layers": sum(l["precision"] == "int8" for l in layers), "int8_flop_share": 0.3,
               "calibration": calibration, "layers": layers}
        if weights:
            doc["weights"] = weights
        return json.dumps(doc, indent=1).encode()

    write("fuzz_int8_plan", "gelu_mixed.json", plan(False, lambda i, n: "int8" if i % 2 else "bf16"))
    write("fuzz_int8_plan", "swiglu_tied.json", plan(True, lambda i, n: "int8" if "fc1" in n or i == 0 else "bf16"))
    write("fuzz_int8_plan", "swiglu_split.json", plan(True, lambda i, n: "int8" if n.endswith("fc1_g") else "bf16"))
    write("fuzz_int8_plan", "gelu_gptq.json",
          plan(False, lambda i, n: "int8" if i % 2 else "bf16", weights="gelu_gptq.weights.safetensors"))


if __name__ == "__main__":
    main()
