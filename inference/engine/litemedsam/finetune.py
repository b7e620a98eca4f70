"""Fine-tuning LiteMedSAM's prompt encoder and mask decoder on cached image embeddings.

The image encoder is never tuned: every version of a project's model shares the base encoder's
embeddings (:mod:`.embeddings`), so tuning costs the decoder only and an encoded volume stays
encoded across versions. The authors' recipe (LITEMEDSAM.md), on what a project has:

* Samples: every slice of a training case's reference mask that holds lesion voxels, prompted
  by the slice's tight box in the 256 frame, each side pushed outwards by a random 0..``jitter``
  px at every draw (the authors' ``bbox_shift`` of 5). No flips: an embedding is not the
  encoder's output for the flipped image, so flipping it would teach the decoder features it
  never sees.
* Target: the reference slice resized into the model's 256 x 256 frame as the image is
  (:mod:`.frames`: longest side 256, area averaging when shrinking, bilinear when enlarging,
  then >= 0.5), zero-padded at the bottom and right; the decoder's 256 x 256 low-resolution
  logits are scored against it.
* Loss: squared-denominator soft Dice on the sigmoid + binary cross-entropy + the squared error
  between the decoder's predicted IoU and the real IoU of its thresholded mask, weights 1/1/1.
* AdamW (weight decay 0.01) at a constant learning rate: the authors' plateau schedule never
  acts within the few hundred steps a CPU affords.

``finetune`` writes the tuned parts in :data:`.weights.FINETUNE_FORMAT`, which
``LiteMedSAMBackend(checkpoint=path)`` loads. Whether a tuned file is better than the model it
would replace is :mod:`..validation`'s question (where :class:`TuningCase` is defined too).
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ..base import EngineError, ProgressCallback
from ..validation import TuningCase
from .embeddings import EmbeddingStore
from .frames import MODEL_SIZE, Geometry
from .weights import BASE_SHA256, FINETUNE_FORMAT

if TYPE_CHECKING:
    import torch

    from .backend import LiteMedSAMBackend

__all__ = [
    "TrainingSet",
    "TuneConfig",
    "TuneResult",
    "TuningError",
    "collect",
    "finetune",
    "target256",
]

BoolArray = npt.NDArray[np.bool_]
Parts = Literal["decoder", "prompt+decoder"]


class TuningError(EngineError):
    """Nothing to tune on (no case with a lesion slice), or a configuration out of range."""


@dataclass(frozen=True)
class TuneConfig:
    """How long and how hard to tune; the defaults take minutes on a 2-core CPU."""

    steps: int = 200
    batch: int = 2
    lr: float = 5e-5
    weight_decay: float = 0.01
    jitter: int = 5
    parts: Parts = "prompt+decoder"
    seed: int = 0
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise TuningError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.batch, int) and 1 <= self.batch <= 64):
            raise TuningError(f"batch must be an integer within 1..64, got {self.batch!r}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1e-2):
            raise TuningError(f"lr must be within (0, 0.01], got {self.lr!r}")
        if not (isinstance(self.jitter, int) and 0 <= self.jitter <= 32):
            raise TuningError(f"jitter must be an integer within 0..32 px, got {self.jitter!r}")
        if self.parts not in ("decoder", "prompt+decoder"):
            raise TuningError(f"parts must be 'decoder' or 'prompt+decoder', got {self.parts!r}")

    def describe(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "batch": self.batch,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "jitter": self.jitter,
            "parts": self.parts,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class _Sample:
    """One lesion slice: its embedding's key in the store, its target and tight box (256 frame),
    and the slice's resized size (boxes stay inside it)."""

    key: str
    z: int
    target: BoolArray = field(repr=False)
    box: npt.NDArray[np.float32]
    resized: tuple[int, int]


@dataclass
class TrainingSet:
    """The samples of the training cases and the store that holds their embeddings (the
    backend's own when it keeps them on disk, else a temporary folder: a sample never needs its
    volume again once encoded, so the volumes need not stay in memory)."""

    samples: list[_Sample]
    store: EmbeddingStore
    cases: int
    patients: int
    skipped: list[dict[str, Any]]
    encoded: int
    spill: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.spill is not None:
            self.spill.cleanup()
            self.spill = None


def target256(mask: npt.NDArray[Any], geometry: Geometry) -> BoolArray:
    """A (H, W) mask in the model's 256 x 256 frame, resized as :func:`.frames.slice_frame`
    resizes the image (area averaging when shrinking, bilinear when enlarging), >= 0.5, padded
    with background at the bottom and right."""
    import torch
    import torch.nn.functional as F

    rows, cols = geometry.resized
    values = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    if (rows, cols) != (geometry.height, geometry.width):
        if rows <= geometry.height and cols <= geometry.width:
            values = F.interpolate(values, size=(rows, cols), mode="area")
        else:
            values = F.interpolate(values, size=(rows, cols), mode="bilinear", align_corners=False)
    out = np.zeros((MODEL_SIZE, MODEL_SIZE), dtype=bool)
    out[:rows, :cols] = values[0, 0].numpy() >= 0.5
    return out


def collect(
    backend: LiteMedSAMBackend,
    cases: Iterable[TuningCase],
    *,
    total: int | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingSet:
    """The samples of ``cases`` (read one at a time: an iterator keeps one volume in memory),
    encoding the lesion slices the store lacks. ``progress``: (cases done, ``total``)."""
    spill: tempfile.TemporaryDirectory[str] | None = None
    store = backend.store
    if store.folder is None:
        spill = tempfile.TemporaryDirectory(prefix="litemedsam-tune-")
        store = EmbeddingStore(memory_mb=256, folder=Path(spill.name), disk_mb=2**20)
    samples: list[_Sample] = []
    skipped: list[dict[str, Any]] = []
    patients: set[str] = set()
    encoded = count = 0
    for index, case in enumerate(cases, start=1):
        if should_stop is not None and should_stop():
            break
        count += 1
        slices = [int(z) for z in np.flatnonzero(case.reference.any(axis=(1, 2)))]
        if not slices:
            skipped.append({"case": case.name, "reason": "empty reference"})
        else:
            prepared = backend.prepare(case.volume)
            geometry = prepared.geometry
            before = backend.encoder_calls
            for z in slices:
                if store is backend.store:
                    backend.embedding(prepared, z)  # from the store, else encoded into it
                elif store.get(prepared.key, z) is None:
                    store.put(prepared.key, z, backend.embedding(prepared, z)[0].cpu().numpy())
                rows, cols = np.nonzero(case.reference[z])
                voxel_box = (cols.min(), rows.min(), cols.max(), rows.max())
                samples.append(
                    _Sample(
                        prepared.key,
                        z,
                        target256(case.reference[z], geometry),
                        geometry.box(voxel_box),
                        geometry.resized,
                    )
                )
            encoded += backend.encoder_calls - before
            patients.add(case.patient or case.name)
        if progress is not None:
            progress(index, max(index, total or 0))
    return TrainingSet(samples, store, count, len(patients), skipped, encoded, spill)


@dataclass
class TuneResult:
    """What a run wrote and how it went."""

    file: Path
    steps: int
    seconds: float
    samples: int
    cases: int
    patients: int
    losses: list[float]
    stopped_early: bool
    config: TuneConfig

    def metrics(self) -> dict[str, Any]:
        tenth = max(1, len(self.losses) // 10)
        return {
            **self.config.describe(),
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "samples": self.samples,
            "cases": self.cases,
            "patients": self.patients,
            "loss_first": round(float(np.mean(self.losses[:tenth])), 4) if self.losses else None,
            "loss_last": round(float(np.mean(self.losses[-tenth:])), 4) if self.losses else None,
            "stopped_early": self.stopped_early,
        }


def _jittered(sample: _Sample, rng: np.random.Generator, jitter: int) -> npt.NDArray[np.float32]:
    """The tight box with each side pushed outwards by 0..jitter px, inside the resized slice."""
    push = rng.integers(0, jitter + 1, size=4).astype(np.float32) * np.asarray(
        [-1, -1, 1, 1], dtype=np.float32
    )
    rows, cols = sample.resized
    limit = np.asarray([cols - 1, rows - 1, cols - 1, rows - 1], dtype=np.float32)
    box: npt.NDArray[np.float32] = np.clip(sample.box + push, 0, limit).astype(np.float32)
    return box


def _losses(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The authors' three terms on (B, 1, 256, 256) logits and a (B, 1) predicted IoU."""
    import torch
    import torch.nn.functional as F

    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(2, 3))
    denominator = (prob * prob).sum(dim=(2, 3)) + (target * target).sum(dim=(2, 3))
    dice = (1 - (2 * inter + 1e-5) / (denominator + 1e-5)).mean()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    with torch.no_grad():
        predicted = logits > 0
        truth = target > 0.5
        union = (predicted | truth).sum(dim=(2, 3)).float()
        overlap = (predicted & truth).sum(dim=(2, 3)).float()
        real_iou = torch.where(union > 0, overlap / union.clamp(min=1), torch.ones_like(union))
    iou = F.mse_loss(iou_pred, real_iou)
    return {"dice": dice, "bce": bce, "iou": iou, "total": dice + bce + iou}


def _tunable(net: Any, parts: Parts) -> tuple[Any, Any, list[torch.nn.Parameter]]:
    """Trainable copies of the prompt encoder and mask decoder (the loaded model is shared and
    frozen), and the parameters to optimise."""
    prompt_encoder = copy.deepcopy(net.prompt_encoder).train()
    mask_decoder = copy.deepcopy(net.mask_decoder).train()
    for parameter in prompt_encoder.parameters():
        parameter.requires_grad_(parts == "prompt+decoder")
    for parameter in mask_decoder.parameters():
        parameter.requires_grad_(True)
    trained = list(mask_decoder.parameters())
    if parts == "prompt+decoder":
        trained += list(prompt_encoder.parameters())
    return prompt_encoder, mask_decoder, trained


def finetune(
    training: TrainingSet,
    out: Path,
    config: TuneConfig = TuneConfig(),
    *,
    backend: LiteMedSAMBackend,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    metadata: dict[str, Any] | None = None,
) -> TuneResult:
    """Tune ``backend``'s base prompt encoder and mask decoder on ``training``'s samples for
    ``config.steps`` steps (fewer when ``should_stop`` says so or ``max_seconds`` pass: the file
    is written either way and the result says it stopped early) and write ``out``."""
    import torch

    if not training.samples:
        reasons = "; ".join(f"{s['case']}: {s['reason']}" for s in training.skipped[:5])
        raise TuningError(
            f"no lesion slice to tune on ({training.cases} cases"
            + (f"; skipped: {reasons}" if reasons else "")
            + ")"
        )
    if backend.model.tuned is not None:
        raise TuningError("tuning starts from the base model: pass a backend without checkpoint")
    started = time.perf_counter()
    device = backend.device or "cpu"
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    prompt_encoder, mask_decoder, parameters = _tunable(backend.model.net, config.parts)
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    order: list[int] = []
    stopped_early = False
    done = 0
    for step in range(config.steps):
        if (should_stop is not None and should_stop()) or (
            config.max_seconds is not None and time.perf_counter() - started > config.max_seconds
        ):
            stopped_early = True
            break
        batch = []
        for _ in range(min(config.batch, len(training.samples))):
            if not order:
                order = [int(i) for i in rng.permutation(len(training.samples))]
            batch.append(training.samples[order.pop()])
        embeddings, boxes, targets = [], [], []
        for sample in batch:
            found = training.store.get(sample.key, sample.z)
            if found is None:
                raise TuningError(f"the embedding of slice {sample.z} left the store mid-run")
            embeddings.append(torch.from_numpy(found))
            boxes.append(torch.from_numpy(_jittered(sample, rng, config.jitter)))
            targets.append(torch.from_numpy(sample.target.astype(np.float32)))
        image = torch.stack(embeddings).to(device)
        box = torch.stack(boxes).to(device)
        target = torch.stack(targets)[:, None].to(device)
        sparse, dense = prompt_encoder(points=None, boxes=box, masks=None)
        logits, iou_pred = mask_decoder(
            image_embeddings=image,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        loss = _losses(logits, iou_pred, target)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if progress is not None:
            progress(done, config.steps)
    result = TuneResult(
        file=out,
        steps=done,
        seconds=time.perf_counter() - started,
        samples=len(training.samples),
        cases=training.cases,
        patients=training.patients,
        losses=losses,
        stopped_early=stopped_early,
        config=config,
    )
    state = {
        **{f"prompt_encoder.{k}": v.detach().cpu() for k, v in prompt_encoder.state_dict().items()},
        **{f"mask_decoder.{k}": v.detach().cpu() for k, v in mask_decoder.state_dict().items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.part")
    torch.save(
        {
            "format": FINETUNE_FORMAT,
            "base_sha256": BASE_SHA256,
            "state": state,
            "metadata": {
                **result.metrics(),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **(metadata or {}),
            },
        },
        partial,
    )
    os.replace(partial, out)  # a reader never sees half a file
    return result
