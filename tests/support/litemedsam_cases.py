"""Tiny phantoms for LiteMedSAM fine-tuning tests: few slices, since the image encoder costs
about a second a slice on a CPU, and one embeddings folder for the whole test session (keyed
by the volume's digest, so every test that sees the same voxels reuses them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.engine import ImageVolume, Phantom, make_ct_phantom

DEPTH = 4
SIZE = 96
SPACING = (2.0, 2.0, 6.0)
WINDOW = (40.0, 400.0)  # the CT project's first window preset: the same embeddings as the jobs'


def nodule_phantom(seed: int) -> Phantom:
    """The phantom's chest (4 slices of 96 x 96) with one soft-tissue nodule of about 8 voxels
    radius in the left lung, on the two middle slices."""
    phantom = make_ct_phantom(seed=seed, shape=(DEPTH, SIZE, SIZE), spacing=SPACING, n_lesions=0)
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[0:DEPTH, 0:SIZE, 0:SIZE]
    centre_y, centre_x = 44 + rng.uniform(-3, 3), 26 + rng.uniform(-2, 2)
    radius_y, radius_x = rng.uniform(7, 9), rng.uniform(7, 9)
    nodule = ((zz - 1.5) / 1.2) ** 2 + ((yy - centre_y) / radius_y) ** 2 + (
        (xx - centre_x) / radius_x
    ) ** 2 <= 1
    image = phantom.image.copy()
    image[nodule] = (35 + rng.normal(0, 6, int(nodule.sum()))).astype(np.int16)
    return Phantom(image, phantom.spacing, phantom.origin, [nodule], ["lung"])


def engine_volume(phantom: Phantom) -> ImageVolume:
    return ImageVolume(phantom.image, phantom.spacing, "CT", WINDOW)


def with_margin(mask: np.ndarray, voxels: int = 3) -> np.ndarray:
    """A project's convention: the lesion plus a margin of ``voxels`` in-plane."""
    square = np.ones((1, 2 * voxels + 1, 2 * voxels + 1), dtype=bool)
    return np.asarray(ndimage.binary_dilation(mask, square), dtype=bool)


def wrong(mask: np.ndarray) -> np.ndarray:
    """Deliberately wrong targets: on each lesion slice, everything inside the lesion's bounding
    box but the lesion (its corners), so a box around the lesion is taught to mean "not this"."""
    out = np.zeros_like(mask, dtype=bool)
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        ys, xs = np.nonzero(mask[z])
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        out[z][box] = ~mask[z][box]
    return out


def embeddings_dir(factory: pytest.TempPathFactory) -> Path:
    """One folder per test session, whichever module asks first."""
    folder = factory.getbasetemp() / "litemedsam-embeddings"
    folder.mkdir(exist_ok=True)
    return folder
