# Type stub for the dinov3 package (see __init__.py for the documentation).
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union
import os

import numpy as np
import numpy.typing as npt

__version__: str
DEFAULT_MODEL: str

ImageLike = Union[str, bytes, os.PathLike, npt.NDArray[np.uint8], Any]  # Any: a PIL.Image

class ForwardResult:
    features: npt.NDArray[np.float32]  # [B, T, D]
    pooled: npt.NDArray[np.float32]    # [B, D]
    blocks: List[npt.NDArray[np.float32]]  # [B, T, D] per layer asked

class EmbedResult:
    path: str
    pooled: npt.NDArray[np.float32]               # [D]
    features: Optional[npt.NDArray[np.float32]]   # [T, D] when asked

class EmbedIterator(Iterator[EmbedResult]):
    def __iter__(self) -> EmbedIterator: ...
    def __next__(self) -> EmbedResult: ...
    @property
    def skipped(self) -> List[Tuple[str, str]]: ...

class DenseFeatures:
    patches: npt.NDArray[np.float32]  # [grid_h, grid_w, D]
    grid: Tuple[int, int]
    input_size: Tuple[int, int]
    image_size: Tuple[int, int]
    patch_size: int
    source: str
    def image(self) -> npt.NDArray[np.uint8]: ...
    def patch_at(self, x: int, y: int) -> Tuple[int, int]: ...

class PatchPca:
    mean: npt.NDArray[np.float32]        # [D]
    components: npt.NDArray[np.float32]  # [3, D]
    explained_variance_ratio: Tuple[float, float, float]
    score_range: npt.NDArray[np.float32]  # [3, 2]
    def project(self, features: DenseFeatures) -> npt.NDArray[np.float32]: ...
    def save(self, path: Union[str, os.PathLike], overwrite: bool = False) -> None: ...
    @staticmethod
    def load(path: Union[str, os.PathLike]) -> PatchPca: ...

class PcaResult:
    pca: PatchPca
    pictures: List[npt.NDArray[np.uint8]]
    masks: List[npt.NDArray[np.bool_]]
    features: List[DenseFeatures]

class SimilarityResult:
    similarity: npt.NDArray[np.float32]  # [grid_h, grid_w]
    picture: npt.NDArray[np.uint8]
    patch: Tuple[int, int]

class Model:
    def __init__(self, model: Union[str, os.PathLike] = ..., backend: str = "cpu", precision: str = "fp32",
                 threads: Optional[int] = None, int8_plan: Optional[Union[str, os.PathLike]] = None,
                 profile: bool = False) -> None: ...
    def op_profile(self, reset: bool = False) -> List[Dict[str, Any]]: ...
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> str: ...
    def preprocess(self, images: Union[ImageLike, Sequence[ImageLike]]) -> npt.NDArray[np.float32]: ...
    def forward(self, x: Any, pool: Optional[str] = None, layers: Optional[Sequence[int]] = None) -> ForwardResult: ...
    def embed(self, paths: Iterable[Union[str, os.PathLike]], batch_size: int = 8, normalize: bool = False,
              features: bool = False, pool: Optional[str] = None, workers: int = 1,
              exif_transpose: bool = False) -> EmbedIterator: ...
    def dense_features(self, image: ImageLike, size: Optional[int] = None,
                       long_side: Optional[int] = None) -> DenseFeatures: ...
    def pca(self, images: Union[ImageLike, DenseFeatures, Sequence[Union[ImageLike, DenseFeatures]]],
            size: Optional[int] = None, long_side: Optional[int] = None, foreground: bool = False,
            components: Optional[PatchPca] = None) -> PcaResult: ...
    def similarity(self, image: Union[ImageLike, DenseFeatures], point: Tuple[int, int],
                   to: Optional[Union[ImageLike, DenseFeatures]] = None, size: Optional[int] = None,
                   long_side: Optional[int] = None, alpha: float = 0.5) -> SimilarityResult: ...

def calibrate_int8(model: Union[str, os.PathLike], images: Any, plan: Union[str, os.PathLike], budget: float = 0.008,
                   threads: Optional[int] = None, overwrite: bool = False, rounding: str = "gptq") -> Dict[str, Any]: ...
