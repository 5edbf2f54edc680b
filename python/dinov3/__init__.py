"""DINOv3 vision transformers, run by the dinov3.cpp engine: numpy in, numpy out.

    import dinov3
    model = dinov3.Model("timm/vit_small_patch16_dinov3.lvd1689m")   # a folder, a .pth, or a hub id
    x = model.preprocess(["cat.jpg", pil_image, uint8_array])         # float32 [B, 3, H, W]
    out = model.forward(x, layers=[-1])                                 # out.features, out.pooled, out.blocks
    for r in model.embed(paths, batch_size=8):                          # decoded ahead on worker threads
        print(r.path, r.pooled.shape)

Threads: one Model may be shared by several Python threads. Its forward passes run one at a time (the
engine serialises them; each uses every backend thread), while decoding and preprocessing run in
parallel; the GIL is released while decoding and computing. An iterator returned by embed() belongs to
the thread that iterates it (concurrent next() calls are serialised, not interleaved usefully).

Errors: the engine's message, as FileNotFoundError (a file or name that does not exist), OSError (the
system refused a read), ValueError (a wrong argument, a malformed file, something unsupported),
MemoryError (an allocation refused) or RuntimeError (anything else).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _dinov3

__all__ = ["Model", "ForwardResult", "EmbedResult", "EmbedIterator", "DEFAULT_MODEL", "__version__"]

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
    iterator is exhausted). A failure of the model itself raises.
    """

    def __init__(self, core: Any) -> None:
        self._core = core

    def __iter__(self) -> "EmbedIterator":
        return self

    def __next__(self) -> EmbedResult:
        path, pooled, features = self._core.next()
        return EmbedResult(path, pooled, features)

    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """(path, reason) for each unreadable image met so far."""
        return list(self._core.skipped())


def _as_image(item: Any) -> Any:
    """A path (str), or an HxWx3 uint8 array; PIL images are converted to RGB first."""
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    if isinstance(item, (str, bytes, np.ndarray)):
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
    threads: backend worker threads; None: one per core.

    Raises FileNotFoundError when the model cannot be found (the message lists where it looked),
    ValueError for a malformed or unsupported checkpoint or a wrong argument.
    """

    def __init__(self, model: str = DEFAULT_MODEL, backend: str = "cpu", precision: str = "fp32",
                 threads: Optional[int] = None) -> None:
        self._core = _dinov3.Model(os.fspath(model), backend, precision, 0 if threads is None else int(threads))
        self._config: Dict[str, Any] = self._core.config()

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
        out = self._core.forward(_as_input(x), pool, None if layers is None else [int(i) for i in layers])
        return ForwardResult(out["features"], out["pooled"], list(out["blocks"]))

    def embed(self, paths: Iterable[Any], batch_size: int = 8, normalize: bool = False, features: bool = False,
              pool: Optional[str] = None, workers: int = 1, exif_transpose: bool = False) -> EmbedIterator:
        """Embeds image files in batches, decoding ahead on `workers` threads, as `dinov3 embed` does.

        Yields one EmbedResult per readable image, in input order: .path, .pooled float32 [D] and, with
        features=True, .features float32 [T, D]. normalize=True scales each vector (pooled, and each
        token) to unit L2 norm. Unreadable files are listed in the iterator's .skipped.
        """
        return EmbedIterator(self._core.embed([os.fspath(p) for p in paths], int(batch_size), bool(normalize),
                                              bool(features), pool, int(workers), bool(exif_transpose)))

    def __repr__(self) -> str:
        c = self._config
        return f"dinov3.Model({c['architecture']!r}, layout={c['layout']!r}, path={c['path']!r}, backend={self.backend!r})"
