"""Training the project's learned model as a job: from accepted tasks to a ModelVersion that the
next round pre-annotates with; failures show on the job; managers only; exactly once."""

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from annotator.annotation.services import Author, lesion_create, mask_version_save
from annotator.models import Lesion, MaskVersion
from inference import services, training
from inference.engine import key_slice_and_box
from inference.engine.hybrid import HybridBackend
from inference.engine.learned import LearnedBackend, LearnedModel
from inference.engine.learned_training import LEARNED_BACKEND, learned_host
from inference.jobs import claim
from inference.models import ModelVersion, TrainingJob
from projects.models import Round
from projects.services import round_open
from projects.task_services import task_claim_next, task_review, task_submit

pytestmark = pytest.mark.django_db

URL = "/api/projects/alpha/rounds/0/train/"


@pytest.fixture(autouse=True)
def every_case_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's split hashes the patient (here: a study UID made at import, so random):
    every case on the train side unless a test says otherwise."""
    monkeypatch.setattr(training, "case_split", lambda task: "train")


def accept_task(workspace: dict[str, Any], phantom: Any) -> None:
    """The annotator claims the next task, masks every phantom lesion, the reviewer accepts."""
    annotator, project = workspace["annotator"], workspace["project"]
    task = task_claim_next(user=annotator, project=project)
    assert task is not None
    for mask in phantom.lesion_masks:
        k, box = key_slice_and_box(mask)
        lesion = lesion_create(
            task=task, user=annotator, lesion_class="tumour", key_slice=k, box=list(box)
        )
        mask_version_save(lesion=lesion, mask=mask, source="human", author=Author(user=annotator))
    task_submit(task=task, user=annotator)
    task_review(task=task, reviewer=workspace["reviewer"], decision="accept")


@pytest.fixture
def accepted(
    workspace: dict[str, Any], import_volume: Callable[[Any], Any], phantom: Any
) -> dict[str, Any]:
    """Round 0 with two accepted tasks (two masked lesions each) and one still unclaimed."""
    import_volume(workspace["project"])
    import_volume(workspace["project"])
    accept_task(workspace, phantom)
    accept_task(workspace, phantom)
    return workspace


def test_training_makes_the_model_the_next_round_pre_annotates_with(
    accepted: dict[str, Any],
    import_volume: Callable[[Any], Any],
    phantom: Any,
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(accepted["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL)
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "queued" and response.json()["round"] == 0
    polled = client.get(f"/api/training-jobs/{response.json()['id']}/").json()
    assert polled["state"] == "succeeded", polled["error"]
    assert polled["progress"] == 1.0 and polled["progress_total"] == 5

    job = TrainingJob.objects.get(pk=polled["id"])
    version = job.result
    assert version is not None and polled["result"]["id"] == version.pk
    assert version.project == accepted["project"]
    # The site's default is the hybrid: the learned draft becomes its classical part.
    assert version.backend == settings.INFERENCE_BACKEND == "default"
    assert (
        version.checkpoint.startswith("models/alpha/")
        and not Path(version.checkpoint).is_absolute()
    )
    assert default_storage.exists(version.checkpoint)
    assert version.metrics["cases"] == 4 and version.metrics["tasks"] == 2
    assert version.metrics["sources"] == {"human": 4} and version.metrics["rounds"] == [0]
    assert version.metrics["voxels"] > 0 and version.metrics["seconds"] > 0
    assert version.metrics["validation"]["dice_mean"] is None
    assert version.metrics["validation"]["note"].startswith("no validation cases")
    round0 = Round.objects.get(project=accepted["project"], number=0)
    assert list(version.trained_from_rounds.all()) == [round0]
    backend = services.load_backend(version.backend, version.checkpoint)
    assert isinstance(backend, HybridBackend) and isinstance(backend.classical, LearnedBackend)
    assert isinstance(backend.classical.model, LearnedModel)
    assert backend.classical.model.meta["cases"] == 4

    # a redelivered message finds the job done: no second model
    assert training.training_run(job_id=job.pk) is None
    assert ModelVersion.objects.count() == 1

    # the next round opened uses the trained model, and its pre-annotation runs it
    opened = client.post("/api/projects/alpha/rounds/")
    assert opened.status_code == 201, opened.content
    assert opened.json()["number"] == 1 and opened.json()["model_version"] == version.pk
    task = import_volume(accepted["project"]).task
    assert task.round.number == 1
    k, box = key_slice_and_box(phantom.lesion_masks[0])
    lesion = Lesion.objects.create(task=task, lesion_class="tumour", key_slice=k, box=list(box))
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post("/api/projects/alpha/rounds/1/preannotate/")
    assert started.status_code == 202 and started.json()["started"] == 1, started.content
    assert client.get("/api/projects/alpha/rounds/1/preannotate/").json()["succeeded"] == 1
    [mask] = MaskVersion.objects.filter(lesion=lesion)
    assert mask.source == "model" and mask.author_model == version
    assert mask.author_backend == version.backend
    assert mask.inference_job.model_version == version


def test_held_out_cases_score_the_new_model_against_the_round_s(
    accepted: dict[str, Any],
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The export's validation split is held out: the model trains on the rest, and the job
    records the Dice of the new model and of the round's own (untrained) one on it."""
    held = min(
        accepted["project"]
        .rounds.get(number=0)
        .tasks.filter(state="accepted")
        .values_list("pk", flat=True)
    )
    monkeypatch.setattr(
        training, "case_split", lambda task: "validation" if task.pk == held else "train"
    )
    client = client_for(accepted["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL)
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    metrics = job.result.metrics if job.result else {}
    assert metrics["cases"] == 2 and metrics["tasks"] == 1  # the other task's two lesions
    after, before = metrics["validation"], metrics["validation_before"]
    assert after["cases"] == 1 and after["lesions"] == 2 and len(after["dice"]) == 2
    assert before["model"] == "untrained default" and before["dice"].keys() == after["dice"].keys()
    for scores in (after, before):
        assert 0.0 < scores["dice_mean"] <= 1.0
        assert scores["dice_mean"] == pytest.approx(sum(scores["dice"].values()) / 2, abs=1e-4)
    assert job.progress_done == job.progress_total == 2 + 2 + 1
    # The gate (box alone and with the slice range): a refused version is never used alone.
    gate = metrics["gate"]
    print("gate:", gate)
    assert gate["reason"] and gate["margin"] == 0.01
    assert ("promotion" in metrics) == (not gate["promoted"])
    used = round_open(project=accepted["project"]).model_version
    assert (used == job.result) == gate["promoted"]

    # every case on the validation side: trained on all of them, and said so
    monkeypatch.setattr(training, "case_split", lambda task: "validation")
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(URL)
    job = TrainingJob.objects.get(pk=again.json()["id"])
    assert job.state == "succeeded", job.error
    metrics = job.result.metrics if job.result else {}
    assert metrics["cases"] == 4 and metrics["validation"]["dice_mean"] is None
    assert "nothing held out" in metrics["validation"]["note"]
    assert "validation_before" not in metrics


def test_no_accepted_masks_fails_the_job_with_its_reason(
    workspace: dict[str, Any],
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(workspace["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL)
    assert response.status_code == 202, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.state == "failed" and job.finished_at is not None and job.result is None
    assert job.error.startswith("no training cases: no accepted task of rounds 0..0")
    assert not ModelVersion.objects.exists()
    # a new round opened now keeps the untrained default
    assert round_open(project=workspace["project"]).model_version is None


def test_a_failure_while_training_is_recorded_and_leaves_no_file(
    accepted: dict[str, Any], monkeypatch: Any, media_root: Path
) -> None:
    def explode(cases: Any, **kwargs: Any) -> None:
        list(cases)
        raise MemoryError("out of memory in the trainer")

    monkeypatch.setattr("inference.engine.learned_fit.train", explode)
    job = training.training_request(round=accepted["task"].round, user=accepted["manager"])
    done = training.training_run(job_id=job.pk)
    assert done is not None and done.state == "failed"
    assert done.error == "internal error: MemoryError: out of memory in the trainer"
    assert not (media_root / "models").exists()


def test_only_the_latest_attempt_records_its_model(
    accepted: dict[str, Any], monkeypatch: Any, media_root: Path
) -> None:
    """A redelivered job runs again while the first attempt still trains (its worker looked
    gone: silent past JOB_LOST_AFTER_S): the first attempt's model is dropped (and its file
    deleted), so the job gets exactly one ModelVersion."""
    job = training.training_request(round=accepted["task"].round, user=accepted["manager"])

    class Fake:
        meta = {"cases": 1}

        def save(self, path: Path) -> None:
            Path(path).write_bytes(b"model")

    def overtaken(cases: Any, **kwargs: Any) -> Fake:
        list(cases)
        TrainingJob.objects.filter(pk=job.pk).update(
            worker="gpu9:4242:1", heartbeat_at=timezone.now() - timedelta(minutes=1)
        )
        claim(TrainingJob, job.pk)  # the redelivered message's claim takes the job over
        return Fake()

    monkeypatch.setattr("inference.engine.learned_fit.train", overtaken)
    first = training.training_run(job_id=job.pk)
    assert first is not None and first.state == "running" and first.result is None
    assert not ModelVersion.objects.exists()
    assert not list((media_root / "models" / "alpha").iterdir())


def test_one_training_at_a_time_and_managers_only(
    accepted: dict[str, Any], client_for: Callable[[Any], Any]
) -> None:
    manager = client_for(accepted["manager"])
    first = manager.post(URL)  # on-commit hooks do not run here: the job stays queued
    assert first.status_code == 202
    again = manager.post(URL)
    assert again.status_code == 409 and "is queued" in again.json()["detail"]
    assert manager.post("/api/projects/alpha/rounds/7/train/").status_code == 404

    job_url = f"/api/training-jobs/{first.json()['id']}/"
    for role, status in (("annotator", 403), ("reviewer", 403), ("outsider", 404)):
        client = client_for(accepted[role])
        assert client.post(URL).status_code == status, role
        assert client.get(job_url).status_code == status, role
    assert TrainingJob.objects.count() == 1


def test_a_learned_draft_is_trained_for_the_hybrid_default_or_alone(
    workspace: dict[str, Any], settings: Any
) -> None:
    """The hybrid default (by alias or path, site-wide or a round's model) takes the learned
    draft as its classical part; any other backend gets the learned backend alone."""
    round_ = workspace["task"].round
    for name, host in (
        ("default", "default"),
        ("inference.engine.hybrid.HybridBackend", "inference.engine.hybrid.HybridBackend"),
        ("classical", LEARNED_BACKEND),
        (LEARNED_BACKEND, LEARNED_BACKEND),
    ):
        settings.INFERENCE_BACKEND = name
        assert learned_host(training.round_model(round_).ref()) == host, name
    round_.model_version = ModelVersion.objects.create(
        project=workspace["project"], name="hybrid", backend="default", checkpoint="m.joblib"
    )
    assert learned_host(training.round_model(round_).ref()) == "default"


def test_an_operator_chosen_model_is_kept_for_the_next_round(workspace: dict[str, Any]) -> None:
    project = workspace["project"]
    trained = ModelVersion.objects.create(
        project=project, name="learned", backend=LEARNED_BACKEND, checkpoint="m.joblib"
    )
    TrainingJob.objects.create(
        project=project, round=workspace["task"].round, state="succeeded", result=trained
    )
    assert round_open(project=project).model_version == trained
    chosen = ModelVersion.objects.create(
        project=project, name="medsam2", backend="inference.engine.medsam2.MedSAM2Backend"
    )
    project.active_model_version = chosen
    project.save()
    assert round_open(project=project).model_version == chosen


def test_the_schema_lists_the_training_endpoints(
    workspace: dict[str, Any], client_for: Callable[[Any], Any]
) -> None:
    schema = client_for(workspace["manager"]).get("/api/schema/?format=json").json()
    assert "/api/projects/{slug}/rounds/{number}/train/" in schema["paths"]
    assert "/api/training-jobs/{id}/" in schema["paths"]
    assert "TrainingJob" in schema["components"]["schemas"]
    segment = schema["components"]["schemas"]["SegmentRequestRequest"]["properties"]
    assert {"positive_points", "negative_points", "mask_slice", "z_range"} <= set(segment)


def test_a_checkpoint_in_remote_storage_is_copied_to_a_local_file(
    monkeypatch: Any, tmp_path: Path
) -> None:
    key = default_storage.save("models/alpha/training-1-abc.joblib", ContentFile(b"weights"))

    class Remote:
        """The storage as S3 looks to the worker: files to open, no local paths."""

        def path(self, name: str) -> str:
            raise NotImplementedError("S3 has no local paths")

        def open(self, name: str, mode: str = "rb") -> Any:
            return default_storage.open(name, mode)

    monkeypatch.setattr(services, "default_storage", Remote())
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    local = services.checkpoint_path(key)
    assert local.startswith(str(tmp_path)) and Path(local).read_bytes() == b"weights"
    assert services.checkpoint_path(key) == local  # copied once
    assert services.checkpoint_path("/models/medsam2.pt") == "/models/medsam2.pt"
