"""A whole annotation campaign with simulated annotators, round after round as the model learns.

The lesions of a ``pairs.json`` data folder (:func:`~inference.evaluation.all_lesion_cases`) are
split into rounds by patient, each round with a comparable mix of collections
(:func:`split_by_patient`). In each round, for each lesion, the simulated annotator draws the
box of the reference on its key slice and the round's backend pre-segments the lesion. Two
annotators then turn the pre-segmentation into the reference (:mod:`inference.simulated_annotator`):
one re-contours every slice whose 2D Dice is under 0.9; the other first uses the product's own
tools (the slice range, corrective boxes propagated from the wrong slice) and re-contours what
is still wrong. Both are perfect annotators, so after each round the references of all rounds
so far train the next round's model.

The backend comes from :func:`~inference.engine.load_backend` (an alias or a dotted path), and
how it learns from accepted lesions is a :class:`Training` chosen by the backend's name
(:func:`training_for`): two functions, one that fits a model on the accepted lesions and one
that makes the backend pre-segmenting with it. The classical default learns with the same
:func:`~inference.engine.learned_fit.train` the platform's training job calls
(``inference/training.py``: one :class:`~inference.engine.learned_fit.TrainingCase` per accepted
lesion, its box as the prompt, its patient); a backend without a training reuses its untrained
self in every round, and the report says so.

Every round also pre-segments its lesions with the round-0 backend ("untrained"), so that the
model's own effect is told apart from the change of lesions between rounds.

Cost (:class:`~inference.simulated_annotator.CostModel`) is annotation time, set against
contouring every reference slice by hand; a round's reduction is ``1 - sum(assisted) /
sum(manual)`` over its lesions.

No Django here: the ``simulate_campaign`` management command is a thin shell around
:func:`run_campaign`, :func:`campaign_report` and :func:`~inference.simulation_plot.plot_costs`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.engine import SegmentationBackend, dice, load_backend
from inference.engine.base import backend_path
from inference.engine.hybrid import HybridBackend
from inference.engine.learned import LearnedBackend
from inference.engine.learned_fit import TrainingCase, train
from inference.engine.metrics import SLICE_FIX_DICE
from inference.evaluation import LesionCase, LoadedLesion, all_lesion_cases, load_lesion
from inference.simulated_annotator import (
    Annotation,
    CostModel,
    PromptPolicy,
    backend_segmenter,
    prompts_then_recontour,
    recontour_only,
)

__all__ = [
    "ANNOTATORS",
    "Campaign",
    "CostModel",
    "LesionOutcome",
    "PromptPolicy",
    "RoundSummary",
    "Training",
    "annotate_lesion",
    "campaign_report",
    "result_line",
    "run_campaign",
    "split_by_patient",
    "summarise_round",
    "training_for",
    "write_report",
]

# The two annotator models, as named in the report: re-contour only; prompts then re-contour.
ANNOTATORS = ("recontour", "prompts")


@dataclass(frozen=True)
class Training:
    """How a backend learns from a project's accepted lesions.

    ``fit(cases, seed)`` trains a model on the accepted lesions; ``backend(model)`` makes the
    backend that pre-segments with it; ``describe(model)`` is what the report records of the
    model (a JSON object; ``cases`` the number of lesions it was trained on). A new kind of
    training (LiteMedSAM fine-tuning) is one more instance in :data:`TRAININGS`.
    """

    name: str
    fit: Callable[[Sequence[TrainingCase], int], Any]
    backend: Callable[[Any], SegmentationBackend]
    describe: Callable[[Any], dict[str, Any]]


LEARNED = Training(
    name="inference.engine.learned.train",
    fit=lambda cases, seed: train(cases, seed=seed),
    backend=lambda model: LearnedBackend(model=model),
    describe=lambda model: dict(model.meta),
)

# The default: the learned draft becomes its classical part (inference.training).
HYBRID_LEARNED = replace(LEARNED, backend=lambda model: HybridBackend(draft_model=model))

# Backend class path -> its training; a backend not named here is never trained.
TRAININGS: dict[str, Training] = {
    "inference.engine.classical.ClassicalBackend": LEARNED,
    "inference.engine.hybrid.HybridBackend": HYBRID_LEARNED,
    "inference.engine.learned.LearnedBackend": LEARNED,
}


def training_for(backend: str) -> Training | None:
    """The training of the backend an alias or dotted path names; None when it has none."""
    return TRAININGS.get(backend_path(backend))


@dataclass(frozen=True)
class Annotated:
    """One pre-segmentation of one lesion and what each annotator made of it."""

    dice: float
    recontour: Annotation
    prompts: Annotation


def annotate_lesion(
    backend: SegmentationBackend, item: LoadedLesion, cost: CostModel, policy: PromptPolicy
) -> Annotated:
    """Pre-segment ``item`` with ``backend`` and let both annotators finish it."""
    segment = backend_segmenter(backend, item.volume)
    pred = segment(item.prompt)
    prompted, _ = prompts_then_recontour(
        segment,
        item.prompt,
        item.reference,
        cost,
        policy,
        initial=None if policy.slice_range else pred,
    )
    return Annotated(
        dice(pred, item.reference), recontour_only(pred, item.reference, cost), prompted
    )


@dataclass(frozen=True)
class LesionOutcome:
    """One lesion of one round: the pre-segmentation's quality and each annotator's work, with
    the round's backend and with the round-0 backend ("untrained": the same as the first in
    round 0 and wherever the backend has no training)."""

    round: int
    lesion: str
    patient: str
    reference_slices: int  # slices of the reference: what manual contouring covers
    manual_s: float
    dice: float
    recontour: Annotation
    prompts: Annotation
    untrained_dice: float
    untrained_recontour: Annotation
    untrained_prompts: Annotation

    def annotation(self, annotator: str, *, untrained: bool = False) -> Annotation:
        done: Annotation = getattr(self, f"untrained_{annotator}" if untrained else annotator)
        return done


def lesion_outcome(
    trained: Annotated,
    untrained: Annotated,
    reference: np.ndarray,
    cost: CostModel,
    *,
    round_: int = 0,
    lesion: str = "",
    patient: str = "",
) -> LesionOutcome:
    reference_slices = int(np.count_nonzero(np.asarray(reference, bool).any(axis=(1, 2))))
    return LesionOutcome(
        round=round_,
        lesion=lesion,
        patient=patient,
        reference_slices=reference_slices,
        manual_s=cost.manual(reference_slices),
        dice=trained.dice,
        recontour=trained.recontour,
        prompts=trained.prompts,
        untrained_dice=untrained.dice,
        untrained_recontour=untrained.recontour,
        untrained_prompts=untrained.prompts,
    )


@dataclass(frozen=True)
class AnnotatorRound:
    """One annotator over one round's lesions: pooled reduction, means and sums."""

    cost_reduction: float  # 1 - sum(seconds) / sum(manual seconds)
    seconds_per_lesion: float
    dice_before_brush: float  # mean over lesions
    reviewed_slices: int
    corrected_slices: int  # re-contoured with the brush
    prompts: int
    undone: int
    erased_slices: int


def annotator_round(
    outcomes: Sequence[LesionOutcome], annotator: str, *, untrained: bool
) -> AnnotatorRound:
    done = [o.annotation(annotator, untrained=untrained) for o in outcomes]
    manual = sum(o.manual_s for o in outcomes)
    seconds = sum(d.seconds for d in done)
    n = len(done)
    return AnnotatorRound(
        cost_reduction=1.0 - seconds / manual if manual else 0.0,
        seconds_per_lesion=seconds / n if n else 0.0,
        dice_before_brush=statistics.mean(d.dice_before_brush for d in done) if n else 0.0,
        reviewed_slices=sum(d.reviewed_slices for d in done),
        corrected_slices=sum(d.corrected_slices for d in done),
        prompts=sum(d.prompts for d in done),
        undone=sum(d.undone for d in done),
        erased_slices=sum(d.erased_slices for d in done),
    )


@dataclass(frozen=True)
class RoundSummary:
    round: int
    lesions: int
    patients: list[str]
    trained: bool  # whether the round's backend has a trained model (else: the round-0 one)
    training_cases: int  # lesions the round's model was trained on (0: no model)
    # What training chose (for the learned default: draft settings, whether the classifier
    # was kept, and why); empty without a model.
    model: dict[str, Any]
    mean_dice: float  # the pre-segmentation's, from the box alone
    untrained_mean_dice: float  # the same lesions with the round-0 backend
    reference_slices: int
    manual_s_per_lesion: float
    # The headline: each annotator's reduction, with the round's model and with the round-0
    # backend on the same lesions.
    prompts_cost_reduction: float
    prompts_untrained_cost_reduction: float
    recontour_cost_reduction: float
    recontour_untrained_cost_reduction: float
    # annotator -> "trained" / "untrained" -> AnnotatorRound as a dict
    annotators: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    train_s: float = 0.0
    round_s: float = 0.0


def summarise_round(
    round_: int,
    outcomes: list[LesionOutcome],
    *,
    model: dict[str, Any] | None = None,
    train_s: float = 0.0,
    round_s: float = 0.0,
) -> RoundSummary:
    """Means per lesion and the pooled reductions ``1 - sum(assisted) / sum(manual)``."""
    n = len(outcomes)
    manual = sum(o.manual_s for o in outcomes)
    per = {
        name: {
            arm: annotator_round(outcomes, name, untrained=arm == "untrained")
            for arm in ("trained", "untrained")
        }
        for name in ANNOTATORS
    }
    return RoundSummary(
        round=round_,
        lesions=n,
        patients=sorted({o.patient for o in outcomes}),
        trained=model is not None,
        training_cases=int((model or {}).get("cases", 0)),
        model=dict(model or {}),
        mean_dice=statistics.mean(o.dice for o in outcomes) if n else 0.0,
        untrained_mean_dice=statistics.mean(o.untrained_dice for o in outcomes) if n else 0.0,
        reference_slices=sum(o.reference_slices for o in outcomes),
        manual_s_per_lesion=manual / n if n else 0.0,
        prompts_cost_reduction=per["prompts"]["trained"].cost_reduction,
        prompts_untrained_cost_reduction=per["prompts"]["untrained"].cost_reduction,
        recontour_cost_reduction=per["recontour"]["trained"].cost_reduction,
        recontour_untrained_cost_reduction=per["recontour"]["untrained"].cost_reduction,
        annotators={
            name: {arm: asdict(summary) for arm, summary in arms.items()}
            for name, arms in per.items()
        },
        train_s=train_s,
        round_s=round_s,
    )


def split_by_patient(cases: list[LesionCase], rounds: int, *, seed: int) -> list[list[LesionCase]]:
    """The lesions in ``rounds`` groups of comparable mix and roughly equal lesion counts, one
    patient's lesions always in the same group (a patient's CT, MR and PET of one tumour are
    one annotation job, and a model must not be scored on a patient it trained on).

    Stratified by collection (:attr:`~inference.evaluation.LesionCase.collection`), as a
    campaign manager batches comparable cases: each collection's patients are dealt across the
    rounds before any round gets a second one, so that a round-over-round comparison is not
    one of different kinds of lesion (the three BraTS 2015 patients, one per round). Within
    that, each patient goes to the round with the fewest lesions so far.

    Deterministic for a ``seed``: the patients in a seeded random order; collections with
    more patients first, then with more lesions, and within a collection the patients with
    more lesions first (stable sorts, so ties keep the random order); the earliest round on
    ties. Raises ValueError with fewer patients than rounds.
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    by_patient: dict[str, list[LesionCase]] = {}
    for case in cases:
        by_patient.setdefault(case.patient, []).append(case)
    if len(by_patient) < rounds:
        raise ValueError(
            f"{len(by_patient)} patients cannot fill {rounds} rounds: every round needs one"
        )
    rng = np.random.default_rng(seed)
    order = [str(p) for p in rng.permutation(sorted(by_patient))]
    order.sort(key=lambda p: -len(by_patient[p]))
    strata: dict[str, list[str]] = {}
    for patient in order:
        strata.setdefault(by_patient[patient][0].collection, []).append(patient)
    ranked = sorted(strata.values(), key=lambda s: (-len(s), -sum(len(by_patient[p]) for p in s)))
    groups: list[list[LesionCase]] = [[] for _ in range(rounds)]
    for stratum in ranked:
        dealt = [0] * rounds
        for patient in stratum:
            target = min(range(rounds), key=lambda r: (dealt[r], len(groups[r])))
            dealt[target] += 1
            groups[target].extend(by_patient[patient])
    return [sorted(group, key=lambda c: c.name) for group in groups]


@dataclass
class Campaign:
    cases: list[LesionCase]
    outcomes: list[LesionOutcome]
    rounds: list[RoundSummary]
    seconds: float
    # The training used between rounds, or why there was none.
    training: str
    backend: dict[str, object]  # the round-0 backend's describe()


def run_campaign(
    pairs: dict[str, dict[str, Any]],
    data: Path,
    *,
    rounds: int,
    cost: CostModel,
    policy: PromptPolicy | None = None,
    backend: str = "default",
    training: Training | None = None,
    seed: int = 0,
    min_voxels: int = 100,
    log: Callable[[str], None] = lambda _: None,
) -> Campaign:
    """Run every round: pre-segment its lesions with the current backend, let both annotators
    correct them (the result is the reference), then train the next model on the corrected
    lesions of all rounds so far.

    ``backend``: an alias or dotted path for :func:`~inference.engine.load_backend`, the
    round-0 backend (raises :class:`~inference.engine.BackendUnavailable` when it cannot be
    made). ``training``: how it learns (default: :func:`training_for` the backend);
    without one every round uses the round-0 backend. Rounds with a model also pre-segment
    their lesions with the round-0 backend, for the ``untrained_*`` figures.
    """
    started = time.perf_counter()
    policy = policy or PromptPolicy()
    untrained = load_backend(backend)
    training = training or training_for(backend)
    how = (
        training.name
        if training is not None
        else f"none: backend {backend!r} has no training, every round uses it untrained"
    )
    cases = all_lesion_cases(pairs, data, min_voxels=min_voxels)
    groups = split_by_patient(cases, rounds, seed=seed)
    loaded: dict[str, LoadedLesion] = {}
    current, meta = untrained, None
    corrected: list[TrainingCase] = []
    outcomes: list[LesionOutcome] = []
    summaries: list[RoundSummary] = []
    train_s = 0.0
    for r, group in enumerate(groups):
        t0 = time.perf_counter()
        round_outcomes = []
        for case in group:
            item = loaded.get(case.name) or load_lesion(case, pairs, data)
            loaded[case.name] = item
            plain = annotate_lesion(untrained, item, cost, policy)
            done = plain if current is untrained else annotate_lesion(current, item, cost, policy)
            round_outcomes.append(
                lesion_outcome(
                    done,
                    plain,
                    item.reference,
                    cost,
                    round_=r,
                    lesion=case.name,
                    patient=case.patient,
                )
            )
            # The perfect annotator's final mask is the reference: it is what gets accepted.
            corrected.append(
                TrainingCase(item.volume, item.prompt, item.reference, patient=case.patient)
            )
        summary = summarise_round(
            r, round_outcomes, model=meta, train_s=train_s, round_s=time.perf_counter() - t0
        )
        log(round_line(summary))
        outcomes.extend(round_outcomes)
        summaries.append(summary)
        if r + 1 < rounds and training is not None:
            t0 = time.perf_counter()
            model = training.fit(corrected, seed)
            train_s = time.perf_counter() - t0
            current, meta = training.backend(model), training.describe(model)
            log(f"trained on {len(corrected)} corrected lesions in {train_s:.1f} s: {meta}")
    return Campaign(
        cases, outcomes, summaries, time.perf_counter() - started, how, untrained.describe()
    )


def round_line(summary: RoundSummary) -> str:
    def arm(name: str) -> str:
        done = summary.annotators[name]
        return (
            f"{name}: {done['trained']['seconds_per_lesion']:.0f} s/lesion, "
            f"reduction {done['trained']['cost_reduction']:.3f} "
            f"(untrained {done['untrained']['cost_reduction']:.3f})"
        )

    return (
        f"round {summary.round}: {summary.lesions} lesions, dice={summary.mean_dice:.3f} "
        f"(untrained {summary.untrained_mean_dice:.3f}), manual "
        f"{summary.manual_s_per_lesion:.0f} s/lesion; {arm('recontour')}; {arm('prompts')}"
    )


def result_line(campaign: Campaign) -> str:
    """The prompts-then-re-contour annotator's reductions first (the headline), then the
    re-contour-only annotator's, the pre-segmentation's Dice, and the model's smallest gain
    in Dice over the round-0 backend on the same lesions (0 with one round or no training)."""
    first, last = campaign.rounds[0], campaign.rounds[-1]
    gain = min(r.mean_dice - r.untrained_mean_dice for r in campaign.rounds)
    return (
        "RESULT simulate_campaign "
        f"round0_cost_reduction={first.prompts_cost_reduction:.3f} "
        f"last_round_cost_reduction={last.prompts_cost_reduction:.3f} "
        f"last_round_untrained_cost_reduction={last.prompts_untrained_cost_reduction:.3f} "
        f"round0_recontour_cost_reduction={first.recontour_cost_reduction:.3f} "
        f"last_round_recontour_cost_reduction={last.recontour_cost_reduction:.3f} "
        f"round0_dice={first.mean_dice:.3f} last_round_dice={last.mean_dice:.3f} "
        f"min_model_dice_gain={gain:.3f} "
        f"rounds={len(campaign.rounds)} lesions={len(campaign.outcomes)}"
    )


def campaign_report(
    campaign: Campaign, *, config: dict[str, Any], cost: CostModel
) -> dict[str, Any]:
    """Everything a reader needs to recompute the figures: config, cost model, rows, rounds."""
    return {
        "config": {**config, "training": campaign.training},
        "cost_model": asdict(cost),
        "slice_fix_dice": SLICE_FIX_DICE,
        "annotators": {
            "recontour": "re-contour only: review, re-contour every slice with a 2D Dice < 0.9",
            "prompts": "prompts then re-contour: slice range (if marked), corrective boxes "
            "propagated from the wrong slices (at most max_prompts), then re-contour",
        },
        "lesions": [asdict(o) for o in campaign.outcomes],
        "rounds": [asdict(s) for s in campaign.rounds],
        "seconds": round(campaign.seconds, 1),
        "result": result_line(campaign),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")
