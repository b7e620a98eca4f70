"""Two simulated annotators, what they do to a pre-segmentation and what it costs them.

Both start from the pre-segmentation of one lesion (the backend's answer to the box on the
key slice) and end with the reference: a perfect annotator. They differ in the tools used on
the way.

* :func:`recontour_only`: review every slice the model or the reference covers, re-contour
  with the brush every slice whose 2D Dice is under 0.9
  (:data:`~inference.engine.metrics.SLICE_FIX_DICE`).
* :func:`prompts_then_recontour`: the product's own tools before the brush. Optionally first
  the lesion's slice range (its first and last slice, one key each while scrolling), which the
  initial box prompt then carries as its ``z_range``; then, on slices still wrong, at most
  ``max_prompts`` corrections by prompt, each a box on the wrong slice propagated away from
  the key slice; then the brush on what is still wrong.

A correction is the request the viewer sends for "propagate from this slice": a new
:class:`~inference.engine.LesionPrompt` with ``key_slice`` = the corrected slice z, ``box`` =
the reference's tight box on z, ``direction="forward"`` and ``z_range = (z, far end)`` when z
lies above the key slice (a higher index), ``"reverse"`` and ``(far start, z)`` below it. The
far ends are the marked slice range, else the volume's edges. The backend's mask replaces the
current mask on the slices of that ``z_range`` only (:func:`replace_in_range`, the rule
``inference.services._keep_human_slices`` applies to the product's jobs with a ``z_range`` on
a saved mask).

Decisions, each a model of an annotator rather than a measurement:

* Which wrong slice next (``order``): by default the one with the lowest 2D Dice ("worst";
  ties: the one nearer the key slice), which is most often a slice the model missed or added
  at the lesion's ends, where a correction reaches few slices; "nearest" the key slice first
  (a correction then also reaches the wrong slices beyond it) and "outermost" first are the
  alternatives. On ``../shared/data`` with the classical backend and the range marked
  (2026-12-07), round 0 of ``simulate_campaign``'s split, 3 prompts: worst -9.5%, outermost
  -9.0%, nearest -17.3% (nearest's corrections reach many slices and mostly fail: each costs
  a look at every slice it changed). The key slice itself is never re-prompted (its box is
  the initial prompt's: the answer would be the same); each slice is prompted once.
* A wrong slice whose reference box is under :data:`MIN_BOX_SIDE` voxels on a side is left to
  the brush: nobody drags a box that small (and the classical backend fails on a box one
  voxel wide).
* A correction that does not lower the number of wrong slices is undone (the viewer's undo);
  its box and the look at what it changed are still paid for.
* A slice where the mask has voxels and the reference none is erased with one eraser stroke,
  costed as one prompt (``box_s``: one drag over the slice) and counted against
  ``max_prompts``.
* After each kept or undone correction the annotator looks again at every slice it changed
  (``review_slice_s`` each).
* With the slice range marked, the first mask is bounded by the range even where the backend
  ignores ``z_range``: the lesion's mask before its first prompt is empty, so replacing it on
  the range's slices only keeps it empty elsewhere (issue 18: every backend honours the range).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.engine import ImageVolume, LesionPrompt, SegmentationBackend, dice
from inference.engine.metrics import SLICE_FIX_DICE

BoolArray = npt.NDArray[np.bool_]
Segmenter = Callable[[LesionPrompt], npt.NDArray[Any]]

ORDERS = ("nearest", "worst", "outermost")
MIN_BOX_SIDE = 3  # voxels: the smallest corrective box the annotator draws


@dataclass(frozen=True)
class CostModel:
    """Seconds an annotator spends on one lesion, manual and model-assisted.

    * manual: every slice of the reference contoured from scratch, ``manual_slice_s`` each;
    * assisted, re-contour only: one box on the key slice (``box_s``), a look at every slice
      the model or the reference covers (``review_slice_s``), and every slice needing
      correction re-contoured at ``correction_factor`` x ``manual_slice_s`` (1.0: as long as
      contouring it anew, the pessimistic choice; a correction often only moves part of an
      outline);
    * assisted, prompts then re-contour: the same, plus ``range_mark_s`` for each of the two
      slice-range marks when the range is marked, ``box_s`` for each corrective box or eraser
      stroke, and ``review_slice_s`` for each slice a correction changed.

    The defaults are assumptions, not measurements: 30 s to contour one lesion slice by hand,
    5 s to drag a box (extreme clicking, Papadopoulos et al. 2017, measured 7 s a box with its
    verification for objects in photographs; a lesion's box on a slice the annotator already
    looks at is quicker), 2 s to scroll past a slice and judge its mask, 1.5 s for a range mark
    (one key press on the slice being looked at while scrolling: a keystroke and its mental
    preparation in the keystroke-level model, Card, Moran & Newell 1980, 0.28 + 1.35 s). The
    cost reduction depends only on the ratios to ``manual_slice_s`` (and the correction
    factor), so a site that has measured its own annotators (``projects/effort.py`` records
    active time per lesion) should put its figures in a JSON file and pass ``--cost-config``.
    """

    manual_slice_s: float = 30.0
    box_s: float = 5.0
    review_slice_s: float = 2.0
    correction_factor: float = 1.0
    range_mark_s: float = 1.5

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or not value >= 0:
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
        """Re-contour only: the box, the review, the re-contoured slices."""
        return (
            self.box_s
            + reviewed_slices * self.review_slice_s
            + corrected_slices * self.correction_factor * self.manual_slice_s
        )

    def annotation(self, done: Annotation) -> float:
        """What an :class:`Annotation` cost, either annotator."""
        return (
            self.assisted(done.reviewed_slices, done.corrected_slices)
            + done.range_marks * self.range_mark_s
            + (done.prompts + done.erased_slices) * self.box_s
        )


@dataclass(frozen=True)
class PromptPolicy:
    """How the prompting annotator works: at most ``max_prompts`` corrections (boxes and
    eraser strokes) per lesion, the slice range marked first or not, the next slice chosen by
    ``order`` (:func:`next_slice`)."""

    max_prompts: int = 3
    slice_range: bool = True
    order: str = "worst"

    def __post_init__(self) -> None:
        if not isinstance(self.max_prompts, int) or self.max_prompts < 0:
            raise ValueError(f"max_prompts must be an integer >= 0, got {self.max_prompts!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")


@dataclass(frozen=True)
class Annotation:
    """What one annotator did to one pre-segmentation; ``seconds`` by the cost model."""

    reviewed_slices: int  # looked at: the first pass plus every slice a correction changed
    corrected_slices: int  # re-contoured with the brush at the end
    prompts: int = 0  # corrective boxes sent, undone ones included
    undone: int = 0  # of those, corrections undone (they did not lower the wrong slices)
    erased_slices: int = 0  # false slices erased with one eraser stroke each
    range_marks: int = 0  # 2 when the slice range was marked
    dice_before_brush: float = 0.0  # the mask's 3D Dice before the re-contouring
    seconds: float = 0.0


def replace_in_range(
    current: npt.NDArray[Any], result: npt.NDArray[Any], z_range: tuple[int, int]
) -> BoolArray:
    """``result`` on the slices ``z0..z1`` (inclusive), ``current`` elsewhere: the product's
    rule for a prompt with a ``z_range`` on a saved mask (``_keep_human_slices``)."""
    z0, z1 = z_range
    out = np.array(current, dtype=bool)
    out[z0 : z1 + 1] = np.asarray(result[z0 : z1 + 1], dtype=bool)
    return out


def tight_box(slice_mask: npt.NDArray[Any]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of a non-empty (y, x) mask."""
    rows = np.flatnonzero(slice_mask.any(axis=1))
    cols = np.flatnonzero(slice_mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def wrong_slices(
    mask: npt.NDArray[Any], reference: npt.NDArray[Any], threshold: float = SLICE_FIX_DICE
) -> dict[int, float]:
    """Slice -> 2D Dice for every slice either mask covers whose Dice is under ``threshold``
    (a slice only one of them covers has Dice 0)."""
    covered = np.flatnonzero(mask.any(axis=(1, 2)) | reference.any(axis=(1, 2)))
    scores = {int(z): dice(mask[z], reference[z]) for z in covered}
    return {z: d for z, d in scores.items() if d < threshold}


def covered_slices(mask: npt.NDArray[Any], reference: npt.NDArray[Any]) -> int:
    return int(np.count_nonzero(mask.any(axis=(1, 2)) | reference.any(axis=(1, 2))))


def recontour_only(
    pred: npt.NDArray[Any], reference: npt.NDArray[Any], cost: CostModel
) -> Annotation:
    """Review every covered slice, re-contour every wrong one."""
    pred = np.asarray(pred, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    done = Annotation(
        reviewed_slices=covered_slices(pred, reference),
        corrected_slices=len(wrong_slices(pred, reference)),
        dice_before_brush=dice(pred, reference),
    )
    return replace(done, seconds=cost.annotation(done))


def backend_segmenter(backend: SegmentationBackend, volume: ImageVolume) -> Segmenter:
    """One prompt at a time through ``backend`` on ``volume``."""

    def segment(prompt: LesionPrompt) -> npt.NDArray[Any]:
        return backend.segment(volume, [prompt]).masks[prompt.lesion_id]

    return segment


def initial_prompt(
    prompt: LesionPrompt, reference: npt.NDArray[Any], policy: PromptPolicy
) -> LesionPrompt:
    """The box prompt as the prompting annotator sends it: with the reference's slice range as
    its ``z_range`` when the policy marks the range."""
    if not policy.slice_range:
        return prompt
    zs = np.flatnonzero(np.asarray(reference, dtype=bool).any(axis=(1, 2)))
    return replace(prompt, z_range=(int(zs[0]), int(zs[-1])))


def corrective_prompt(
    prompt: LesionPrompt, z: int, box: tuple[int, int, int, int], extent: tuple[int, int]
) -> LesionPrompt:
    """The viewer's "propagate from this slice" request: a box on slice ``z``, propagated away
    from the key slice of ``prompt`` up to the far end of ``extent`` (the marked slice range
    or the volume)."""
    if z > prompt.key_slice:
        direction, z_range = "forward", (z, extent[1])
    else:
        direction, z_range = "reverse", (extent[0], z)
    return LesionPrompt(prompt.lesion_id, z, box, z_range=z_range, direction=direction)


def next_slice(wrong: dict[int, float], key: int, order: str) -> int:
    """The wrong slice (slice -> 2D Dice) to correct next: "worst" Dice, "nearest" the key
    slice or "outermost" (farthest from it); "worst" breaks ties by the distance to the key
    slice, every order then by the higher slice."""
    if order == "worst":
        return min(wrong, key=lambda z: (wrong[z], abs(z - key), -z))
    if order == "outermost":
        return min(wrong, key=lambda z: (-abs(z - key), -z))
    return min(wrong, key=lambda z: (abs(z - key), -z))


def prompts_then_recontour(
    segment: Segmenter,
    prompt: LesionPrompt,
    reference: npt.NDArray[Any],
    cost: CostModel,
    policy: PromptPolicy,
    *,
    initial: npt.NDArray[Any] | None = None,
) -> tuple[Annotation, BoolArray]:
    """Prompt, correct by prompt, then re-contour; returns what was done and the mask before
    the brush (see the module docs for every decision).

    ``initial``: the backend's answer to :func:`initial_prompt` when the caller has it already
    (the re-contour-only annotator's pre-segmentation, when the range is not marked).
    """
    reference = np.asarray(reference, dtype=bool)
    depth = reference.shape[0]
    first = initial_prompt(prompt, reference, policy)
    raw = segment(first) if initial is None else initial
    extent = first.z_range or (0, depth - 1)
    mask = replace_in_range(np.zeros_like(reference), raw, extent)
    reviewed = covered_slices(mask, reference)
    wrong = wrong_slices(mask, reference)
    tried = {prompt.key_slice}
    prompts = undone = erased = 0
    while prompts + erased < policy.max_prompts:
        open_ = {z: d for z, d in wrong.items() if z not in tried}
        if not open_:
            break
        z = next_slice(open_, prompt.key_slice, policy.order)
        tried.add(z)
        if not reference[z].any():
            mask[z] = False  # one eraser stroke
            erased += 1
            wrong.pop(z)
            continue
        box = tight_box(reference[z])
        if min(box[2] - box[0], box[3] - box[1]) + 1 < MIN_BOX_SIDE:
            continue  # too small to box: the brush
        corrective = corrective_prompt(prompt, z, box, extent)
        assert corrective.z_range is not None
        candidate = replace_in_range(mask, segment(corrective), corrective.z_range)
        prompts += 1
        reviewed += int(np.count_nonzero((candidate != mask).any(axis=(1, 2))))
        after = wrong_slices(candidate, reference)
        if len(after) < len(wrong):
            mask, wrong = candidate, after
        else:
            undone += 1
    done = Annotation(
        reviewed_slices=reviewed,
        corrected_slices=len(wrong),
        prompts=prompts,
        undone=undone,
        erased_slices=erased,
        range_marks=2 if policy.slice_range else 0,
        dice_before_brush=dice(mask, reference),
    )
    return replace(done, seconds=cost.annotation(done)), mask
