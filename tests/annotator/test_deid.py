"""De-identification: identifiers replaced, dates shifted per patient, UIDs remapped coherently."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

from annotator.imaging.dicom.deid import deidentify
from annotator.imaging.pseudonyms import ProjectPseudonymizer
from annotator.models import Pseudonym

pytestmark = pytest.mark.django_db


def sample_file(name: str) -> str:
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return path


def test_basic_profile_on_a_real_ct_and_its_rtstruct(workspace: dict[str, Any]) -> None:
    mapper = ProjectPseudonymizer(workspace["project"])
    ct = dcmread(sample_file("CT_small.dcm"))
    original = {
        "name": str(ct.PatientName),
        "id": ct.PatientID,
        "sop": ct.SOPInstanceUID,
        "study": ct.StudyInstanceUID,
        "date": ct.StudyDate,
        "private": any(e.tag.is_private for e in ct),
        "institution": ct.InstitutionName,
    }
    assert original["private"] and original["name"] and original["institution"]
    deidentify(ct, mapper)
    assert ct.PatientName == ct.PatientID == "ALPHA-00001"
    assert str(original["name"]) not in str(ct)
    # X/Z/D: the form valid in every IOD, a dummy.
    assert ct.InstitutionName == "ANONYMIZED" and not any(e.tag.is_private for e in ct)
    assert ct.SOPInstanceUID != original["sop"] and ct.StudyInstanceUID != original["study"]
    assert ct.file_meta.MediaStorageSOPInstanceUID == ct.SOPInstanceUID
    assert ct.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # kinds of things are kept
    assert ct.PatientIdentityRemoved == "YES"
    shift = Pseudonym.objects.get(kind="patient").date_shift_days
    assert shift < 0 and ct.StudyDate != original["date"]

    # The same patient in a second file: same pseudonym, same shift, same UID mapping.
    again = dcmread(sample_file("CT_small.dcm"))
    deidentify(again, ProjectPseudonymizer(workspace["project"]))
    assert again.PatientID == ct.PatientID and again.StudyDate == ct.StudyDate
    assert again.SOPInstanceUID == ct.SOPInstanceUID

    # References inside an RTSTRUCT are remapped with the same table as the images.
    rt = dcmread(sample_file("rtstruct.dcm"), force=True)
    referenced = rt.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    deidentify(rt, mapper)
    assert rt.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == mapper.uid(referenced)
    assert not any(e.tag.is_private for e in rt)


def test_the_mapping_is_for_managers_only(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    deidentify(dcmread(sample_file("CT_small.dcm")), ProjectPseudonymizer(workspace["project"]))
    url = f"/api/projects/{workspace['project'].slug}/pseudonyms/"
    rows = client_for(workspace["manager"]).get(url).json()
    patients = [r for r in rows if r["kind"] == "patient"]
    assert patients[0]["original"] == "1CT1" and patients[0]["replacement"] == "ALPHA-00001"
    assert client_for(workspace["annotator"]).get(url).status_code == 403
    assert client_for(workspace["reviewer"]).get(url).status_code == 403
    assert client_for(workspace["outsider"]).get(url).status_code == 404


class _FixedShift:
    """A Pseudonymizer with a known shift: 10 days and 3 hours earlier."""

    shift = -timedelta(days=10, hours=3)

    def patient(self, original_id: str, original_name: str) -> tuple[str, timedelta]:
        return "P-1", self.shift

    def uid(self, original: str) -> str:
        return original + ".9"


@pytest.mark.parametrize(
    ("study_time", "date", "time"),
    [
        ("101112", "20200105", "071112"),  # same day
        ("014500", "20200104", "224500"),  # the time's carry moves the date back
        ("0145", "20200104", "224500"),  # HHMM: read as such, written in full
        ("01:45:00.25", "20200104", "224500.250000"),  # the old form, a fraction kept
    ],
)
def test_dates_and_times_move_together(study_time: str, date: str, time: str) -> None:
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyDate, ds.StudyTime = "20200115", study_time
    ds.AcquisitionDateTime = "20200115014500.5+0100"
    ds.DateOfLastCalibration = "20200115"  # a date alone (no TimeOfLastCalibration here)
    ds.TimeOfLastCalibration = None
    ds.PerformedProcedureStepStartTime = "014500"  # a time alone: round the clock
    deidentify(ds, _FixedShift())
    assert (ds.StudyDate, ds.StudyTime) == (date, time)
    assert ds.AcquisitionDateTime == "20200104224500.500000"  # one moment, no UTC offset
    assert ds.DateOfLastCalibration == "20200105"  # noon, 10 days 3 hours earlier: 9 am
    assert ds.PerformedProcedureStepStartTime == "224500"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_a_new_patient_gets_a_time_shift_too(workspace: dict[str, Any]) -> None:
    mapper = ProjectPseudonymizer(workspace["project"])
    _, shift = mapper.patient("A-1", "Doe^John")
    row = Pseudonym.objects.get(kind="patient")
    assert shift == timedelta(days=row.date_shift_days, seconds=row.time_shift_seconds)
    assert -3 * 365 <= row.date_shift_days < 0 and -86400 < row.time_shift_seconds <= 0
    # remembered: a second importer gets the same shift
    assert ProjectPseudonymizer(workspace["project"]).patient("A-1", "Doe^John")[1] == shift
