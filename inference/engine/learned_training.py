"""The learned draft's trainer: the classical draft fitted to a project's accepted masks.

The trainer of every backend without one of its own (:func:`.trainers.trainer_for`): the
classical, learned and hybrid backends among them. The draft is trained for the round's model
(:func:`learned_host`): for the hybrid default it becomes its classical part (the new version's
backend is the hybrid, its file the draft model); for any other, the learned backend alone.

The model is trained (:func:`.learned_fit.train`) on the cases of the export's "train" split and
scored on its "validation" split against the model the round pre-annotated with (Dice before
and after, so that a manager sees whether the new model helps before making it active). When
every case is in the validation split, it trains on all of them and says that nothing was held
out. The gate (:func:`.validation.gate`: better by more than 0.01 mean Dice, box
alone and with the slice range, no lesion 0.10 worse, at least
:data:`.learned_fit.MIN_VALIDATION_LESIONS` lesions) decides whether the version may pre-annotate a
round on its own; a refused version is kept with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import learned_fit
from .base import ProgressCallback, SegmentationBackend, backend_path
from .hybrid import HybridBackend
from .learned import LearnedBackend, LearnedModel
from .learned_fit import MIN_VALIDATION_LESIONS, TrainingCase
from .training import CaseInfo, Cases, ModelRef, Trainer, TrainResult, progress_part
from .validation import Decision, gate, tuning_cases, validate

__all__ = [
    "HYBRID_BACKEND",
    "LEARNED_BACKEND",
    "LearnedDraftTrainer",
    "learned_host",
]

LEARNED_BACKEND = "inference.engine.learned.LearnedBackend"
HYBRID_BACKEND = "inference.engine.hybrid.HybridBackend"
SEED = 0


def learned_host(round_model: ModelRef) -> str:
    """The backend a learned draft is trained for: the round's model's (else the site's) when
    that is the hybrid default, whose classical part the draft becomes; otherwise the learned
    backend alone."""
    name = round_model.backend
    return name if backend_path(name) == HYBRID_BACKEND else LEARNED_BACKEND


def with_draft(host: str, model: LearnedModel | None) -> SegmentationBackend:
    """``host`` with a loaded learned draft (None: untrained)."""
    if host == LEARNED_BACKEND:
        return LearnedBackend(model=model)
    return HybridBackend(draft_model=model)


class LearnedDraftTrainer(Trainer):
    """Trains the learned draft for :func:`learned_host` (module docs)."""

    def train(
        self,
        cases: Cases,
        out_dir: Path,
        *,
        progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> TrainResult:
        fitted, held_out = cases.split()
        note = None
        if not fitted:
            fitted, held_out = list(cases.infos), []
            note = (
                "nothing held out: every accepted case is in the validation split, so the model "
                "was trained on all of them"
            )
        elif not held_out:
            note = "no validation cases: no accepted case is in the validation split"
        total = len(fitted) + len(held_out)
        progress(0, total)
        stats: dict[str, Any] = {"sources": {}, "skipped": []}
        training = (
            TrainingCase(case.volume, case.prompt, case.reference, patient=case.info.patient)
            for case in cases.load(
                fitted, progress=progress_part(progress, tail=len(held_out)), stats=stats
            )
        )
        model = learned_fit.train(training, seed=SEED)
        local = out_dir / "model.joblib"
        model.save(local)
        host = learned_host(self.context.round_model)
        validation, before, decision = self._validate(
            cases, held_out, host, model, progress_part(progress, offset=len(fitted))
        )
        if note:
            validation["note"] = note
        gated: dict[str, Any] = {}
        if decision is not None:
            gated["gate"] = decision.metrics()
            if not decision.promote:  # never used for a round on its own
                gated["promotion"] = {"promoted": False, "reason": decision.reason}
        return TrainResult(
            checkpoint=local,
            backend=host,
            name=f"learned {self.context.label}",
            metrics={
                **model.meta,
                "tasks": len({info.group for info in fitted}),
                **stats,
                "validation": validation,
                **({"validation_before": before} if before is not None else {}),
                **gated,
            },
        )

    def _validate(
        self,
        cases: Cases,
        held_out: Sequence[CaseInfo],
        host: str,
        model: LearnedModel,
        progress: ProgressCallback,
    ) -> tuple[dict[str, Any], dict[str, Any] | None, Decision | None]:
        """Dice of the new model and of the round's own model (``host`` untrained when it had
        none, or had another backend) on held-out lesions, box-prompted as in pre-annotation
        (and with the slice range, for the gate); the gate's decision."""
        if not held_out:
            return {"cases": 0, "lesions": 0, "dice_mean": None}, None, None
        current = self.context.round_model
        baseline: SegmentationBackend
        if current.version is not None and current.backend == host:
            baseline, baseline_name = self.context.load_model(current), current.name
        else:
            baseline, baseline_name = with_draft(host, None), "untrained default"
        scores = validate(
            {"after": with_draft(host, model), "before": baseline},
            tuning_cases(cases.load(held_out, progress=progress)),
        )

        def summary(found: dict[str, float]) -> dict[str, Any]:
            rounded = {name: round(value, 4) for name, value in found.items()}
            return {
                "cases": len({info.group for info in held_out}),
                "lesions": len(rounded),
                "dice_mean": round(float(np.mean(list(rounded.values()))), 4) if rounded else None,
                "dice": rounded,
            }

        decision = gate(scores["before"], scores["after"], min_lesions=MIN_VALIDATION_LESIONS)
        before = {**summary(scores["before"].box), "model": baseline_name}
        return summary(scores["after"].box), before, decision
