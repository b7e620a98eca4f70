"""The engine's contract: input volumes, prompts, results, errors, the backend interface and how
a backend is found by name (aliases, dotted paths). How a model learns is :mod:`.training`.

Nothing here imports Django: the engine runs in Celery workers, a CLI and notebooks alike.

Conventions, shared by every backend:

* ``ImageVolume.array`` has axis order (z, y, x), exactly what ``SimpleITK.GetArrayFromImage``
  returns; ``spacing`` is in mm and in (x, y, z) order, exactly what ``Image.GetSpacing()``
  returns. The two orders differ on purpose: each matches the library it comes from.
* A prompt's ``key_slice`` indexes axis 0 of the array; its ``box`` is (x0, y0, x1, y1) in
  inclusive voxel indices on that slice, x being the column (axis 2) and y the row (axis 1).
* Points are (x, y, z) voxel indices, the order SimpleITK uses for indices.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .errors import BackendUnavailable, EngineError, InvalidInput

__all__ = [
    "BackendUnavailable",
    "BoxPrompt",
    "EngineError",
    "ImageVolume",
    "InvalidInput",
    "LesionPrompt",
    "ProgressCallback",
    "SegmentationBackend",
    "SegmentationResult",
    "backend_class",
    "backend_path",
    "load_backend",
]

ProgressCallback = Callable[[int, int], None]
Point = tuple[int, int, int]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class ImageVolume:
    """A 3D image to segment.

    ``array``: (z, y, x), any real numeric dtype (CT in HU); or (z, y, x, 3) for colour (RGB)
    images and frames (endoscopy, photographs, colour ultrasound), kept as they are: a backend
    that works on grey values takes :meth:`grey`. ``spacing``: mm, (x, y, z).
    ``modality``: free text such as "CT", "MR", "PT", "US". ``window``: (center, width) for CT,
    used by backends to normalise intensities; ``None`` lets the backend decide.
    """

    array: npt.NDArray[Any]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    modality: str = "CT"
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        array = self.array
        if not isinstance(array, np.ndarray):
            raise InvalidInput(f"image array must be a numpy array, got {type(array).__name__}")
        if not (array.ndim == 3 or (array.ndim == 4 and array.shape[3] == 3)):
            raise InvalidInput(
                f"image array must be 3D (z, y, x) or colour (z, y, x, 3), got {array.ndim}D "
                f"with shape {array.shape}"
            )
        if min(array.shape) < 1:
            raise InvalidInput(f"image array has an empty axis: shape {array.shape}")
        if array.dtype == np.bool_ or not (
            np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        ):
            raise InvalidInput(f"image dtype must be a real number type, got {array.dtype}")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise InvalidInput("image contains NaN or infinite values")
        if len(self.spacing) != 3:
            raise InvalidInput(f"spacing must have 3 values (x, y, z) in mm, got {self.spacing}")
        if not all(math.isfinite(float(s)) and float(s) > 0 for s in self.spacing):
            raise InvalidInput(f"spacing values must be finite and > 0, got {self.spacing}")
        if self.window is not None:
            if len(self.window) != 2:
                raise InvalidInput(f"window must be (center, width), got {self.window}")
            center, width = (float(v) for v in self.window)
            if not (math.isfinite(center) and math.isfinite(width) and width > 0):
                raise InvalidInput(
                    f"window (center, width) needs finite values and width > 0, got {self.window}"
                )
        # Normalise to plain floats so that backends can rely on the types.
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        if self.window is not None:
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape[:3]
        return int(z), int(y), int(x)

    @property
    def is_colour(self) -> bool:
        return self.array.ndim == 4

    def grey(self) -> ImageVolume:
        """This volume with colour turned into luma (ITU-R BT.601, as PIL's "L"); itself when
        it is grey already."""
        if not self.is_colour:
            return self
        weights = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        luma = np.tensordot(self.array.astype(np.float32), weights, axes=([3], [0]))
        return ImageVolume(luma.astype(np.float32), self.spacing, self.modality, self.window)


@dataclass(frozen=True)
class LesionPrompt:
    """One lesion to segment, prompted by a box on its key slice.

    ``box`` = (x0, y0, x1, y1), inclusive voxel indices on slice ``key_slice`` (axis 0).
    ``positive_points`` / ``negative_points`` are optional (x, y, z) voxel indices for
    backends that take clicks; a backend that ignores them must still accept them.

    ``z_range``: (z0, z1) inclusive, the lesion's slice range as the annotator marked it: every
    backend returns nothing outside it. Optional, for backends that propagate (LiteMedSAM,
    MedSAM2); others accept and ignore them: ``mask_slices``: slice index -> (y, x) bool mask, a
    human-corrected slice that the result must keep; ``direction``: "both" (default), "forward"
    (cine: towards higher slice indices only) or "reverse"; ``None`` leaves it to the backend.
    """

    lesion_id: str
    key_slice: int
    box: tuple[int, int, int, int]
    positive_points: tuple[Point, ...] = ()
    negative_points: tuple[Point, ...] = ()
    mask_slices: Mapping[int, npt.NDArray[Any]] = field(default_factory=dict, compare=False)
    z_range: tuple[int, int] | None = None
    direction: str | None = None

    @property
    def kind(self) -> str:
        kind = "box+points" if self.positive_points or self.negative_points else "box"
        return kind + "+mask" if self.mask_slices else kind


# The box is the only prompt the first backends take; the alias keeps call sites readable.
BoxPrompt = LesionPrompt


@dataclass
class SegmentationResult:
    """``masks``: lesion_id -> bool array with the volume's shape (z, y, x).

    ``timings``: seconds per stage ("total", "preprocess", "segment", ...).
    ``notes``: lesion_id -> a human-readable remark where the backend fell back to something
    (for example a flat region where nothing could be told apart from its surroundings).
    """

    masks: dict[str, npt.NDArray[np.bool_]]
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def validate_prompts(volume: ImageVolume, prompts: Sequence[LesionPrompt]) -> None:
    """The checks every backend needs; raises :class:`InvalidInput` naming the problem."""
    if not isinstance(volume, ImageVolume):
        raise InvalidInput(f"expected an ImageVolume, got {type(volume).__name__}")
    if len(prompts) == 0:
        raise InvalidInput("no prompts given: at least one lesion prompt is needed")
    depth, height, width = volume.shape
    seen: set[str] = set()
    for prompt in prompts:
        if not isinstance(prompt, LesionPrompt):
            raise InvalidInput(f"expected a LesionPrompt, got {type(prompt).__name__}")
        where = f"prompt {prompt.lesion_id!r}"
        if not prompt.lesion_id:
            raise InvalidInput("a prompt has an empty lesion_id")
        if prompt.lesion_id in seen:
            raise InvalidInput(f"{where}: lesion_id is used by more than one prompt")
        seen.add(prompt.lesion_id)
        k = prompt.key_slice
        if not _is_int(k):
            raise InvalidInput(f"{where}: key_slice must be an integer, got {k!r}")
        if not 0 <= k < depth:
            raise InvalidInput(f"{where}: key_slice {k} is outside 0..{depth - 1}")
        box = prompt.box
        if len(box) != 4 or not all(_is_int(v) for v in box):
            raise InvalidInput(f"{where}: box must be 4 integers (x0, y0, x1, y1), got {box!r}")
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 < x0:
            raise InvalidInput(f"{where}: box {(x0, y0, x1, y1)} has x1 < x0 ({x1} < {x0})")
        if y1 < y0:
            raise InvalidInput(f"{where}: box {(x0, y0, x1, y1)} has y1 < y0 ({y1} < {y0})")
        if x0 < 0 or y0 < 0 or x1 >= width or y1 >= height:
            raise InvalidInput(
                f"{where}: box {(x0, y0, x1, y1)} lies outside the slice of {width}x{height} "
                f"pixels (x 0..{width - 1}, y 0..{height - 1})"
            )
        for name, points in (
            ("positive", prompt.positive_points),
            ("negative", prompt.negative_points),
        ):
            for point in points:
                if len(point) != 3 or not all(_is_int(v) for v in point):
                    raise InvalidInput(f"{where}: {name} point {point!r} is not (x, y, z)")
                px, py, pz = (int(v) for v in point)
                if not (0 <= px < width and 0 <= py < height and 0 <= pz < depth):
                    raise InvalidInput(
                        f"{where}: {name} point {point!r} lies outside the volume of "
                        f"{width}x{height}x{depth} voxels (x, y, z)"
                    )
        _validate_propagation_fields(prompt, where, volume.shape)


PROPAGATION_DIRECTIONS = ("both", "forward", "reverse")


def _validate_propagation_fields(
    prompt: LesionPrompt, where: str, shape: tuple[int, int, int]
) -> None:
    depth, height, width = shape
    for z, mask in prompt.mask_slices.items():
        if not _is_int(z) or not 0 <= z < depth:
            raise InvalidInput(f"{where}: mask slice {z!r} is outside 0..{depth - 1}")
        if not isinstance(mask, np.ndarray) or mask.shape != (height, width):
            got = mask.shape if isinstance(mask, np.ndarray) else type(mask).__name__
            raise InvalidInput(
                f"{where}: the mask of slice {z} must be a (y, x) array of {height}x{width}, "
                f"got {got}"
            )
        if mask.dtype != np.bool_ and not (
            np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()
        ):
            raise InvalidInput(f"{where}: the mask of slice {z} must be bool (or 0/1 integers)")
    if prompt.z_range is not None:
        z_range = prompt.z_range
        if len(z_range) != 2 or not all(_is_int(v) for v in z_range):
            raise InvalidInput(f"{where}: z_range must be 2 integers (z0, z1), got {z_range!r}")
        z0, z1 = (int(v) for v in z_range)
        if not 0 <= z0 <= z1 < depth:
            raise InvalidInput(f"{where}: z_range {(z0, z1)} is not within 0..{depth - 1}")
        prompted = {int(prompt.key_slice), *(int(z) for z in prompt.mask_slices)}
        prompted |= {int(p[2]) for p in (*prompt.positive_points, *prompt.negative_points)}
        outside = sorted(z for z in prompted if not z0 <= z <= z1)
        if outside:
            raise InvalidInput(f"{where}: prompted slices {outside} lie outside z_range {(z0, z1)}")
    if prompt.direction is not None and prompt.direction not in PROPAGATION_DIRECTIONS:
        raise InvalidInput(
            f"{where}: direction must be one of {', '.join(PROPAGATION_DIRECTIONS)}, "
            f"got {prompt.direction!r}"
        )


class SegmentationBackend(ABC):
    """A prompt-driven 3D segmenter.

    Subclasses set ``name`` and implement :meth:`segment` and :meth:`describe`. ``validate``
    has a default doing the common checks; override it to add backend-specific ones (call
    ``super().validate``). ``segment`` must validate its input itself, treat prompts
    independently (no state leaking from one lesion to the next) and call ``progress(done,
    total)`` as work advances, finishing with ``progress(total, total)``.
    """

    name: str = "abstract"
    # The constructor option that takes a model file (a ModelVersion's checkpoint), if any.
    checkpoint_option: ClassVar[str | None] = None

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """Name, version, accepted prompt kinds and device, for logs and the API."""

    def validate(self, volume: ImageVolume, prompts: Sequence[LesionPrompt]) -> None:
        """Raise :class:`InvalidInput` if the volume or a prompt cannot be segmented."""
        validate_prompts(volume, prompts)

    @abstractmethod
    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        """Segment every prompted lesion; masks are keyed by ``lesion_id``."""


# Short names accepted by load_backend, so a CLI can say "default".
BACKEND_ALIASES: dict[str, str] = {
    "default": "inference.engine.hybrid.HybridBackend",
    "classical": "inference.engine.classical.ClassicalBackend",
    "medsam2": "inference.engine.medsam2.MedSAM2Backend",
    "litemedsam": "inference.engine.litemedsam.LiteMedSAMBackend",
}

# Backends whose module was renamed: the old dotted path -> where the class is now. Settings
# (INFERENCE_BACKEND), model versions and notebooks may still name the old path, so it keeps
# working. The classical backend's module was default.py until it was named for what it holds.
MOVED_BACKENDS: dict[str, str] = {
    "inference.engine.default.ClassicalBackend": "inference.engine.classical.ClassicalBackend",
}


def _resolved(name: str) -> str:
    """The path an alias names, or ``name`` itself; a moved backend's path where it is now."""
    path = BACKEND_ALIASES.get(name, name)
    return MOVED_BACKENDS.get(path.replace(":", "."), path)


def backend_path(name: str) -> str:
    """The dotted path ("package.module.Class") an alias or a path names ("package.module:Class"
    written with a dot)."""
    return _resolved(name).replace(":", ".")


def backend_class(name: str) -> type | None:
    """The class an alias or dotted path names; None when it cannot be imported."""
    module_name, _, attr = backend_path(name).rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def load_backend(
    dotted_path: str, *, checkpoint: str | None = None, **options: object
) -> SegmentationBackend:
    """Import and construct a backend from "package.module.Class" (or "package.module:Class").

    ``options`` go to the class (or factory) as keyword arguments; ``checkpoint`` (a model file)
    goes to the option the class names in ``checkpoint_option``. Raises
    :class:`BackendUnavailable` when the path does not lead to a backend or construction fails.
    """
    path = _resolved(dotted_path)
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise BackendUnavailable(
            f"backend path {dotted_path!r} is not of the form 'package.module.ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {dotted_path!r}: cannot import module {module_name!r}: {exc}"
        ) from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise BackendUnavailable(
            f"backend {dotted_path!r}: module {module_name!r} has no attribute {attr!r}"
        ) from exc
    if not callable(factory):
        raise BackendUnavailable(f"backend {dotted_path!r}: {attr!r} is not a class or factory")
    if checkpoint:
        option = getattr(factory, "checkpoint_option", None)
        if not option:
            raise BackendUnavailable(f"backend {dotted_path!r} takes no checkpoint file")
        options = {**options, option: checkpoint}
    try:
        backend = factory(**options)
    except BackendUnavailable:
        raise
    except (TypeError, ValueError, ImportError, OSError) as exc:
        # Bad options, or what a model backend meets at start-up: a missing library or file.
        raise BackendUnavailable(
            f"backend {dotted_path!r}: cannot construct it with options {options!r}: {exc}"
        ) from exc
    if not isinstance(backend, SegmentationBackend):
        raise BackendUnavailable(
            f"backend {dotted_path!r} built a {type(backend).__name__}, not a SegmentationBackend"
        )
    return backend
