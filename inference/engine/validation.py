"""Whether a trained model is better than the one it would replace: validation and the gate.

Used by the trainers that decide it, the learned draft's (:mod:`.learned_training`) and
LiteMedSAM's decoder tuning (:mod:`.litemedsam.trainer`). Any two backends are compared on the
same held-out lesions (other patients than the training ones), each lesion segmented in 3D from
its box on the key slice twice, as the product prompts:

* ``box``: the box alone, as pre-annotation runs it (propagation decides where to stop);
* ``range``: the box plus the lesion's slice range (the reference's first and last slice), as
  an annotator who marked the range prompts it.

:func:`gate` promotes only a model that is better by more than :data:`MARGIN` on average, worse
under neither protocol, and costs no held-out lesion more than :data:`MAX_LESION_DROP`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import ImageVolume, InvalidInput, LesionPrompt, ProgressCallback, SegmentationBackend
from .geometry import dice, key_slice_and_box
from .training import Case

__all__ = [
    "MARGIN",
    "MAX_LESION_DROP",
    "Decision",
    "TuningCase",
    "Validation",
    "gate",
    "tuning_cases",
    "validate",
]

BoolArray = npt.NDArray[np.bool_]

# A tuned model must beat the current one by more than this mean Dice (the mean of the two
# protocols' gains). On ../shared/data, two runs that differ only in their seed differ by up to
# about this much on the same held-out lesions (benchmarks/RESULTS.md): a smaller gain is noise.
MARGIN = 0.01
# ... and no held-out lesion may lose more than this under either protocol (the acceptance's
# "no lesion more than 0.10 below" for the default backend).
MAX_LESION_DROP = 0.10


@dataclass(frozen=True, eq=False)
class TuningCase:
    """One lesion to learn from or validate on: the volume, its reference mask (z, y, x), the
    patient it belongs to (cases of one patient are held out together) and, for validation, the
    box prompt it was segmented from (None: the reference's largest slice and tight box)."""

    volume: ImageVolume
    reference: BoolArray
    patient: str = ""
    name: str = ""
    prompt: LesionPrompt | None = None

    def __post_init__(self) -> None:
        if self.reference.shape != self.volume.shape:
            raise InvalidInput(
                f"case {self.name or '?'}: reference {self.reference.shape} does not match the "
                f"volume {self.volume.shape}"
            )


def tuning_cases(loaded: Iterator[Case]) -> Iterator[TuningCase]:
    """Loaded cases as the validation's (and LiteMedSAM tuning's) cases."""
    for case in loaded:
        yield TuningCase(
            case.volume,
            case.reference,
            patient=case.info.patient,
            name=case.prompt.lesion_id,
            prompt=case.prompt,
        )


@dataclass
class Validation:
    """Dice per held-out lesion under the two protocols (module docs)."""

    box: dict[str, float] = field(default_factory=dict)
    ranged: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def mean_box(self) -> float | None:
        return statistics.fmean(self.box.values()) if self.box else None

    @property
    def mean_range(self) -> float | None:
        return statistics.fmean(self.ranged.values()) if self.ranged else None

    def metrics(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "lesions": len(self.box),
            "dice_mean": rounded(self.mean_box),
            "dice_mean_range": rounded(self.mean_range),
            "dice": {k: round(v, 4) for k, v in self.box.items()},
            "dice_range": {k: round(v, 4) for k, v in self.ranged.items()},
            "seconds": round(self.seconds, 2),
        }


def _prompts(case: TuningCase, name: str) -> tuple[LesionPrompt, LesionPrompt]:
    """The case's box prompt (its own, else the reference's largest slice) and the same with
    the reference's slice range (widened to the key slice where the prompt lies outside it)."""
    slices = np.flatnonzero(case.reference.any(axis=(1, 2)))
    if not slices.size:
        raise InvalidInput(f"validation case {name}: the reference is empty")
    prompt = case.prompt
    if prompt is None:
        key, box = key_slice_and_box(case.reference)
        prompt = LesionPrompt(name, key, box)
    else:
        prompt = LesionPrompt(name, prompt.key_slice, prompt.box)
    z_range = (
        min(int(slices[0]), prompt.key_slice),
        max(int(slices[-1]), prompt.key_slice),
    )
    return prompt, LesionPrompt(name, prompt.key_slice, prompt.box, z_range=z_range)


def validate(
    backends: Mapping[str, SegmentationBackend],
    cases: Iterable[TuningCase],
    *,
    total: int | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Validation]:
    """Each backend's :class:`Validation` on ``cases`` (read once, one volume at a time, every
    backend on each). ``progress``: (cases done, ``total``)."""
    results = {name: Validation() for name in backends}
    for index, case in enumerate(cases, start=1):
        if should_stop is not None and should_stop():
            break
        name = case.name or f"case {index}"
        box_prompt, range_prompt = _prompts(case, name)
        for label, backend in backends.items():
            started = time.perf_counter()
            result = results[label]
            for prompt, scores in ((box_prompt, result.box), (range_prompt, result.ranged)):
                mask = backend.segment(case.volume, [prompt]).masks[name]
                scores[name] = dice(mask, case.reference)
            result.seconds += time.perf_counter() - started
        if progress is not None:
            progress(index, max(index, total or 0))
    return results


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on a tuned model against the current one, and why."""

    promote: bool
    reason: str
    gain: float | None = None
    margin: float = MARGIN

    def metrics(self) -> dict[str, Any]:
        return {
            "promoted": self.promote,
            "reason": self.reason,
            "gain": None if self.gain is None else round(self.gain, 4),
            "margin": self.margin,
            "max_lesion_drop": MAX_LESION_DROP,
        }


def gate(
    before: Validation,
    after: Validation,
    *,
    margin: float = MARGIN,
    max_drop: float = MAX_LESION_DROP,
    min_lesions: int = 1,
) -> Decision:
    """Promote ``after`` over ``before`` (the same lesions, at least ``min_lesions`` of them)
    only when it is better by more than ``margin`` (mean of the two protocols' mean gains),
    worse under neither protocol, and no lesion loses more than ``max_drop`` under either."""
    if set(before.box) != set(after.box) or set(before.ranged) != set(after.ranged):
        raise InvalidInput("the two validations are not on the same lesions")
    if not after.box:
        return Decision(
            False, "no validation lesion: nothing shows that it is better", None, margin
        )
    if len(after.box) < min_lesions:
        return Decision(
            False,
            f"{len(after.box)} validation lesion(s): at least {min_lesions} are needed to show "
            "that it is better",
            None,
            margin,
        )
    gains = {}
    for label, old, new in (
        ("box", before.mean_box, after.mean_box),
        ("range", before.mean_range, after.mean_range),
    ):
        assert old is not None and new is not None
        gains[label] = new - old
    gain = statistics.fmean(gains.values())
    figures = (
        f"box {before.mean_box:.3f} -> {after.mean_box:.3f}, "
        f"range {before.mean_range:.3f} -> {after.mean_range:.3f}"
    )
    worse = [label for label, value in gains.items() if value < 0]
    if worse:
        return Decision(
            False, f"worse with the {' and '.join(worse)} prompt ({figures})", gain, margin
        )
    drops = [
        (before_scores[k] - after_scores[k], k, label)
        for label, before_scores, after_scores in (
            ("box", before.box, after.box),
            ("range", before.ranged, after.ranged),
        )
        for k in after_scores
    ]
    drop, lesion, label = max(drops)
    if drop > max_drop:
        return Decision(
            False,
            f"lesion {lesion} loses {drop:.3f} Dice with the {label} prompt "
            f"(more than {max_drop}; {figures})",
            gain,
            margin,
        )
    if gain <= margin:
        return Decision(
            False,
            f"mean gain {gain:+.3f} is not above the margin {margin} ({figures})",
            gain,
            margin,
        )
    return Decision(True, f"better by {gain:+.3f} ({figures})", gain, margin)
