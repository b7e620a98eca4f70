"""Pseudonyms: the project's de-identification mapping, kept in the database.

The profile itself (what is removed, kept or replaced) is ``annotator.imaging.dicom.deid``.
"""

import datetime as dt
import secrets

from django.db import IntegrityError, transaction
from pydicom.uid import generate_uid

from annotator.imaging.dicom.deid import Options
from annotator.models import Pseudonym
from projects.models import Project

MAX_DATE_SHIFT_DAYS = 3 * 365
SECONDS_A_DAY = 24 * 60 * 60


class ProjectPseudonymizer:
    """Consistent pseudonyms, date shifts and UIDs for one project, remembered across imports."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._patients: dict[str, tuple[str, dt.timedelta]] = {}
        self._uids: dict[str, str] = {}

    @property
    def options(self) -> Options:
        """The profile's options the project chose."""
        return Options(
            modified_dates=self.project.deidentify_modified_dates,
            clean_descriptors=self.project.deidentify_clean_descriptors,
        )

    def _get_or_create(self, kind: str, original: str, **new: object) -> Pseudonym:
        existing = Pseudonym.objects.filter(project=self.project, kind=kind, original=original)
        found = existing.first()
        if found is not None:
            return found
        try:
            with transaction.atomic():
                return Pseudonym.objects.create(
                    project=self.project, kind=kind, original=original, **new
                )
        except IntegrityError:  # another import created it meanwhile
            return existing.get()

    def patient(self, original_id: str, original_name: str) -> tuple[str, dt.timedelta]:
        key = original_id or f"name:{original_name}"
        if key not in self._patients:
            count = Pseudonym.objects.filter(
                project=self.project, kind=Pseudonym.Kind.PATIENT
            ).count()
            row = self._get_or_create(
                Pseudonym.Kind.PATIENT,
                key,
                original_name=original_name,
                replacement=f"{self.project.slug[:40].upper()}-{count + 1:05d}",
                date_shift_days=-secrets.randbelow(MAX_DATE_SHIFT_DAYS) - 1,
                time_shift_seconds=-secrets.randbelow(SECONDS_A_DAY),
            )
            shift = dt.timedelta(days=row.date_shift_days, seconds=row.time_shift_seconds)
            self._patients[key] = (row.replacement, shift)
        return self._patients[key]

    def uid(self, original: str) -> str:
        if original not in self._uids:
            row = self._get_or_create(Pseudonym.Kind.UID, original, replacement=generate_uid())
            self._uids[original] = row.replacement
        return self._uids[original]
