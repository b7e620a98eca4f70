"""Model versions and the jobs that run them."""

from django.conf import settings
from django.db import models


class ModelVersion(models.Model):
    """A segmentation model a project can pre-annotate with.

    ``checkpoint`` is a storage key (trained here) or a path on the workers (an operator-supplied
    MedSAM2 file); empty for a backend that needs no weights.
    """

    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_versions",
    )
    name = models.CharField(max_length=100)
    backend = models.CharField(max_length=200)
    checkpoint = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    trained_from_rounds = models.ManyToManyField(
        "projects.Round", blank=True, related_name="trained_models"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Job(models.Model):
    """What every worker job records: its state, progress, failure reason and attempts
    (the claim protocol is :mod:`inference.jobs`)."""

    State = JobState

    state = models.CharField(
        max_length=12, choices=JobState.choices, default=JobState.QUEUED, db_index=True
    )
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    # Deliveries claimed so far (inference.jobs.claim gives up after MAX_ATTEMPTS).
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # While it runs: the attempt's worker ("host:pid") and the last time it said it was alive
    # (inference.jobs.heartbeat); a stale heartbeat means the worker is gone.
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # What happened to the job short of failing, for the people waiting on it: e.g. "worker
    # lost ...; re-queued (attempt 2 of 3)". Kept after it finishes, as its history.
    notice = models.TextField(blank=True)

    class Meta:
        abstract = True
        ordering = ["-created", "-id"]

    @property
    def progress(self) -> float:
        return self.progress_done / self.progress_total if self.progress_total else 0.0


class InferenceJob(Job):
    class Kind(models.TextChoices):
        SEGMENT = "segment", "Segment a lesion from a prompt"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SEGMENT)
    lesion = models.ForeignKey(
        "annotator.Lesion", on_delete=models.CASCADE, related_name="inference_jobs"
    )
    # {"key_slice": k, "box": [x0, y0, x1, y1]}, optionally "positive_points" /
    # "negative_points" ([[x, y, z], ...]), "mask_slice" (z), "z_range" ([z0, z1]) and
    # "mask_version" (the version the mask slice and the slices outside z_range come from)
    prompt = models.JSONField()
    backend = models.CharField(max_length=200)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    queue = models.CharField(max_length=32)
    # Seconds spent per stage: {"queued": .., "load": .., "segment": .., "save": .., "total": ..}
    timings = models.JSONField(default=dict, blank=True)
    result = models.OneToOneField(
        "annotator.MaskVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inference_job",
    )

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.state})"


class TrainingJob(Job):
    """Training the project's learned model on the accepted masks of its rounds up to ``round``.

    The result is a new :class:`ModelVersion` (``result``); rounds opened afterwards use it.
    """

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="training_jobs"
    )
    # The last round whose accepted tasks it learns from (every earlier round counts too).
    round = models.ForeignKey("projects.Round", on_delete=models.CASCADE, related_name="+")
    result = models.OneToOneField(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_job",
    )

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.state})"


class EncodingJob(Job):
    """Encoding every slice of a volume for a backend whose image encoder runs once per slice
    (LiteMedSAM), ahead of the annotator, on the ``gpu-batch`` queue (:mod:`inference.encoding`).

    The embeddings go to the worker's store (memory and ``LITEMEDSAM_EMBEDDINGS_DIR``), never to
    the database: the job only records that the work was done there, and how long it took.
    """

    volume = models.ForeignKey(
        "annotator.Volume", on_delete=models.CASCADE, related_name="encoding_jobs"
    )
    # The backend and model version of the segmentation jobs it prepares for, so that the
    # worker builds (and keeps) the same backend for both.
    backend = models.CharField(max_length=200)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Slices this job encoded, over all its deliveries (0: the store had them all already).
    encoded = models.PositiveIntegerField(default=0)
    # Seconds: {"load": .., "encode": .., "total": ..} of the delivery that finished it.
    timings = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"encoding job {self.pk} ({self.state})"
