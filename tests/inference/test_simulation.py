"""manage.py simulate_campaign: two simulated annotators over rounds, on a tiny synthetic folder
(and, when ../shared/data is there, on a few real lesions)."""

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.management import CommandError, call_command

from inference.engine import ClassicalBackend
from inference.evaluation import DEFAULT_DATA, LesionCase, load_pairs
from inference.simulated_annotator import CostModel, recontour_only
from inference.simulation import run_campaign, split_by_patient, training_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHAPE = (16, 40, 40)  # z, y, x
SPACING = (1.0, 1.0, 2.0)  # x, y, z in mm


def blob_pair(folder: Path, pair_id: str, seed: int) -> dict[str, Any]:
    """A noisy MR-like image with one bright ellipsoid and its label map (value 1)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    cz, cy, cx = 8 + rng.uniform(-1, 1), 20 + rng.uniform(-4, 4), 20 + rng.uniform(-4, 4)
    ry, rx = rng.uniform(5, 8), rng.uniform(5, 8)
    lesion = ((zz - cz) / 3.2) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    image = np.where(lesion, 300.0, 100.0) + rng.normal(0, 15, SHAPE)
    for array, name in ((image.astype(np.float32), "image"), (lesion.astype(np.uint8), "label")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(SPACING)
        sitk.WriteImage(itk, str(folder / f"{pair_id}_{name}.nii.gz"))
    return {
        "id": pair_id,
        "image": f"{pair_id}_image.nii.gz",
        "label": f"{pair_id}_label.nii.gz",
        "modality": "MR FLAIR",
        "kind": "lesion",
        "label_names": {"1": "tumour"},
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five lesions of four patients (p1 imaged twice, in CT and MR: one patient)."""
    folder = tmp_path_factory.mktemp("pairs")
    ids = ["synth_p1_ct", "synth_p1_mr", "synth_p2", "synth_p3", "synth_p4"]
    pairs = [blob_pair(folder, pair_id, seed) for seed, pair_id in enumerate(ids)]
    (folder / "pairs.json").write_text(json.dumps({"pairs": pairs}))
    return folder


def simulate(*args: Any) -> str:
    out = io.StringIO()
    call_command("simulate_campaign", *map(str, args), stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def campaign(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One two-round campaign with a cost model from a file, one value overridden by a flag."""
    out = tmp_path_factory.mktemp("campaign")
    config = out / "cost.json"
    config.write_text(json.dumps({"manual_slice_s": 60, "box_s": 7, "review_slice_s": 1.5}))
    text = simulate(
        "--data", data, "--rounds", 2, "--report", out / "report",
        "--cost-config", config, "--correction-factor", 0.5,
    )  # fmt: skip
    return text, out / "report"


ARMS = (("recontour", False), ("recontour", True), ("prompts", False), ("prompts", True))


def seconds(row: dict[str, Any], annotator: str, untrained: bool) -> float:
    value: float = row[f"untrained_{annotator}" if untrained else annotator]["seconds"]
    return value


def test_the_report_figures_are_consistent(campaign: tuple[str, Path]) -> None:
    text, out = campaign
    report = json.loads((out / "report.json").read_text())
    rows, rounds = report["lesions"], report["rounds"]
    assert len(rows) == 5 and [r["round"] for r in rounds] == [0, 1]
    assert sum(r["lesions"] for r in rounds) == 5
    assert report["config"]["training"] == "inference.engine.learned.train"
    assert report["config"]["prompt_policy"] == {
        "max_prompts": 3, "slice_range": True, "order": "worst",
    }  # fmt: skip
    assert rounds[0]["training_cases"] == 0 and not rounds[0]["trained"]  # round 0: no model
    assert rounds[1]["training_cases"] == rounds[0]["lesions"] and rounds[1]["trained"]
    # What training chose is in the report: draft settings, the classifier kept or not, why.
    assert rounds[0]["model"] == {}
    assert {"strategy", "settings", "classifier", "cv_overlap_lost"} <= set(rounds[1]["model"])
    for summary in rounds:
        mine = [row for row in rows if row["round"] == summary["round"]]
        manual = sum(row["manual_s"] for row in mine)
        assert summary["manual_s_per_lesion"] == pytest.approx(manual / len(mine))
        assert summary["mean_dice"] == pytest.approx(np.mean([row["dice"] for row in mine]))
        assert summary["untrained_mean_dice"] == pytest.approx(
            np.mean([row["untrained_dice"] for row in mine])
        )
        for annotator, untrained in ARMS:
            arm = summary["annotators"][annotator]["untrained" if untrained else "trained"]
            spent = sum(seconds(row, annotator, untrained) for row in mine)
            assert arm["cost_reduction"] == pytest.approx(1 - spent / manual)
            assert arm["seconds_per_lesion"] == pytest.approx(spent / len(mine))
            flat = f"{annotator}_{'untrained_' if untrained else ''}cost_reduction"
            assert summary[flat] == arm["cost_reduction"]
            key = f"untrained_{annotator}" if untrained else annotator
            assert arm["corrected_slices"] == sum(row[key]["corrected_slices"] for row in mine)
            assert arm["prompts"] == sum(row[key]["prompts"] for row in mine)
    # Round 0 has no model: its figures are the untrained ones.
    for annotator in ("recontour", "prompts"):
        assert (
            rounds[0][f"{annotator}_untrained_cost_reduction"]
            == (rounds[0][f"{annotator}_cost_reduction"])
        )
    assert rounds[0]["untrained_mean_dice"] == rounds[0]["mean_dice"]
    # Patients stay together: p1's CT and MR lesions are in the same round.
    p1 = {row["round"] for row in rows if row["patient"] == "synth_p1"}
    assert len(p1) == 1
    last = text.strip().splitlines()[-1]
    assert last == report["result"]
    values = dict(item.split("=") for item in last.split()[2:])
    assert last.startswith("RESULT simulate_campaign ")
    assert set(values) == {
        "round0_cost_reduction", "last_round_cost_reduction",
        "last_round_untrained_cost_reduction", "round0_recontour_cost_reduction",
        "last_round_recontour_cost_reduction", "round0_dice", "last_round_dice",
        "min_model_dice_gain", "rounds", "lesions",
    }  # fmt: skip
    # The headline reductions are the prompting annotator's.
    assert values["round0_cost_reduction"] == f"{rounds[0]['prompts_cost_reduction']:.3f}"
    assert values["last_round_cost_reduction"] == f"{rounds[1]['prompts_cost_reduction']:.3f}"
    assert values["last_round_untrained_cost_reduction"] == (
        f"{rounds[1]['prompts_untrained_cost_reduction']:.3f}"
    )
    assert values["round0_recontour_cost_reduction"] == (
        f"{rounds[0]['recontour_cost_reduction']:.3f}"
    )
    gain = min(r["mean_dice"] - r["untrained_mean_dice"] for r in rounds)
    assert values["min_model_dice_gain"] == f"{gain:.3f}"
    assert (values["rounds"], values["lesions"]) == ("2", "5")
    png = (out / "cost_per_lesion.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000


def test_the_cost_model_from_file_and_flags_is_honoured(campaign: tuple[str, Path]) -> None:
    _, out = campaign
    report = json.loads((out / "report.json").read_text())
    assert report["cost_model"] == {
        "manual_slice_s": 60.0,
        "box_s": 7.0,
        "review_slice_s": 1.5,
        "correction_factor": 0.5,  # the flag wins over the file and the default
        "range_mark_s": 1.5,
    }
    for row in report["lesions"]:
        assert row["manual_s"] == 60.0 * row["reference_slices"]
        for key in ("recontour", "prompts", "untrained_recontour", "untrained_prompts"):
            done = row[key]
            assert done["seconds"] == pytest.approx(
                7.0 * (1 + done["prompts"] + done["erased_slices"])
                + 1.5 * done["reviewed_slices"]
                + 1.5 * done["range_marks"]
                + 0.5 * 60.0 * done["corrected_slices"]
            )
        assert row["prompts"]["range_marks"] == 2 and row["recontour"]["range_marks"] == 0
        assert row["prompts"]["prompts"] + row["prompts"]["erased_slices"] <= 3


def test_without_range_or_prompts_both_annotators_cost_the_same(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    text = simulate(
        "--data", data, "--rounds", 1, "--report", out, "--max-prompts", 0, "--no-slice-range"
    )
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["prompt_policy"]["slice_range"] is False
    for row in report["lesions"]:
        assert row["prompts"] == row["recontour"]
    (summary,) = report["rounds"]
    assert summary["prompts_cost_reduction"] == summary["recontour_cost_reduction"]
    assert "round0_cost_reduction=" in text.strip().splitlines()[-1]


class Untrainable(ClassicalBackend):
    """The classical backend under a name no training is registered for."""


def test_a_backend_without_training_reuses_the_untrained_one(data: Path, tmp_path: Path) -> None:
    path = f"{__name__}.Untrainable"
    assert training_for(path) is None and training_for("default") is not None
    out = tmp_path / "report"
    simulate("--data", data, "--rounds", 2, "--report", out, "--backend", path)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["backend"] == path
    assert report["config"]["training"].startswith("none: backend")
    assert report["config"]["training_available"] is False
    last = report["rounds"][1]
    assert not last["trained"] and last["model"] == {} and last["train_s"] == 0.0
    assert last["mean_dice"] == last["untrained_mean_dice"]
    assert last["prompts_cost_reduction"] == last["prompts_untrained_cost_reduction"]


def reference_ball() -> np.ndarray:
    zz, yy, xx = np.ogrid[:10, :20, :20]
    return ((zz - 5) / 3.5) ** 2 + ((yy - 10) / 6) ** 2 + ((xx - 10) / 6) ** 2 <= 1.0


def test_a_perfect_prediction_costs_only_the_box_and_the_review() -> None:
    ref = reference_ball()
    slices = int(ref.any(axis=(1, 2)).sum())
    done = recontour_only(ref.copy(), ref, CostModel())
    assert done.dice_before_brush == 1.0 and done.corrected_slices == 0
    assert done.reviewed_slices == slices
    assert done.seconds == 5.0 + 2.0 * slices
    assert CostModel().manual(slices) == 30.0 * slices


def test_a_missed_or_added_slice_needs_correction() -> None:
    ref = reference_ball()
    slices = int(ref.any(axis=(1, 2)).sum())
    top = int(np.flatnonzero(ref.any(axis=(1, 2)))[-1])
    missed = ref.copy()
    missed[top] = False
    done = recontour_only(missed, ref, CostModel())
    assert done.corrected_slices == 1 and done.reviewed_slices == slices
    added = ref.copy()
    added[top + 1, 8:12, 8:12] = True  # a slice the reference does not have
    done = recontour_only(added, ref, CostModel(correction_factor=0.5))
    assert done.corrected_slices == 1
    assert done.reviewed_slices == slices + 1
    assert done.seconds == 5.0 + 2.0 * done.reviewed_slices + 15.0


def test_the_split_is_by_patient_balanced_and_seeded() -> None:
    cases = [LesionCase(f"x_p{p}_{m}", None, "MR") for p in range(6) for m in ("ct", "mr")]
    cases += [LesionCase("x_p9", None, "MR")]
    groups = split_by_patient(cases, 3, seed=1)
    assert sorted(len(g) for g in groups) == [4, 4, 5]
    for group in groups:
        for case in group:
            assert all(c in group for c in cases if c.patient == case.patient)
    assert groups == split_by_patient(cases, 3, seed=1)
    with pytest.raises(ValueError, match="cannot fill"):
        split_by_patient(cases[:2], 2, seed=0)


def test_the_split_deals_each_collection_across_the_rounds() -> None:
    # Three patients of a big-lesion collection, three of a small one, two singletons.
    cases = [LesionCase(f"big_p{p}_{m}", None, "MR") for p in range(3) for m in ("ct", "mr")]
    cases += [LesionCase(f"small_p{p}", None, "CT") for p in range(3)]
    cases += [LesionCase("spect_p7_scan1", None, "PT"), LesionCase("spect_p7_scan2", None, "PT")]
    cases += [LesionCase("lung_p8", None, "CT")]
    for seed in range(4):
        groups = split_by_patient(cases, 3, seed=seed)
        for group in groups:
            # One patient of each dealt collection per round, as a campaign manager batches.
            assert len({c.patient for c in group if c.collection == "big"}) == 1
            assert len({c.patient for c in group if c.collection == "small"}) == 1
        sizes = [len(g) for g in groups]
        assert sum(sizes) == 12 and max(sizes) - min(sizes) <= 2, sizes


def test_clear_errors(tmp_path: Path, data: Path) -> None:
    with pytest.raises(CommandError, match=r"no pairs\.json"):
        simulate("--data", tmp_path / "absent", "--report", tmp_path / "out")
    bad = tmp_path / "cost.json"
    bad.write_text(json.dumps({"manual_slice": 10}))
    with pytest.raises(CommandError, match="unknown keys"):
        simulate("--data", data, "--report", tmp_path / "out", "--cost-config", bad)
    with pytest.raises(CommandError, match="must be a number >= 0"):
        simulate("--data", data, "--report", tmp_path / "out", "--box-s", -1)
    with pytest.raises(CommandError, match="cannot fill"):
        simulate("--data", data, "--report", tmp_path / "out", "--rounds", 5)
    with pytest.raises(CommandError, match=r"--backend: .*cannot import module 'nowhere'"):
        simulate("--data", data, "--report", tmp_path / "out", "--backend", "nowhere.Backend")
    with pytest.raises(CommandError, match="--max-prompts: max_prompts must be an integer >= 0"):
        simulate("--data", data, "--report", tmp_path / "out", "--max-prompts", -1)
    with pytest.raises(CommandError, match="range_mark_s must be a number >= 0"):
        simulate("--data", data, "--report", tmp_path / "out", "--range-mark-s", -2)


# Small lesion pairs of ../shared/data: three patients, four lesions.
REAL_PAIRS = ("pyradiomics_breast1", "sts_STS_001_PET", "lu177_spect_scan2_crop")


def test_on_real_lesions_free_prompts_never_cost_more() -> None:
    pairs = load_pairs(DEFAULT_DATA)
    if pairs is None or not set(REAL_PAIRS) <= set(pairs):
        pytest.skip(f"no {', '.join(REAL_PAIRS)} in {DEFAULT_DATA}")
    free = CostModel(box_s=0.0, review_slice_s=0.0, range_mark_s=0.0)
    campaign = run_campaign(
        {key: pairs[key] for key in REAL_PAIRS}, DEFAULT_DATA, rounds=1, cost=free
    )
    assert len(campaign.outcomes) >= 3
    for outcome in campaign.outcomes:
        assert outcome.prompts.seconds <= outcome.recontour.seconds, outcome.lesion
        assert outcome.prompts.corrected_slices <= outcome.recontour.corrected_slices
    assert sum(o.prompts.prompts + o.prompts.erased_slices for o in campaign.outcomes) > 0
