"""A whole annotation campaign with a simulated annotator, round after round as the model learns.

The lesions of a ``pairs.json`` data folder (:func:`~inference.evaluation.all_lesion_cases`) are
split into rounds by patient, each round with a comparable mix of collections
(:func:`split_by_patient`). In each round, for each lesion, the
simulated annotator draws the box of the reference on its key slice, the project's default
backend pre-segments the lesion, and the annotator re-contours every slice whose 2D Dice against
the reference is under 0.9 (:data:`~inference.engine.metrics.SLICE_FIX_DICE`), slices the model
missed or added included. A perfect annotator then leaves exactly the reference, so after each
round the references of all rounds so far train the next round's model with the same
:func:`~inference.engine.learned.train` the platform's training job calls
(``inference/training.py``: one :class:`~inference.engine.learned.TrainingCase` per accepted
lesion, its box as the prompt, its patient, seed 0). Round 0 has no model:
:class:`~inference.engine.learned.LearnedBackend` without one is the classical backend, as for
a new project.

Cost (:class:`CostModel`) is annotation time, set against contouring every reference slice by
hand; the reduction of a round is ``1 - sum(assisted) / sum(manual)`` over its lesions.

No Django here: the ``simulate_campaign`` management command is a thin shell around
:func:`run_campaign`, :func:`campaign_report` and :func:`plot_costs`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.engine import dice
from inference.engine.learned import LearnedBackend, LearnedModel, TrainingCase, train
from inference.engine.metrics import SLICE_FIX_DICE, slices_to_fix
from inference.evaluation import LesionCase, LoadedLesion, all_lesion_cases, load_lesion


@dataclass(frozen=True)
class CostModel:
    """Seconds an annotator spends on one lesion, manual and model-assisted.

    * manual: every slice of the reference contoured from scratch,
      ``manual_slice_s`` each;
    * assisted: one box on the key slice (``box_s``), a look at every slice the model or the
      reference covers (``review_slice_s``), and every slice needing correction re-contoured
      at ``correction_factor`` x ``manual_slice_s`` (1.0: as long as contouring it anew, the
      pessimistic choice; a correction often only moves part of an outline).

    The defaults are assumptions, not measurements: 30 s to contour one lesion slice by hand,
    5 s to drag a box, 2 s to scroll past a slice and judge its mask. The cost reduction
    depends only on the ratios ``box_s / manual_slice_s`` and ``review_slice_s /
    manual_slice_s`` (and the correction factor), so a site that has measured its own
    annotators (``projects/effort.py`` records active time per lesion) should put its figures
    in a JSON file and pass ``--cost-config``.
    """

    manual_slice_s: float = 30.0
    box_s: float = 5.0
    review_slice_s: float = 2.0
    correction_factor: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"cost model: {field.name} must be a number >= 0, got {value!r}")
        if self.manual_slice_s <= 0:
            raise ValueError("cost model: manual_slice_s must be > 0")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> CostModel:
        """From a JSON object; unknown keys are an error (a typo must not pass silently)."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"cost model: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{key: float(value) for key, value in values.items()})

    def manual(self, reference_slices: int) -> float:
        return reference_slices * self.manual_slice_s

    def assisted(self, reviewed_slices: int, corrected_slices: int) -> float:
        return (
            self.box_s
            + reviewed_slices * self.review_slice_s
            + corrected_slices * self.correction_factor * self.manual_slice_s
        )


@dataclass(frozen=True)
class LesionOutcome:
    """One lesion of one round: how good the pre-segmentation was and what it cost."""

    round: int
    lesion: str
    patient: str
    dice: float
    reference_slices: int  # slices of the reference: what manual contouring covers
    reviewed_slices: int  # slices where the reference or the prediction has voxels
    corrected_slices: int  # of those, slices with a 2D Dice under the threshold
    manual_s: float
    assisted_s: float
    # The same lesion pre-segmented without a model (round 0's backend): what the round would
    # have cost without the learning, to tell the model's gain from a change of lesion mix.
    untrained_dice: float
    untrained_assisted_s: float


def lesion_outcome(
    pred: npt.NDArray[Any],
    reference: npt.NDArray[Any],
    cost: CostModel,
    *,
    round_: int = 0,
    lesion: str = "",
    patient: str = "",
) -> LesionOutcome:
    """Score one pre-segmentation against its reference and cost it (its ``untrained_*``
    figures are its own: replace them when the prediction came from a trained model).

    A slice the model missed (reference only) or falsely added (prediction only) has a 2D Dice
    of 0, so it needs correction like a poorly outlined one.
    """
    corrected, reviewed = slices_to_fix(pred, reference, over="union", threshold=SLICE_FIX_DICE)
    reference_slices = int(np.count_nonzero(np.asarray(reference, dtype=bool).any(axis=(1, 2))))
    score = dice(pred, reference)
    assisted = cost.assisted(reviewed, corrected)
    return LesionOutcome(
        round=round_,
        lesion=lesion,
        patient=patient,
        dice=score,
        reference_slices=reference_slices,
        reviewed_slices=reviewed,
        corrected_slices=corrected,
        manual_s=cost.manual(reference_slices),
        assisted_s=assisted,
        untrained_dice=score,
        untrained_assisted_s=assisted,
    )


@dataclass(frozen=True)
class RoundSummary:
    round: int
    lesions: int
    patients: list[str]
    training_cases: int  # lesions the round's model was trained on (0: no model)
    # What training chose: draft settings, whether the classifier was kept, and why (the
    # cross-validated figures); empty without a model.
    model: dict[str, Any]
    mean_dice: float
    reviewed_slices: int
    corrected_slices: int
    corrected_fraction: float
    manual_s_per_lesion: float
    assisted_s_per_lesion: float
    cost_reduction: float
    untrained_mean_dice: float  # the same lesions without a model
    untrained_cost_reduction: float
    train_s: float
    round_s: float


def summarise_round(
    round_: int,
    outcomes: list[LesionOutcome],
    *,
    training_cases: int = 0,
    model: dict[str, Any] | None = None,
    train_s: float = 0.0,
    round_s: float = 0.0,
) -> RoundSummary:
    """Means per lesion and the pooled reduction ``1 - sum(assisted) / sum(manual)``."""
    manual = sum(o.manual_s for o in outcomes)
    assisted = sum(o.assisted_s for o in outcomes)
    untrained = sum(o.untrained_assisted_s for o in outcomes)
    reviewed = sum(o.reviewed_slices for o in outcomes)
    corrected = sum(o.corrected_slices for o in outcomes)
    n = len(outcomes)
    return RoundSummary(
        round=round_,
        lesions=n,
        patients=sorted({o.patient for o in outcomes}),
        training_cases=training_cases,
        model=dict(model or {}),
        mean_dice=statistics.mean(o.dice for o in outcomes) if outcomes else 0.0,
        reviewed_slices=reviewed,
        corrected_slices=corrected,
        corrected_fraction=corrected / reviewed if reviewed else 0.0,
        manual_s_per_lesion=manual / n if n else 0.0,
        assisted_s_per_lesion=assisted / n if n else 0.0,
        cost_reduction=1.0 - assisted / manual if manual else 0.0,
        untrained_mean_dice=statistics.mean(o.untrained_dice for o in outcomes) if n else 0.0,
        untrained_cost_reduction=1.0 - untrained / manual if manual else 0.0,
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


def run_campaign(
    pairs: dict[str, dict[str, Any]],
    data: Path,
    *,
    rounds: int,
    cost: CostModel,
    seed: int = 0,
    min_voxels: int = 100,
    log: Callable[[str], None] = lambda _: None,
) -> Campaign:
    """Run every round: pre-segment its lesions with the current model, correct them (the
    reference), then train the next model on the corrected lesions of all rounds so far.

    Rounds after the first also pre-segment their lesions without a model, for the
    ``untrained_*`` figures (the classical backend is fast: a fraction of the round's time)."""
    started = time.perf_counter()
    cases = all_lesion_cases(pairs, data, min_voxels=min_voxels)
    groups = split_by_patient(cases, rounds, seed=seed)
    loaded: dict[str, LoadedLesion] = {}
    model: LearnedModel | None = None
    corrected: list[TrainingCase] = []
    outcomes: list[LesionOutcome] = []
    summaries: list[RoundSummary] = []
    train_s = 0.0
    for r, group in enumerate(groups):
        backend = LearnedBackend(model=model)
        untrained = LearnedBackend()
        t0 = time.perf_counter()
        round_outcomes = []
        for case in group:
            item = loaded.get(case.name) or load_lesion(case, pairs, data)
            loaded[case.name] = item
            mask = backend.segment(item.volume, [item.prompt]).masks[item.prompt.lesion_id]
            outcome = lesion_outcome(
                mask, item.reference, cost, round_=r, lesion=case.name, patient=case.patient
            )
            if model is not None:
                plain = untrained.segment(item.volume, [item.prompt]).masks[item.prompt.lesion_id]
                without = lesion_outcome(plain, item.reference, cost)
                outcome = replace(
                    outcome,
                    untrained_dice=without.dice,
                    untrained_assisted_s=without.assisted_s,
                )
            round_outcomes.append(outcome)
            # The perfect annotator's final mask is the reference: it is what gets accepted.
            corrected.append(
                TrainingCase(item.volume, item.prompt, item.reference, patient=case.patient)
            )
        summary = summarise_round(
            r,
            round_outcomes,
            training_cases=int(model.meta.get("cases", 0)) if model is not None else 0,
            model=model.meta if model is not None else None,
            train_s=train_s,
            round_s=time.perf_counter() - t0,
        )
        log(
            f"round {r}: {summary.lesions} lesions, dice={summary.mean_dice:.3f}, "
            f"corrected {summary.corrected_slices}/{summary.reviewed_slices} slices, "
            f"cost {summary.assisted_s_per_lesion:.0f} s vs {summary.manual_s_per_lesion:.0f} s "
            f"manual per lesion, reduction={summary.cost_reduction:.3f} "
            f"(without a model: dice={summary.untrained_mean_dice:.3f}, "
            f"reduction={summary.untrained_cost_reduction:.3f})"
        )
        outcomes.extend(round_outcomes)
        summaries.append(summary)
        if r + 1 < rounds:
            t0 = time.perf_counter()
            model = train(corrected, seed=seed)
            train_s = time.perf_counter() - t0
            log(
                f"trained on {len(corrected)} corrected lesions in {train_s:.1f} s: "
                f"settings {model.meta['settings'] or 'default'} ({model.meta['strategy']}), "
                f"classifier {'kept' if model.classifier is not None else 'left out'}, "
                f"cross-validated 1 - Dice {model.meta['cv_overlap_lost']}"
            )
    return Campaign(cases, outcomes, summaries, time.perf_counter() - started)


def result_line(campaign: Campaign) -> str:
    first, last = campaign.rounds[0], campaign.rounds[-1]
    return (
        "RESULT simulate_campaign "
        f"round0_cost_reduction={first.cost_reduction:.3f} "
        f"last_round_cost_reduction={last.cost_reduction:.3f} "
        f"rounds={len(campaign.rounds)} lesions={len(campaign.outcomes)}"
    )


def campaign_report(
    campaign: Campaign, *, config: dict[str, Any], cost: CostModel
) -> dict[str, Any]:
    """Everything a reader needs to recompute the figures: config, cost model, rows, rounds."""
    return {
        "config": config,
        "cost_model": asdict(cost),
        "slice_fix_dice": SLICE_FIX_DICE,
        "lesions": [asdict(o) for o in campaign.outcomes],
        "rounds": [asdict(s) for s in campaign.rounds],
        "seconds": round(campaign.seconds, 1),
        "result": result_line(campaign),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")


def plot_costs(report: dict[str, Any], path: Path) -> None:
    """Cost per lesion over rounds: manual vs assisted means, each lesion as a dot, and the
    round's reduction written above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = report["rounds"]
    xs = [r["round"] for r in rounds]
    manual = [r["manual_s_per_lesion"] / 60 for r in rounds]
    assisted = [r["assisted_s_per_lesion"] / 60 for r in rounds]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    width = 0.36
    ax.bar(
        [x - width / 2 for x in xs], manual, width, label="manual (slice by slice)", color="#999"
    )
    ax.bar([x + width / 2 for x in xs], assisted, width, label="assisted (box, review, fix)")
    untrained = [
        sum(row["untrained_assisted_s"] for row in report["lesions"] if row["round"] == x)
        / 60
        / max(1, r["lesions"])
        for x, r in zip(xs, rounds, strict=True)
    ]
    ax.plot(
        [x + width / 2 for x in xs],
        untrained,
        "_",
        color="C3",
        ms=22,
        mew=2,
        label="assisted, same lesions without a model",
    )
    for row in report["lesions"]:
        x = row["round"]
        ax.plot(x - width / 2, row["manual_s"] / 60, ".", color="#444", ms=4)
        ax.plot(x + width / 2, row["assisted_s"] / 60, ".", color="#123", ms=4)
    top = max(
        max(max(manual), max(assisted)),
        max(max(row["manual_s"], row["assisted_s"]) / 60 for row in report["lesions"]),
    )
    for r, m, a in zip(rounds, manual, assisted, strict=True):
        ax.annotate(
            f"reduction {r['cost_reduction']:+.0%}\nDice {r['mean_dice']:.2f}",
            (r["round"], max(m, a)),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_ylim(0, top * 1.18)
    ax.set_xticks(
        xs, [f"round {x}\n({r['lesions']} lesions)" for x, r in zip(xs, rounds, strict=True)]
    )
    ax.set_ylabel("minutes per lesion (mean; dots: lesions)")
    ax.set_title("Simulated campaign: annotation cost per lesion")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
