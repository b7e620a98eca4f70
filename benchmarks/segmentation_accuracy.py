"""Accuracy of the default backend on real lesions, round over round as it learns.

    python benchmarks/segmentation_accuracy.py [--data ../shared/data] [--backend default]
        [--rounds 2] [--seed 0]

Lesions: every connected component (>= 100 voxels) of every lesion label of the "lesion" pairs
in ``--data/pairs.json`` (``label > 0``, whole tumour, for BraTS); the prompt is the tight box
on the slice where the lesion is largest. Scores: 3D Dice, HD95 in mm, and the fraction of
slices (where the reference or the prediction has voxels) with a 2D Dice under 0.9, the slices
an annotator would have to fix (``slice_fix_fraction``). The same run scores a naive baseline:
the ellipsoid inscribed in the box, its half-height along the slice axis equal to the mean
in-plane half-width in mm.

Rounds: round 0 has no learned model. Before round r >= 1, a model is trained for each patient
on the accepted (reference) masks of OTHER patients only (leave one patient out: the sarcoma in
CT, MR and PET is one patient, so are the two SPECT time points), on a growing share of them:
r / (rounds - 1) of the other patients, so the last round trains on all of them. Ends with
``RESULT segmentation_accuracy ...``: mean_dice and slice_fix_fraction of the last round.
"""

import argparse
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.engine import ImageVolume, LesionPrompt, dice
from inference.engine.box_prior import ellipsoid_radius
from inference.engine.learned import LearnedBackend, LearnedModel, TrainingCase, train
from inference.engine.metrics import hd95, slices_to_fix
from inference.evaluation import (
    DEFAULT_DATA,
    LesionCase,
    LoadedLesion,
    all_lesion_cases,
    load_lesion,
    load_pairs,
)


@dataclass
class Score:
    dice: float
    hd95: float
    fix_slices: int
    slices: int
    seconds: float = 0.0


def score(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float]) -> Score:
    fix, slices = slices_to_fix(pred, ref)
    return Score(dice(pred, ref), hd95(pred, ref, spacing), fix, slices)


def ellipsoid_baseline(volume: ImageVolume, prompt: LesionPrompt) -> np.ndarray:
    """The ellipsoid inscribed in the box; half-height = mean in-plane half-width (mm)."""
    radius, _ = ellipsoid_radius(volume.shape, prompt.key_slice, prompt.box, volume.spacing)
    return np.asarray(radius <= 1.0, dtype=bool)


def summarise(scores: list[Score]) -> tuple[float, float, float]:
    """(mean Dice, median HD95 over the finite ones, pooled slice_fix_fraction)."""
    finite = [s.hd95 for s in scores if math.isfinite(s.hd95)]
    fix = sum(s.fix_slices for s in scores) / max(1, sum(s.slices for s in scores))
    return (
        statistics.mean(s.dice for s in scores),
        statistics.median(finite) if finite else math.inf,
        fix,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", default="default", choices=["default"])
    parser.add_argument("--rounds", type=int, default=2, help="1 = round 0 only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-voxels", type=int, default=100)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    pairs = load_pairs(args.data)
    if pairs is None:
        sys.exit(f"no pairs.json in {args.data}")

    started = time.perf_counter()
    cases: list[LesionCase] = all_lesion_cases(pairs, args.data, min_voxels=args.min_voxels)
    loaded: list[LoadedLesion] = [load_lesion(case, pairs, args.data) for case in cases]
    patients = sorted({case.patient for case in cases})
    print(
        f"{len(cases)} lesions of {len(patients)} patients, loaded in "
        f"{time.perf_counter() - started:.1f} s"
    )

    baseline = [
        score(ellipsoid_baseline(item.volume, item.prompt), item.reference, item.volume.spacing)
        for item in loaded
    ]
    rounds: list[list[Score]] = []
    train_seconds: list[float] = []
    rng = np.random.default_rng(args.seed)
    order = [str(p) for p in rng.permutation(patients)]
    for r in range(args.rounds):
        models: dict[str, LearnedModel | None] = {}
        for patient in patients:
            if r == 0:
                models[patient] = None
                continue
            others = [p for p in order if p != patient]
            share = others[: max(1, math.ceil(len(others) * r / (args.rounds - 1)))]
            examples = [
                TrainingCase(item.volume, item.prompt, item.reference, patient=case.patient)
                for case, item in zip(cases, loaded, strict=True)
                if case.patient in share
            ]
            t0 = time.perf_counter()
            models[patient] = train(examples, seed=args.seed)
            train_seconds.append(time.perf_counter() - t0)
        results = []
        for case, item in zip(cases, loaded, strict=True):
            backend = LearnedBackend(model=models[case.patient])
            t0 = time.perf_counter()
            mask = backend.segment(item.volume, [item.prompt]).masks[item.prompt.lesion_id]
            seconds = time.perf_counter() - t0
            results.append(score(mask, item.reference, item.volume.spacing))
            results[-1].seconds = seconds
        rounds.append(results)

    header = f"{'lesion':44s} {'voxels':>7s} {'base':>6s}" + "".join(
        f" {'r' + str(r) + ' dice':>8s} {'hd95':>6s} {'fix':>5s}" for r in range(args.rounds)
    )
    print(header)
    for i, case in enumerate(cases):
        line = f"{case.name:44s} {int(loaded[i].reference.sum()):7d} {baseline[i].dice:6.3f}"
        for results in rounds:
            s = results[i]
            line += f" {s.dice:8.3f} {s.hd95:6.1f} {s.fix_slices / max(1, s.slices):5.2f}"
        print(line)
    base_dice, base_hd, base_fix = summarise(baseline)
    print(
        f"baseline (box ellipsoid): dice={base_dice:.3f} hd95_median={base_hd:.1f} mm "
        f"slice_fix_fraction={base_fix:.3f}"
    )
    for r, results in enumerate(rounds):
        mean_dice, median_hd, fix = summarise(results)
        secs = [s.seconds for s in results]
        print(
            f"round {r}: dice={mean_dice:.3f} hd95_median={median_hd:.1f} mm "
            f"slice_fix_fraction={fix:.3f} seconds_median={statistics.median(secs):.3f} "
            f"seconds_max={max(secs):.3f}"
        )
    if train_seconds:
        print(
            f"training: {len(train_seconds)} models, median {statistics.median(train_seconds):.1f}"
            f" s, max {max(train_seconds):.1f} s"
        )
    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; total {time.perf_counter() - started:.0f} s"
    )
    round0 = summarise(rounds[0])[0]
    last_dice, _, last_fix = summarise(rounds[-1])
    print(
        "RESULT segmentation_accuracy "
        f"mean_dice={last_dice:.3f} baseline_dice={base_dice:.3f} "
        f"slice_fix_fraction={last_fix:.3f} round0_dice={round0:.3f} "
        f"last_round_dice={last_dice:.3f} cases={len(cases)}"
    )


if __name__ == "__main__":
    main()
