"""The MedSAM2 backend on CPU with a random-weight model saved in the official checkpoint format.

A random model's masks are meaningless but deterministic: these tests prove the loading, the
preprocessing, the prompts and the propagation against a plain call sequence of sam2's video
predictor (the published recipe, in tests/support/medsam2_reference.py, which the overhead
benchmark times as well), not accuracy. Everything runs in fp32 so that the comparison is exact on
any CPU.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.engine import (
    BackendUnavailable,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    load_backend,
    validate_prompts,
)
from inference.engine.medsam2 import MedSAM2Backend, cpu_has_bf16, plan_passes
from inference.engine.medsam2.preprocess import SliceFrames, intensity_mapping
from tests.support.medsam2_reference import (
    WINDOW,
    reference_masks,
    reference_predictor,
    write_random_checkpoint,
)

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

ROOT = Path(__file__).resolve().parents[2]
KEY, BOX = 3, (18, 20, 44, 42)


def make_volume() -> ImageVolume:
    """6 CT slices of 64x64 with a bright blob, values beyond both ends of the window."""
    rng = np.random.default_rng(7)
    image = rng.normal(30.0, 25.0, (6, 64, 64))
    zz, yy, xx = np.mgrid[0:6, 0:64, 0:64]
    blob = ((zz - 3) / 2.5) ** 2 + ((yy - 31) / 10.0) ** 2 + ((xx - 31) / 12.0) ** 2 <= 1
    image[blob] += 120.0
    image[:, :6, :] = -1000.0  # air
    image[:, -4:, :] = 1200.0  # bone
    return ImageVolume(image.astype(np.int16), (0.8, 0.8, 2.5), "CT", window=WINDOW)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MedSAM2 architecture with random weights, saved as {"model": state_dict}."""
    return write_random_checkpoint(tmp_path_factory.mktemp("medsam2") / "MedSAM2_random.pt")


@pytest.fixture(scope="module")
def backend(checkpoint: Path) -> MedSAM2Backend:
    built = load_backend(
        "inference.engine.medsam2.MedSAM2Backend",
        checkpoint=str(checkpoint),
        device="cpu",
        precision="fp32",
        keep_largest_component=False,
    )
    assert isinstance(built, MedSAM2Backend)
    return built


@pytest.fixture(scope="module")
def volume() -> ImageVolume:
    return make_volume()


@pytest.fixture
def count_encoder(monkeypatch: pytest.MonkeyPatch) -> Callable[[MedSAM2Backend], list[int]]:
    """Counts image-encoder calls of a backend's model."""

    def install(target: MedSAM2Backend) -> list[int]:
        calls = [0]
        encoder = target.predictor.image_encoder
        original = encoder.forward

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(encoder, "forward", counted)
        return calls

    return install


def test_engine_equals_the_reference_voxel_for_voxel(
    backend: MedSAM2Backend, checkpoint: Path, volume: ImageVolume
) -> None:
    expected = reference_masks(reference_predictor(checkpoint), volume.array, KEY, BOX, WINDOW)
    calls: list[tuple[int, int]] = []
    result = backend.segment(
        volume, [LesionPrompt("l", KEY, BOX)], progress=lambda d, t: calls.append((d, t))
    )
    mask = result.masks["l"]
    assert mask.shape == volume.shape and mask.dtype == np.bool_
    assert expected.any() and not expected.all()  # a non-trivial comparison
    np.testing.assert_array_equal(mask, expected)
    # Forward 3..5 (3 frames) and reverse 3..0 (4 frames).
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert [d for d, _ in calls] == list(range(8))
    assert {"total", "preprocess", "encoder", "propagate", "segment"} <= set(result.timings)
    assert result.timings["slices_propagated"] == 7


def test_largest_component_option(
    backend: MedSAM2Backend, volume: ImageVolume, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scipy import ndimage

    prompt = [LesionPrompt("l", KEY, BOX)]
    raw = backend.segment(volume, prompt).masks["l"]
    monkeypatch.setattr(backend, "keep_largest_component", True)
    kept = backend.segment(volume, prompt).masks["l"]
    labels, count = ndimage.label(raw, structure=np.ones((3, 3, 3)))
    assert ndimage.label(kept, structure=np.ones((3, 3, 3)))[1] == min(count, 1)
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        np.testing.assert_array_equal(kept, labels == int(sizes.argmax()) + 1)


# -- checkpoints ----------------------------------------------------------------------------


def test_truncated_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[: 20 * 2**20])
    with pytest.raises(BackendUnavailable, match=r"not a complete PyTorch checkpoint.*truncated"):
        MedSAM2Backend(truncated, "cpu")


def test_checkpoint_that_is_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(BackendUnavailable, match=r"not in the format \{'model': state_dict\}"):
        load_backend("medsam2", checkpoint=str(path), device="cpu")


def test_checkpoint_of_another_architecture(checkpoint: Path, tmp_path: Path) -> None:
    state = torch.load(checkpoint, weights_only=True)["model"]
    state["image_encoder.trunk.renamed"] = state.pop("image_encoder.trunk.pos_embed")
    del state["obj_ptr_proj.layers.0.weight"]
    key = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    state[key] = state[key][:, :-1]
    path = tmp_path / "other.pt"
    torch.save({"model": state}, path)
    with pytest.raises(BackendUnavailable) as info:
        MedSAM2Backend(path, "cpu")
    message = str(info.value)
    assert "does not fit SAM2.1 hiera-tiny at 512 px" in message
    assert "2 missing keys (image_encoder.trunk.pos_embed, obj_ptr_proj.layers.0.weight)" in message
    assert "1 unexpected keys (image_encoder.trunk.renamed)" in message
    assert "1 shape mismatches" in message


def test_missing_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEDSAM2_CHECKPOINT", raising=False)
    with pytest.raises(BackendUnavailable, match="set MEDSAM2_CHECKPOINT"):
        load_backend("medsam2", device="cpu")
    monkeypatch.setenv("MEDSAM2_CHECKPOINT", str(tmp_path / "nope.pt"))
    with pytest.raises(BackendUnavailable, match=r"nope.pt does not exist"):
        load_backend("medsam2", device="cpu")
    with pytest.raises(BackendUnavailable, match="cannot construct"):
        load_backend("medsam2", checkpoint="x.pt", precision="fp8")


def test_the_1024_trap_is_refused(checkpoint: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"not built for 512 px \(image_size is 1024"):
        MedSAM2Backend(checkpoint, "cpu", extra_overrides=["++model.image_size=1024"])
    with pytest.raises(BackendUnavailable, match="RoPE table covers 4096 positions"):
        MedSAM2Backend(
            checkpoint,
            "cpu",
            extra_overrides=["++model.memory_attention.layer.self_attention.feat_sizes=[64,64]"],
        )


def test_env_defaults(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> None:
    monkeypatch.setenv("MEDSAM2_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("MEDSAM2_DEVICE", "cpu")
    monkeypatch.setenv("MEDSAM2_PRECISION", "fp32")
    monkeypatch.setenv("MEDSAM2_CACHE_MB", "64")
    described = load_backend("medsam2").describe()
    assert described["device"] == "cpu" and described["precision"] == "fp32"
    assert described["checkpoint"] == str(checkpoint) and described["cache_mb"] == 64
    assert described["prompts"] == ["box", "points", "mask"]


# -- embeddings cache, several lesions ------------------------------------------------------


def test_second_lesion_reuses_the_embeddings(
    backend: MedSAM2Backend,
    checkpoint: Path,
    volume: ImageVolume,
    count_encoder: Callable[[MedSAM2Backend], list[int]],
) -> None:
    first = LesionPrompt("a", KEY, BOX)
    second = LesionPrompt("b", 2, (24, 24, 40, 38), z_range=(2, 4))
    alone_first = backend.segment(volume, [first])
    calls = count_encoder(backend)
    again = backend.segment(volume, [second])
    assert calls[0] == 0
    assert again.timings["slices_encoded"] == 0

    fresh = MedSAM2Backend(checkpoint, "cpu", "fp32", keep_largest_component=False)
    fresh_calls = count_encoder(fresh)
    alone = fresh.segment(volume, [second])
    assert fresh_calls[0] == 3  # slices 2, 3, 4 once each, although slice 2 is visited twice
    np.testing.assert_array_equal(again.masks["b"], alone.masks["b"])

    # Several lesions in one call: each its own state, no leak between them.
    together = backend.segment(volume, [second, first])
    np.testing.assert_array_equal(together.masks["b"], alone.masks["b"])
    np.testing.assert_array_equal(together.masks["a"], alone_first.masks["a"])
    assert calls[0] == 0


def test_another_volume_is_not_confused_with_a_cached_one(
    backend: MedSAM2Backend, volume: ImageVolume
) -> None:
    changed = volume.array.copy()
    changed[5, 63, 63] += 1  # one voxel
    other = ImageVolume(changed, volume.spacing, volume.modality, volume.window)
    before = backend.cache_info()["volumes"]
    backend.segment(other, [LesionPrompt("l", 5, BOX, direction="reverse", z_range=(5, 5))])
    assert backend.cache_info()["volumes"] == before + 1


# -- prompts --------------------------------------------------------------------------------


def test_mask_prompt_survives_and_changes_neighbours(
    backend: MedSAM2Backend, volume: ImageVolume
) -> None:
    box_only = backend.segment(volume, [LesionPrompt("l", KEY, BOX)]).masks["l"]
    corrected = np.zeros(volume.shape[1:], dtype=bool)
    corrected[26:37, 22:33] = True  # a human's square on slice 1
    corrected[30, 40] = True  # and a lone voxel
    prompt = LesionPrompt("l", KEY, BOX, mask_slices={1: corrected})
    assert prompt.kind == "box+mask"
    mask = backend.segment(volume, [prompt]).masks["l"]
    np.testing.assert_array_equal(mask[1], corrected)
    others = [z for z in range(volume.shape[0]) if z != 1]
    assert not np.array_equal(mask[others], box_only[others])

    # SAM2 itself passes a mask prompt through (use_mask_input_as_output_without_sam): its own
    # output on that slice, before the backend restores the mask exactly, is nearly the same.
    from inference.engine.medsam2.predictor import new_state

    frames = SliceFrames(volume.array, intensity_mapping(volume, WINDOW))
    state = new_state(backend.predictor, frames, 64, 64, backend._volume_entry(volume).cache)
    with torch.inference_mode():
        _, _, logits = backend.predictor.add_new_mask(state, 1, 1, corrected)
    raw = (logits[0, 0] > 0).numpy()
    assert (raw == corrected).mean() > 0.98


def test_mask_on_the_key_slice_replaces_the_box(
    backend: MedSAM2Backend, volume: ImageVolume
) -> None:
    corrected = np.zeros(volume.shape[1:], dtype=np.uint8)
    corrected[25:38, 20:40] = 1
    prompt = LesionPrompt("l", KEY, BOX, mask_slices={KEY: corrected}, direction="forward")
    mask = backend.segment(volume, [prompt]).masks["l"]
    np.testing.assert_array_equal(mask[KEY], corrected.astype(bool))


def test_points_are_accepted(backend: MedSAM2Backend, volume: ImageVolume) -> None:
    prompt = LesionPrompt(
        "p",
        KEY,
        BOX,
        positive_points=((31, 31, KEY), (30, 32, 4)),
        negative_points=((5, 60, KEY), (60, 60, 1)),
    )
    assert prompt.kind == "box+points"
    result = backend.segment(volume, [prompt])
    assert result.masks["p"].shape == volume.shape
    # Prompted slices 1, 3, 4: forward from 1 to 5, reverse from 4 to 0.
    assert result.timings["slices_propagated"] == 5 + 5


def test_one_slice_prompt_is_the_propagated_answer(
    backend: MedSAM2Backend, volume: ImageVolume
) -> None:
    """A prompt confined to one slice (a click's refinement) is answered without
    propagate_in_video and its memory encoder: the same mask as propagating that one slice."""
    from inference.engine.medsam2.predictor import new_state

    prompt = LesionPrompt(
        "c", KEY, BOX, positive_points=((31, 31, KEY),), negative_points=((20, 22, KEY),)
    )
    one = LesionPrompt(
        "c", KEY, BOX, prompt.positive_points, prompt.negative_points, z_range=(KEY, KEY)
    )
    result = backend.segment(volume, [one])
    assert result.timings["slices_propagated"] == 1

    frames = SliceFrames(volume.array, intensity_mapping(volume, WINDOW))
    state = new_state(backend.predictor, frames, 64, 64, backend._volume_entry(volume).cache)
    with torch.inference_mode():
        backend._add_prompts(state, prompt)
        yielded = list(
            backend.predictor.propagate_in_video(
                state, start_frame_idx=KEY, max_frame_num_to_track=0
            )
        )
    assert [frame_idx for frame_idx, _, _ in yielded] == [KEY]
    expected = np.zeros(volume.shape, dtype=bool)
    expected[KEY] = (yielded[0][2][0, 0] > 0).numpy()
    assert expected[KEY].any() and not expected[KEY].all()  # a non-trivial comparison
    np.testing.assert_array_equal(result.masks["c"], expected)


def test_forward_only_and_z_range(backend: MedSAM2Backend, volume: ImageVolume) -> None:
    forward = backend.segment(volume, [LesionPrompt("l", KEY, BOX, direction="forward")])
    assert not forward.masks["l"][:KEY].any()
    assert forward.timings["slices_propagated"] == 3
    cropped = backend.segment(volume, [LesionPrompt("l", KEY, BOX, z_range=(2, 4))])
    assert not cropped.masks["l"][[0, 1, 5]].any()
    assert cropped.timings["slices_propagated"] == 2 + 2


def test_a_colour_volume_is_segmented_on_its_luma(backend: MedSAM2Backend) -> None:
    """Colour frames (z, y, x, 3) go in as their luma: the same masks as the grey volume."""
    rng = np.random.default_rng(3)
    grey = make_volume()
    tint = rng.uniform(0.8, 1.2, 3)
    # Channels whose BT.601 luma is the grey image again (up to float rounding).
    rgb = np.stack([grey.array * t for t in tint], axis=-1) / float(tint @ [0.299, 0.587, 0.114])
    colour = ImageVolume(rgb.astype(np.float32), grey.spacing, "CT", window=grey.window)
    assert colour.is_colour
    np.testing.assert_allclose(colour.grey().array, grey.array, atol=0.05)
    prompt = LesionPrompt("l", KEY, BOX)
    from_colour = backend.segment(colour, [prompt]).masks["l"]
    from_grey = backend.segment(colour.grey(), [prompt]).masks["l"]
    assert from_colour.shape == grey.shape
    np.testing.assert_array_equal(from_colour, from_grey)


def test_plan_passes() -> None:
    box = (0, 0, 1, 1)
    assert [
        (p.start, p.reverse, p.frames)
        for p in plan_passes(LesionPrompt("l", 3, box), 10, "both", None)
    ] == [(3, False, 7), (3, True, 4)]
    assert [
        (p.start, p.reverse, p.frames)
        for p in plan_passes(LesionPrompt("l", 0, box), 10, "both", None)
    ] == [(0, False, 10)]
    clicked = LesionPrompt(
        "l", 5, box, positive_points=((0, 0, 2),), mask_slices={7: np.ones((2, 2), bool)}
    )
    assert [(p.start, p.reverse, p.frames) for p in plan_passes(clicked, 10, "both", 1)] == [
        (2, False, 7),
        (7, True, 7),
    ]
    assert [(p.start, p.max_frames) for p in plan_passes(clicked, 10, "forward", None)] == [(2, 7)]
    # One slice: the reverse pass would only repeat the forward pass's answer.
    one = LesionPrompt("l", 3, box, z_range=(3, 3))
    assert [(p.start, p.reverse, p.frames) for p in plan_passes(one, 10, "both", None)] == [
        (3, False, 1)
    ]


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            LesionPrompt("a", 3, BOX, mask_slices={9: np.zeros((64, 64), bool)}),
            "mask slice 9 is outside",
        ),
        (
            LesionPrompt("a", 3, BOX, mask_slices={1: np.zeros((64, 32), bool)}),
            r"must be a \(y, x\) array of 64x64",
        ),
        (LesionPrompt("a", 3, BOX, mask_slices={1: np.full((64, 64), 0.5)}), "must be bool"),
        (LesionPrompt("a", 3, BOX, z_range=(4, 5)), r"prompted slices \[3\] lie outside z_range"),
        (LesionPrompt("a", 3, BOX, z_range=(2, 9)), "is not within 0..5"),
        (LesionPrompt("a", 3, BOX, direction="sideways"), "direction must be one of"),
    ],
)
def test_invalid_propagation_prompts(
    volume: ImageVolume, prompt: LesionPrompt, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_prompts(volume, [prompt])


def test_reverse_from_slice_zero_is_refused(backend: MedSAM2Backend, volume: ImageVolume) -> None:
    with pytest.raises(InvalidInput, match="nothing to propagate"):
        backend.validate(volume, [LesionPrompt("a", 0, BOX, direction="reverse")])


# -- preprocessing --------------------------------------------------------------------------


def test_frames_are_made_on_demand(volume: ImageVolume) -> None:
    frames = SliceFrames(volume.array, intensity_mapping(volume, None))
    assert len(frames) == 6 and frames.frames_made == 0
    frame = frames[2]
    assert tuple(frame.shape) == (3, 512, 512) and frame.dtype == torch.float32
    assert frames.frames_made == 1
    with pytest.raises(IndexError):
        frames[6]


def test_intensity_mappings() -> None:
    mr = np.zeros((2, 8, 8), dtype=np.float32)
    mr[:, 2:6, 2:6] = np.linspace(100, 900, 32).reshape(2, 4, 4)
    mapping = intensity_mapping(ImageVolume(mr, modality="MR"), (40.0, 400.0))
    assert mapping.kind == "percentile" and mapping.keep_zero
    assert mapping.low == pytest.approx(np.percentile(mr[mr != 0], 0.5))
    u8 = mapping.to_uint8(mr)
    assert u8[0, 0, 0] == 0 and u8.max() == 255
    ct = intensity_mapping(ImageVolume(mr, modality="CT"), (40.0, 400.0))
    assert (ct.kind, ct.low, ct.high) == ("window", -160.0, 240.0)
    own = intensity_mapping(ImageVolume(mr, modality="MR", window=(50.0, 100.0)), None)
    assert (own.low, own.high) == (0.0, 100.0)
    us = intensity_mapping(ImageVolume(mr.astype(np.uint8), modality="US"), None)
    assert us.kind == "raw"


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_runs(checkpoint: Path, volume: ImageVolume) -> None:
    assert MedSAM2Backend(checkpoint, "cpu", "auto").precision == "fp32"  # slower on CPU
    bf16 = MedSAM2Backend(checkpoint, "cpu", "bf16")
    assert bf16.describe()["precision"] == "bf16"
    result = bf16.segment(volume, [LesionPrompt("l", KEY, BOX, z_range=(3, 3))])
    assert result.masks["l"].shape == volume.shape and result.timings["slices_encoded"] == 1


def test_importing_the_engine_does_not_import_torch() -> None:
    code = (
        "import sys, inference.engine, inference.engine.medsam2;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'sam2' not in sys.modules, 'sam2 imported';"
        "assert inference.engine.MedSAM2Backend is inference.engine.medsam2.MedSAM2Backend"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_cache_budget_evicts_older_volumes(
    backend: MedSAM2Backend, volume: ImageVolume, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs last among the backend's tests: it empties the cache the others rely on."""
    monkeypatch.setattr(backend, "cache_bytes", 6 * 2**20)
    changed = volume.array.copy()
    changed[0, 0, 0] += 1
    other = ImageVolume(changed, volume.spacing, volume.modality, volume.window)
    backend.segment(other, [LesionPrompt("l", 4, BOX, z_range=(3, 4))])
    info = backend.cache_info()
    assert info["volumes"] == 1 and info["slices"] == 1 and info["mib"] <= 6
