"""The learning default backend: round 0 is the classical one; a model trained on accepted
masks fits the draft's settings and, where cross-validation shows it helps, a voxel classifier
that refines it; models save, load and fail loudly; training is deterministic."""

from dataclasses import replace
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
from inference.engine.learned import LearnedBackend, LearnedModel, ModelFileError, Settings
from inference.engine.learned_fit import (
    SETTINGS_GRID,
    SettingsScores,
    TrainingCase,
    select_settings,
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


def blob_case(seed: int, depth_ratio: float) -> TrainingCase:
    """A faint lesion (contrast about 1.3 noise sigmas) whose half-depth is ``depth_ratio``
    times its in-plane half-width, each seed a patient of its own. Too faint for intensity
    alone to outline it, so the draft's ellipsoid prior decides how deep it reaches."""
    rng = np.random.default_rng(seed)
    shape, spacing = (40, 48, 48), (1.0, 1.0, 1.0)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = rng.uniform(8, 10)
    cz, cy, cx = 20 + rng.uniform(-1, 1), 24 + rng.uniform(-2, 2), 24 + rng.uniform(-2, 2)
    lesion = (
        ((xx - cx) / radius) ** 2
        + ((yy - cy) / radius) ** 2
        + ((zz - cz) / (depth_ratio * radius)) ** 2
    ) <= 1.0
    image = np.where(lesion, 120.0, 100.0) + rng.normal(0.0, 15.0, shape)
    volume = ImageVolume(image.astype(np.float32), spacing, "MR")
    k, box = key_slice_and_box(lesion)
    prompt = LesionPrompt(f"blob{seed}", k, box)
    return TrainingCase(volume, prompt, np.asarray(lesion), patient=f"patient {seed}")


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


@pytest.fixture(scope="module")
def flat_model() -> LearnedModel:
    return fit([blob_case(seed, 0.5) for seed in range(4)], seed=0)


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


def test_a_one_slice_range_is_segmented_on_that_slice(model: LearnedModel) -> None:
    """The annotator marks a lesion of one slice (first = last): the features have no slice
    neighbours there, and the mask lies on that slice alone."""
    case = rim_case(10)
    key = case.prompt.key_slice
    prompt = replace(case.prompt, z_range=(key, key))
    mask = LearnedBackend(model=model).segment(case.volume, [prompt]).masks[prompt.lesion_id]
    assert mask[key].any() and mask.sum() == mask[key].sum()


def test_the_model_does_not_spoil_held_out_phantoms(model: LearnedModel) -> None:
    classical, learned = LearnedBackend(), LearnedBackend(model=model)
    cases = phantom_cases(2)
    before = [dice(segment(classical, case), case.reference) for case in cases]
    after = [dice(segment(learned, case), case.reference) for case in cases]
    assert np.mean(after) >= np.mean(before) - 0.01, (before, after)
    assert min(after) >= 0.85, after


def test_cross_validation_keeps_the_classifier_where_it_helps(model: LearnedModel) -> None:
    cv = model.meta["cv_overlap_lost"]
    assert model.classifier is not None and model.meta["classifier"] is True
    assert cv["tuned draft + classifier"] < cv["tuned draft"], cv


def test_the_settings_fit_recovers_how_deep_lesions_run(flat_model: LearnedModel) -> None:
    # Lesions half as deep as wide: the default prior (as deep as wide) overshoots by slices.
    fitted = flat_model.settings_for("MR")
    assert flat_model.meta["strategy"] != "default" and fitted.depth < 1.0, flat_model.meta
    deep = fit([blob_case(seed, 1.6) for seed in range(10, 14)], seed=0)
    assert deep.settings_for("MR").depth > 1.0, deep.meta
    for seed in (20, 21):
        case = blob_case(seed, 0.5)
        before = dice(segment(LearnedBackend(), case), case.reference)
        after = dice(segment(LearnedBackend(model=flat_model), case), case.reference)
        assert after >= before + 0.03, (before, after)  # 0.92 -> 0.96 when written


def test_cross_validation_keeps_the_classifier_out_when_it_hurts() -> None:
    # Rim-enhancing lesions, every other patient's mask holding only the necrotic core: the
    # same images, two conventions. A classifier learns the disagreement and spoils the drafts
    # of the patients it was not fitted on (1 - Dice 0.36 -> 0.44 when written).
    cases = [rim_case(seed) for seed in range(50, 56)]
    for i in range(1, len(cases), 2):
        case = cases[i]
        core = ndimage.binary_opening(case.reference & (case.volume.array < 60))
        cases[i] = TrainingCase(case.volume, case.prompt, core, patient=f"core {i}")
    mixed = fit(cases, seed=0)
    cv = mixed.meta["cv_overlap_lost"]
    assert mixed.classifier is None and mixed.meta["classifier"] is False, cv
    assert cv["tuned draft + classifier"] > cv["tuned draft"], cv
    assert mixed.meta["strategy"] == "default" and mixed.settings == {}, mixed.meta
    assert LearnedBackend(model=mixed).describe()["kind"] == "classical draft with fitted settings"
    case = rim_case(57)
    np.testing.assert_array_equal(
        segment(LearnedBackend(model=mixed), case), segment(LearnedBackend(), case)
    )


def scores(losses: list[list[float]], groups: list[str], modalities: list[str]) -> SettingsScores:
    """Losses given for the default and one other candidate; every other candidate worse."""
    table = np.full((len(SETTINGS_GRID), len(groups)), 1.0)
    table[SETTINGS_GRID.index(Settings())] = losses[0]
    table[SETTINGS_GRID.index(Settings(0.6, 0.0))] = losses[1]
    return SettingsScores(table, groups, modalities)


def test_settings_are_chosen_by_cross_validation_over_patients() -> None:
    # MR lesions prefer the shallow prior, CT lesions the default: one setting per modality.
    mixed = scores(
        [[0.3, 0.3, 0.3, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.3, 0.3, 0.3]],
        list("abcdef"),
        ["MR"] * 3 + ["CT"] * 3,
    )
    strategy, table, losses = select_settings(mixed)
    assert strategy == "per modality", losses
    assert table["MR"] == Settings(0.6, 0.0) and table["CT"] == Settings()
    assert losses["per modality"] < losses["shared"] and losses["per modality"] < 0.3
    # A setting that only one patient likes does not beat the defaults on the others.
    patients = list("abcd")
    lucky = scores([[0.2, 0.2, 0.2, 0.2], [0.0, 0.4, 0.4, 0.4]], patients, ["MR"] * 4)
    assert select_settings(lucky)[:2] == ("default", {})
    # Ties go to the defaults; a single patient leaves nothing to validate on.
    assert select_settings(scores([[0.2] * 4, [0.2] * 4], patients, ["MR"] * 4))[0] == "default"
    assert select_settings(scores([[0.2, 0.2], [0.0, 0.0]], ["a", "a"], ["MR"] * 2))[0] == (
        "default"
    )


def test_the_draft_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="depth must be a finite number > 0"):
        ClassicalBackend(depth=0)
    with pytest.raises(ValueError, match="bias must be a finite number"):
        ClassicalBackend(bias=float("nan"))
    assert ClassicalBackend(bias=-1.0).describe()["options"]["bias"] == -1.0  # type: ignore[index]


def test_save_and_load_give_identical_masks(model: LearnedModel, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    model.save(path)
    loaded = LearnedBackend(model_path=path)
    assert loaded.model is not None and loaded.model.meta == model.meta
    assert loaded.model.settings == model.settings
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
    # A model of the first format (a classifier without fitted settings) must be retrained.
    old = tmp_path / "old.joblib"
    joblib.dump({"format": "lesion-annotator/learned-voxel-model", "version": 1}, old)
    with pytest.raises(ModelFileError, match="version 1; this engine reads version 2: retrain"):
        LearnedModel.load(old)
    # Through the backend loader, as a worker would start it: BackendUnavailable.
    with pytest.raises(BackendUnavailable, match="not a readable model"):
        load_backend("inference.engine.learned.LearnedBackend", model_path=str(corrupt))


def test_training_is_deterministic_for_a_seed() -> None:
    examples = [rim_case(seed) for seed in (20, 21, 23, 24)]
    first = fit(examples, seed=3)
    second = fit(examples, seed=3)
    case = rim_case(22)
    np.testing.assert_array_equal(
        segment(LearnedBackend(model=first), case), segment(LearnedBackend(model=second), case)
    )
    assert first.classifier is not None and first.meta == second.meta
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
