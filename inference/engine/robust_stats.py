"""Robust statistics of intensity samples, for thresholding a lesion against its background.

The noise of a sample (the median absolute deviation, scaled to a Gaussian's sigma), Otsu's split
of a histogram, the background tissue a lesion borders, and the threshold half-way between two
medians. Pure numpy; kept apart so that ``classical.py`` reads as the algorithm and these (with
:mod:`.masks2d`) as its vocabulary.
"""

from __future__ import annotations

import numpy as np

from .masks2d import FloatArray


def robust_sigma(values: FloatArray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def otsu(values: FloatArray, bins: int = 128) -> float:
    """Otsu's threshold: the split of a histogram that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(hist * centers)
    mean_low = mass_low / np.maximum(weight_low, 1)
    mean_high = (mass_low[-1] - mass_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def pick_background(ring: FloatArray, lesion_level: float, noise: float) -> FloatArray:
    """The ring pixels that make up the lesion's background.

    A ring often crosses two tissues (brain and the air outside it, lung and chest wall). The
    background that the lesion must be told apart from is the one nearest in intensity to the
    lesion that still differs from it clearly: brain rather than air around a glioma, lung
    rather than the chest wall (as bright as the nodule) around a pleural nodule.
    """
    if ring.size < 16 or float(np.ptp(ring)) <= 0:
        return ring
    split = otsu(ring)
    low, high = ring[ring <= split], ring[ring > split]
    if min(low.size, high.size) < 0.15 * ring.size:
        return ring
    separation = float(np.median(high)) - float(np.median(low))
    if separation < max(3.0 * noise, 0.25 * abs(lesion_level - float(np.median(ring)))):
        return ring
    gaps = [abs(float(np.median(part)) - lesion_level) for part in (low, high)]
    # Tissue within 5 % of the intensity range of the lesion (chest wall around a nodule) is
    # no edge a threshold could find; it is left to the box and connectivity to exclude.
    distinct = [
        part
        for part, gap in zip((low, high), gaps, strict=True)
        if gap >= max(0.05, 0.15 * max(gaps))
    ]
    if not distinct:
        return ring
    return min(distinct, key=lambda part: abs(float(np.median(part)) - lesion_level))


def half_way(lesion: FloatArray, background: FloatArray) -> float:
    """Half-way between the two medians: where a blurred edge crosses 50 % of the step, so
    the boundary lands where it belongs whatever the blur; also the best single threshold
    between two equally noisy classes. (Weighting by the spreads was tried and lost: a
    background's spread measures its heterogeneity far more than its noise.)"""
    return (float(np.median(background)) + float(np.median(lesion))) / 2
