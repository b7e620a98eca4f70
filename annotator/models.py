"""Images (study / series / volume), lesions, their versioned masks, and annotation effort."""

from django.conf import settings
from django.db import models


class Study(models.Model):
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="studies"
    )
    study_instance_uid = models.CharField(max_length=64)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=200, blank=True)
    study_date = models.DateField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "study_instance_uid"], name="study_uid_per_project"
            )
        ]

    def __str__(self) -> str:
        return self.description or self.study_instance_uid


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=8)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    # Where the files as they were received are kept, byte for byte.
    original_prefix = models.CharField(max_length=500)
    # True when the instances were generated here (a NIfTI / NRRD / MHA or video import).
    generated = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "series"
        constraints = [
            models.UniqueConstraint(
                fields=["study", "series_instance_uid"], name="series_uid_per_study"
            )
        ]

    def __str__(self) -> str:
        return self.description or self.series_instance_uid


class Instance(models.Model):
    """One DICOM object of a series, kept byte for byte as it was received (or generated).

    ``frame_offset`` is the index in the series' volume of the instance's first frame: slices
    are ordered by position along the slice normal, not by file name or InstanceNumber.
    """

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    number_of_frames = models.PositiveIntegerField(default=1)
    frame_offset = models.PositiveIntegerField(default=0)
    storage_key = models.CharField(max_length=500)
    size_bytes = models.PositiveBigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["series", "frame_offset", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["series", "sop_instance_uid"], name="sop_instance_uid_per_series"
            )
        ]

    def __str__(self) -> str:
        return self.sop_instance_uid


class Volume(models.Model):
    """The series as one 3D image: the grid every mask of the series lives on.

    Geometry follows ITK / DICOM LPS conventions and SimpleITK's order: ``size`` and ``spacing``
    are (x, y, z); ``direction`` is the 3x3 direction cosine matrix, row-major.
    """

    series = models.OneToOneField(Series, on_delete=models.CASCADE, related_name="volume")
    storage_key = models.CharField(max_length=500)
    # Colour series (colour DICOM, RGB uploads) also keep their RGB pixels, a vector image on
    # the same grid, for the models that take colour; everything else uses the grey volume
    # (``storage_key``: luma). Empty for grey series.
    colour_storage_key = models.CharField(max_length=500, blank=True, default="")
    size = models.JSONField()
    spacing = models.JSONField()
    origin = models.JSONField()
    direction = models.JSONField()
    pixel_type = models.CharField(max_length=32)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return "x".join(str(n) for n in self.size)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        x, y, z = self.size
        return (z, y, x)


class Lesion(models.Model):
    task = models.ForeignKey("projects.Task", on_delete=models.CASCADE, related_name="lesions")
    lesion_class = models.CharField(max_length=100)
    # An imported lesion's own name (RTSTRUCT ROIName, SEG SegmentLabel, label map value).
    name = models.CharField(max_length=200, blank=True, default="")
    # What an imported lesion was made from (projects.intake.label_import.import_key): a second
    # import of the same label finds it and makes nothing new. Empty for lesions drawn here.
    import_key = models.CharField(max_length=128, blank=True, default="")
    # The slice the prompt was drawn on (index along the volume's third axis).
    key_slice = models.PositiveIntegerField(null=True, blank=True)
    # [x0, y0, x1, y1], inclusive voxel indices on the key slice (x = column, y = row).
    box = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "import_key"],
                condition=~models.Q(import_key=""),
                name="lesion_imported_once_per_task",
            )
        ]

    def __str__(self) -> str:
        return f"{self.lesion_class} #{self.pk}"


class MaskVersion(models.Model):
    """One saved state of a lesion's mask. Append-only: versions are never changed or deleted.

    The history of a lesion is a chain: each save names its parent, and the database refuses a
    second child of the same parent (or a second root), so two concurrent editors can never both
    build on the same version; the loser gets 409 and keeps their edit to merge.
    """

    class Source(models.TextChoices):
        MODEL = "model", "Model"
        HUMAN = "human", "Human"
        IMPORT = "import", "Import"

    lesion = models.ForeignKey(Lesion, on_delete=models.CASCADE, related_name="mask_versions")
    parent = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="child"
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mask_versions",
    )
    author_model = models.ForeignKey(
        "inference.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mask_versions",
    )
    # The backend that produced a model mask when no trained ModelVersion was used.
    author_backend = models.CharField(max_length=100, blank=True)
    storage_key = models.CharField(max_length=500)
    voxel_count = models.PositiveBigIntegerField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lesion", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lesion"],
                condition=models.Q(parent__isnull=True),
                name="one_root_mask_version_per_lesion",
            ),
        ]

    def __str__(self) -> str:
        return f"mask v{self.pk} of lesion {self.lesion_id} ({self.source})"


class ActiveInterval(models.Model):
    """A stretch of active work in the viewer, cut at the viewer's idle threshold."""

    task = models.ForeignKey("projects.Task", on_delete=models.CASCADE, related_name="intervals")
    lesion = models.ForeignKey(
        Lesion, null=True, blank=True, on_delete=models.SET_NULL, related_name="intervals"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()

    class Meta:
        ordering = ["task", "started_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ended_at__gte=models.F("started_at")),
                name="interval_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} on task {self.task_id}: {self.seconds:.0f} s"

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


class Interaction(models.Model):
    """One use of a viewer tool (a box, a click, a brush stroke, an undo ...)."""

    class Tool(models.TextChoices):
        BOX = "box", "Box prompt"
        POINT_POSITIVE = "point+", "Positive point"
        POINT_NEGATIVE = "point-", "Negative point"
        BRUSH = "brush", "Brush"
        ERASER = "eraser", "Eraser"
        THRESHOLD = "threshold", "Threshold brush"
        PROPAGATE = "propagate", "Propagate correction"
        UNDO = "undo", "Undo"
        REDO = "redo", "Redo"

    task = models.ForeignKey("projects.Task", on_delete=models.CASCADE, related_name="interactions")
    lesion = models.ForeignKey(
        Lesion, null=True, blank=True, on_delete=models.SET_NULL, related_name="interactions"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    tool = models.CharField(max_length=12, choices=Tool.choices)
    slice_index = models.PositiveIntegerField(null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["task", "at"]

    def __str__(self) -> str:
        return f"{self.tool} by {self.user} on task {self.task_id}"


class Pseudonym(models.Model):
    """How de-identification on ingest replaced a patient or a UID (managers only see these)."""

    class Kind(models.TextChoices):
        PATIENT = "patient", "Patient"
        UID = "uid", "UID"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    original = models.CharField(max_length=200)
    original_name = models.CharField(max_length=200, blank=True)
    replacement = models.CharField(max_length=64)
    date_shift_days = models.IntegerField(default=0)
    # With the days, how far this patient's dates and times move (a patient pseudonymised before
    # times moved keeps 0, so all of their studies stay consistent).
    time_shift_seconds = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "original"], name="one_pseudonym_per_original"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.replacement}"
