"""Training clips for MedSAM2 fine-tuning: exported npz cases, clip sampling, augmentation.

A case is what ``projects.exports`` writes as ``medsam2-npz``: ``imgs`` (D,H,W) uint8 (already
windowed as the backend maps the volume), ``gts`` (D,H,W) instance labels, ``spacing`` (x, y, z).
A clip is ``num_frames`` consecutive slices whose first slice holds an object, with up to
``max_objects`` of that slice's objects; its frames are made by
:func:`.preprocess.frame_from_slice` (the inference preprocessing: 512 px bicubic, ImageNet
normalisation), its masks resized with nearest neighbours. The augmentation is the same for every
frame of a clip: flips, an affine (rotation, shear, scale), brightness and contrast.

Torch and PIL are imported when a function runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, IntensityMapping, frame_from_slice

if TYPE_CHECKING:
    import torch

    from .recipes import FinetuneConfig

__all__ = ["IDENTITY", "UINT8_WINDOW", "Case", "augment", "load_cases", "sample_clip"]

# The exported slices are uint8 already (windowed per the project's preset): this window maps
# 0..255 onto itself, so training and the backend see exactly the exported values.
UINT8_WINDOW = (127.5, 255.0)
IDENTITY = IntensityMapping("window", 0.0, 255.0, False)


@dataclass
class Case:
    """One exported volume: uint8 slices, instance labels (0 = background), spacing (x, y, z)."""

    name: str
    imgs: npt.NDArray[np.uint8]
    gts: npt.NDArray[np.integer[Any]]
    spacing: tuple[float, float, float]
    starts: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))


def load_cases(paths: Sequence[Path], num_frames: int) -> tuple[list[Case], list[dict[str, Any]]]:
    """The cases a clip can be sampled from, and the others with the reason (too few slices, no
    object on a slice that can start a clip, an unreadable file)."""
    cases: list[Case] = []
    skipped: list[dict[str, Any]] = []
    for path in paths:
        name = path.stem
        try:
            with np.load(path, allow_pickle=False) as data:
                imgs = np.asarray(data["imgs"])
                gts = np.asarray(data["gts"])
                spacing = tuple(float(v) for v in np.asarray(data["spacing"]).ravel()[:3])
        except (OSError, KeyError, ValueError) as exc:
            skipped.append({"case": name, "reason": f"unreadable: {type(exc).__name__}: {exc}"})
            continue
        if imgs.ndim != 3 or imgs.shape != gts.shape or imgs.dtype != np.uint8:
            skipped.append(
                {
                    "case": name,
                    "reason": f"imgs {imgs.dtype} {imgs.shape} / gts {gts.shape}: expected "
                    "uint8 (D,H,W) images and labels of the same shape",
                }
            )
            continue
        depth = imgs.shape[0]
        if depth < num_frames:
            skipped.append({"case": name, "reason": f"{depth} slices, fewer than {num_frames}"})
            continue
        present = gts.reshape(depth, -1).max(axis=1) > 0
        starts = np.flatnonzero(present[: depth - num_frames + 1])
        if starts.size == 0:
            skipped.append(
                {"case": name, "reason": f"no object on a slice followed by {num_frames - 1} more"}
            )
            continue
        cases.append(Case(name, imgs, gts, spacing, starts))  # type: ignore[arg-type]
    return cases, skipped


def _crop_window(mask: npt.NDArray[np.bool_], size: int | None) -> tuple[slice, slice]:
    height, width = mask.shape
    if size is None:
        return slice(0, height), slice(0, width)
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    y0 = min(max(cy - size // 2, 0), max(height - size, 0))
    x0 = min(max(cx - size // 2, 0), max(width - size, 0))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def _resize_mask(mask: npt.NDArray[np.bool_], size: int) -> npt.NDArray[np.bool_]:
    from PIL import Image

    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST)) > 127


def sample_clip(
    case: Case, config: FinetuneConfig, rng: np.random.Generator, size: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """(T,3,size,size) frames and (T,O,size,size) masks: ``num_frames`` consecutive slices from
    one whose objects (up to ``max_objects``) are tracked."""
    start = int(rng.choice(case.starts))
    stop = start + config.num_frames
    first = case.gts[start]
    labels = np.unique(first[first > 0])
    chosen = rng.choice(labels, size=min(config.max_objects, labels.size), replace=False)
    rows, cols = _crop_window(first == chosen[0], config.crop_size)
    frames = np.stack(
        [frame_from_slice(s[rows, cols], IDENTITY, size) for s in case.imgs[start:stop]]
    )
    masks = np.stack(
        [
            np.stack([_resize_mask(g[rows, cols] == label, size) for label in chosen])
            for g in case.gts[start:stop]
        ]
    )
    return frames, masks


def augment(
    frames: torch.Tensor, masks: torch.Tensor, config: FinetuneConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, an affine and brightness/contrast jitter, the same for every frame of the clip.
    ``frames`` (T,3,S,S) normalised, ``masks`` (T,O,S,S) float."""
    import torch
    import torch.nn.functional as F

    if rng.random() < config.flip_prob:
        frames, masks = frames.flip(-1), masks.flip(-1)
    if rng.random() < config.flip_prob:
        frames, masks = frames.flip(-2), masks.flip(-2)
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
    black = -mean / std  # a 0 pixel after normalisation: what the affine brings in
    if config.affine_degrees or config.affine_shear or config.affine_scale != (1.0, 1.0):
        angle = math.radians(rng.uniform(-config.affine_degrees, config.affine_degrees))
        shear = math.radians(rng.uniform(-config.affine_shear, config.affine_shear))
        scale = rng.uniform(*config.affine_scale)
        rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        matrix = rotate @ np.array([[1.0, math.tan(shear)], [0.0, 1.0]]) / scale
        theta = torch.zeros((frames.shape[0], 2, 3), device=frames.device)
        theta[:, :, :2] = torch.as_tensor(matrix, dtype=torch.float32, device=frames.device)
        grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
        moved = F.grid_sample(frames - black, grid, mode="bilinear", align_corners=False) + black
        moved_masks = F.grid_sample(masks, grid, mode="nearest", align_corners=False)
        # Keep the affine only if every tracked object is still visible on the first frame.
        if bool(moved_masks[0].flatten(1).any(dim=1).all()):
            frames, masks = moved, moved_masks
    if config.brightness or config.contrast:
        brightness = rng.uniform(1 - config.brightness, 1 + config.brightness)
        contrast = rng.uniform(1 - config.contrast, 1 + config.contrast)
        values = (frames * std + mean) * brightness
        grey = values.mean()
        values = ((values - grey) * contrast + grey).clamp(0.0, 1.0)
        frames = (values - mean) / std
    return frames, masks
