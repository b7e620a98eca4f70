"""The MedSAM2 backend: box, point and mask prompts propagated through a volume by SAM2.1.

Select it with ``INFERENCE_BACKEND=inference.engine.medsam2.MedSAM2Backend`` (or
``load_backend("medsam2", checkpoint=..., device=...)``). Options, each with an environment
default so that a worker needs no code:

=========================  =======================  ============================================
option                     environment              default
=========================  =======================  ============================================
``checkpoint``             ``MEDSAM2_CHECKPOINT``   required: a ``{"model": state_dict}`` file
``device``                 ``MEDSAM2_DEVICE``       "cuda" if available, else "cpu"
``precision``              ``MEDSAM2_PRECISION``    "auto": bf16 autocast on a CUDA device with
                                                    bf16, else fp32; "bf16" (CUDA, or a CPU with
                                                    avx512_bf16 / AMX, else refused) or "fp32"
``cache_mb``               ``MEDSAM2_CACHE_MB``     384: image embeddings kept across calls
                                                    (about 4 MiB a slice at 512 px: 96 slices)
``keep_largest_component``                          True: one 3D component per lesion
``direction``                                       "both"; "forward" for cine (prompts may say)
``max_propagation``                                 None: slices beyond the prompted ones, each way
``default_ct_window``                               (40, 400): CT without a window of its own
``offload_state_to_cpu``                            False: tracking state on the CPU (CUDA)
``num_threads``                                     None: torch's default intra-op threads
``one_slice_threads``                               1: intra-op threads on a CPU for a prompt
                                                    confined to one slice (a click): None keeps
                                                    ``num_threads``
=========================  =======================  ============================================

One lesion (the published 3D recipe): its prompts go on their slices (box and clicks on the key
slice, clicks on theirs, human-corrected masks through ``add_new_mask``); SAM2 propagates forward
from the first prompted slice, the state is reset and prompted again, and it propagates in
reverse from the last; the logits, upsampled bilinearly to the slice's size, are thresholded at
0 and the two directions OR-ed. A mask-prompted slice keeps the given mask exactly. Each lesion
has its own state; the image embeddings of a volume are cached in the backend, so a second
lesion (or a second call) on the same volume does not run the image encoder again.

Torch is imported when a backend is constructed, never when this module is imported.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ..base import (
    PROPAGATION_DIRECTIONS,
    BackendUnavailable,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    ProgressCallback,
    SegmentationBackend,
    SegmentationResult,
)
from .preprocess import IntensityMapping, SliceFrames, intensity_mapping, volume_digest

if TYPE_CHECKING:
    from .predictor import CachingVideoPredictor, FeatureCache

__all__ = ["MedSAM2Backend", "Pass", "cpu_has_bf16", "plan_passes"]

PRECISIONS = ("auto", "bf16", "fp32")
DEFAULT_CACHE_MB = 384


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX); reads /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class Pass:
    """One propagation: from ``start`` towards higher (or, ``reverse``, lower) slices."""

    start: int
    reverse: bool
    max_frames: int
    frames: int  # how many frames SAM2 yields


def plan_passes(
    prompt: LesionPrompt, depth: int, direction: str, max_propagation: int | None
) -> list[Pass]:
    """The propagation passes of one lesion, cropped to its z range."""
    prompted = {int(prompt.key_slice), *(int(z) for z in prompt.mask_slices)}
    prompted |= {int(p[2]) for p in (*prompt.positive_points, *prompt.negative_points)}
    first, last = min(prompted), max(prompted)
    z0, z1 = prompt.z_range if prompt.z_range is not None else (0, depth - 1)
    if max_propagation is not None:
        z0, z1 = max(z0, first - max_propagation), min(z1, last + max_propagation)
    passes = []
    if direction in ("both", "forward"):
        passes.append(Pass(first, False, z1 - first, z1 - first + 1))
    if direction in ("both", "reverse") and last > 0:  # SAM2 skips reverse from slice 0
        passes.append(Pass(last, True, last - z0, last - z0 + 1))
    if len(passes) == 2 and passes[0].frames == passes[1].frames == 1:
        # Both ways cover the one prompted slice only, and yield the same output for it.
        del passes[1]
    return passes


def _bounding_box(mask: npt.NDArray[np.bool_]) -> tuple[slice, ...] | None:
    """The slices of the smallest box around the mask's voxels; None for an empty mask."""
    crop: list[slice] = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask[tuple(crop)].any(axis=others))
        if hits.size == 0:
            return None
        crop.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(crop)


def largest_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The largest 26-connected component (the reference's ``getLargestCC``), written into
    ``mask`` itself, which is returned.

    Memory matters at 256 slices: the mask is 64 MiB, int32 labels of the whole volume would be
    256 MiB and ``np.bincount`` of them 512 MiB. So the labels cover the mask's bounding box
    only, in uint16 while the components fit, and are counted a slice at a time."""
    crop = _bounding_box(mask)
    if crop is None:
        return mask
    structure = np.ones((3, 3, 3), dtype=bool)
    labels: npt.NDArray[np.integer[Any]]
    try:
        labels, count = ndimage.label(mask[crop], structure=structure, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        labels, count = ndimage.label(mask[crop], structure=structure)
    if count <= 1:
        return mask
    sizes = np.zeros(count + 1, dtype=np.int64)
    for plane in labels:
        sizes += np.bincount(plane.ravel(), minlength=count + 1)
    sizes[0] = 0
    np.equal(labels, int(sizes.argmax()), out=mask[crop])
    return mask


@dataclass
class _VolumeEntry:
    mapping: IntensityMapping
    cache: FeatureCache


def _env_or(value: object, name: str) -> object:
    return os.environ.get(name) or None if value is None else value


class MedSAM2Backend(SegmentationBackend):
    """MedSAM2 (SAM2.1 hiera-tiny at 512 px) on a checkpoint file; see the module's docstring."""

    name = "medsam2"
    checkpoint_option = "checkpoint"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        precision: str | None = None,
        *,
        cache_mb: float | None = None,
        keep_largest_component: bool = True,
        direction: str = "both",
        max_propagation: int | None = None,
        default_ct_window: tuple[float, float] | None = (40.0, 400.0),
        offload_state_to_cpu: bool = False,
        num_threads: int | None = None,
        one_slice_threads: int | None = 1,
        extra_overrides: Sequence[str] = (),
    ) -> None:
        started = time.perf_counter()
        checkpoint = _env_or(checkpoint, "MEDSAM2_CHECKPOINT")  # type: ignore[assignment]
        if not checkpoint:
            raise BackendUnavailable(
                "MedSAM2 needs a checkpoint: set MEDSAM2_CHECKPOINT or pass checkpoint= (a "
                "{'model': state_dict} file such as MedSAM2_latest.pt; weights are not bundled)"
            )
        precision = str(_env_or(precision, "MEDSAM2_PRECISION") or "auto").lower()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if direction not in PROPAGATION_DIRECTIONS:
            raise ValueError(
                f"direction must be one of {PROPAGATION_DIRECTIONS}, got {direction!r}"
            )
        if max_propagation is not None and max_propagation < 0:
            raise ValueError(f"max_propagation must be >= 0, got {max_propagation}")
        cache_value = _env_or(cache_mb, "MEDSAM2_CACHE_MB")
        cache_value = DEFAULT_CACHE_MB if cache_value is None else cache_value
        self.cache_bytes = int(float(cache_value) * 2**20)  # type: ignore[arg-type]
        if self.cache_bytes < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"MedSAM2 needs PyTorch (make medsam2): {exc}") from exc
        from .builder import build_predictor

        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        device_name = _env_or(device, "MEDSAM2_DEVICE")
        if not device_name:
            device_name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(str(device_name))
        except RuntimeError as exc:
            raise BackendUnavailable(f"MedSAM2: invalid device {device_name!r}: {exc}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"MedSAM2: device {device_name!r} asked for, no CUDA here")
        if self.device.type == "cuda":
            has_bf16 = torch.cuda.is_bf16_supported()
        else:
            has_bf16 = self.device.type == "cpu" and cpu_has_bf16()
        if precision == "bf16" and not has_bf16:
            raise BackendUnavailable(f"MedSAM2: bf16 asked for, but {self.device} lacks it")
        # Measured on a 2-core avx512_bf16 CPU (torch 2.13): bf16 autocast was 1.4-2x SLOWER
        # than fp32, so "auto" means bf16 on CUDA only; ask for "bf16" to use it on a CPU.
        if precision == "auto" and self.device.type != "cuda":
            has_bf16 = False
        self.precision = (
            "bf16" if precision == "bf16" or (precision == "auto" and has_bf16) else "fp32"
        )
        self.checkpoint = Path(os.fspath(checkpoint))
        self.predictor: CachingVideoPredictor = build_predictor(
            self.checkpoint, self.device, extra_overrides
        )
        self.keep_largest_component = keep_largest_component
        self.direction = direction
        self.max_propagation = max_propagation
        self.default_ct_window = (
            None
            if default_ct_window is None
            else (float(default_ct_window[0]), float(default_ct_window[1]))
        )
        self.offload_state_to_cpu = offload_state_to_cpu
        self.one_slice_threads = one_slice_threads
        self._volumes: OrderedDict[tuple[object, ...], _VolumeEntry] = OrderedDict()
        self.load_seconds = time.perf_counter() - started

    # -- interface ---------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        import sam2

        return {
            "name": self.name,
            "version": f"sam2 {getattr(sam2, '__version__', '1.1.0')}, SAM2.1 hiera-tiny 512 px",
            "checkpoint": str(self.checkpoint),
            "prompts": ["box", "points", "mask"],
            "device": str(self.device),
            "precision": self.precision,
            "directions": list(PROPAGATION_DIRECTIONS),
            "cache_mb": self.cache_bytes / 2**20,
        }

    def validate(self, volume: ImageVolume, prompts: Sequence[LesionPrompt]) -> None:
        super().validate(volume, prompts)
        for prompt in prompts:
            if not any(self._passes(prompt, volume.shape[0])):
                raise InvalidInput(
                    f"prompt {prompt.lesion_id!r}: nothing to propagate (direction "
                    f"{prompt.direction or self.direction!r} from slice 0 only goes backwards)"
                )

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        import torch

        started = time.perf_counter()
        # Colour frames go in as their luma, the grey image the model was fine-tuned on.
        volume = volume.grey()
        self.validate(volume, prompts)
        entry = self._volume_entry(volume)
        frames = SliceFrames(volume.array, entry.mapping)
        depth, height, width = volume.shape
        plans = [self._passes(prompt, depth) for prompt in prompts]
        total = sum(p.frames for plan in plans for p in plan)
        calls_before, encoder_before = entry.cache.encoder_calls, entry.cache.encoder_seconds
        timings: dict[str, float] = {"preprocess": time.perf_counter() - started}
        done = 0
        if progress is not None:
            progress(0, total)
        masks: dict[str, npt.NDArray[np.bool_]] = {}
        segment_started = time.perf_counter()
        post = 0.0
        for prompt, plan in zip(prompts, plans, strict=True):
            mask = np.zeros(volume.shape, dtype=bool)
            state = self._new_state(frames, height, width, entry.cache)
            for step in plan:
                self.predictor.reset_state(state)
                one_slice = step.frames == 1
                with torch.inference_mode(), self._autocast(), self._threads(one_slice):
                    answer = self._add_prompts(state, prompt)
                    if one_slice:
                        # One slice (a click's refinement): SAM2's answer to the prompts is
                        # what propagating would yield for it, without its memory encoder.
                        steps: Iterable[tuple[int, npt.NDArray[np.bool_]]] = [answer]
                    else:
                        steps = self._propagate(state, step)
                    for frame_idx, logits in steps:
                        mask[frame_idx] |= logits
                        done += 1
                        if progress is not None:
                            progress(done, total)
            del state
            post_started = time.perf_counter()
            if self.keep_largest_component:
                mask = largest_component(mask)
            for z, given in prompt.mask_slices.items():
                mask[int(z)] = np.asarray(given, dtype=bool)
            masks[prompt.lesion_id] = mask
            post += time.perf_counter() - post_started
        timings["segment"] = time.perf_counter() - segment_started - post
        timings["encoder"] = entry.cache.encoder_seconds - encoder_before
        timings["propagate"] = timings["segment"] - timings["encoder"]
        timings["postprocess"] = post
        timings["slices_encoded"] = float(entry.cache.encoder_calls - calls_before)
        timings["slices_propagated"] = float(total)
        timings["total"] = time.perf_counter() - started
        if progress is not None and done != total:  # never: every planned frame is yielded
            progress(total, total)
        return SegmentationResult(masks=masks, timings=timings)

    # -- helpers -----------------------------------------------------------------------------

    def _passes(self, prompt: LesionPrompt, depth: int) -> list[Pass]:
        direction = prompt.direction or self.direction
        return plan_passes(prompt, depth, direction, self.max_propagation)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.precision != "bf16":
            return nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @contextmanager
    def _threads(self, one_slice: bool) -> Iterator[None]:
        """``one_slice_threads`` intra-op threads for a one-slice prompt on a CPU.

        The prompt and mask decoders run a few dozen small ops: a second thread gains little
        on them, and where the cores are shared (a worker beside the web server, a busy host)
        every op waits for the slower thread (measured on 2 shared cores: 250-1000 ms a click
        with 2 threads, 85-170 ms with 1). torch's setting is per process: a worker runs one
        job at a time."""
        import torch

        wanted = self.one_slice_threads
        if not one_slice or wanted is None or self.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(wanted)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _new_state(
        self, frames: SliceFrames, height: int, width: int, cache: FeatureCache
    ) -> dict[str, Any]:
        from .predictor import new_state

        return new_state(
            self.predictor,
            frames,
            height,
            width,
            cache,
            offload_state_to_cpu=self.offload_state_to_cpu,
        )

    def _add_prompts(
        self, state: dict[str, Any], prompt: LesionPrompt
    ) -> tuple[int, npt.NDArray[np.bool_]]:
        """Box and clicks on the key slice, clicks on their own slices, then masks (a mask
        supersedes any box or click on its slice, as in SAM2); returns the last prompted
        slice and SAM2's mask for it after all its prompts."""
        by_slice: dict[int, tuple[list[tuple[float, float]], list[int]]] = {}
        for label, points in ((1, prompt.positive_points), (0, prompt.negative_points)):
            for x, y, z in points:
                coords, labels = by_slice.setdefault(int(z), ([], []))
                coords.append((float(x), float(y)))
                labels.append(label)
        key = int(prompt.key_slice)
        coords, labels = by_slice.pop(key, ([], []))
        answer = self.predictor.add_new_points_or_box(
            state,
            frame_idx=key,
            obj_id=1,
            points=np.array(coords, dtype=np.float32).reshape(-1, 2) if coords else None,
            labels=np.array(labels, dtype=np.int32) if coords else None,
            box=np.array(prompt.box, dtype=np.float32),
        )
        for z, (coords, labels) in sorted(by_slice.items()):
            answer = self.predictor.add_new_points_or_box(
                state,
                frame_idx=z,
                obj_id=1,
                points=np.array(coords, dtype=np.float32),
                labels=np.array(labels, dtype=np.int32),
            )
        for z, given in sorted(prompt.mask_slices.items()):
            answer = self.predictor.add_new_mask(
                state, frame_idx=int(z), obj_id=1, mask=np.asarray(given, dtype=bool)
            )
        frame_idx, _obj_ids, logits = answer
        return int(frame_idx), (logits[0, 0] > 0.0).cpu().numpy()

    def _propagate(
        self, state: dict[str, Any], step: Pass
    ) -> Iterator[tuple[int, npt.NDArray[np.bool_]]]:
        """The pass's slices and masks. SAM2 keeps every tracked slice's output (memory
        features, low-res mask: about 0.3 MiB), yet reads back only the last few (memories)
        and 15 (object pointers): older ones are dropped as the pass moves on."""
        model = self.predictor
        reach = max(
            model.max_obj_ptrs_in_encoder,
            (model.num_maskmem + 1) * model.memory_temporal_stride_for_eval + 2,
        )
        for frame_idx, _obj_ids, logits in model.propagate_in_video(
            state,
            start_frame_idx=step.start,
            max_frame_num_to_track=step.max_frames,
            reverse=step.reverse,
        ):
            yield int(frame_idx), (logits[0, 0] > 0.0).cpu().numpy()
            behind = frame_idx + reach if step.reverse else frame_idx - reach
            for outputs in state["output_dict_per_obj"].values():
                outputs["non_cond_frame_outputs"].pop(behind, None)

    def _volume_entry(self, volume: ImageVolume) -> _VolumeEntry:
        """The volume's intensity mapping and embedding cache (most recent volume last)."""
        from .predictor import FeatureCache

        key = (
            volume_digest(volume.array),
            volume.modality.strip().upper(),
            volume.window,
            self.default_ct_window,
        )
        entry = self._volumes.get(key)
        if entry is None:
            entry = _VolumeEntry(intensity_mapping(volume, self.default_ct_window), FeatureCache())
            self._volumes[key] = entry
        self._volumes.move_to_end(key)
        self._enforce_cache_budget(entry, volume.shape[0])
        return entry

    def _enforce_cache_budget(self, current: _VolumeEntry, depth: int) -> None:
        """Drop the least recently used volumes' embeddings until ``current`` has room for all
        its slices; what is left of the budget bounds ``current``'s cache (frames beyond it are
        recomputed when visited again)."""
        cache = current.cache
        per_slice = cache.nbytes / len(cache.frames) if cache.frames else 4 * 2**20
        need = max(cache.nbytes, per_slice * depth)
        others = sum(e.cache.nbytes for e in self._volumes.values() if e is not current)
        for key in list(self._volumes):
            if others + need <= self.cache_bytes:
                break
            entry = self._volumes[key]
            if entry is not current:
                others -= entry.cache.nbytes
                del self._volumes[key]
        cache.limit = self.cache_bytes - others

    def cache_info(self) -> dict[str, float]:
        """Cached volumes, slices and MiB; image-encoder calls so far."""
        caches = [e.cache for e in self._volumes.values()]
        return {
            "volumes": float(len(caches)),
            "slices": float(sum(len(c.frames) for c in caches)),
            "mib": sum(c.nbytes for c in caches) / 2**20,
            "encoder_calls": float(sum(c.encoder_calls for c in caches)),
        }

    def clear_cache(self) -> None:
        self._volumes.clear()
