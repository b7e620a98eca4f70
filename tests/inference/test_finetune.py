"""MedSAM2 fine-tuning: the smoke configuration on CPU gives a checkpoint the engine loads; as a
training job it becomes a ModelVersion with metrics, a manager promotes it, and the next round's
pre-annotation runs it.

A random-weight model (the official checkpoint format) stands in for MedSAM2: the tests prove
the plumbing (sampling, prompts, losses, optimiser, checkpoint format, job, promotion), not
accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage

from annotator.models import Lesion, MaskVersion
from inference import services, training
from inference.engine import (
    ImageVolume,
    LesionPrompt,
    key_slice_and_box,
    load_backend,
    make_ct_phantom,
    write_phantom,
)
from inference.engine.medsam2 import MedSAM2Backend
from inference.engine.medsam2.finetune import (
    FinetuneError,
    FinetuneResult,
    evaluate,
    finetune,
    load_cases,
)
from inference.engine.medsam2.recipes import RECIPE, SMOKE
from inference.models import ModelVersion, TrainingJob
from projects.intake.image_import import volume_import
from projects.models import AuditEvent, Round
from tests.inference.test_training import accept_task
from tests.support.medsam2_reference import write_random_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

MEDSAM2 = "inference.engine.medsam2.MedSAM2Backend"


def write_case(path: Path, depth: int = 10, with_object: bool = True) -> Path:
    """An exported case: a bright ellipsoid (label 1) in noise, uint8, 48x48 slices."""
    rng = np.random.default_rng(depth)
    zz, yy, xx = np.mgrid[0:depth, 0:48, 0:48]
    blob = ((zz - depth / 2) / 4) ** 2 + ((yy - 24) / 8) ** 2 + ((xx - 22) / 9) ** 2 <= 1
    imgs = rng.normal(60, 10, blob.shape)
    imgs[blob] += 120
    gts = (blob & with_object).astype(np.uint8)
    np.savez(path, imgs=imgs.clip(0, 255).astype(np.uint8), gts=gts, spacing=[0.8, 0.8, 2.5])
    return path


@pytest.fixture(scope="module")
def start_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("medsam2") / "start.pt", seed=3)


@pytest.fixture(scope="module")
def smoke_run(start_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    folder = tmp_path_factory.mktemp("finetune")
    case = write_case(folder / "case.npz")
    return finetune(start_checkpoint, [case], folder / "tuned.pt", SMOKE, device="cpu")


def test_the_smoke_fine_tune_writes_a_checkpoint_the_engine_loads(
    smoke_run: FinetuneResult, start_checkpoint: Path
) -> None:
    from inference.engine.medsam2.builder import read_state_dict

    assert smoke_run.steps == 2 and len(smoke_run.losses) == 2 and not smoke_run.stopped_early
    assert all(math.isfinite(loss) and loss > 0 for loss in smoke_run.losses)
    before = read_state_dict(start_checkpoint, 0)
    after = read_state_dict(smoke_run.checkpoint, 0)
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # nothing is frozen: the trunk, the mask decoder and the memory path all moved
    for prefix in ("image_encoder.trunk.", "sam_mask_decoder.", "memory_attention."):
        assert any(k.startswith(prefix) for k in changed), prefix
    assert all(after[k].dtype == before[k].dtype for k in before)

    # loads strictly through the engine (the builder refuses any mismatch) and segments
    backend = load_backend(
        "medsam2", checkpoint=str(smoke_run.checkpoint), device="cpu", precision="fp32"
    )
    assert isinstance(backend, MedSAM2Backend)
    assert backend.describe()["checkpoint"] == str(smoke_run.checkpoint)
    with np.load(write_case(smoke_run.checkpoint.parent / "again.npz")) as data:
        image, truth = data["imgs"], data["gts"] > 0
    key, box = key_slice_and_box(truth)
    prompt = LesionPrompt("1", key, box, z_range=(key - 1, key + 1))
    result = backend.segment(ImageVolume(image, modality="US"), [prompt])
    assert result.masks["1"].shape == image.shape and result.masks["1"].dtype == bool
    assert not result.masks["1"][: key - 1].any()  # nothing outside the z range


def test_cases_that_cannot_give_a_clip_are_skipped_and_counted(
    tmp_path: Path, start_checkpoint: Path
) -> None:
    short = write_case(tmp_path / "short.npz", depth=5)
    empty = write_case(tmp_path / "empty.npz", with_object=False)
    good = write_case(tmp_path / "good.npz", depth=12)
    cases, skipped = load_cases([short, empty, good], RECIPE.num_frames)
    assert [c.name for c in cases] == ["good"]
    assert skipped == [
        {"case": "short", "reason": "5 slices, fewer than 8"},
        {"case": "empty", "reason": "no object on a slice followed by 7 more"},
    ]
    # every slice that starts a clip holds the object
    assert all(cases[0].gts[s].any() for s in cases[0].starts)
    with pytest.raises(FinetuneError, match=r"no usable training case .*short: 5 slices"):
        finetune(start_checkpoint, [short, empty], tmp_path / "never.pt", RECIPE, device="cpu")
    assert not (tmp_path / "never.pt").exists()


def test_evaluation_without_validation_cases_says_so(start_checkpoint: Path) -> None:
    metrics = evaluate(start_checkpoint, [], SMOKE, device="cpu")
    assert metrics["dice_mean"] is None and metrics["note"] == "no validation cases"


@pytest.mark.django_db
def test_a_medsam2_project_fine_tunes_promotes_and_pre_annotates_with_the_new_model(
    workspace: dict[str, Any],
    import_volume: Callable[[Any], Any],
    phantom: Any,
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
    start_checkpoint: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings.MEDSAM2_TRAIN_CONFIG = "smoke"
    project = workspace["project"]
    base = ModelVersion.objects.create(
        project=project, name="MedSAM2 random", backend=MEDSAM2, checkpoint=str(start_checkpoint)
    )
    project.active_model_version = base
    project.save()
    import_volume(project)
    accept_task(workspace, phantom)
    accept_task(workspace, phantom)
    # One case for training, one for validation (the export splits by a hash of the patient).
    first = min(t.pk for t in Round.objects.get(project=project, number=0).tasks.all())
    monkeypatch.setattr(
        training, "case_split", lambda task: "train" if task.pk == first else "validation"
    )
    start = training.current_model(Round.objects.get(project=project, number=0))
    assert start is not None and start.version == base

    manager = client_for(workspace["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        response = manager.post("/api/projects/alpha/rounds/0/train/")
    assert response.status_code == 202, response.content
    polled = manager.get(f"/api/training-jobs/{response.json()['id']}/").json()
    assert polled["state"] == "succeeded", polled["error"]
    assert polled["progress"] == 1.0

    version = TrainingJob.objects.get(pk=polled["id"]).result
    assert version is not None and version != base and version.backend == MEDSAM2
    assert version.checkpoint.startswith("models/alpha/") and version.checkpoint.endswith(".pt")
    assert default_storage.exists(version.checkpoint)
    metrics = version.metrics
    assert metrics["backend"] == "medsam2" and metrics["config"] == "smoke"
    assert metrics["started_from"] == {"model_version": base.pk, "name": "MedSAM2 random"}
    assert metrics["cases"] == {"train": 1, "validation": 1}
    assert metrics["train"]["steps"] == 2 and metrics["train"]["cases"] == 1
    validation = metrics["validation"]
    assert validation["cases"] == 1 and validation["lesions"] == 1  # SMOKE: one lesion
    assert 0.0 <= validation["dice_mean"] <= 1.0 and metrics["rounds"] == [0]
    assert list(version.trained_from_rounds.values_list("number", flat=True)) == [0]

    # a redelivered message finds the job done: no second model
    assert training.training_run(job_id=polled["id"]) is None
    assert ModelVersion.objects.filter(project=project).count() == 2

    # the manager promotes it; the next round pre-annotates with it
    promoted = manager.post(f"/api/projects/alpha/model-versions/{version.pk}/promote/")
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["active_model_version"] == version.pk
    event = AuditEvent.objects.get(action="model.promoted")
    assert event.data == {"model_version": version.pk, "name": version.name, "previous": base.pk}
    opened = manager.post("/api/projects/alpha/rounds/")
    assert opened.status_code == 201 and opened.json()["model_version"] == version.pk

    small = make_ct_phantom(seed=11, shape=(4, 48, 48), n_lesions=1)  # 4 slices: quick
    write_phantom(small, tmp_path / "small.nii.gz")
    with open(tmp_path / "small.nii.gz", "rb") as f:
        task = volume_import(project=project, file=f, filename="small.nii.gz").task
    assert task is not None and task.round.number == 1
    k, box = 2, (14, 14, 30, 30)
    lesion = Lesion.objects.create(task=task, lesion_class="tumour", key_slice=k, box=list(box))
    with django_capture_on_commit_callbacks(execute=True):
        started = manager.post("/api/projects/alpha/rounds/1/preannotate/")
    assert started.status_code == 202 and started.json()["started"] == 1, started.content
    progress = manager.get("/api/projects/alpha/rounds/1/preannotate/").json()
    assert progress["succeeded"] == 1, progress
    [mask] = MaskVersion.objects.filter(lesion=lesion)
    assert mask.source == "model" and mask.author_model == version
    assert mask.inference_job.model_version == version
    used = services.load_backend(version.backend, version.checkpoint)
    assert isinstance(used, MedSAM2Backend)
    assert used.describe()["checkpoint"] == services.checkpoint_path(version.checkpoint)
    assert Path(str(used.describe()["checkpoint"])).read_bytes() == (
        default_storage.open(version.checkpoint).read()
    )


@pytest.mark.django_db
def test_a_fine_tune_that_cannot_start_fails_with_its_reason(
    workspace: dict[str, Any],
    phantom: Any,
    start_checkpoint: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.MEDSAM2_TRAIN_CONFIG = "smoke"
    monkeypatch.delenv("MEDSAM2_CHECKPOINT", raising=False)
    settings.MEDSAM2_CHECKPOINT = ""
    project = workspace["project"]
    accept_task(workspace, phantom)
    round0 = Round.objects.get(project=project, number=0)
    without = ModelVersion.objects.create(project=project, name="no file", backend="medsam2")
    project.active_model_version = without
    project.save()
    job = training.training_request(round=round0, user=workspace["manager"])
    failed = training.training_run(job_id=job.pk)
    assert failed is not None and failed.state == "failed" and failed.result is None
    assert failed.error.startswith("no MedSAM2 checkpoint to fine-tune from")

    # every case in the validation split: nothing to train on
    monkeypatch.setattr(training, "case_split", lambda task: "validation")
    without.checkpoint = str(start_checkpoint)
    without.save()
    job = training.training_request(round=round0, user=workspace["manager"])
    failed = training.training_run(job_id=job.pk)
    assert failed is not None and failed.state == "failed"
    assert failed.error == (
        "no training cases: rounds 0..0 export no accepted case in the train split "
        "(1 validation cases)"
    )

    settings.MEDSAM2_TRAIN_CONFIG = "huge"
    job = training.training_request(round=round0, user=workspace["manager"])
    failed = training.training_run(job_id=job.pk)
    assert failed is not None and failed.error.startswith("MEDSAM2_TRAIN_CONFIG is 'huge'")
    assert ModelVersion.objects.filter(project=project).count() == 1
    assert not default_storage.exists("models")


@pytest.mark.django_db
def test_only_managers_promote_and_only_their_projects_versions(
    workspace: dict[str, Any],
    make_project: Callable[..., Any],
    client_for: Callable[[Any], Any],
) -> None:
    project = workspace["project"]
    own = ModelVersion.objects.create(project=project, name="own", backend=MEDSAM2)
    site_wide = ModelVersion.objects.create(project=None, name="site", backend=MEDSAM2)
    other = ModelVersion.objects.create(project=make_project("beta"), name="beta", backend=MEDSAM2)
    url = "/api/projects/alpha/model-versions/{}/promote/"
    for who, status in (("annotator", 403), ("reviewer", 403), ("outsider", 404)):
        assert client_for(workspace[who]).post(url.format(own.pk)).status_code == status, who
    manager = client_for(workspace["manager"])
    assert manager.post(url.format(other.pk)).status_code == 404
    assert manager.post(url.format(10**6)).status_code == 404
    project.refresh_from_db()
    assert (
        project.active_model_version is None
        and not AuditEvent.objects.filter(action="model.promoted").exists()
    )
    assert manager.post(url.format(own.pk)).json()["active_model_version"] == own.pk
    assert manager.post(url.format(site_wide.pk)).json()["active_model_version"] == site_wide.pk
    previous = [e.data["previous"] for e in AuditEvent.objects.filter(action="model.promoted")]
    assert sorted(previous, key=str) == sorted([None, own.pk], key=str)
