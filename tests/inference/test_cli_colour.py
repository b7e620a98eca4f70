"""``python -m inference segment`` on colour images (PNG, JPEG, colour DICOM, vector MetaImage)
and with ``--slice-range``. A backend defined here records what it is given: the CLI must
hand it the colour pixels as they are, (z, y, x, 3)."""

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from inference.cli import main
from inference.engine import (
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    Phantom,
    ProgressCallback,
    SegmentationResult,
    connected_components,
    dice,
    key_slice_and_box,
)
from tests.inference.test_cli import cli
from tests.support.colour_images import rgb_disk, write_rgb_dicom_series

RECORDING = f"{__name__}.RecordingBackend"
KVASIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "kvasir_seg"


class RecordingBackend(ClassicalBackend):
    """The classical backend, keeping every volume and prompt it is asked to segment."""

    seen: ClassVar[list[tuple[ImageVolume, LesionPrompt]]] = []

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        RecordingBackend.seen.extend((volume, prompt) for prompt in prompts)
        return super().segment(volume, prompts, progress=progress)


@pytest.fixture(autouse=True)
def recorded() -> Iterator[list[tuple[ImageVolume, LesionPrompt]]]:
    RecordingBackend.seen.clear()
    yield RecordingBackend.seen
    RecordingBackend.seen.clear()


def run_main(capsys: pytest.CaptureFixture[str], *args: Any) -> dict[str, Any]:
    code = main(["segment", *map(str, args)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    summary: dict[str, Any] = json.loads(captured.out)
    return summary


def box_args(mask: np.ndarray) -> list[Any]:
    k, box = key_slice_and_box(mask)
    return ["--box", *box, "--slice", k]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_colour_png_reaches_the_backend_in_colour(
    mode: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[tuple[ImageVolume, LesionPrompt]],
) -> None:
    rgb, mask = rgb_disk()
    pixels = rgb[0]
    if mode == "RGBA":  # a half-transparent image: the alpha channel is dropped
        pixels = np.concatenate([pixels, np.full((*pixels.shape[:2], 1), 128, np.uint8)], -1)
    image = tmp_path / "polyp.png"
    Image.fromarray(pixels, mode).save(image)
    out = tmp_path / "mask.png"
    summary = run_main(
        capsys, "--image", image, *box_args(mask), "--out", out, "--backend", RECORDING
    )
    ((volume, prompt),) = recorded
    assert volume.is_colour and volume.array.shape == (1, 60, 80, 3)
    np.testing.assert_array_equal(volume.array, rgb)
    assert prompt.key_slice == 0 and prompt.z_range is None
    assert summary["colour"] is True and summary["size"] == [80, 60]
    # A 2D input, a 2D mask on its grid.
    written = sitk.ReadImage(str(out))
    assert written.GetDimension() == 2 and written.GetSize() == (80, 60)
    assert written.GetPixelID() == sitk.sitkUInt8
    assert dice(sitk.GetArrayFromImage(written).astype(bool), mask[0]) > 0.9


def test_a_jpeg_through_the_cli_as_a_user_runs_it(tmp_path: Path) -> None:
    """A subprocess with the default backend: a JPEG in, a 2D PNG mask out."""
    rgb, mask = rgb_disk(height=72, width=96, seed=4)
    image = tmp_path / "frame.jpg"
    Image.fromarray(rgb[0], "RGB").save(image, quality=90)
    out = tmp_path / "mask.png"
    run = cli("segment", "--image", image, *box_args(mask), "--out", out)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["colour"] is True and summary["backend"] == "default"
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert written.shape == (72, 96) and set(np.unique(written)) <= {0, 1}
    assert dice(written.astype(bool), mask[0]) > 0.9
    assert summary["voxels"] == int(written.sum())


def test_a_grey_png_stays_grey_and_gets_a_2d_mask(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[tuple[ImageVolume, LesionPrompt]],
) -> None:
    rgb, mask = rgb_disk(seed=2)
    grey = np.asarray(Image.fromarray(rgb[0], "RGB").convert("L"))
    image = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(image)
    out = tmp_path / "mask.nii.gz"
    summary = run_main(
        capsys, "--image", image, *box_args(mask), "--out", out, "--backend", RECORDING
    )
    ((volume, _),) = recorded
    assert not volume.is_colour and volume.array.shape == (1, 60, 80)
    np.testing.assert_array_equal(volume.array[0], grey)
    assert summary["colour"] is False
    assert sitk.ReadImage(str(out)).GetDimension() == 2


def test_a_colour_dicom_series_reaches_the_backend_in_colour(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[tuple[ImageVolume, LesionPrompt]],
) -> None:
    rgb, mask = rgb_disk(depth=5, seed=5)
    write_rgb_dicom_series(tmp_path / "series", rgb, spacing=(0.5, 0.5, 2.0))
    out = tmp_path / "mask.nrrd"
    args = ["--image", tmp_path / "series", *box_args(mask), "--out", out]
    summary = run_main(capsys, *args, "--backend", RECORDING)
    ((volume, _),) = recorded
    assert volume.is_colour and volume.shape == (5, 60, 80)
    np.testing.assert_array_equal(volume.array, rgb)
    np.testing.assert_allclose(volume.spacing, (0.5, 0.5, 2.0))
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == (80, 60, 5) and summary["colour"] is True
    assert dice(sitk.GetArrayFromImage(written).astype(bool), mask) > 0.8


def test_a_vector_metaimage_reaches_the_backend_in_colour(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[tuple[ImageVolume, LesionPrompt]],
) -> None:
    rgb, mask = rgb_disk(depth=4, seed=6)
    image = tmp_path / "frames.mha"
    written = sitk.GetImageFromArray(rgb, isVector=True)
    written.SetSpacing((0.3, 0.3, 1.5))
    sitk.WriteImage(written, str(image))
    run_main(
        capsys,
        "--image",
        image,
        *box_args(mask),
        "--out",
        tmp_path / "m.mha",
        "--backend",
        RECORDING,
    )
    ((volume, _),) = recorded
    assert volume.is_colour
    np.testing.assert_array_equal(volume.array, rgb)


def test_images_of_other_component_counts_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "field.mha"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((3, 8, 8, 2), np.float32), isVector=True), str(image)
    )
    code = main(
        [
            "segment",
            "--image",
            str(image),
            "--box",
            "1",
            "1",
            "4",
            "4",
            "--slice",
            "1",
            "--out",
            str(tmp_path / "m.nii.gz"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.strip()
        == f"error: {image} has 2 components per voxel; expected grey values, RGB or RGBA"
    )


def test_the_slice_range_goes_into_the_prompt_and_bounds_the_mask(
    phantom: Phantom,
    phantom_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[tuple[ImageVolume, LesionPrompt]],
) -> None:
    reference = max(phantom.lesion_masks, key=lambda m: int(m.any(axis=(1, 2)).sum()))
    k, _ = key_slice_and_box(reference)
    out = tmp_path / "mask.nii.gz"
    args = ["--image", phantom_file, *box_args(reference), "--out", out, "--window", 40, 400]
    summary = run_main(capsys, *args, "--slice-range", k - 1, k + 1, "--backend", RECORDING)
    ((_, prompt),) = recorded
    assert prompt.z_range == (k - 1, k + 1)
    assert summary["slice_range"] == [k - 1, k + 1]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(bool)
    assert mask[k - 1 : k + 2].any()
    assert not mask[: k - 1].any() and not mask[k + 2 :].any()
    # The reference reaches beyond the range: the bound is the range's doing.
    assert reference[: k - 1].any() or reference[k + 2 :].any()


@pytest.mark.parametrize(
    ("slice_range", "message"),
    [
        ((3, 30), "error: --slice-range 3 30 lies outside the image's slices 0..23"),
        ((-1, 5), "error: --slice-range -1 5 lies outside the image's slices 0..23"),
        ((6, 9), "error: --slice-range 6 9 does not contain the key slice 4 (--slice)"),
        ((5, 2), "error: --slice-range 5 2: FIRST must not come after LAST"),
    ],
)
def test_a_bad_slice_range_exits_2_with_one_line(
    phantom_file: Path, tmp_path: Path, slice_range: tuple[int, int], message: str
) -> None:
    out = tmp_path / "mask.nii.gz"
    args = ["segment", "--image", phantom_file, "--box", 28, 46, 44, 60, "--slice", 4]
    run = cli(*args, "--out", out, "--slice-range", *slice_range)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == message
    assert not out.exists()


def test_a_jpeg_mask_is_refused(tmp_path: Path) -> None:
    rgb, mask = rgb_disk()
    image = tmp_path / "polyp.png"
    Image.fromarray(rgb[0], "RGB").save(image)
    run = cli("segment", "--image", image, *box_args(mask), "--out", tmp_path / "mask.jpg")
    assert run.returncode == 2
    assert "JPEG is lossy; write the mask as .png or .nii.gz" in run.stderr
    assert not (tmp_path / "mask.jpg").exists()


@pytest.mark.skipif(not KVASIR.is_dir(), reason="../shared/data/kvasir_seg is absent")
def test_the_kvasir_polyps_go_through_the_cli_in_colour(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[tuple[ImageVolume, LesionPrompt]],
) -> None:
    """The 20 endoscopy JPEGs, each with the box of its mask's largest component: every one
    reaches the backend as colour pixels and gets a 2D mask of its size (accuracy is the
    benchmark's business)."""
    images = sorted((KVASIR / "images").glob("*.jpg"))
    assert len(images) == 20
    for image in images:
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(KVASIR / "masks" / image.name)))
        polyp = connected_components(reference[np.newaxis] > 127)[0]
        out = tmp_path / f"{image.stem}.png"
        run_main(capsys, "--image", image, *box_args(polyp), "--out", out, "--backend", RECORDING)
        volume, _ = recorded[-1]
        pixels = np.asarray(Image.open(image).convert("RGB"))
        assert volume.is_colour and volume.array.shape == (1, *pixels.shape)
        # The colour pixels PIL decodes (JPEG decoders differ a little in chroma upsampling).
        assert np.abs(volume.array[0].astype(int) - pixels).mean() < 1.0
        assert not np.array_equal(volume.array[0, ..., 0], volume.array[0, ..., 2])
        written = sitk.ReadImage(str(out))
        assert written.GetDimension() == 2
        assert written.GetSize() == (pixels.shape[1], pixels.shape[0])
        assert sitk.GetArrayFromImage(written).any()
    assert len(recorded) == 20
