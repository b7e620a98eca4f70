"""Fitting the learned backend's model to a project's accepted lesions (see ``learned.py``).

:func:`train` fits, from the simplest to the most complex, only as much as cross-validation over
patients clearly shows to help (the criterion is ``1 - Dice`` per patient, a gain must exceed
one standard error of the per-patient gains). The training job's trainer
(:mod:`.learned_training`) calls it on the accepted cases of a round and decides, by the gate,
whether the model may pre-annotate.

1. The classical draft's settings (:class:`~.learned.Settings`): how deep the box's
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

A project's first rounds give a handful of lesions, often of several patients and modalities. A
voxel classifier with fifteen features fitted on six of them learns those six and misleads the
next patients; two numbers do not. So training first fits the classical draft's own settings
(:class:`Settings`: how deep the box's ellipsoid prior reaches, how tight the draft is) to the
accepted lesions, and keeps anything more complex only where cross-validation over patients
shows that it helps. Every choice is judged by the same criterion, :func:`grouped_loss`.

The criterion is the overlap lost, ``1 - Dice`` of the draft against the accepted mask, averaged
per patient and then over patients, so that a patient with four lesions does not outweigh one
with a single lesion. The annotator's work (slices with a 2D Dice under 0.9, what
``inference/simulation.py`` prices) was tried first and rejected: at the Dice this backend
reaches most slices need re-contouring whatever the settings, so that count is flat and noisy,
and it favoured drafts shrunk far inside the lesion, which lost on the next patients (on the
18 lesions of ``../shared/data``, split as the campaign splits them for seeds 0-8, settings
chosen by it made the next round costlier in 12 of 18 rounds and cut its mean Dice by 0.19,
while chosen by Dice they stayed the defaults: ``benchmarks/RESULTS.md``). Dice is smooth in
the settings and does not reward a draft for giving up on the slices it outlines poorly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import ImageVolume, InvalidInput, LesionPrompt
from .geometry import dice
from .learned import LearnedBackend, LearnedModel, Settings, settings_for
from .learned_features import FEATURE_NAMES, sample_voxels
from .masks2d import FloatArray

__all__ = [
    "MIN_VALIDATION_LESIONS",
    "SETTINGS_GRID",
    "STRATEGIES",
    "SettingsScores",
    "TrainingCase",
    "clear_gain",
    "cross_validated",
    "folds",
    "grouped_loss",
    "overlap_lost",
    "select_settings",
    "train",
]

# Candidate settings: the ellipsoid's half-depth over its mean half-width, and what is added to
# the draft's log-odds margin (the shape prior falls by 6 per ellipsoid radius, so -1 to +2
# moves the outline by about -1/6 to +1/3 of a radius where intensity says nothing). The
# defaults (1, 0) are a new project's.
DEPTHS = (0.6, 0.8, 1.0, 1.25, 1.5)
BIASES = (-1.0, 0.0, 1.0, 2.0)
# Cross-validation: leave one patient out, or this many folds of patients when there are more.
MAX_FOLDS = 5
MONOTONE = {"classical_distance": 1, "radius": -1}
# A trained draft's settings may differ per modality, so a gain on one or two held-out lesions
# says little about the others (segmentation_accuracy: a draft that gained +0.014 on one MR
# lesion cost SPECT lesions up to 0.17): the gate needs at least this many to promote it.
MIN_VALIDATION_LESIONS = 3

SETTINGS_GRID = tuple(Settings(depth, bias) for depth in DEPTHS for bias in BIASES)
# From the simplest: cross-validation ties go to the earlier one.
STRATEGIES = ("default", "shared", "per modality")


def overlap_lost(pred: npt.NDArray[np.bool_], reference: npt.NDArray[np.bool_]) -> float:
    """``1 - Dice`` of a draft against the accepted mask."""
    return 1.0 - dice(pred, reference)


def per_group(values: Sequence[float], groups: Sequence[str], cases: Sequence[int]) -> list[float]:
    """The mean of ``values`` over each group (patient) of ``cases``, in sorted group order."""
    pooled: dict[str, list[float]] = {}
    for i in cases:
        pooled.setdefault(groups[i], []).append(values[i])
    return [float(np.mean(pooled[name])) for name in sorted(pooled)]


def grouped_loss(values: Sequence[float], groups: Sequence[str], cases: Sequence[int]) -> float:
    """The mean of ``values`` over each group (patient) of ``cases``, averaged over the groups."""
    return float(np.mean(per_group(values, groups, cases)))


def clear_gain(
    baseline: Sequence[float], candidate: Sequence[float], groups: Sequence[str]
) -> bool:
    """Whether ``candidate`` (cross-validated loss per case) beats ``baseline`` by more than one
    standard error of the per-patient differences: the one-standard-error rule, so that a
    simpler model is only given up for a gain the patients agree on, not for the luck of one
    (with a handful of patients a gain of 0.005 Dice is noise)."""
    everything = range(len(groups))
    gains = np.subtract(
        per_group(baseline, groups, everything), per_group(candidate, groups, everything)
    )
    if gains.size < 2:
        return False
    error = float(np.std(gains, ddof=1)) / math.sqrt(gains.size)
    return float(gains.mean()) > error


def folds(groups: Sequence[str]) -> list[list[int]]:
    """Held-out case indices per fold: one group (patient) per fold, or the sorted groups dealt
    into :data:`MAX_FOLDS` folds; empty with a single group (nothing to validate on)."""
    names = sorted(set(groups))
    count = min(len(names), MAX_FOLDS)
    if count < 2:
        return []
    fold_of = {name: i % count for i, name in enumerate(names)}
    return [[i for i, g in enumerate(groups) if fold_of[g] == k] for k in range(count)]


@dataclass(frozen=True)
class SettingsScores:
    """The overlap lost on every case under every candidate of :data:`SETTINGS_GRID`."""

    losses: npt.NDArray[np.float64]  # (candidates, cases)
    groups: list[str]
    modalities: list[str]

    def loss(self, table: Mapping[str, Settings], cases: Sequence[int]) -> list[float]:
        """Overlap lost on each of ``cases`` with the settings ``table`` gives its modality."""
        index = [SETTINGS_GRID.index(settings_for(table, self.modalities[i])) for i in cases]
        return [float(self.losses[k, i]) for k, i in zip(index, cases, strict=True)]

    def best(self, cases: Sequence[int]) -> Settings:
        """The candidate with the least loss on ``cases``, the nearest the defaults on ties."""

        def key(candidate: int) -> tuple[float, float]:
            loss = grouped_loss(list(self.losses[candidate]), self.groups, cases)
            return round(loss, 9), SETTINGS_GRID[candidate].departure()

        return SETTINGS_GRID[min(range(len(SETTINGS_GRID)), key=key)]

    def fit(self, strategy: str, cases: Sequence[int]) -> dict[str, Settings]:
        """Settings per modality (``"*"``: any other) from ``cases``: the defaults, one shared
        setting, or one per modality seen in two groups or more (the shared one elsewhere)."""
        if strategy == "default":
            return {}
        table = {"*": self.best(cases)}
        if strategy == "per modality":
            for modality in sorted({self.modalities[i] for i in cases}):
                own = [i for i in cases if self.modalities[i] == modality]
                if len({self.groups[i] for i in own}) >= 2:
                    table[modality] = self.best(own)
        return table


def select_settings(
    scores: SettingsScores,
) -> tuple[str, dict[str, Settings], dict[str, float]]:
    """(strategy, its settings fitted on all cases, cross-validated loss per strategy).

    Each strategy of :data:`STRATEGIES` is fitted on all folds but one and scored on the one
    left out. A strategy other than the defaults must beat them clearly (:func:`clear_gain`);
    of those that do, the least loss wins, the simpler on ties. So training does not pick
    settings that did worse than a new project's, or only as well, on patients they were not
    fitted on."""
    everything = list(range(len(scores.groups)))
    held_out = folds(scores.groups)
    if not held_out:
        return "default", {}, {}
    cv: dict[str, list[float]] = {}
    for strategy in STRATEGIES:

        def loss_on(
            train: Sequence[int], test: Sequence[int], strategy: str = strategy
        ) -> list[float]:
            return scores.loss(scores.fit(strategy, train), test)

        cv[strategy] = cross_validated(held_out, loss_on)
    losses = {s: round(grouped_loss(cv[s], scores.groups, everything), 9) for s in STRATEGIES}
    default = STRATEGIES[0]
    chosen = min(
        (s for s in STRATEGIES if s == default or clear_gain(cv[default], cv[s], scores.groups)),
        key=lambda s: losses[s],
    )
    return chosen, scores.fit(chosen, everything), losses


def cross_validated(
    held_out: Sequence[Sequence[int]],
    loss_on: Callable[[Sequence[int], Sequence[int]], list[float]],
) -> list[float]:
    """Loss per case when each fold is predicted by what ``loss_on(train, test)`` fits on the
    other folds (it returns the loss of the ``test`` cases, in order)."""
    total = sum(len(test) for test in held_out)
    out = [0.0] * total
    everything = list(range(total))
    for test in held_out:
        held = set(test)
        train = [i for i in everything if i not in held]
        for i, value in zip(test, loss_on(train, test), strict=True):
            out[i] = value
    return out


# -- training -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrainingCase:
    """One accepted lesion: the image, the box prompt it was drawn with, its reference mask
    (bool, the volume's shape), and the patient it belongs to (cases of one patient are held
    out together in cross-validation; empty: a patient of its own)."""

    volume: ImageVolume
    prompt: LesionPrompt
    reference: npt.NDArray[np.bool_]
    patient: str = ""


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
