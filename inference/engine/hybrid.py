"""The default backend: the pretrained model where it measures better, the classical draft
elsewhere (measured on the 18 real lesions of ``../shared/data``: benchmarks/RESULTS.md,
segmentation_accuracy and "litemedsam on volumes").

Per kind of image:

* colour images and single frames (endoscopy, photographs, one ultrasound frame): LiteMedSAM
  alone, in colour;
* PET and SPECT hot spots (modality PT or NM): the classical box-prior draft (the model, trained
  on anatomy, walks into neighbouring uptake);
* MR volumes (``volumes="auto"``, the default): combined: the classical draft sets the lesion's
  slice extent (unless the annotator marked the slice range) and LiteMedSAM draws the lesion
  in-plane on each slice of that extent, propagated from the key slice; where the decoder's
  predicted IoU on a slice is under ``min_iou`` (0.7), the draft's slice is kept instead. On the
  11 MR lesions the model's outlines are the better ones (brain tumours on T1c and FLAIR, the
  sarcoma), on CT and PET/SPECT the draft's;
* other volumes (CT, ...): the classical draft. ``volumes="combined"`` combines every volume
  but PET/SPECT, ``volumes="classical"`` none.

The classical part is the learned draft when a project has trained one: ``draft_model`` (the
model file of :class:`~inference.engine.learned.LearnedModel`, the checkpoint a trained version
of this backend carries, or a loaded model) refines the draft wherever the draft is used,
including the slice extent it sets for the model. The model part takes what LiteMedSAM takes (a
fine-tuned decoder through ``checkpoint``, clicks, human slices, the slice range, pre-encoding
through :meth:`encode`); the classical part honours the slice range too. The model is loaded
the first time an image needs it, so a machine whose images all go to the classical draft never
imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import (
    ImageVolume,
    LesionPrompt,
    ProgressCallback,
    SegmentationBackend,
    SegmentationResult,
)
from .classical import ClassicalBackend
from .learned import LearnedBackend, LearnedModel

if TYPE_CHECKING:
    from .litemedsam import LiteMedSAMBackend

__all__ = ["HybridBackend"]

HOT_SPOT_MODALITIES = frozenset({"PT", "PET", "NM", "SPECT"})
# Modalities whose volumes the model draws in-plane under volumes="auto" (module docs).
MODEL_MODALITIES = frozenset({"MR"})
VOLUME_ROUTES = ("auto", "classical", "combined")


class HybridBackend(SegmentationBackend):
    """LiteMedSAM and the classical draft, each where it measures better (module docs)."""

    name = "default"
    version = "2.0"
    # A trained version of this backend carries the learned draft (training.py).
    checkpoint_option: ClassVar[str | None] = "draft_model"

    def __init__(
        self,
        *,
        draft_model: str | Path | LearnedModel | None = None,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        volumes: str = "auto",
        min_iou: float = 0.7,
        **model_options: Any,
    ) -> None:
        if volumes not in VOLUME_ROUTES:
            raise ValueError(f"volumes must be one of {', '.join(VOLUME_ROUTES)}, got {volumes!r}")
        if not 0 <= min_iou <= 1:
            raise ValueError(f"min_iou must be within 0..1, got {min_iou!r}")
        self.classical: ClassicalBackend = ClassicalBackend()
        if isinstance(draft_model, LearnedModel):
            self.classical = LearnedBackend(model=draft_model)
        elif draft_model is not None:
            self.classical = LearnedBackend(draft_model)
        self.volumes, self.min_iou = volumes, float(min_iou)
        self._model_options: dict[str, Any] = {
            "checkpoint": checkpoint,
            "device": device,
            **model_options,
        }
        self._model: LiteMedSAMBackend | None = None
        if checkpoint is not None:
            self.model  # a fine-tuned file is checked now, not on the first image  # noqa: B018

    @property
    def model(self) -> LiteMedSAMBackend:
        if self._model is None:
            from .litemedsam import LiteMedSAMBackend

            self._model = LiteMedSAMBackend(**self._model_options)
        return self._model

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "prompts": ["box", "points", "mask", "z_range", "direction"],
            "volumes": self.volumes,
            "min_iou": self.min_iou,
            "model": self._model.describe() if self._model is not None else "litemedsam",
            "classical": self.classical.describe(),
        }

    def encode(
        self,
        volume: ImageVolume,
        slices: Iterable[int] | None = None,
        *,
        batch: int = 4,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        if self.route(volume) == "classical":
            return 0  # the classical draft needs no embeddings
        return self.model.encode(
            volume, slices, batch=batch, progress=progress, should_stop=should_stop
        )

    def route(self, volume: ImageVolume) -> str:
        """ "model", "classical" or "combined" for this image."""
        if volume.is_colour or volume.shape[0] == 1:
            return "model"
        modality = volume.modality.strip().upper()
        if modality in HOT_SPOT_MODALITIES:
            return "classical"
        if self.volumes == "auto":
            return "combined" if modality in MODEL_MODALITIES else "classical"
        return self.volumes

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        started = time.perf_counter()
        self.validate(volume, prompts)
        route = self.route(volume)
        if route == "model":
            return self.model.segment(volume, prompts, progress=progress)
        if route == "classical":
            return self.classical.segment(volume, prompts, progress=progress)
        prepared = self.model.prepare(volume)
        result = SegmentationResult(masks={}, timings={"preprocess": 0.0})
        total = len(prompts)
        if progress is not None:
            progress(0, total)
        for done, prompt in enumerate(prompts, start=1):
            draft = self.classical.segment(volume, [prompt]).masks[prompt.lesion_id]
            result.masks[prompt.lesion_id], note = self._combine(prepared, prompt, draft)
            if note:
                result.notes[prompt.lesion_id] = note
            if progress is not None:
                progress(done, total)
        result.timings["total"] = time.perf_counter() - started
        return result

    def _combine(
        self, prepared: Any, prompt: LesionPrompt, draft: np.ndarray
    ) -> tuple[np.ndarray, str | None]:
        extent = prompt.z_range
        if extent is None:
            zs = np.nonzero(draft.any(axis=(1, 2)))[0]
            extent = (int(zs.min()), int(zs.max())) if zs.size else None
        if extent is not None:
            prompted = {prompt.key_slice, *prompt.mask_slices}
            prompted |= {p[2] for p in (*prompt.positive_points, *prompt.negative_points)}
            extent = (min(extent[0], *prompted), max(extent[1], *prompted))
        bounded = replace(prompt, z_range=extent) if extent is not None else prompt
        ious: dict[int, float] = {}
        mask, note = self.model.segment_lesion(prepared, bounded, ious)
        human = set(prompt.mask_slices)
        for z, iou in ious.items():
            if iou < self.min_iou and z not in human:
                mask[z] = draft[z]
        return mask, note
