"""The learning default backend: round 0 is the classical one; a model trained on accepted
masks refines it; models save, load and fail loudly; training is deterministic."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.engine import (
    BackendUnavailable,
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    dice,
    key_slice_and_box,
    load_backend,
    make_ct_phantom,
)
from inference.engine.learned import (
    LearnedBackend,
    LearnedModel,
    ModelFileError,
    TrainingCase,
    train,
)
from inference.evaluation import DEFAULT_DATA, LesionCase, load_lesion, load_pairs


def fit(examples: list[TrainingCase], seed: int = 0) -> LearnedModel:
    """A small training run: the tests check the mechanics, the benchmark the accuracy."""
    return train(examples, seed=seed, samples_per_case=3000, max_iter=40)


def rim_case(seed: int) -> TrainingCase:
    """A rim-enhancing lesion with a necrotic core: the box's core is DARKER than the ring
    around the box, so the classical backend takes it for a dark lesion and segments only the
    necrosis. A model that has seen such lesions learns that the bright rim belongs too."""
    rng = np.random.default_rng(seed)
    shape, spacing = (24, 64, 64), (0.8, 0.8, 2.0)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = rng.uniform(7, 11)
    cz, cy, cx = 12 + rng.uniform(-1, 1), 32 + rng.uniform(-3, 3), 32 + rng.uniform(-3, 3)
    distance = np.sqrt(
        ((xx - cx) * spacing[0]) ** 2
        + ((yy - cy) * spacing[1]) ** 2
        + ((zz - cz) * spacing[2]) ** 2
    )
    lesion = distance <= radius
    image = np.full(shape, 40.0, dtype=np.float32)
    image[lesion] = 110.0
    image[distance <= radius * rng.uniform(0.55, 0.7)] = 0.0
    image = ndimage.gaussian_filter(image, sigma=(0.3, 0.7, 0.7))
    image += rng.normal(0.0, 6.0, shape).astype(np.float32)
    volume = ImageVolume(image.astype(np.float32), spacing, "CT", window=(40.0, 400.0))
    k, box = key_slice_and_box(lesion)
    return TrainingCase(volume, LesionPrompt(f"rim{seed}", k, box), np.asarray(lesion))


def phantom_cases(seed: int) -> list[TrainingCase]:
    phantom = make_ct_phantom(seed)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0))
    cases = []
    for i, mask in enumerate(phantom.lesion_masks):
        k, box = key_slice_and_box(mask)
        cases.append(TrainingCase(volume, LesionPrompt(f"p{seed}-{i}", k, box), mask))
    return cases


def segment(backend: ClassicalBackend, case: TrainingCase) -> np.ndarray:
    return backend.segment(case.volume, [case.prompt]).masks[case.prompt.lesion_id]


@pytest.fixture(scope="module")
def model() -> LearnedModel:
    examples = [rim_case(seed) for seed in range(3)] + phantom_cases(0)
    return fit(examples, seed=0)


def test_without_a_model_it_is_the_classical_backend() -> None:
    classical, learned = ClassicalBackend(), LearnedBackend()
    for case in [*phantom_cases(1), rim_case(5)]:
        np.testing.assert_array_equal(segment(learned, case), segment(classical, case))
    assert isinstance(load_backend("inference.engine.learned.LearnedBackend"), LearnedBackend)


def test_the_model_fixes_what_the_classical_backend_misjudges(model: LearnedModel) -> None:
    classical, learned = LearnedBackend(), LearnedBackend(model=model)
    for seed in (10, 11):
        case = rim_case(seed)
        before = dice(segment(classical, case), case.reference)
        after = dice(segment(learned, case), case.reference)
        # Round 0 misses much of the rim (about 0.7): only the core stands out on the key slice.
        assert before < 0.8, before
        assert after >= 0.9 and after >= before + 0.15, (before, after)


def test_the_model_does_not_spoil_held_out_phantoms(model: LearnedModel) -> None:
    classical, learned = LearnedBackend(), LearnedBackend(model=model)
    cases = phantom_cases(2)
    before = [dice(segment(classical, case), case.reference) for case in cases]
    after = [dice(segment(learned, case), case.reference) for case in cases]
    assert np.mean(after) >= np.mean(before) - 0.01, (before, after)
    assert min(after) >= 0.85, after


def test_save_and_load_give_identical_masks(model: LearnedModel, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    model.save(path)
    loaded = LearnedBackend(model_path=path)
    assert loaded.model is not None and loaded.model.meta == model.meta
    assert loaded.describe()["model"] == model.meta
    for case in [rim_case(12), *phantom_cases(2)[:1]]:
        np.testing.assert_array_equal(
            segment(loaded, case), segment(LearnedBackend(model=model), case)
        )


def test_bad_model_files_give_clear_errors(model: LearnedModel, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        LearnedModel.load(tmp_path / "missing.joblib")
    corrupt = tmp_path / "corrupt.joblib"
    corrupt.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelFileError, match="not a readable model"):
        LearnedModel.load(corrupt)
    truncated = tmp_path / "truncated.joblib"
    model.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="not a readable model"):
        LearnedModel.load(truncated)
    import joblib

    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"weights": [1, 2, 3]}, foreign)
    with pytest.raises(ModelFileError, match="is not a lesion-annotator"):
        LearnedModel.load(foreign)
    future = tmp_path / "future.joblib"
    joblib.dump({"format": "lesion-annotator/learned-voxel-model", "version": 99}, future)
    with pytest.raises(ModelFileError, match="version 99"):
        LearnedModel.load(future)
    # Through the backend loader, as a worker would start it: BackendUnavailable.
    with pytest.raises(BackendUnavailable, match="not a readable model"):
        load_backend("inference.engine.learned.LearnedBackend", model_path=str(corrupt))


def test_training_is_deterministic_for_a_seed() -> None:
    examples = [rim_case(seed) for seed in (20, 21)]
    first = fit(examples, seed=3)
    second = fit(examples, seed=3)
    case = rim_case(22)
    np.testing.assert_array_equal(
        segment(LearnedBackend(model=first), case), segment(LearnedBackend(model=second), case)
    )
    region = LearnedBackend()._segment_crop(case.volume, case.prompt)
    features = LearnedBackend()._region(case.volume, region[0], region[1], None).features
    np.testing.assert_array_equal(first.predict(features), second.predict(features))


def test_training_needs_cases() -> None:
    from inference.engine import InvalidInput

    with pytest.raises(InvalidInput, match="no training cases"):
        train([], seed=0)


# Real lesions, one per patient, different modalities (skipped without ../shared/data).
REAL = [
    LesionCase("nsclc_LUNG1-001_crop", 1, "CT", (40.0, 400.0)),
    LesionCase("sts_STS_001_PET", 1, "PT"),
    LesionCase("brats2015_brats_2013_pat0002_1_Flair", None, "MR"),
    LesionCase("lu177_spect_scan2_crop", 1, "PT"),
]


def test_leave_one_out_on_real_lesions() -> None:
    pairs = load_pairs()
    if pairs is None:
        pytest.skip(f"real data not available at {DEFAULT_DATA}")
    loaded = [load_lesion(case, pairs, DEFAULT_DATA) for case in REAL]
    examples = [TrainingCase(item.volume, item.prompt, item.reference) for item in loaded]
    before, after = [], []
    for i, held_out in enumerate(examples):
        model = fit(examples[:i] + examples[i + 1 :], seed=0)
        before.append(dice(segment(LearnedBackend(), held_out), held_out.reference))
        after.append(dice(segment(LearnedBackend(model=model), held_out), held_out.reference))
    # Three training lesions of other modalities cannot teach much beyond the box-prior draft
    # (0.838 -> 0.822 when written: the SPECT lesion loses 0.06, the rest within 0.01); the
    # model must not spoil the mean by more than that, nor wreck any lesion.
    assert np.mean(after) >= np.mean(before) - 0.03, (before, after)
    assert min(after) >= 0.5, (before, after)
