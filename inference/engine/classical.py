"""The classical backend: box-prompted 3D lesion segmentation from classical image processing.

No weights, no GPU: it runs anywhere the engine runs and gives the annotator a first draft (the
hybrid default's classical part, :mod:`.hybrid`).

How one lesion is segmented (every step works on a crop around the box, so the cost depends
on the lesion's size, not the volume's):

1. Crop a region of interest: the box plus an in-plane margin, and as many slices on each side
   of the key slice as the box's physical size allows (``z_reach`` times the box's larger
   side in mm, or ``z_reach * depth`` for a prior deeper than wide: lesions are roughly
   compact). Where the prompt gives the lesion's slice range (``z_range``, its first and
   last slice as the annotator marked them), exactly those slices: nothing outside the range
   is ever part of the mask, and steps 5 and 6 take the range as the lesion's extent.
2. Normalise intensities to [0, 1]: the CT window if given (as a scale only: nothing is
   clipped), otherwise the 0.5/99.5 percentiles of the crop. Smooth with a Gaussian of about
   one in-plane voxel (less for tiny boxes; the same physical width along z, so anisotropic
   spacing is respected).
3. Model the lesion on the key slice: lesion samples from the core of the box, background
   samples from a ring just outside it (the tissue nearest in intensity to the lesion that
   still differs clearly, when the ring crosses two tissues). Their medians tell a bright
   lesion from a dark one; the threshold is half-way between them (the 50 % point of the
   edge), re-estimated from a band just outside the resulting mask, and a far bound keeps out
   tissue well beyond the lesion's own range (bone, air).
4. Segment the key slice inside the box: threshold, open, keep the components that reach the
   box's core, fill holes (necrotic centres).
5. Propagate slice by slice away from the key slice: each slice's mask must lie within the
   previous one grown by about 0.6 slice thicknesses, inside an ellipsoidal envelope (the box
   plus ``margin``, shrinking to nothing ``z_reach`` box sides away), and must overlap the
   previous one; an opening in proportion to the box cuts thin bridges (vessels); a slice
   whose area jumps past 1.3 times the key slice's is trimmed back, the key slice being by
   convention the lesion's largest. Propagation stops at the first empty slice, so the
   result is one 3D component connected to the key-slice mask. With a slice range, the
   envelope's reach on each side follows the range's end on that side.

6. Weigh it all in one draft (:mod:`.box_prior`): the box's ellipsoid as a shape prior, the
   intensity evidence of the key slice (trusted as far as intensity alone explains the box),
   and the mask of steps 3-5 as a vote. Isodense lesions, which no threshold finds, get a
   box-shaped draft; lesions that stand out get their own outline. With a slice range the
   ellipsoid spans the range, its half-heights above and below the key slice each reaching
   the range's end.

Colour images (RGB) are segmented on their luma (:meth:`ImageVolume.grey`).

A completely flat region gives an EMPTY mask and a note in ``SegmentationResult.notes``; a key
slice on which nothing inside the box differs from its surroundings gives the box-shaped draft
and a note saying so. Points in the prompt are accepted and ignored by this backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .base import (
    ImageVolume,
    LesionPrompt,
    ProgressCallback,
    SegmentationBackend,
    SegmentationResult,
)
from .box_prior import box_prior_draft
from .masks2d import (
    CROSS,
    SQUARE,
    BoolArray,
    Envelope,
    FloatArray,
    box_mask,
    disk,
    ellipse_in_box,
    keep_touching,
    largest_component,
    open_disk,
)
from .robust_stats import half_way, pick_background, robust_sigma

__all__ = ["ClassicalBackend"]

# With a slice range: how far the ellipsoid prior's half-heights reach past the key slice's
# distance to each end of the range, in slices (the range's own slices are lesion), and how
# much farther than the lesion's half-height the propagation envelope shrinks to nothing.
RANGE_PRIOR_PAD = 1.0
RANGE_ENVELOPE = 1.5


@dataclass(frozen=True)
class _Crop:
    """Half-open index ranges of the region of interest, and the box in crop coordinates."""

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int
    key: int
    box: tuple[int, int, int, int]
    # The slices are the lesion's known extent (the prompt's z_range), not a guess.
    known_extent: bool = False

    @property
    def depth(self) -> int:
        return self.z1 - self.z0

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass(frozen=True)
class _Model:
    """The key slice's verdict: which side is lesion, its intensity band, its 2D mask."""

    polarity: float
    lower: float
    upper: float
    seed: BoolArray


@dataclass(frozen=True)
class _LesionOutcome:
    mask: BoolArray
    preprocess_s: float
    segment_s: float
    note: str | None = None


class ClassicalBackend(SegmentationBackend):
    """Box-prompted 3D lesion segmentation without learned weights (see the module docs).

    Options (keyword, all optional): ``z_reach`` (how far the lesion may extend above and
    below the key slice, in multiples of the box's larger side in mm; default 0.75),
    ``margin`` (how far other slices may extend past the box, as a fraction of its size;
    default 0.15), ``smoothing`` (Gaussian sigma in in-plane voxels; default 1.0, 0 disables),
    ``depth`` (the draft's ellipsoid prior: half-height over mean in-plane half-width; default
    1.0) and ``bias`` (added to the draft's log-odds margin: > 0 tighter, < 0 looser; default
    0.0). The defaults suit a new project; a trained model fits ``depth`` and ``bias`` to the
    project's accepted lesions (:mod:`.learned`): the learned draft, which the training job
    trains for every backend without a trainer of its own (:func:`.trainers.trainer_for`).
    """

    name = "classical"
    version = "1.0"

    def __init__(
        self,
        *,
        z_reach: float = 0.75,
        margin: float = 0.15,
        smoothing: float = 1.0,
        depth: float = 1.0,
        bias: float = 0.0,
    ):
        options = {"z_reach": z_reach, "margin": margin, "smoothing": smoothing}
        options |= {"depth": depth, "bias": bias}
        for label, value in options.items():
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number, got {value!r}")
            if label in ("z_reach", "margin", "smoothing") and value < 0:
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        if depth <= 0:
            raise ValueError(f"depth must be a finite number > 0, got {depth!r}")
        self.z_reach = float(z_reach)
        self.margin = float(margin)
        self.smoothing = float(smoothing)
        self.depth = float(depth)
        self.bias = float(bias)

    @property
    def reach(self) -> float:
        """How far the region of interest and the propagation extend beyond the key slice, in
        box sides: ``z_reach``, widened with a prior deeper than wide."""
        return self.z_reach * max(1.0, self.depth)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": "classical (threshold + slice-wise propagation), no weights",
            "prompts": ["box", "z_range"],
            "ignored_prompts": ["positive_points", "negative_points"],
            "device": "cpu",
            "options": {
                "z_reach": self.z_reach,
                "margin": self.margin,
                "smoothing": self.smoothing,
                "depth": self.depth,
                "bias": self.bias,
            },
        }

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        """Segment each prompt independently; masks are bool arrays with the volume's shape."""
        started = time.perf_counter()
        volume = volume.grey()
        self.validate(volume, prompts)
        total = len(prompts)
        if progress is not None:
            progress(0, total)
        result = SegmentationResult(masks={}, timings={"preprocess": 0.0, "segment": 0.0})
        for done, prompt in enumerate(prompts, start=1):
            outcome = self._segment_one(volume, prompt)
            result.masks[prompt.lesion_id] = outcome.mask
            result.timings["preprocess"] += outcome.preprocess_s
            result.timings["segment"] += outcome.segment_s
            if outcome.note:
                result.notes[prompt.lesion_id] = outcome.note
            if progress is not None:
                progress(done, total)
        result.timings["total"] = time.perf_counter() - started
        return result

    # -- one lesion -------------------------------------------------------------------------

    def _crop(self, volume: ImageVolume, prompt: LesionPrompt) -> _Crop:
        depth, height, width = volume.shape
        sx, sy, sz = volume.spacing
        x0, y0, x1, y1 = prompt.box
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        # Wide enough for the background ring (a fifth of the box, at least 3 px, one pixel
        # out) and for the lesion to extend past the box on other slices.
        pad_x = max(4, math.ceil(0.3 * bw), math.ceil(self.margin * bw) + 2)
        pad_y = max(4, math.ceil(0.3 * bh), math.ceil(self.margin * bh) + 2)
        k = prompt.key_slice
        if prompt.z_range is not None:
            z0, z1 = int(prompt.z_range[0]), int(prompt.z_range[1]) + 1
        else:
            reach_mm = self.reach * max(bw * sx, bh * sy)
            pad_z = max(1, math.ceil(reach_mm / sz))
            z0, z1 = max(0, k - pad_z), min(depth, k + pad_z + 1)
        y0c, x0c = max(0, y0 - pad_y), max(0, x0 - pad_x)
        return _Crop(
            z0=z0,
            z1=z1,
            y0=y0c,
            y1=min(height, y1 + pad_y + 1),
            x0=x0c,
            x1=min(width, x1 + pad_x + 1),
            key=k - z0,
            box=(x0 - x0c, y0 - y0c, x1 - x0c, y1 - y0c),
            known_extent=prompt.z_range is not None,
        )

    def _normalise(self, volume: ImageVolume, data: FloatArray) -> FloatArray | None:
        """Scale intensities so that the range of interest spans [0, 1]; ``None`` when flat.

        A CT window sets the scale but clips nothing: clipping lung to the window's floor
        would move the half-way threshold of a lung nodule towards the nodule. Otherwise the
        0.5 and 99.5 percentiles of the crop set the scale and clip outliers (hot spots,
        metal), which every modality has.
        """
        if volume.window is not None and volume.modality.strip().upper() == "CT":
            center, width = volume.window
            lo, hi = center - width / 2, center + width / 2
            out = data - lo
        else:
            # A strided sample is enough for two percentiles and keeps big crops cheap.
            step = max(1, round((data.size / 250_000) ** (1 / 3)))
            sample = data[::step, ::step, ::step]
            lo, hi = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
            if not hi > lo:
                lo, hi = float(data.min()), float(data.max())
            out = np.clip(data, lo, hi) - lo
        if not hi > lo:
            return None
        out *= 1.0 / (hi - lo)
        return out

    def _segment_one(self, volume: ImageVolume, prompt: LesionPrompt) -> _LesionOutcome:
        crop, mask, outcome = self._segment_crop(volume, prompt)
        if mask is not None:
            outcome.mask[crop.slices] = mask
        return outcome

    def _segment_crop(
        self, volume: ImageVolume, prompt: LesionPrompt
    ) -> tuple[_Crop, BoolArray | None, _LesionOutcome]:
        """The classical mask within the region of interest (``None`` where it stays empty),
        with an outcome whose full-size mask is still all False; subclasses refine it."""
        t0 = time.perf_counter()
        volume = volume.grey()
        crop = self._crop(volume, prompt)
        full = np.zeros(volume.shape, dtype=bool)
        data = np.asarray(volume.array[crop.slices], dtype=np.float32)
        norm = self._normalise(volume, data)
        if norm is None:
            t1 = time.perf_counter()
            flat = "flat region: no contrast around the box"
            return crop, None, _LesionOutcome(full, t1 - t0, 0.0, flat)
        sx, sy, sz = volume.spacing
        x0, y0, x1, y1 = crop.box
        # Lighter smoothing for small boxes: blur shrinks small convex objects.
        sigma = self.smoothing * min(1.0, min(x1 - x0 + 1, y1 - y0 + 1) / 6)
        if sigma > 0:
            in_plane = min(sx, sy)
            norm = ndimage.gaussian_filter(
                norm, sigma=(min(sigma, sigma * in_plane / sz), sigma, sigma), mode="nearest"
            )
        t1 = time.perf_counter()
        model, note = self._model(norm, crop, sigma)
        classical = None if model is None else self._propagate(norm, crop, model, (sx, sy, sz))
        draft = box_prior_draft(
            norm,
            crop.key,
            crop.box,
            (sx, sy, sz),
            classical,
            depth=self.depth,
            bias=self.bias,
            half_heights=_half_heights(crop),
        )
        if note is not None:
            weight = draft.evidence_weight
            note += f"; the draft follows the box's shape (intensity weight {weight:.2f})"
        mask = draft.mask if draft.mask.any() else None
        return crop, mask, _LesionOutcome(full, t1 - t0, time.perf_counter() - t1, note)

    def _model(
        self, image: FloatArray, crop: _Crop, sigma_px: float
    ) -> tuple[_Model | None, str | None]:
        """Decide polarity and threshold on the key slice and segment it (step 3 and 4)."""
        shape2d = (image.shape[1], image.shape[2])
        box = crop.box
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        key = image[crop.key]

        core = ellipse_in_box(shape2d, box, 0.5)
        near = box_mask(shape2d, box, 1 + max(3, math.ceil(0.2 * max(bw, bh))))
        ring = near & ~box_mask(shape2d, box, 1)
        if ring.sum() < 8:
            # The box covers (nearly) the whole slice: its own edge is the best background.
            ring = box_mask(shape2d, box) & ~box_mask(shape2d, (x0 + 1, y0 + 1, x1 - 1, y1 - 1))
        lesion_samples = key[core]
        ring_samples = key[ring]
        lesion_level = float(np.median(lesion_samples))
        # The spread of the more homogeneous sample stands in for noise (smoothing correlates
        # neighbouring pixels, so pixel differences would underestimate it).
        noise = max(min(robust_sigma(lesion_samples), robust_sigma(ring_samples)), 1e-4)
        background_samples = pick_background(ring_samples, lesion_level, noise)
        background_level = float(np.median(background_samples))
        # Flat: the medians differ by less than three standard errors, pixels being correlated
        # over about the smoothing kernel.
        kernel = 1.0 + 4.0 * math.pi * sigma_px**2
        standard_error = 1.2533 * noise * math.sqrt(kernel / core.sum() + kernel / ring.sum())
        if abs(lesion_level - background_level) <= 3.0 * standard_error:
            return None, (
                f"no contrast: box core median {lesion_level:.3f} vs surroundings "
                f"{background_level:.3f} (normalised), noise {noise:.3f}; mask left empty"
            )
        # From here on the lesion is the bright side.
        polarity = 1.0 if lesion_level > background_level else -1.0
        key = key * polarity
        lesion_samples = lesion_samples * polarity
        top = float(np.percentile(lesion_samples, 99))
        inside_box = box_mask(shape2d, box)

        def bounds(threshold: float) -> tuple[float, float]:
            # The far bound keeps out tissue well beyond the lesion's own range (bone next
            # to a bright lesion, fat or air next to a dark one).
            return threshold, top + max(top - threshold, 3.0 * noise)

        def segment_key(lower: float, upper: float) -> BoolArray:
            seed = (key > lower) & (key <= upper) & inside_box
            if min(bw, bh) >= 8:
                seed = ndimage.binary_opening(seed, structure=CROSS)
            touching = keep_touching(seed, core)
            seed = touching if touching.any() else largest_component(seed)
            return np.asarray(ndimage.binary_fill_holes(seed), dtype=bool)

        lower, upper = bounds(half_way(lesion_samples, background_samples * polarity))
        seed = segment_key(lower, upper)
        # The ring mixes whatever lies around the box; what matters is the tissue the lesion
        # actually borders, so re-estimate the background from a band just outside the
        # key-slice mask (a nodule touching fat at the pleura still borders mostly lung).
        for _ in range(3):
            if not seed.any():
                break
            band = (
                ndimage.binary_dilation(seed, structure=SQUARE, iterations=4)
                & ~ndimage.binary_dilation(seed, structure=SQUARE, iterations=1)
                & near
            )
            if band.sum() < 8 or float(np.median(key[band])) >= float(np.median(lesion_samples)):
                break
            refined = half_way(lesion_samples, key[band])
            # Only ever lower it: a band on a blurred edge (PET, SPECT) is brighter than the
            # true background and would shrink the mask a little more on every round.
            if refined > lower - 0.01 * abs(top - lower) - 1e-6:
                break
            lower, upper = bounds(refined)
            seed = segment_key(lower, upper)
        if not seed.any():
            return None, "nothing inside the box differs from its surroundings; mask left empty"
        return _Model(polarity=polarity, lower=lower, upper=upper, seed=seed), None

    def _propagate(
        self, image: FloatArray, crop: _Crop, model: _Model, spacing: tuple[float, float, float]
    ) -> BoolArray:
        """Carry the key-slice mask to the slices above and below it (step 5)."""
        shape2d = (image.shape[1], image.shape[2])
        x0, y0, x1, y1 = crop.box
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        sx, sy, sz = spacing
        reach_mm = self.reach * max(bw * sx, bh * sy)
        # How far the outline may move between slices: about 0.6 slice thicknesses.
        step_radius = max(2, round(0.6 * sz / min(sx, sy)))
        step = disk(step_radius)
        # An opening in proportion to the lesion cuts vessels and other thin bridges that would
        # otherwise carry the mask from slice to slice into the neighbours.
        open_radius = max(1.0, round(0.05 * min(bw, bh))) if min(bw, bh) >= 8 else 0.0
        seed = model.seed
        key_area = int(seed.sum())
        out = np.zeros(image.shape, dtype=bool)
        out[crop.key] = seed
        for direction in (1, -1):
            if crop.known_extent:
                # The range's end on this side is the lesion's: the envelope reaches past it
                # as far, relative to the lesion's half-height, as ``reach`` does to a box.
                end = crop.depth - 1 if direction > 0 else 0
                reach_mm = RANGE_ENVELOPE * (abs(end - crop.key) + 0.5) * sz
            envelope = Envelope(shape2d, crop.box, self.margin, reach_mm)
            previous = seed
            z = crop.key + direction
            while 0 <= z < image.shape[0]:
                dz = abs(z - crop.key) * sz
                # Work in a window around the envelope: the rest of the plane cannot change.
                window = envelope.window(dz, step_radius + 1)
                inner = envelope.window(dz, 0)
                if window is None or inner is None:
                    break
                allowed = np.zeros(shape2d, dtype=bool)
                allowed[inner] = True
                allowed = allowed[window]
                before = previous[window]
                plane = image[z][window] * model.polarity
                reach = ndimage.binary_dilation(before, structure=step) & allowed
                raw = (plane > model.lower) & (plane <= model.upper) & reach
                current = keep_touching(raw, before)
                if open_radius > 0:
                    opened = keep_touching(open_disk(raw, open_radius), before)
                    # Unless the opening ate the lesion itself (faint, noisy, thin) rather
                    # than the bridges out of it.
                    if opened.sum() >= 0.5 * current.sum():
                        current = opened
                if not current.any():
                    break
                current = np.asarray(ndimage.binary_fill_holes(current), dtype=bool)
                if current.sum() > 1.3 * key_area:
                    # Much larger than the key slice, by convention the lesion's largest:
                    # a leak into a neighbour, so only let it grow by one pixel.
                    tight = ndimage.binary_dilation(before, structure=SQUARE)
                    current = keep_touching(current & tight, before)
                    if not current.any():
                        break
                out[z][window] = current
                previous = out[z]
                z += direction
        return out


def _half_heights(crop: _Crop) -> tuple[float, float] | None:
    """The ellipsoid prior's half-heights (below, above the key slice, in slices) where the
    slice range gives the lesion's extent; ``None`` leaves them to ``depth``."""
    if not crop.known_extent:
        return None
    return crop.key + RANGE_PRIOR_PAD, crop.depth - 1 - crop.key + RANGE_PRIOR_PAD
