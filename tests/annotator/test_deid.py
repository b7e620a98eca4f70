"""De-identification: identifiers replaced, dates shifted per patient, UIDs remapped coherently."""

from collections.abc import Callable
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

from annotator.deid import ProjectPseudonymizer
from annotator.dicom.deid import deidentify
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
    }
    assert original["private"] and original["name"]
    deidentify(ct, mapper)
    assert ct.PatientName == ct.PatientID == "ALPHA-00001"
    assert str(original["name"]) not in str(ct)
    assert "InstitutionName" not in ct and not any(e.tag.is_private for e in ct)
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
