"""The default backend that learns: the classical draft, fitted to the project's accepted masks.

Round 0 of a project has no accepted masks, so :class:`LearnedBackend` without a model file is
exactly :class:`~inference.engine.classical.ClassicalBackend`. Once reviewers have accepted
masks, :func:`train` fits, from the simplest to the most complex, only as much as
cross-validation over patients clearly shows to help (``_learned_fit.py``: the criterion is
``1 - Dice`` per patient, a gain must exceed one standard error of the per-patient gains):

1. The classical draft's settings (:class:`~._learned_fit.Settings`): how deep the box's
   ellipsoid prior reaches beyond the key slice and how tight the draft is, one of 20
   candidates each tried on every accepted lesion. Missed and added slices each cost a whole
   re-contoured slice, and how deep lesions run or how far the draft overshoots is what a
   project's lesions share. Strategies: a new project's defaults, one setting for all, one per
   modality; a new project's defaults unless another clearly did better on patients it was
   not fitted on.
2. A gradient-boosted voxel classifier (scikit-learn's HistGradientBoosting, monotone in the
   draft's signed distance and in the distance from the box centre) that refines the tuned
   draft, kept only if it clearly lowers the cross-validated loss further; with a few lesions
   of mixed kinds it rarely does (on ``../shared/data``, always refining the draft as it once
   did, it made the next round costlier in 7 of 9 orderings), with many of one kind it can.

With a classifier, :class:`LearnedBackend` refines each tuned draft:

1. Run the classical backend with the fitted settings; keep its region of interest (the box,
   a margin, and the slices the box's physical size allows) and its mask. Regions over 200k
   voxels are described on a coarser grid (every 2nd or 3rd voxel) and the probability
   interpolated back.
2. Describe every voxel RELATIVE to the prompt (``_learned_features.py``): intensities rescaled
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

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ._learned_features import FEATURE_NAMES, postprocess, sample_voxels, voxel_features
from ._learned_fit import (
    SETTINGS_GRID,
    Settings,
    SettingsScores,
    clear_gain,
    cross_validated,
    folds,
    grouped_loss,
    overlap_lost,
    select_settings,
    settings_for,
)
from .base import (
    BackendUnavailable,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    ProgressCallback,
    SegmentationResult,
)
from .classical import ClassicalBackend, _Crop
from .masks2d import BoolArray, FloatArray

__all__ = [
    "FEATURE_NAMES",
    "MIN_VALIDATION_LESIONS",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "LearnedBackend",
    "LearnedModel",
    "ModelFileError",
    "Settings",
    "TrainingCase",
    "train",
]

MODEL_FORMAT = "lesion-annotator/learned-voxel-model"
MODEL_VERSION = 2  # 2: fitted draft settings; the classifier optional
MONOTONE = {"classical_distance": 1, "radius": -1}
# How much the classical draft weighs against the classifier's probability: a voxel of the
# draft stays unless the probability falls under 0.23, one outside it joins above 0.77.
PRIOR_WEIGHT = 0.35
# Regions larger than this are described on a coarser grid.
MAX_GRID_VOXELS = 200_000


class ModelFileError(BackendUnavailable, ValueError):
    """A model file is missing, corrupt, of another format or of an unsupported version."""


@dataclass(frozen=True, eq=False)
class TrainingCase:
    """One accepted lesion: the image, the box prompt it was drawn with, its reference mask
    (bool, the volume's shape), and the patient it belongs to (cases of one patient are held
    out together in cross-validation; empty: a patient of its own)."""

    volume: ImageVolume
    prompt: LesionPrompt
    reference: npt.NDArray[np.bool_]
    patient: str = ""


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


# A trained draft's settings may differ per modality, so a gain on one or two held-out lesions
# says little about the others (segmentation_accuracy: a draft that gained +0.014 on one MR
# lesion cost SPECT lesions up to 0.17): the gate needs at least this many to promote it.
MIN_VALIDATION_LESIONS = 3


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


# -- training -------------------------------------------------------------------------------


def train(
    examples: Iterable[TrainingCase],
    *,
    seed: int = 0,
    samples_per_case: int = 5_000,
    max_iter: int = 60,
) -> LearnedModel:
    """Fit the draft settings, then the voxel classifier if it earns its place (module docs);
    deterministic for a ``seed``. ``meta`` records the cross-validated overlap lost (``1 -
    Dice``, per patient) of every candidate, so that a manager can see why.

    Raises :class:`InvalidInput` when there is nothing to learn from.
    """
    cases = _checked(examples)
    backend = LearnedBackend()
    groups = [case.patient or f"case {i}" for i, case in enumerate(cases)]
    modalities = [case.volume.modality.strip().upper() for case in cases]
    losses = np.array([[_loss(backend.tuned(s), case) for case in cases] for s in SETTINGS_GRID])
    scores = SettingsScores(losses, groups, modalities)
    strategy, table, cv_settings = select_settings(scores)
    everything = list(range(len(cases)))
    drafts = [settings_for(table, modality) for modality in modalities]
    rows, labels = _samples(backend, cases, drafts, seed, samples_per_case)

    def classifier_loss(train: Sequence[int], test: Sequence[int]) -> list[float]:
        classifier = _fit_classifier(rows, labels, train, seed=seed, max_iter=max_iter)
        if classifier is None:
            return scores.loss(table, test)
        refined = LearnedBackend(model=LearnedModel(classifier, settings=table))
        return [_loss(refined, cases[i]) for i in test]

    # Both arms use the settings fitted on all cases: the comparison isolates the classifier.
    tuned = scores.loss(table, everything)
    without = grouped_loss(tuned, groups, everything)
    held_out = folds(groups)
    refined = cross_validated(held_out, classifier_loss) if held_out else None
    with_classifier = None if refined is None else grouped_loss(refined, groups, everything)
    keep = refined is not None and clear_gain(tuned, refined, groups)
    classifier = (
        _fit_classifier(rows, labels, everything, seed=seed, max_iter=max_iter) if keep else None
    )
    meta = {
        "cases": len(cases),
        "patients": len(set(groups)),
        "voxels": int(sum(len(y) for y in labels)),
        "seed": seed,
        "max_iter": max_iter,
        "strategy": strategy,
        "settings": {key: asdict(value) for key, value in table.items()},
        "classifier": classifier is not None,
        "cv_overlap_lost": {
            **cv_settings,
            "tuned draft": round(without, 4),
            "tuned draft + classifier": None
            if with_classifier is None
            else round(with_classifier, 4),
        },
    }
    return LearnedModel(classifier, settings=table, meta=meta)


def _checked(examples: Iterable[TrainingCase]) -> list[TrainingCase]:
    """The cases, checked, with colour images turned grey once for all the fits."""
    cases = [replace(case, volume=case.volume.grey()) for case in examples]
    if not cases:
        raise InvalidInput("no training cases: a learned model needs accepted masks")
    for case in cases:
        if case.reference.shape != case.volume.shape:
            raise InvalidInput(
                f"training case {case.prompt.lesion_id!r}: reference shape "
                f"{case.reference.shape} differs from the image's {case.volume.shape}"
            )
        LearnedBackend().validate(case.volume, [case.prompt])
        if not case.reference.any():
            raise InvalidInput(f"training case {case.prompt.lesion_id!r}: empty reference")
    return cases


def _loss(backend: LearnedBackend, case: TrainingCase) -> float:
    mask = backend.segment(case.volume, [case.prompt]).masks[case.prompt.lesion_id]
    return overlap_lost(mask, case.reference)


def _samples(
    backend: LearnedBackend,
    cases: Sequence[TrainingCase],
    drafts: Sequence[Settings],
    seed: int,
    per_case: int,
) -> tuple[list[FloatArray], list[npt.NDArray[np.bool_]]]:
    """Voxel features and labels around each case's tuned draft (``drafts``: its settings),
    about as many voxels per case, so that one big tumour does not drown ten small nodules."""
    rng = np.random.default_rng(seed)
    rows: list[FloatArray] = []
    labels: list[npt.NDArray[np.bool_]] = []
    for case, settings in zip(cases, drafts, strict=True):
        tuned = backend.tuned(settings)
        crop, classical, outcome = tuned._segment_crop(case.volume, case.prompt)
        region = backend._region(case.volume, crop, classical, outcome.note)
        reference = np.asarray(case.reference[crop.slices][region.grid], dtype=bool)
        picked = sample_voxels(rng, reference, region.classical[region.grid], per_case)
        rows.append(region.features[picked])
        labels.append(reference.ravel()[picked])
    return rows, labels


def _fit_classifier(
    rows: Sequence[FloatArray],
    labels: Sequence[npt.NDArray[np.bool_]],
    cases: Sequence[int],
    *,
    seed: int,
    max_iter: int,
) -> Any | None:
    """The voxel classifier on the samples of ``cases``; None when they are all of one class."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.concatenate([rows[i] for i in cases])
    y = np.concatenate([labels[i] for i in cases])
    if y.all() or not y.any():
        return None
    classifier = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=300,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
        # Few, heterogeneous cases: more inside the draft, or nearer the box centre, may
        # never make a voxel less likely to be lesion.
        monotonic_cst=[MONOTONE.get(name, 0) for name in FEATURE_NAMES],
    )
    classifier.fit(x, y)
    return classifier
