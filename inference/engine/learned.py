"""The default backend that learns: the classical draft, fitted to the project's accepted masks.

Round 0 of a project has no accepted masks, so :class:`LearnedBackend` without a model file is
exactly :class:`~inference.engine.classical.ClassicalBackend`. Once reviewers have accepted
masks, :func:`.learned_fit.train` fits a :class:`LearnedModel` (``learned_fit.py``): the
classical draft's settings (:class:`Settings`), and a voxel classifier that refines the tuned
draft only if cross-validation over patients clearly shows it to help.

With a classifier, :class:`LearnedBackend` refines each tuned draft:

1. Run the classical backend with the fitted settings; keep its region of interest (the box,
   a margin, and the slices the box's physical size allows) and its mask. Regions over 200k
   voxels are described on a coarser grid (every 2nd or 3rd voxel) and the probability
   interpolated back.
2. Describe every voxel RELATIVE to the prompt (``learned_features.py``): intensities rescaled
   so that the ring around the box on the key slice is 0 and the box's core 1, smoothed at 1,
   2.5 and 6 mm, gradient magnitudes and local spread at those scales, the offset from the box
   centre in units of the box's half-size in mm (the slice axis in units of the larger
   half-side), and the classical mask's signed distance in the same units.
3. Blend: ``0.65 * probability + 0.35 * draft`` (the draft is a prior the classifier must be
   fairly sure to overrule), threshold at 0.5, keep the 3D component that covers most of the
   box on the key slice, fill holes slice by slice and in 3D.

Colour images are segmented, and learned from, on their luma; a prompt's slice range bounds
the region of interest, so the refined mask never leaves it either (:mod:`.classical`).

Pure numpy / scipy / scikit-learn: no Django, no GPU. A model file is a joblib pickle with a
format tag and version; load model files only from your own training runs (a pickle can run
code when loaded, like any pickle).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy import ndimage

from .base import (
    BackendUnavailable,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    ProgressCallback,
    SegmentationResult,
)
from .classical import ClassicalBackend, _Crop
from .learned_features import FEATURE_NAMES, postprocess, voxel_features
from .masks2d import BoolArray, FloatArray

__all__ = [
    "FEATURE_NAMES",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "LearnedBackend",
    "LearnedModel",
    "ModelFileError",
    "Settings",
    "settings_for",
]

MODEL_FORMAT = "lesion-annotator/learned-voxel-model"
MODEL_VERSION = 2  # 2: fitted draft settings; the classifier optional
# How much the classical draft weighs against the classifier's probability: a voxel of the
# draft stays unless the probability falls under 0.23, one outside it joins above 0.77.
PRIOR_WEIGHT = 0.35
# Regions larger than this are described on a coarser grid.
MAX_GRID_VOXELS = 200_000


class ModelFileError(BackendUnavailable, ValueError):
    """A model file is missing, corrupt, of another format or of an unsupported version."""


@dataclass(frozen=True)
class Settings:
    """The classical draft's settings a model fits (``ClassicalBackend`` options)."""

    depth: float = 1.0
    bias: float = 0.0

    def departure(self) -> float:
        """How far from a new project's defaults: ties are broken towards them."""
        return abs(math.log(self.depth)) + abs(self.bias)


def settings_for(table: Mapping[str, Settings], modality: str) -> Settings:
    return table.get(modality, table.get("*", Settings()))


@dataclass(frozen=True, eq=False)
class _Region:
    """What the classical backend found for one lesion, and the voxel features around it.

    Large regions are described on a coarser grid (every ``step``-th voxel along each axis,
    starting at ``start`` so that the key slice is on it): the features are smooth at that
    scale anyway, and it keeps a 10 cm tumour under a second.
    """

    crop: _Crop
    classical: BoolArray  # within the crop, full resolution
    features: FloatArray  # (voxels of the grid, features)
    start: tuple[int, int, int]
    step: tuple[int, int, int]
    grid_shape: tuple[int, int, int]
    note: str | None

    @property
    def grid(self) -> tuple[slice, slice, slice]:
        return tuple(  # type: ignore[return-value]
            slice(o, None, f) for o, f in zip(self.start, self.step, strict=True)
        )

    def upsample(self, values: FloatArray) -> FloatArray:
        """Linear interpolation of grid values back to every voxel of the crop."""
        values = values.reshape(self.grid_shape)
        if self.step == (1, 1, 1):
            return values
        size = [(n - 1) * f + 1 for n, f in zip(self.grid_shape, self.step, strict=True)]
        fine = ndimage.zoom(
            values,
            [s / n for s, n in zip(size, self.grid_shape, strict=True)],
            order=1,
            mode="nearest",
            grid_mode=False,
        )
        fine = fine[: size[0], : size[1], : size[2]]
        shape = self.classical.shape
        pad = [
            (o, max(0, n - o - s)) for o, n, s in zip(self.start, shape, fine.shape, strict=True)
        ]
        out = np.pad(fine, pad, mode="edge")
        return np.asarray(out[: shape[0], : shape[1], : shape[2]], dtype=np.float32)


class LearnedModel:
    """The fitted draft settings per modality (``"*"``: any other; empty: the defaults), the
    voxel classifier that refines the draft (``None`` when cross-validation kept it out), and
    the classifier's decision threshold and blend weight."""

    def __init__(
        self,
        classifier: Any | None,
        *,
        settings: dict[str, Settings] | None = None,
        threshold: float = 0.5,
        prior_weight: float = PRIOR_WEIGHT,
        meta: dict[str, Any] | None = None,
    ):
        self.classifier = classifier
        self.settings: dict[str, Settings] = dict(settings or {})
        self.threshold = float(threshold)
        self.prior_weight = float(prior_weight)
        self.meta: dict[str, Any] = dict(meta or {})

    def settings_for(self, modality: str) -> Settings:
        return settings_for(self.settings, modality.strip().upper())

    def predict(self, features: FloatArray) -> FloatArray:
        """Lesion probability per row of ``features``."""
        if self.classifier is None:
            raise InvalidInput("this model has no voxel classifier: its drafts are final")
        proba = self.classifier.predict_proba(features)
        return np.asarray(proba[:, 1], dtype=np.float32)

    def save(self, path: str | Path) -> None:
        payload = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "features": list(FEATURE_NAMES),
            "settings": {key: asdict(value) for key, value in self.settings.items()},
            "threshold": self.threshold,
            "prior_weight": self.prior_weight,
            "meta": self.meta,
            "classifier": self.classifier,
        }
        joblib.dump(payload, Path(path), compress=3)

    @classmethod
    def load(cls, path: str | Path) -> LearnedModel:
        """Read a model written by :meth:`save`; :class:`ModelFileError` says what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file {str(path)!r} does not exist")
        try:
            payload = joblib.load(path)
        except Exception as exc:  # a truncated or foreign file fails in many ways
            raise ModelFileError(
                f"model file {str(path)!r} is not a readable model ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ModelFileError(f"model file {str(path)!r} is not a {MODEL_FORMAT} file")
        if payload.get("version") != MODEL_VERSION:
            raise ModelFileError(
                f"model file {str(path)!r} has format version {payload.get('version')!r}; "
                f"this engine reads version {MODEL_VERSION}: retrain the model"
            )
        if tuple(payload.get("features", ())) != FEATURE_NAMES:
            raise ModelFileError(f"model file {str(path)!r} was trained on other features")
        classifier = payload.get("classifier")
        if classifier is not None and not hasattr(classifier, "predict_proba"):
            raise ModelFileError(f"model file {str(path)!r} holds no classifier")
        try:
            settings = {key: Settings(**value) for key, value in payload["settings"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"model file {str(path)!r} holds no valid settings") from exc
        return cls(
            classifier,
            settings=settings,
            threshold=float(payload["threshold"]),
            prior_weight=float(payload["prior_weight"]),
            meta=payload.get("meta"),
        )


class LearnedBackend(ClassicalBackend):
    """The classical backend, refined by a :class:`LearnedModel` when one is given.

    ``model_path``: a file written by :meth:`LearnedModel.save`, or ``None`` (round 0: exactly
    the classical backend). ``model``: an already loaded model (takes precedence). Other
    options are the classical backend's.
    """

    checkpoint_option = "model_path"

    name = "default"
    version = "1.1"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model: LearnedModel | None = None,
        z_reach: float = 0.75,
        margin: float = 0.15,
        smoothing: float = 1.0,
        depth: float = 1.0,
        bias: float = 0.0,
    ):
        super().__init__(
            z_reach=z_reach, margin=margin, smoothing=smoothing, depth=depth, bias=bias
        )
        if model is None and model_path is not None:
            model = LearnedModel.load(model_path)
        self.model = model

    def describe(self) -> dict[str, object]:
        info = super().describe()
        if self.model is not None:
            info["kind"] = (
                "classical draft with fitted settings"
                if self.model.classifier is None
                else "classical draft with fitted settings, refined by a learned voxel classifier"
            )
            info["model"] = dict(self.model.meta)
        return info

    def tuned(self, settings: Settings) -> LearnedBackend:
        """This backend's options with a model's draft settings, and no model."""
        return LearnedBackend(
            z_reach=self.z_reach,
            margin=self.margin,
            smoothing=self.smoothing,
            depth=settings.depth,
            bias=settings.bias,
        )

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        volume = volume.grey()
        if self.model is None:
            return super().segment(volume, prompts, progress=progress)
        model = self.model
        tuned = self.tuned(model.settings_for(volume.modality))
        if model.classifier is None:
            return tuned.segment(volume, prompts, progress=progress)
        started = time.perf_counter()
        self.validate(volume, prompts)
        total = len(prompts)
        if progress is not None:
            progress(0, total)
        result = SegmentationResult(
            masks={}, timings={"preprocess": 0.0, "segment": 0.0, "refine": 0.0}
        )
        for done, prompt in enumerate(prompts, start=1):
            crop, classical, outcome = tuned._segment_crop(volume, prompt)
            result.timings["preprocess"] += outcome.preprocess_s
            result.timings["segment"] += outcome.segment_s
            t1 = time.perf_counter()
            region = self._region(volume, crop, classical, outcome.note)
            mask = outcome.mask
            mask[crop.slices] = self._refine(model, region)
            result.masks[prompt.lesion_id] = mask
            if region.note and not mask.any():
                result.notes[prompt.lesion_id] = region.note
            result.timings["refine"] += time.perf_counter() - t1
            if progress is not None:
                progress(done, total)
        result.timings["total"] = time.perf_counter() - started
        return result

    # -- features ---------------------------------------------------------------------------

    def _region(
        self, volume: ImageVolume, crop: _Crop, classical: BoolArray | None, note: str | None
    ) -> _Region:
        data = np.asarray(volume.grey().array[crop.slices], dtype=np.float32)
        shape = data.shape
        if classical is None:
            classical = np.zeros(shape, dtype=bool)
        sx, sy, sz = volume.spacing
        factor = (data.size / MAX_GRID_VOXELS) ** (1 / 3)
        fy = fx = max(1, round(factor))
        # Thick slices are not thinned further unless the in-plane grid gets as coarse.
        fz = max(1, round(factor * min(sx, sy) / sz))
        step = (fz, fy, fx)
        x0, y0, x1, y1 = crop.box
        start = (crop.key % fz, y0 % fy, x0 % fx)
        grid = tuple(slice(o, None, f) for o, f in zip(start, step, strict=True))
        coarse = data[grid]
        box = (
            (x0 - start[2]) // fx,
            (y0 - start[1]) // fy,
            (x1 - start[2]) // fx,
            (y1 - start[1]) // fy,
        )
        features = voxel_features(
            coarse,
            (crop.key - start[0]) // fz,
            box,
            (sx * fx, sy * fy, sz * fz),
            classical[grid],
        )
        grid_shape = (int(coarse.shape[0]), int(coarse.shape[1]), int(coarse.shape[2]))
        return _Region(crop, classical, features, start, step, grid_shape, note)

    def _refine(self, model: LearnedModel, region: _Region) -> BoolArray:
        crop = region.crop
        proba = region.upsample(model.predict(region.features))
        # The classical draft is a prior: the model must be fairly sure to overrule it.
        weight = model.prior_weight
        score = (1.0 - weight) * proba + weight * region.classical.astype(np.float32)
        return postprocess(score >= model.threshold, crop.key, crop.box)
