"""DINOv3 vision transformers, run by the dinov3.cpp engine: numpy in, numpy out.

    import dinov3
    model = dinov3.Model("timm/vit_small_patch16_dinov3.lvd1689m")   # a folder, a .pth, or a hub id
    x = model.preprocess(["cat.jpg", pil_image, uint8_array])         # float32 [B, 3, H, W]
    out = model.forward(x, layers=[-1])                                 # out.features, out.pooled, out.blocks
    for r in model.embed(paths, batch_size=8):                          # decoded ahead on worker threads
        print(r.path, r.pooled.shape)
    f = model.dense_features("cat.jpg", long_side=768)                  # f.patches: [grid_h, grid_w, D]
    pca = model.pca(["cat.jpg", "dog.jpg"], long_side=768)              # pca.pictures: HxWx3 uint8 each
    sim = model.similarity("cat.jpg", point=(120, 80), to="dog.jpg")    # sim.similarity, sim.picture
    dinov3.calibrate_int8(path, ["a.jpg", "b.jpg"], "plan.json")        # int8 where measured safe, bf16 elsewhere
    fast = dinov3.Model(path, precision="int8", int8_plan="plan.json")

Threads: one Model may be shared by several Python threads. Its forward passes run one at a time (the
engine serialises them; each uses every backend thread), while decoding and preprocessing run in
parallel; the GIL is released while decoding and computing. An iterator returned by embed() belongs to
the thread that iterates it (concurrent next() calls are serialised, not interleaved usefully).

Ctrl-C: a long call (a large batch, a high-resolution dense map) stops between transformer blocks with
KeyboardInterrupt, and the model stays usable.

Processes: a Model loaded before os.fork() (multiprocessing's "fork" start method) gives the same values in
the child, where its forward passes run on the forking thread alone (fork copies no other thread). An embed
iterator started before the fork raises RuntimeError in the child; call embed() again there. A model that
another thread was running at the moment of the fork stays locked in the child, whose calls on it raise
ValueError saying so: load it again there, or fork while no thread uses it (or use "spawn" / "forkserver").

Errors: the engine's message, as FileNotFoundError (a file or name that does not exist), OSError (the
system refused a read), ValueError (a wrong argument, a malformed file, something unsupported),
MemoryError (an allocation refused) or RuntimeError (anything else).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _dinov3

__all__ = ["Model", "calibrate_int8", "ForwardResult", "EmbedResult", "EmbedIterator", "DenseFeatures", "PatchPca", "PcaResult",
           "SimilarityResult", "DEFAULT_MODEL", "__version__"]

__version__: str = _dinov3.__version__
DEFAULT_MODEL: str = _dinov3.DEFAULT_MODEL


@dataclass(frozen=True)
class ForwardResult:
    """What Model.forward returns.

    features: float32 [B, T, D], every token after the final norm (1 class token, the register tokens,
        then the patches row by row).
    pooled: float32 [B, D], the pooled embedding (mean of the patch tokens, or the class token, as asked).
    blocks: float32 [B, T, D] per block asked for in `layers`, in that order (empty when none).
    """

    features: np.ndarray
    pooled: np.ndarray
    blocks: List[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class EmbedResult:
    """One image from Model.embed: its path, pooled embedding [D] and, when asked, its tokens [T, D]."""

    path: str
    pooled: np.ndarray
    features: Optional[np.ndarray] = None


class EmbedIterator:
    """Yields an EmbedResult per readable image, in input order; images are decoded ahead on worker threads.

    Unreadable files are not errors: they are listed, with the reason, in `skipped` (complete once the
    iterator is exhausted). A failure of the model itself raises (Ctrl-C: KeyboardInterrupt); the batch it was
    computing is run again by the next call, so going on loses no image.
    """

    def __init__(self, core: Any) -> None:
        self._core = core

    def __iter__(self) -> "EmbedIterator":
        return self

    def __next__(self) -> EmbedResult:
        path, pooled, features = self._core.next()
        return EmbedResult(os.fsdecode(path), pooled, features)

    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """(path, reason) for each unreadable image met so far."""
        return [(os.fsdecode(p), reason.decode("utf-8", "backslashreplace")) for p, reason in self._core.skipped()]


class DenseFeatures:
    """One image's patch features at a chosen resolution (Model.dense_features).

    patches: float32 [grid_h, grid_w, D], the final-normed patch tokens (no class or register tokens).
    grid: (grid_h, grid_w); input_size: (height, width) of the model input; image_size: (height, width)
    of the decoded image; patch_size: pixels per patch side in the input.
    """

    def __init__(self, core: Any) -> None:
        self._core = core
        self.patches: np.ndarray = core.patches()
        self.grid: Tuple[int, int] = tuple(core.grid())
        self.input_size: Tuple[int, int] = tuple(core.input_size())
        self.image_size: Tuple[int, int] = tuple(core.image_size())
        self.patch_size: int = core.patch_size()
        self.source: str = os.fsdecode(core.source())

    def image(self) -> np.ndarray:
        """The decoded image, HxWx3 uint8."""
        return self._core.image()

    def patch_at(self, x: int, y: int) -> Tuple[int, int]:
        """(row, column) of the patch under image pixel (x, y) (its centre carried through the
        preprocessing). ValueError when the pixel is outside the image or cropped away."""
        return tuple(self._core.patch_at(_int("x", x), _int("y", y)))

    def __repr__(self) -> str:
        return f"dinov3.DenseFeatures({self.source!r}, grid={self.grid}, dim={self.patches.shape[-1]})"


class PatchPca:
    """Three principal axes of patch features and the colour scale that goes with them.

    mean: [D]; components: [3, D] (unit rows, largest variance first, each signed so that its largest
    coefficient is positive); explained_variance_ratio: 3 fractions of the total variance; score_range:
    [3, 2], the (low, high) score of each component over the fitted patches. A patch's colour channel k is
    round(255 * clip((score_k - low_k) / (high_k - low_k), 0, 1)), score_k = (x - mean) . components[k].
    """

    def __init__(self, core: Any) -> None:
        self._core = core
        self.mean: np.ndarray = core.mean()
        self.components: np.ndarray = core.components()
        self.explained_variance_ratio: Tuple[float, float, float] = tuple(core.explained_variance_ratio())
        self.score_range: np.ndarray = core.score_range()

    def project(self, features: DenseFeatures) -> np.ndarray:
        """Scores of every patch: float32 [grid_h, grid_w, 3]."""
        return self._core.project(features._core)

    def save(self, path: Any, overwrite: bool = False) -> None:
        """Writes the PCA as safetensors (as `dinov3 pca --components-out` does); an existing file is an
        error unless overwrite=True."""
        self._core.save(os.fsencode(path), bool(overwrite))

    @staticmethod
    def load(path: Any) -> "PatchPca":
        """Reads a PCA saved by save() or `dinov3 pca --components-out`."""
        return PatchPca(_dinov3.PatchPca.load(os.fsencode(path)))


@dataclass(frozen=True)
class PcaResult:
    """What Model.pca returns: the PCA used, one HxWx3 uint8 picture per image (at the image's own size),
    and with foreground=True one bool [grid_h, grid_w] mask per image; features: each image's
    DenseFeatures."""

    pca: PatchPca
    pictures: List[np.ndarray]
    masks: List[np.ndarray]
    features: List[DenseFeatures]


@dataclass(frozen=True)
class SimilarityResult:
    """What Model.similarity returns: cosine similarity [grid_h, grid_w] of the chosen patch to every
    patch of the target image, the HxWx3 uint8 overlay picture, and the patch (row, column) chosen."""

    similarity: np.ndarray
    picture: np.ndarray
    patch: Tuple[int, int]


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # the engine's int


def _int(name: str, value: Any, low: int = _INT_MIN, high: int = _INT_MAX) -> int:
    """An integer argument as the engine takes it: a ValueError naming it for a bool, a fraction, a string
    or a value out of [low, high] (pybind11 would raise a TypeError listing signatures, or convert)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], not {value}")
    return int(value)


def _as_image(item: Any) -> Any:
    """A path (str), or an HxWx3 uint8 array; PIL images are converted to RGB first."""
    if isinstance(item, (str, os.PathLike)):
        return os.fsencode(item)  # bytes: any file name passes, UTF-8 or not
    if isinstance(item, (bytes, np.ndarray)):
        return item
    if hasattr(item, "convert") and hasattr(item, "mode") and hasattr(item, "size"):  # a PIL.Image
        return np.asarray(item.convert("RGB"), dtype=np.uint8)
    return item  # the engine names what it got


def _as_input(x: Any) -> np.ndarray:
    """A C-contiguous float32 array from a numpy array or a torch.Tensor (torch is never required)."""
    if not isinstance(x, np.ndarray) and type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"forward takes normalised float32 pixels [B, 3, H, W], got dtype {x.dtype}; "
            "use Model.preprocess for uint8 images")
    return np.ascontiguousarray(x, dtype=np.float32)


class Model:
    """A DINOv3 ViT loaded from a timm or Hugging Face folder, Meta's .pth, or a hub id.

    model: a folder or file, or a hub id "owner/name" looked up offline in the Hugging Face cache
        ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub), then /opt/atomgit/weight/<name>.
    backend: the compute backend ("cpu", or "reference", the slow oracle).
    precision: "fp32", "bf16" or "int8" (as the backend permits).
    threads: backend worker threads; None: one per core (the cpu backend takes at most max(256, 4 x cores)).
    int8_plan: with precision "int8", a plan file from calibrate_int8 (or `dinov3 calibrate`): int8 in the
        layers where it measured safe, bf16 elsewhere. None: every linear layer int8.
    profile: time every backend op of the forwards, read with op_profile().

    Raises FileNotFoundError when the model cannot be found (the message lists where it looked),
    ValueError for a malformed or unsupported checkpoint or a wrong argument.
    """

    def __init__(self, model: str = DEFAULT_MODEL, backend: str = "cpu", precision: str = "fp32",
                 threads: Optional[int] = None, int8_plan: Optional[str] = None, profile: bool = False) -> None:
        # Paths go to the engine as bytes (os.fsencode): any file name passes, UTF-8 or not.
        self._core = _dinov3.Model(os.fsencode(model), backend, precision, 0 if threads is None else _int("threads", threads),
                                   b"" if int8_plan is None else os.fsencode(int8_plan), bool(profile))
        self._config: Dict[str, Any] = self._core.config()
        self._config["path"] = os.fsdecode(self._config["path"])

    @property
    def config(self) -> Dict[str, Any]:
        """The model's description: layout ("timm", "meta", "hf"), architecture, embed_dim, depth,
        num_heads, patch_size, num_reg_tokens, global_pool (the default pooling) and the preprocessing
        defaults (input_size, interpolation, crop_mode, crop_pct, mean, std, rescale_factor, normalize)."""
        return dict(self._config)

    @property
    def backend(self) -> str:
        """The compute backend's name."""
        return self._core.backend_name()

    @property
    def device(self) -> str:
        """The device the backend computes on."""
        return self._core.device()

    def op_profile(self, reset: bool = False) -> List[Dict[str, Any]]:
        """Where the forwards since loading (or the last reset) spent their time, with profile=True: one
        dict per op and shape ("linear+gelu 384->1536", "attention 6x64 261 tokens", ...) in the order of
        their first call, with calls, seconds (summed) and gflop (2 per multiply-add; one forward's add up
        to the model's GFLOP per image). reset: empty the profile after reading it. Raises ValueError for
        a model loaded without profile=True."""
        return list(self._core.op_profile(bool(reset)))

    def preprocess(self, images: Any) -> np.ndarray:
        """Images -> float32 [B, 3, H, W] with the model's preprocessing (as timm, Meta or HF do it).

        images: one image or a list of them; each a file path, a PIL.Image (converted to RGB) or an
        HxWx3 uint8 RGB array. Raises FileNotFoundError for a missing file, ValueError for an
        undecodable one or an array of the wrong type or shape.
        """
        if isinstance(images, (str, bytes, os.PathLike, np.ndarray)) or hasattr(images, "convert"):
            images = [images]
        return self._core.preprocess([_as_image(i) for i in images])

    def forward(self, x: Any, pool: Optional[str] = None, layers: Optional[Sequence[int]] = None) -> ForwardResult:
        """Runs the model on float32 [B, 3, H, W] normalised pixels (H, W multiples of the patch size).

        x: a numpy array (other float dtypes and layouts are converted) or a torch.Tensor.
        pool: "avg" (mean of the patch tokens), "token" (the class token) or None (the model's default).
        layers: blocks whose output tokens to return as `blocks` (negative counts from the end).
        Raises ValueError for a wrong shape or option.
        """
        out = self._core.forward(_as_input(x), pool, None if layers is None else [_int("layers", i) for i in layers])
        return ForwardResult(out["features"], out["pooled"], list(out["blocks"]))

    def embed(self, paths: Iterable[Any], batch_size: int = 8, normalize: bool = False, features: bool = False,
              pool: Optional[str] = None, workers: int = 1, exif_transpose: bool = False) -> EmbedIterator:
        """Embeds image files in batches, decoding ahead on `workers` threads, as `dinov3 embed` does.

        Yields one EmbedResult per readable image, in input order: .path, .pooled float32 [D] and, with
        features=True, .features float32 [T, D]. normalize=True scales each vector (pooled, and each
        token) to unit L2 norm. Unreadable files are listed in the iterator's .skipped. A single path
        (str, bytes or os.PathLike) is one file, not a sequence of characters.
        """
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        return EmbedIterator(self._core.embed([os.fsencode(p) for p in paths], _int("batch_size", batch_size),
                                              bool(normalize), bool(features), pool, _int("workers", workers),
                                              bool(exif_transpose)))

    def dense_features(self, image: Any, size: Optional[int] = None,
                       long_side: Optional[int] = None) -> DenseFeatures:
        """Patch features of one image (a path, PIL.Image or HxWx3 uint8 array) at a chosen resolution.

        size: a square input, each side rounded to the nearest multiple of the patch size (halves up, at
        least one patch); long_side: the aspect ratio kept, the longer side rounded so and the shorter
        round(long_side * shorter / longer) rounded the same way. Neither: the model's own preprocessing.
        The layout's interpolation, mean and std apply either way.
        """
        return DenseFeatures(self._core.dense(_as_image(image), None if size is None else _int("size", size),
                                              None if long_side is None else _int("long_side", long_side)))

    def _dense(self, image: Any, size: Optional[int], long_side: Optional[int]) -> DenseFeatures:
        return image if isinstance(image, DenseFeatures) else self.dense_features(image, size, long_side)

    def pca(self, images: Any, size: Optional[int] = None, long_side: Optional[int] = None,
            foreground: bool = False, components: Optional[PatchPca] = None) -> PcaResult:
        """One PCA over the patches of all the images together, as RGB pictures (as `dinov3 pca`).

        images: one image or a list (paths, PIL images, uint8 arrays, or DenseFeatures already computed).
        foreground=True fits over the foreground patches only (first component thresholded at the mean,
        the side away from the image borders) and paints the background black. components: a PatchPca to
        apply as it is instead of fitting one.
        """
        if isinstance(images, (str, bytes, os.PathLike, np.ndarray, DenseFeatures)) or hasattr(images, "convert"):
            images = [images]
        features = [self._dense(i, size, long_side) for i in images]
        core, pictures, masks = self._core.pca([f._core for f in features], bool(foreground),
                                               None if components is None else components._core)
        return PcaResult(PatchPca(core), list(pictures), list(masks), features)

    def similarity(self, image: Any, point: Tuple[int, int], to: Any = None, size: Optional[int] = None,
                   long_side: Optional[int] = None, alpha: float = 0.5) -> SimilarityResult:
        """Cosine similarity of the patch under pixel point=(x, y) of `image` to every patch of `to` (the
        same image when None), with the viridis overlay picture (as `dinov3 similarity`)."""
        source = self._dense(image, size, long_side)
        target = source if to is None else self._dense(to, size, long_side)
        x, y = (_int("point", v) for v in point)
        sim, picture = self._core.similarity(source._core, x, y, target._core, float(alpha))
        return SimilarityResult(sim, picture, source.patch_at(x, y))

    def __repr__(self) -> str:
        c = self._config
        return f"dinov3.Model({c['architecture']!r}, layout={c['layout']!r}, path={c['path']!r}, backend={self.backend!r})"


def calibrate_int8(model: str, images: Any, plan: str, budget: float = 0.008, threads: Optional[int] = None,
                   overwrite: bool = False, rounding: str = "gptq") -> Dict[str, Any]:
    """Measures each linear layer's int8 error on calibration images and writes the int8 plan to `plan`
    (then: Model(model, precision="int8", int8_plan=plan)). Layers go int8, least error per multiply-add
    first, while the error predicted from the measurements stays within `budget`; the plan itself is then
    measured, and the most sensitive of its int8 layers return to bf16 until it is within budget. Errors are
    the worst image's relative L2 against float32, the larger of features and pooled.

    images: as Model.preprocess takes them (paths, PIL images, HxWx3 uint8 arrays), or float32
        [B, 3, H, W] pixels already preprocessed. About (4 + number of linear layers) forwards of them.
    rounding: "gptq" rounds each int8 layer's weights against these images' inputs to it (with 2 or more
        images; measured cross-fitted, each image with the weights rounded on the others) and writes them
        beside the plan (PLAN minus ".json" plus ".weights.safetensors"); "nearest" rounds at load.
    Returns the plan (its JSON as a dict). Raises ValueError for an existing `plan` (or weights file)
    without overwrite or a budget bf16 alone exceeds.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4 and np.issubdtype(images.dtype, np.floating):
        pixels = np.ascontiguousarray(images, dtype=np.float32)
    else:
        pixels = Model(model, backend="reference").preprocess(images)
    listed = images if isinstance(images, (list, tuple)) else [images]
    image_files = [os.fsencode(i) for i in listed if isinstance(i, (str, bytes, os.PathLike))]
    text = _dinov3.calibrate_int8(os.fsencode(model), pixels, float(budget), 0 if threads is None else _int("threads", threads),
                                  os.fsencode(plan), bool(overwrite), str(rounding), image_files)
    return json.loads(text)
