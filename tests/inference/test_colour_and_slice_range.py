"""Two prompts every backend honours: colour (RGB) images taken as they are, and the lesion's
slice range (``LesionPrompt.z_range``) as its known extent. The classical and learned backends
work on grey values: they segment a colour image on its luma, and never leave the range."""

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage
from sklearn.dummy import DummyClassifier

from inference.engine import (
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    dice,
    key_slice_and_box,
    make_ct_phantom,
)
from inference.engine.learned import FEATURE_NAMES, LearnedBackend, LearnedModel
from inference.engine.learned_fit import TrainingCase, train

BoolArray = npt.NDArray[np.bool_]
# A yellow polyp on a blue wall: they differ in hue and in luma (BT.601: about 191 vs 65).
LESION_RGB = (230.0, 200.0, 40.0)
WALL_RGB = (40.0, 60.0, 160.0)


def colour_volume(depth: int, seed: int = 0) -> tuple[ImageVolume, BoolArray]:
    """``depth`` frames of a coloured disk (a squat cylinder through the frames, narrowing at
    both ends) on a background of another hue, blurred and noisy per channel, stored as uint8
    RGB as cameras write it."""
    rng = np.random.default_rng(seed)
    height, width = 80, 96
    zz, yy, xx = np.ogrid[:depth, :height, :width]
    centre = (depth - 1) / 2
    radius = 18.0 * np.sqrt(np.clip(1.0 - ((zz - centre) / (depth / 2 + 0.5)) ** 2, 0.0, 1.0))
    lesion = np.asarray((yy - 38.0) ** 2 + (xx - 50.0) ** 2 <= radius**2, dtype=bool)
    channels = []
    for inside, outside in zip(LESION_RGB, WALL_RGB, strict=True):
        plane = np.where(lesion, inside, outside).astype(np.float32)
        plane = ndimage.gaussian_filter(plane, sigma=(0.0, 1.0, 1.0))
        channels.append(plane + rng.normal(0.0, 12.0, lesion.shape).astype(np.float32))
    rgb = np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)
    return ImageVolume(rgb, (0.4, 0.4, 1.0), "ES"), lesion


def prompt_for(mask: BoolArray, lesion_id: str = "l", **extra: object) -> LesionPrompt:
    k, box = key_slice_and_box(mask)
    return LesionPrompt(lesion_id, k, box, **extra)  # type: ignore[arg-type]


def extent(mask: BoolArray) -> tuple[int, int]:
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    return int(slices[0]), int(slices[-1])


# -- colour -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 9])
def test_the_classical_backend_segments_a_colour_image_on_its_luma(depth: int) -> None:
    volume, lesion = colour_volume(depth)
    before = volume.array.copy()
    prompt = prompt_for(lesion)
    result = ClassicalBackend().segment(volume, [prompt])
    mask = result.masks["l"]
    assert mask.shape == lesion.shape and mask.dtype == np.bool_
    assert dice(mask, lesion) > 0.9
    # Exactly what its grey (luma) version gives, and the caller's colour array is untouched.
    grey = ClassicalBackend().segment(volume.grey(), [prompt]).masks["l"]
    np.testing.assert_array_equal(mask, grey)
    np.testing.assert_array_equal(volume.array, before)


def test_a_colour_image_is_not_read_as_one_of_its_channels() -> None:
    """On the blue channel alone the polyp is DARKER than the wall (40 vs 160), on luma it is
    brighter: a backend that took one channel would still find it, but the grey image that
    the annotator sees (luma) is the one it must agree with."""
    volume, lesion = colour_volume(1, seed=3)
    blue = ImageVolume(volume.array[..., 2].astype(np.float32), volume.spacing, "ES")
    luma = volume.grey().array
    assert float(luma[lesion].mean()) > float(luma[~lesion].mean()) + 100
    assert float(blue.array[lesion].mean()) < float(blue.array[~lesion].mean()) - 100
    mask = ClassicalBackend().segment(volume, [prompt_for(lesion)]).masks["l"]
    assert dice(mask, lesion) > 0.9


def test_the_learned_backend_takes_colour_images() -> None:
    volume, lesion = colour_volume(9, seed=1)
    prompt = prompt_for(lesion)
    # Without a model: the classical backend; with a classifier: refined, still on luma.
    plain = LearnedBackend().segment(volume, [prompt]).masks["l"]
    np.testing.assert_array_equal(plain, ClassicalBackend().segment(volume, [prompt]).masks["l"])
    features = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    classifier = DummyClassifier(strategy="constant", constant=0).fit(features, [0, 1, 0, 1])
    refined = LearnedBackend(model=LearnedModel(classifier)).segment(volume, [prompt])
    grey = LearnedBackend(model=LearnedModel(classifier)).segment(volume.grey(), [prompt])
    np.testing.assert_array_equal(refined.masks["l"], grey.masks["l"])


def test_training_on_colour_cases_is_training_on_their_luma() -> None:
    cases = []
    for seed in range(3):
        volume, lesion = colour_volume(7, seed=10 + seed)
        cases.append(TrainingCase(volume, prompt_for(lesion, f"c{seed}"), lesion, f"p{seed}"))
    grey = [replace(case, volume=case.volume.grey()) for case in cases]
    from_colour = train(cases, seed=0, samples_per_case=1000, max_iter=10)
    from_grey = train(grey, seed=0, samples_per_case=1000, max_iter=10)
    assert from_colour.meta == from_grey.meta
    assert from_colour.settings == from_grey.settings


# -- the slice range ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom_case() -> tuple[ImageVolume, BoolArray]:
    phantom = make_ct_phantom(seed=7, shape=(40, 128, 128), n_lesions=2)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0))
    # The deeper of the two lesions, so that a range can cut it.
    lesion = max(phantom.lesion_masks, key=lambda m: int(m.any(axis=(1, 2)).sum()))
    return volume, lesion


def test_the_range_bounds_every_classical_mask(phantom_case: tuple[ImageVolume, BoolArray]) -> None:
    volume, lesion = phantom_case
    first, last = extent(lesion)
    assert last - first >= 4
    unbounded = ClassicalBackend().segment(volume, [prompt_for(lesion)]).masks["l"]
    k = key_slice_and_box(lesion)[0]
    for z0, z1 in ((k - 1, k + 1), (k, k), (first, k), (k, last)):
        prompt = prompt_for(lesion, z_range=(z0, z1))
        mask = ClassicalBackend().segment(volume, [prompt]).masks["l"]
        assert not mask[:z0].any() and not mask[z1 + 1 :].any(), (z0, z1)
        assert mask[k].any()
        assert dice(mask[z0 : z1 + 1], lesion[z0 : z1 + 1]) > 0.75, (z0, z1)
    # Without the range it reaches past the narrow ones: the bound is the range's doing.
    assert unbounded[: k - 1].any() and unbounded[k + 2 :].any()


def test_the_range_bounds_a_learned_model_that_says_everything_is_lesion(
    phantom_case: tuple[ImageVolume, BoolArray],
) -> None:
    volume, lesion = phantom_case
    k = key_slice_and_box(lesion)[0]
    features = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    everything = DummyClassifier(strategy="constant", constant=1).fit(features, [0, 1, 0, 1])
    backend = LearnedBackend(model=LearnedModel(everything))
    mask = backend.segment(volume, [prompt_for(lesion, z_range=(k - 1, k + 1))]).masks["l"]
    assert mask[k - 1 : k + 2].any()
    assert not mask[: k - 1].any() and not mask[k + 2 :].any()
    wide = backend.segment(volume, [prompt_for(lesion)]).masks["l"]
    assert wide[: k - 1].any() or wide[k + 2 :].any()


def paint_lesion(
    volume: ImageVolume, lesion: BoolArray, value: float, seed: int
) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    image = volume.array.astype(np.float32)
    blurred = ndimage.gaussian_filter(lesion.astype(np.float32), sigma=(0.4, 0.7, 0.7))
    image = image * (1 - blurred) + blurred * (value + rng.normal(0.0, 12.0, lesion.shape))
    return np.asarray(np.rint(image), dtype=np.int16)


@pytest.mark.parametrize("shape_name", ["long", "off-centre"])
def test_a_known_extent_beats_the_default_reach(shape_name: str) -> None:
    """Lesions the default reach gets wrong: one four times deeper than wide (the reach of
    0.75 box sides cuts it), and one whose largest slice is near its bottom (the ellipsoid
    centred on the key slice misses its top). With their slice range they come out better."""
    phantom = make_ct_phantom(seed=11, shape=(48, 128, 128), spacing=(0.8, 0.8, 1.5))
    liver = next(
        m
        for m, kind in zip(phantom.lesion_masks, phantom.lesion_kinds, strict=True)
        if kind == "liver"
    )
    cz, cy, cx = (float(np.mean(a)) for a in np.nonzero(liver))
    zz, yy, xx = np.ogrid[:48, :128, :128]
    sx, sy, sz = phantom.spacing
    in_plane = ((xx - cx) * sx / 7.0) ** 2 + ((yy - cy) * sy / 7.0) ** 2
    if shape_name == "long":
        lesion = in_plane + ((zz - cz) * sz / 28.0) ** 2 <= 1.0
    else:
        # Widest 3 slices above its bottom, tapering over 14 slices upwards.
        height = np.where(zz < cz - 6, (zz - (cz - 6)) * sz / 4.5, (zz - (cz - 6)) * sz / 21.0)
        lesion = in_plane + height**2 <= 1.0
    lesion = np.asarray(lesion, dtype=bool)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0))
    volume = ImageVolume(
        paint_lesion(volume, lesion, 15.0, seed=2), volume.spacing, "CT", volume.window
    )
    plain = prompt_for(lesion)
    ranged = replace(plain, z_range=extent(lesion))
    backend = ClassicalBackend()
    without = dice(backend.segment(volume, [plain]).masks["l"], lesion)
    with_range = dice(backend.segment(volume, [ranged]).masks["l"], lesion)
    assert with_range > without + 0.05, (without, with_range)
    assert with_range > 0.8
