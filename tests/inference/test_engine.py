"""The segmentation engine on its own: contract, validation, and segmentation quality.

Nothing here needs Django or a database; the volumes are synthetic and made on the spot.
"""

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from inference.engine import (
    BackendUnavailable,
    ClassicalBackend,
    EngineError,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    SegmentationBackend,
    connected_components,
    dice,
    key_slice_and_box,
    load_backend,
    make_ct_phantom,
    to_sitk,
    write_phantom,
)
from inference.engine.base import backend_class, backend_path

BoolArray = npt.NDArray[np.bool_]


def ellipsoid(
    shape: tuple[int, int, int],
    center_zyx: tuple[float, float, float],
    radii_mm: tuple[float, float, float],
    spacing_xyz: tuple[float, float, float],
) -> BoolArray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cz, cy, cx = center_zyx
    rx, ry, rz = radii_mm
    sx, sy, sz = spacing_xyz
    inside = (
        ((xx - cx) * sx / rx) ** 2 + ((yy - cy) * sy / ry) ** 2 + ((zz - cz) * sz / rz) ** 2
    ) <= 1.0
    return np.asarray(inside, dtype=bool)


def synthetic(
    lesion: BoolArray, inside: float, outside: float, noise: float, seed: int = 0
) -> npt.NDArray[np.float32]:
    """A two-level image with a slight blur and Gaussian noise."""
    from scipy import ndimage

    image = np.where(lesion, inside, outside).astype(np.float32)
    image = ndimage.gaussian_filter(image, sigma=(0.3, 0.7, 0.7))
    rng = np.random.default_rng(seed)
    return image + rng.normal(0.0, noise, lesion.shape).astype(np.float32)


def prompt_for(mask: BoolArray, lesion_id: str = "l") -> LesionPrompt:
    k, box = key_slice_and_box(mask)
    return LesionPrompt(lesion_id=lesion_id, key_slice=k, box=box)


@pytest.fixture(scope="module")
def backend() -> ClassicalBackend:
    return ClassicalBackend()


@pytest.fixture(scope="module")
def small_volume() -> ImageVolume:
    return ImageVolume(np.zeros((64, 32, 48), dtype=np.int16), (0.8, 0.8, 2.5), "CT")


# -- segmentation quality -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_phantom_lesion_reaches_dice_085(backend: ClassicalBackend, seed: int) -> None:
    phantom = make_ct_phantom(seed)
    assert len(phantom.lesion_masks) == 3
    volume = ImageVolume(phantom.image, phantom.spacing, "CT")
    prompts = [prompt_for(m, f"lesion-{i}") for i, m in enumerate(phantom.lesion_masks)]
    result = backend.segment(volume, prompts)
    scores = [
        dice(result.masks[p.lesion_id], m)
        for p, m in zip(prompts, phantom.lesion_masks, strict=True)
    ]
    print(f"seed {seed} {phantom.lesion_kinds} dice {[round(s, 3) for s in scores]}")
    assert min(scores) >= 0.85, scores


def test_ct_window_does_not_spoil_the_phantom(backend: ClassicalBackend) -> None:
    phantom = make_ct_phantom(3)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0))
    prompts = [prompt_for(m, f"lesion-{i}") for i, m in enumerate(phantom.lesion_masks)]
    result = backend.segment(volume, prompts)
    scores = [
        dice(result.masks[p.lesion_id], m)
        for p, m in zip(prompts, phantom.lesion_masks, strict=True)
    ]
    assert min(scores) >= 0.85, scores


@pytest.mark.parametrize(
    ("inside", "outside", "modality"),
    [(300.0, 100.0, "MR"), (100.0, 300.0, "MR"), (4.0, 0.5, "PT"), (-20.0, 60.0, "CT")],
    ids=["bright-MR", "dark-MR", "hot-PET", "hypodense-CT"],
)
def test_bright_and_dark_lesions_on_anisotropic_grids(
    backend: ClassicalBackend, inside: float, outside: float, modality: str
) -> None:
    shape, spacing = (40, 96, 80), (0.5, 0.5, 3.0)
    lesion = ellipsoid(shape, (20, 50, 38), (9.0, 7.0, 12.0), spacing)
    image = synthetic(lesion, inside, outside, noise=abs(inside - outside) / 6)
    result = backend.segment(ImageVolume(image, spacing, modality), [prompt_for(lesion)])
    score = dice(result.masks["l"], lesion)
    assert score >= 0.85, score


def test_lesion_cut_by_the_volume_edge(backend: ClassicalBackend) -> None:
    shape, spacing = (20, 64, 64), (1.0, 1.0, 2.0)
    # Centred beyond the left and top edges, and on the last slice: a third of it is outside.
    lesion = ellipsoid(shape, (19, 2, 1), (10.0, 10.0, 10.0), spacing)
    prompt = prompt_for(lesion)
    assert prompt.box[0] == 0 and prompt.box[1] == 0
    image = synthetic(lesion, 200.0, 50.0, noise=20.0)
    result = backend.segment(ImageVolume(image, spacing, "MR"), [prompt])
    score = dice(result.masks["l"], lesion)
    assert score >= 0.8, score


def test_box_of_a_few_pixels(backend: ClassicalBackend) -> None:
    shape, spacing = (12, 40, 40), (1.0, 1.0, 1.0)
    lesion = ellipsoid(shape, (6, 20, 20), (1.6, 1.6, 1.6), spacing)
    prompt = prompt_for(lesion)
    x0, y0, x1, y1 = prompt.box
    assert x1 - x0 <= 3 and y1 - y0 <= 3
    image = synthetic(lesion, 100.0, 0.0, noise=5.0)
    mask = backend.segment(ImageVolume(image, spacing, "MR"), [prompt]).masks["l"]
    assert mask.any()
    # It stays where the lesion is: nothing further than 2 voxels from it.
    zz, yy, xx = np.nonzero(mask)
    assert zz.min() >= 4 and zz.max() <= 8
    assert yy.min() >= y0 - 2 and yy.max() <= y1 + 2
    assert xx.min() >= x0 - 2 and xx.max() <= x1 + 2


def test_flat_region_gives_an_empty_mask_and_a_note(
    backend: ClassicalBackend, small_volume: ImageVolume
) -> None:
    prompt = LesionPrompt("flat", 10, (5, 5, 20, 20))
    result = backend.segment(small_volume, [prompt])
    assert result.masks["flat"].shape == small_volume.shape
    assert not result.masks["flat"].any()
    assert "contrast" in result.notes["flat"]


def test_box_covering_the_whole_slice(backend: ClassicalBackend) -> None:
    shape, spacing = (16, 32, 32), (1.0, 1.0, 1.0)
    lesion = ellipsoid(shape, (8, 16, 16), (12.0, 12.0, 6.0), spacing)
    image = synthetic(lesion, 100.0, 0.0, noise=5.0)
    result = backend.segment(
        ImageVolume(image, spacing, "MR"), [LesionPrompt("l", 8, (0, 0, 31, 31))]
    )
    assert result.masks["l"].shape == shape


def test_result_masks_have_the_volume_shape_and_timings(backend: ClassicalBackend) -> None:
    phantom = make_ct_phantom(4, shape=(24, 96, 96), n_lesions=2)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT")
    prompts = [prompt_for(m, f"l{i}") for i, m in enumerate(phantom.lesion_masks)]
    result = backend.segment(volume, prompts)
    assert set(result.masks) == {"l0", "l1"}
    for mask in result.masks.values():
        assert mask.shape == phantom.image.shape
        assert mask.dtype == np.bool_
        assert len(connected_components(mask)) == 1
    assert {"total", "preprocess", "segment"} <= set(result.timings)
    assert all(v >= 0 for v in result.timings.values())
    assert result.timings["total"] >= result.timings["segment"]


def test_two_prompts_are_independent(backend: ClassicalBackend) -> None:
    phantom = make_ct_phantom(5)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT")
    first, second = (prompt_for(m, f"l{i}") for i, m in enumerate(phantom.lesion_masks[:2]))
    together = backend.segment(volume, [first, second])
    alone_first = backend.segment(volume, [first])
    alone_second = backend.segment(volume, [second])
    np.testing.assert_array_equal(together.masks["l0"], alone_first.masks["l0"])
    np.testing.assert_array_equal(together.masks["l1"], alone_second.masks["l1"])
    assert not np.array_equal(together.masks["l0"], together.masks["l1"])
    # Order does not matter either.
    reversed_order = backend.segment(volume, [second, first])
    np.testing.assert_array_equal(reversed_order.masks["l0"], alone_first.masks["l0"])


def test_points_are_accepted_and_ignored(backend: ClassicalBackend) -> None:
    phantom = make_ct_phantom(6, shape=(24, 96, 96), n_lesions=1)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT")
    plain = prompt_for(phantom.lesion_masks[0])
    k, (x0, y0, x1, y1) = plain.key_slice, plain.box
    clicked = LesionPrompt(
        "l",
        k,
        plain.box,
        positive_points=(((x0 + x1) // 2, (y0 + y1) // 2, k),),
        negative_points=((0, 0, 0),),
    )
    assert clicked.kind == "box+points" and plain.kind == "box"
    np.testing.assert_array_equal(
        backend.segment(volume, [plain]).masks["l"], backend.segment(volume, [clicked]).masks["l"]
    )


def test_progress_is_reported_up_to_total(backend: ClassicalBackend) -> None:
    phantom = make_ct_phantom(8)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT")
    prompts = [prompt_for(m, f"l{i}") for i, m in enumerate(phantom.lesion_masks)]
    calls: list[tuple[int, int]] = []
    backend.segment(volume, prompts, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 3)
    assert calls[-1] == (3, 3)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert {total for _, total in calls} == {3}


def test_full_size_ct(backend: ClassicalBackend) -> None:
    """A 64x512x512 CT with two lesions (its speed is measured by benchmarks/segment_default.py)."""
    shape, spacing = (64, 512, 512), (0.7, 0.7, 2.5)
    rng = np.random.default_rng(0)
    image = rng.normal(40.0, 12.0, shape).astype(np.int16)
    lesions = [
        ellipsoid(shape, (32, 200, 220), (15.0, 12.0, 15.0), spacing),
        ellipsoid(shape, (20, 330, 330), (6.0, 6.0, 6.0), spacing),
    ]
    for lesion in lesions:
        image[lesion] = -10
    volume = ImageVolume(image, spacing, "CT", window=(40.0, 400.0))
    prompts = [prompt_for(m, f"l{i}") for i, m in enumerate(lesions)]
    result = backend.segment(volume, prompts)
    for prompt, lesion in zip(prompts, lesions, strict=True):
        assert dice(result.masks[prompt.lesion_id], lesion) >= 0.85


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            LesionPrompt("a", 3, (10, 10, 60, 20)),
            "box (10, 10, 60, 20) lies outside the slice of 48x32 pixels",
        ),
        (LesionPrompt("a", 3, (-1, 0, 5, 5)), "lies outside the slice"),
        (LesionPrompt("a", 3, (10, 5, 4, 9)), "x1 < x0"),
        (LesionPrompt("a", 3, (1, 9, 4, 5)), "y1 < y0"),
        (LesionPrompt("a", 80, (1, 1, 4, 4)), "key_slice 80 is outside 0..63"),
        (LesionPrompt("a", -1, (1, 1, 4, 4)), "key_slice -1 is outside 0..63"),
        (LesionPrompt("a", 3, (1, 1, 4)), "box must be 4 integers"),  # type: ignore[arg-type]
        (LesionPrompt("a", 3, (1.5, 1, 4, 4)), "box must be 4 integers"),  # type: ignore[arg-type]
        (LesionPrompt("", 3, (1, 1, 4, 4)), "empty lesion_id"),
        (
            LesionPrompt("a", 3, (1, 1, 4, 4), positive_points=((1, 1, 99),)),
            "positive point (1, 1, 99) lies outside the volume",
        ),
    ],
)
def test_invalid_prompts_are_named(
    backend: ClassicalBackend, small_volume: ImageVolume, prompt: LesionPrompt, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        backend.segment(small_volume, [prompt])


def test_duplicate_and_missing_prompts(
    backend: ClassicalBackend, small_volume: ImageVolume
) -> None:
    box = LesionPrompt("a", 3, (1, 1, 4, 4))
    with pytest.raises(InvalidInput, match="used by more than one prompt"):
        backend.validate(small_volume, [box, box])
    with pytest.raises(InvalidInput, match="no prompts"):
        backend.segment(small_volume, [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"array": np.zeros((32, 32))}, r"must be 3D \(z, y, x\) or colour \(z, y, x, 3\), got 2D"),
        ({"array": np.zeros((2, 3, 4, 5))}, "got 4D"),
        ({"array": np.zeros((0, 8, 8))}, "empty axis"),
        ({"array": np.zeros((2, 8, 8), dtype=bool)}, "real number type"),
        ({"array": np.full((2, 8, 8), np.nan)}, "NaN"),
        ({"array": np.zeros((2, 8, 8)), "spacing": (1.0, 0.0, 1.0)}, "spacing values"),
        ({"array": np.zeros((2, 8, 8)), "spacing": (1.0, 1.0)}, "3 values"),
        ({"array": np.zeros((2, 8, 8)), "window": (40.0, 0.0)}, "width > 0"),
        ({"array": [[[1.0]]]}, "numpy array"),
    ],
)
def test_invalid_images_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ImageVolume(**kwargs)  # type: ignore[arg-type]


def test_errors_share_a_base() -> None:
    assert issubclass(InvalidInput, EngineError)
    assert issubclass(BackendUnavailable, EngineError)


# -- backends -------------------------------------------------------------------------------


def test_load_backend_by_path_alias_and_options() -> None:
    by_path = load_backend("inference.engine.classical.ClassicalBackend")
    assert isinstance(by_path, ClassicalBackend)
    assert isinstance(by_path, SegmentationBackend)
    assert isinstance(load_backend("inference.engine.classical:ClassicalBackend"), ClassicalBackend)
    tuned = load_backend("classical", z_reach=0.5)
    assert isinstance(tuned, ClassicalBackend) and tuned.z_reach == 0.5
    description = tuned.describe()
    assert description["name"] == "classical"
    assert "box" in description["prompts"]  # type: ignore[operator]
    assert description["device"] == "cpu"


@pytest.mark.parametrize(
    "old_path",
    ["inference.engine.default.ClassicalBackend", "inference.engine.default:ClassicalBackend"],
)
def test_the_classical_backend_loads_by_its_old_path(old_path: str) -> None:
    """INFERENCE_BACKEND and model versions may name the module the classical backend had
    before it was renamed (default.py, now classical.py): that path still loads it."""
    backend = load_backend(old_path, z_reach=0.5)
    assert type(backend) is ClassicalBackend and backend.z_reach == 0.5
    assert backend_path(old_path) == "inference.engine.classical.ClassicalBackend"
    assert backend_class(old_path) is ClassicalBackend


@pytest.mark.parametrize(
    ("path", "options", "message"),
    [
        ("inference.engine.nope.Backend", {}, "cannot import module 'inference.engine.nope'"),
        ("inference.engine.classical.NoSuchBackend", {}, "has no attribute 'NoSuchBackend'"),
        ("ClassicalBackend", {}, "not of the form"),
        ("collections.OrderedDict", {}, "not a SegmentationBackend"),
        ("inference.engine.classical.ClassicalBackend", {"speed": 3}, "cannot construct"),
        ("inference.engine.classical.ClassicalBackend", {"margin": -1.0}, "cannot construct"),
    ],
)
def test_load_backend_failures(path: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendUnavailable, match=message):
        load_backend(path, **options)


def test_engine_imports_no_django() -> None:
    code = (
        "import sys, inference.engine, inference.engine.classical, inference.engine.phantom;"
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')];"
        "sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


# -- geometry and phantoms ------------------------------------------------------------------


def test_key_slice_and_box() -> None:
    mask = np.zeros((5, 10, 12), dtype=bool)
    mask[1, 2:4, 3:5] = True
    mask[3, 1:6, 2:9] = True  # the largest slice
    assert key_slice_and_box(mask) == (3, (2, 1, 8, 5))
    with pytest.raises(InvalidInput, match="empty"):
        key_slice_and_box(np.zeros((2, 3, 3), dtype=bool))
    with pytest.raises(InvalidInput, match="3D"):
        key_slice_and_box(np.zeros((3, 3), dtype=bool))


def test_dice() -> None:
    a = np.zeros((2, 4, 4), dtype=bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)


def test_phantom_is_deterministic_and_ct_like() -> None:
    first, again, other = make_ct_phantom(11), make_ct_phantom(11), make_ct_phantom(12)
    np.testing.assert_array_equal(first.image, again.image)
    for a, b in zip(first.lesion_masks, again.lesion_masks, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.image, other.image)
    assert first.image.dtype == np.int16 and first.image.shape == (48, 192, 192)
    assert first.image.min() < -900 and first.image.max() > 500  # air and bone
    for mask, kind in zip(first.lesion_masks, first.lesion_kinds, strict=True):
        assert mask.shape == first.image.shape and len(connected_components(mask)) == 1
        assert kind in {"liver", "lung"}
        # Radius 4-15 mm (with +-20 % per axis): volume between those of the extreme spheres.
        volume_ml = mask.sum() * np.prod(first.spacing) / 1000
        assert 4 / 3 * np.pi * (0.8 * 4) ** 3 / 1000 <= volume_ml <= 4 / 3 * np.pi * 18**3 / 1000


def test_phantom_round_trips_through_nifti(tmp_path: Path) -> None:
    phantom = make_ct_phantom(2, shape=(24, 96, 96), n_lesions=2)
    image_path, label_path = tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz"
    write_phantom(phantom, image_path, label_path)
    image = sitk.ReadImage(str(image_path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), phantom.image)
    np.testing.assert_allclose(image.GetSpacing(), phantom.spacing, rtol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), phantom.origin, atol=1e-4)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    for index, mask in enumerate(phantom.lesion_masks, start=1):
        np.testing.assert_array_equal(labels == index, mask)
    in_memory = to_sitk(phantom)
    assert in_memory.GetSize() == (96, 96, 24)


@pytest.mark.parametrize("box", [(20, 20, 21, 20), (20, 20, 20, 20), (5, 5, 6, 7)])
def test_a_box_one_or_two_voxels_wide_is_segmented(box: tuple[int, int, int, int]) -> None:
    """Such a box has no voxel deep inside it: the draft takes its most central ones (it used
    to fail with a zero-size array, an internal error on the job)."""
    phantom = make_ct_phantom(seed=1, shape=(8, 64, 64), n_lesions=1)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", (40.0, 400.0))
    mask = ClassicalBackend().segment(volume, [LesionPrompt("a", 4, box)]).masks["a"]
    x0, y0, x1, y1 = box
    assert mask[4, y0 : y1 + 1, x0 : x1 + 1].any()
    assert not mask[4].sum() > (x1 - x0 + 1) * (y1 - y0 + 1)
