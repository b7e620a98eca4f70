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

The default backend is the product's (``HybridBackend``: LiteMedSAM inside the classical
draft's slice extent on MR volumes, the classical draft elsewhere; its image embeddings cached in
``--embeddings-dir``). The same run scores the classical draft alone (the default before
LiteMedSAM) and prints each lesion's change against it (``worst_vs_classical``: the largest
loss).

Rounds: round 0 has no learned model. Before round r >= 1, a learned draft (the hybrid's
classical part, as a project's training job makes it) is trained for each patient
on the accepted (reference) masks of OTHER patients only (leave one patient out: the sarcoma in
CT, MR and PET is one patient, so are the two SPECT time points), on a growing share of them:
r / (rounds - 1) of the other patients, so the last round trains on all of them; as the
training job does, a quarter of that share (by patient, at least one) is held out, and the
patient's lesions get the trained draft only where the gate passes there (``default_rounds``),
else round 0's masks. Ends with
``RESULT segmentation_accuracy ...``: mean_dice and slice_fix_fraction of the last round,
round 0's Dice and slice_fix_fraction (``round0_fix``), the classical draft's Dice, the worst
lesion against it in round 0, and the lowest round r >= 1 against round 0 (``min_round_delta``).

``--backend litemedsam``: round 0 is the pretrained LiteMedSAM; in rounds r >= 1 its decoder is
fine-tuned for each patient as the training job does (``inference.engine.litemedsam.trainer``):
on the share of the other patients minus a held-out quarter of them (by patient, at least one),
then validated there against the base model (box alone and with the slice range); the gate
(``inference.engine.validation.gate``) decides whether that patient's lesions get
the tuned model or keep the base one. Embeddings are cached in ``--embeddings-dir``.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.engine import ImageVolume, LesionPrompt, dice
from inference.engine.box_prior import ellipsoid_radius
from inference.engine.classical import ClassicalBackend
from inference.engine.hybrid import HybridBackend
from inference.engine.learned import LearnedModel
from inference.engine.learned_fit import MIN_VALIDATION_LESIONS, TrainingCase, train
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


class Memo:
    """Results kept in a JSON file as they come, so that a run stopped halfway (hours on a
    CPU) resumes where it was: ``--work-dir``; none: nothing kept."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / "memo.json" if folder else None
        self.data: dict[str, Any] = {}
        if self.path is not None and self.path.exists():
            self.data = json.loads(self.path.read_text())

    def get(self, key: str, make: Any) -> Any:
        if key not in self.data:
            self.data[key] = make()
            if self.path is not None:
                partial = self.path.with_suffix(".part")
                partial.write_text(json.dumps(self.data))
                partial.replace(self.path)
        return self.data[key]


def litemedsam_rounds(
    cases: list[LesionCase], loaded: list[LoadedLesion], order: list[str], args: Any
) -> tuple[list[list[Score]], list[float], list[int]]:
    """Round 0 with the pretrained LiteMedSAM; rounds r >= 1 with a model tuned per patient on
    the others' lesions where the gate passes (module docs). Returns the rounds' scores, the
    tuning seconds and, per round r >= 1, how many patients' models passed the gate."""
    from dataclasses import asdict

    from inference.engine.litemedsam import LiteMedSAMBackend
    from inference.engine.litemedsam.finetune import TuneConfig, collect, finetune
    from inference.engine.validation import TuningCase, Validation, gate, validate

    def backend(checkpoint: Path | None = None) -> LiteMedSAMBackend:
        # The shared cache may hold far more than the default 8 GiB: never trim it from here.
        return LiteMedSAMBackend(
            checkpoint=checkpoint, embeddings_dir=args.embeddings_dir, embeddings_mb=60_000
        )

    items = {case.name: item for case, item in zip(cases, loaded, strict=True)}

    def run(model: LiteMedSAMBackend, name: str) -> dict[str, Any]:
        item = items[name]
        t0 = time.perf_counter()
        mask = model.segment(item.volume, [item.prompt]).masks[item.prompt.lesion_id]
        result = score(mask, item.reference, item.volume.spacing)
        result.seconds = time.perf_counter() - t0
        return asdict(result)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="litemedsam-rounds-"))
    work.mkdir(parents=True, exist_ok=True)
    memo = Memo(args.work_dir)
    base = backend()
    defaults = TuneConfig()
    config = TuneConfig(
        steps=args.tune_steps or defaults.steps, lr=args.tune_lr or defaults.lr, seed=args.seed
    )
    tag = f"{config.steps}-{config.lr:g}-{config.seed}"
    tuning = {
        case.name: TuningCase(item.volume, item.reference, case.patient, case.name, item.prompt)
        for case, item in zip(cases, loaded, strict=True)
    }
    lesions_of: dict[str, list[str]] = {}
    for case in cases:
        lesions_of.setdefault(case.patient, []).append(case.name)
    t0 = time.perf_counter()
    round0 = {
        c.name: Score(**memo.get(f"base {c.name}", lambda c=c: run(base, c.name))) for c in cases
    }
    print(f"round 0 (pretrained LiteMedSAM): {time.perf_counter() - t0:.0f} s", flush=True)

    def base_scores(name: str) -> list[float]:
        found = validate({"base": base}, [tuning[name]])["base"]
        return [found.box[name], found.ranged[name]]

    def base_validation(names: list[str]) -> Validation:
        """The base model on these lesions as validation scores them (box; box and range)."""
        scores = {n: memo.get(f"validation {n}", lambda n=n: base_scores(n)) for n in names}
        return Validation(
            box={n: v[0] for n, v in scores.items()}, ranged={n: v[1] for n, v in scores.items()}
        )

    def tune_and_gate(train: list[str], held: list[str]) -> dict[str, Any]:
        if not train or not held:
            return {"file": None, "promote": False, "reason": "fewer than two patients"}
        names = [n for p in held for n in lesions_of[p]]
        t0 = time.perf_counter()
        training = collect(base, [tuning[n] for p in train for n in lesions_of[p]])
        try:
            file = work / f"tuned-{tag}-{len(memo.data)}.pt"
            result = finetune(training, file, config, backend=base)
        finally:
            training.close()
        after = validate({"tuned": backend(file)}, [tuning[n] for n in names])["tuned"]
        decision = gate(base_validation(names), after)
        metrics = result.metrics()
        print(
            f"  tuned on {len(train)} patients ({result.samples} slices, {result.steps} steps, "
            f"loss {metrics['loss_first']} -> {metrics['loss_last']}, {result.seconds:.0f} s), "
            f"validated on {', '.join(held)}: {'PASS' if decision.promote else 'refused'}: "
            f"{decision.reason} [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        return {
            "file": str(file),
            "promote": decision.promote,
            "reason": decision.reason,
            "seconds": result.seconds,
        }

    rounds = [[round0[case.name] for case in cases]]
    passed: list[int] = []
    train_seconds: dict[str, float] = {}  # per model (one model may serve several patients)
    for r in range(1, args.rounds):
        chosen: dict[str, str | None] = {}
        for patient in sorted(lesions_of):
            others = [p for p in order if p != patient]
            share = others[: max(1, math.ceil(len(others) * r / (args.rounds - 1)))]
            held = max(1, round(len(share) / 4)) if len(share) >= 2 else 0
            train, validation = share[: len(share) - held], share[len(share) - held :]
            key = f"model {tag} {sorted(train)} {sorted(validation)}"
            if key not in memo.data:
                print(f"round {r}, for {patient}:", flush=True)
            model = memo.get(key, lambda t=train, v=validation: tune_and_gate(t, v))
            if model.get("seconds"):
                train_seconds[key] = model["seconds"]
            chosen[patient] = model["file"] if model["promote"] else None
        results = []
        for case in cases:
            file = chosen[case.patient]
            if file is None:  # the gate refused: the base model, round 0's masks exactly
                results.append(round0[case.name])
            else:
                key = f"tuned {file} {case.name}"
                results.append(
                    Score(**memo.get(key, lambda f=file, c=case: run(backend(Path(f)), c.name)))
                )
        rounds.append(results)
        passed.append(sum(file is not None for file in chosen.values()))
    return rounds, list(train_seconds.values()), passed


def default_rounds(
    cases: list[LesionCase], loaded: list[LoadedLesion], order: list[str], args: Any
) -> tuple[list[list[Score]], list[float], list[int]]:
    """Round 0 with the default backend untrained; rounds r >= 1 with a learned draft as its
    classical part, trained per patient on the others' share minus a held-out quarter of them
    (by patient, at least one) and used only where the gate passes on them, as a project's
    training job does (``inference.training``). Returns the rounds' scores, the training
    seconds and, per round r >= 1, how many patients' models passed the gate."""
    from inference.engine.validation import TuningCase, gate, validate

    def hybrid(model: LearnedModel | None = None) -> HybridBackend:
        # A shared cache: never trimmed from here.
        return HybridBackend(
            draft_model=model, embeddings_dir=args.embeddings_dir, embeddings_mb=60_000
        )

    def run(backend: HybridBackend, item: LoadedLesion) -> Score:
        t0 = time.perf_counter()
        mask = backend.segment(item.volume, [item.prompt]).masks[item.prompt.lesion_id]
        result = score(mask, item.reference, item.volume.spacing)
        result.seconds = time.perf_counter() - t0
        return result

    items = {case.name: (case, item) for case, item in zip(cases, loaded, strict=True)}
    untrained = hybrid()
    round0 = [run(untrained, item) for item in loaded]
    rounds, train_seconds, passed = [round0], [], []
    models: dict[tuple[tuple[str, ...], tuple[str, ...]], LearnedModel | None] = {}
    for r in range(1, args.rounds):
        chosen: dict[str, LearnedModel | None] = {}
        for patient in sorted({case.patient for case in cases}):
            others = [p for p in order if p != patient]
            share = others[: max(1, math.ceil(len(others) * r / (args.rounds - 1)))]
            held = max(1, round(len(share) / 4)) if len(share) >= 2 else 0
            train_on, held_out = (
                tuple(share[: len(share) - held]),
                tuple(share[len(share) - held :]),
            )
            if (train_on, held_out) not in models:
                models[(train_on, held_out)] = None
                held_lesions = sum(case.patient in held_out for case in cases)
                if held_lesions < MIN_VALIDATION_LESIONS:  # the gate refuses without looking
                    print(f"round {r}: {held_lesions} held-out lesion(s): no model", flush=True)
                else:
                    t0 = time.perf_counter()
                    model = train(
                        [
                            TrainingCase(item.volume, item.prompt, item.reference, case.patient)
                            for case, item in items.values()
                            if case.patient in train_on
                        ],
                        seed=args.seed,
                    )
                    train_seconds.append(time.perf_counter() - t0)
                    scores = validate(
                        {"before": untrained, "after": hybrid(model)},
                        [
                            TuningCase(item.volume, item.reference, case.patient, name, item.prompt)
                            for name, (case, item) in items.items()
                            if case.patient in held_out
                        ],
                    )
                    decision = gate(
                        scores["before"], scores["after"], min_lesions=MIN_VALIDATION_LESIONS
                    )
                    print(
                        f"round {r}: trained on {len(train_on)} patients, validated on "
                        f"{', '.join(held_out)}: {'PASS' if decision.promote else 'refused'}: "
                        f"{decision.reason}",
                        flush=True,
                    )
                    models[(train_on, held_out)] = model if decision.promote else None
            chosen[patient] = models[(train_on, held_out)]
        rounds.append(
            [
                round0[i]
                if chosen[case.patient] is None
                else run(hybrid(chosen[case.patient]), item)
                for i, (case, item) in enumerate(zip(cases, loaded, strict=True))
            ]
        )
        passed.append(sum(model is not None for model in chosen.values()))
    return rounds, train_seconds, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", default="default", choices=["default", "litemedsam"])
    parser.add_argument(
        "--embeddings-dir", type=Path, default=Path("/tmp/emb"), help="LiteMedSAM's cache"
    )
    parser.add_argument("--tune-steps", type=int, default=None, help="litemedsam: steps")
    parser.add_argument("--tune-lr", type=float, default=None, help="litemedsam: learning rate")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="litemedsam: keep results, resume there"
    )
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
    classical = [
        score(
            ClassicalBackend().segment(item.volume, [item.prompt]).masks[item.prompt.lesion_id],
            item.reference,
            item.volume.spacing,
        )
        for item in loaded
    ]
    rounds: list[list[Score]] = []
    train_seconds: list[float] = []
    rng = np.random.default_rng(args.seed)
    order = [str(p) for p in rng.permutation(patients)]
    passed: list[int] = []  # per round r >= 1, patients whose model passed the gate
    if args.backend == "litemedsam":
        rounds, train_seconds, passed = litemedsam_rounds(cases, loaded, order, args)
    if args.backend == "default":
        rounds, train_seconds, passed = default_rounds(cases, loaded, order, args)

    header = f"{'lesion':44s} {'voxels':>7s} {'base':>6s} {'class':>6s}" + "".join(
        f" {'r' + str(r) + ' dice':>8s} {'hd95':>6s} {'fix':>5s}" for r in range(args.rounds)
    )
    print(header)
    for i, case in enumerate(cases):
        line = (
            f"{case.name:44s} {int(loaded[i].reference.sum()):7d} {baseline[i].dice:6.3f} "
            f"{classical[i].dice:6.3f}"
        )
        for results in rounds:
            s = results[i]
            line += f" {s.dice:8.3f} {s.hd95:6.1f} {s.fix_slices / max(1, s.slices):5.2f}"
        print(line)
    base_dice, base_hd, base_fix = summarise(baseline)
    print(
        f"baseline (box ellipsoid): dice={base_dice:.3f} hd95_median={base_hd:.1f} mm "
        f"slice_fix_fraction={base_fix:.3f}"
    )
    class_dice, class_hd, class_fix = summarise(classical)
    print(
        f"classical draft: dice={class_dice:.3f} hd95_median={class_hd:.1f} mm "
        f"slice_fix_fraction={class_fix:.3f}"
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
    round0, _, round0_fix = summarise(rounds[0])
    last_dice, _, last_fix = summarise(rounds[-1])
    worst_classical = min(s.dice - c.dice for s, c in zip(rounds[0], classical, strict=True))
    deltas = [summarise(results)[0] - round0 for results in rounds[1:]]
    for r, results in enumerate(rounds[1:], start=1):
        worst = min(s.dice - r0.dice for s, r0 in zip(results, rounds[0], strict=True))
        print(
            f"round {r}: mean Dice {deltas[r - 1]:+.3f} against round 0, worst lesion {worst:+.3f}"
        )
    extra = (
        f" round0_fix={round0_fix:.3f} classical_dice={class_dice:.3f} "
        f"worst_vs_classical={worst_classical:+.3f} min_round_delta={min(deltas, default=0.0):+.3f}"
    )
    for r in range(1, len(rounds)):
        print(f"round {r}: {passed[r - 1]} of {len(order)} patients' models passed the gate")
    extra += f" backend={args.backend} gate_passed={'/'.join(str(n) for n in passed)}"
    print(
        "RESULT segmentation_accuracy "
        f"mean_dice={last_dice:.3f} baseline_dice={base_dice:.3f} "
        f"slice_fix_fraction={last_fix:.3f} round0_dice={round0:.3f} "
        f"last_round_dice={last_dice:.3f} cases={len(cases)}{extra}"
    )


if __name__ == "__main__":
    main()
