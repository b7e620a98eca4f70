"""The default backend's draft: the box's shape prior weighed against the image's evidence.

A tight box on the slice where a lesion is largest says a great deal before any intensity is
read: the lesion spans the box on that slice, lies mostly inside the ellipse inscribed in it,
and is roughly as deep as it is wide. Intensity says the rest, but only where it can tell the
lesion from its surroundings; isodense lesions and the invisible edema of a whole tumour on T1c
give it nothing to say. So each voxel's log-odds of being lesion is a sum of three terms:

- the shape prior: ``PRIOR_SLOPE * (1 - r)``, ``r`` the voxel's normalised distance from the
  box's ellipsoid (half-height along the slice axis = ``depth`` times the mean in-plane
  half-width in mm; 1 by default: roughly as deep as wide; where the annotator gave the
  lesion's slice range, the ellipsoid reaches from its first to its last slice instead);
- the intensity evidence: the log-likelihood ratio of the voxel's (smoothed) intensity between
  the box's core and everything outside the box on the key slice (the box being tight, nothing
  outside it on that slice is this lesion), from smoothed histograms, clipped, and weighted by
  how well intensity alone explains the box (the bounding box of the key-slice region it picks,
  against the box: near 1 for a lesion that stands out, low for an isodense one);
- the classical mask's vote (threshold and slice-wise propagation, :mod:`.classical`), a small
  term that carries its connectivity where the evidence is ambiguous.

The draft is where the log-odds, smoothed over about a voxel, exceed a small margin (plus
``bias``: positive for a tighter draft, negative for a looser one); on the key slice inside the
box only, one 3D region connected to the box's core, holes filled per slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .masks2d import BoolArray, FloatArray

PRIOR_SLOPE = 6.0
EVIDENCE_CLIP = 4.0
CLASSICAL_VOTE = 0.5
MARGIN = 0.5
BINS = 48


@dataclass(frozen=True)
class Draft:
    """The draft mask in the crop, and how much intensity was trusted (0..1)."""

    mask: BoolArray
    evidence_weight: float


def ellipsoid_radius(
    shape: tuple[int, int, int],
    key: int,
    box: tuple[int, int, int, int],
    spacing: tuple[float, float, float],
    depth: float = 1.0,
    half_heights: tuple[float, float] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(r in 3D, r on the key slice): normalised distance from the box's ellipsoid, 1 on it.

    Its half-height is ``depth`` times the mean in-plane half-width; or, where the lesion's
    extent is known, ``half_heights`` = (below, above) the key slice in slices: two half
    ellipsoids joined at the key slice, so that a key slice off the middle of the lesion is
    no mistake."""
    x0, y0, x1, y1 = box
    sx, sy, sz = spacing
    ax, ay = (x1 - x0 + 1) / 2, (y1 - y0 + 1) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    if half_heights is None:
        az: float | npt.NDArray[np.float64] = max(depth * (ax * sx + ay * sy) / 2 / sz, 0.5)
    else:
        below, above = (max(float(h), 0.5) for h in half_heights)
        az = np.where(zz < key, below, above)
    in_plane = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    r = np.sqrt(in_plane + ((zz - key) / az) ** 2).astype(np.float32)
    return r, np.sqrt(in_plane[0]).astype(np.float32)


def intensity_evidence(image: FloatArray, lesion: FloatArray, outside: FloatArray) -> FloatArray:
    """Clipped log-likelihood ratio of every voxel's intensity, lesion samples vs outside."""
    lo = float(min(lesion.min(), outside.min()))
    hi = float(max(lesion.max(), outside.max()))
    edges = np.linspace(lo, hi + 1e-6, BINS + 1)
    densities = []
    for samples in (lesion, outside):
        counts = np.histogram(samples, edges)[0].astype(np.float64)
        counts = ndimage.gaussian_filter1d(counts, 1.5) + 0.5
        densities.append(counts / counts.sum())
    ratio = np.log(densities[0]) - np.log(densities[1])
    index = np.clip(np.digitize(image, edges) - 1, 0, BINS - 1)
    clipped = np.clip(ratio[index], -EVIDENCE_CLIP, EVIDENCE_CLIP)
    return np.asarray(clipped, dtype=np.float32)


def box_fit(region: BoolArray, box: tuple[int, int, int, int]) -> float:
    """Intersection over union of the region's bounding box and ``box`` (0 when empty)."""
    if not region.any():
        return 0.0
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(region)
    bx0, bx1, by0, by1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    overlap = max(0, min(x1, bx1) - max(x0, bx0) + 1) * max(0, min(y1, by1) - max(y0, by0) + 1)
    union = (x1 - x0 + 1) * (y1 - y0 + 1) + (bx1 - bx0 + 1) * (by1 - by0 + 1) - overlap
    return overlap / union


def box_prior_draft(
    image: FloatArray,
    key: int,
    box: tuple[int, int, int, int],
    spacing: tuple[float, float, float],
    classical: BoolArray | None,
    *,
    depth: float = 1.0,
    bias: float = 0.0,
    half_heights: tuple[float, float] | None = None,
) -> Draft:
    """The draft in a crop: ``image`` normalised and smoothed, ``key`` and ``box`` in crop
    coordinates, ``classical`` the classical mask in the crop (None where it found nothing);
    ``depth`` and ``bias`` as in the module docs; ``half_heights`` (below, above the key
    slice, in slices) replace ``depth`` where the lesion's extent is known."""
    shape = (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))
    r, r_key = ellipsoid_radius(shape, key, box, spacing, depth, half_heights)
    x0, y0, x1, y1 = box
    in_box = np.zeros(shape[1:], dtype=bool)
    in_box[y0 : y1 + 1, x0 : x1 + 1] = True
    core = r_key < 0.5
    if not core.any():
        # A box a voxel or two wide has no voxel that deep inside: take its most central ones.
        core = in_box & (r_key <= r_key[in_box].min())
    key_slice = image[key]
    outside = ~in_box
    if outside.sum() < 8:
        # The box covers (nearly) the whole slice: its corners are the best background.
        outside = r_key > 1.0
    evidence = intensity_evidence(image, key_slice[core], key_slice[outside])

    # How well intensity alone explains the box on the key slice.
    alone = ndimage.gaussian_filter(evidence[key], 1.0) > 0
    labels, _ = ndimage.label(alone)
    hit = np.unique(labels[core & alone])
    fit = box_fit(np.isin(labels, hit[hit > 0]), box)
    weight = float(np.clip((fit - 0.3) / 0.5, 0.0, 1.0))

    logit = PRIOR_SLOPE * (1.0 - r) + weight * evidence
    if classical is not None:
        logit += np.where(classical, CLASSICAL_VOTE, -CLASSICAL_VOTE).astype(np.float32)
    # Smooth over about a voxel, less for tiny boxes (a blur would erase them).
    sigma = min(1.0, (min(x1 - x0, y1 - y0) + 1) / 6)
    sx, sy, sz = spacing
    logit = ndimage.gaussian_filter(logit, (sigma * min(1.0, min(sx, sy) / sz), sigma, sigma))
    mask = logit > MARGIN + bias
    mask[key] &= in_box
    anchor = np.zeros(shape, dtype=bool)
    anchor[key] = core & mask[key]
    labels3d, count = ndimage.label(mask)
    if count:
        hit = np.unique(labels3d[anchor])
        hit = hit[hit > 0]
        if hit.size:
            mask = np.isin(labels3d, hit)
    for z in range(shape[0]):
        if mask[z].any():
            mask[z] = ndimage.binary_fill_holes(mask[z])
    if not anchor.any() and classical is not None:
        mask = classical
    return Draft(np.asarray(mask, dtype=bool), weight)
