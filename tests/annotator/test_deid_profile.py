"""The Basic Profile end to end: every attribute of PS3.15 Table E.1-1, imported and served.

A real CT file (pydicom's CT_small) is filled with identifying-looking values in every attribute
of the table that pydicom can write (recognisable markers ``PHI0123``, one date, unique UIDs),
plus private attributes, overlays and curves; it is imported through the API into a project that
de-identifies, and what WADO-RS (the file and its metadata) and QIDO-RS (study, series, instance)
serve is checked attribute by attribute against the table as the dicom-anonymizer package ships
it, with and without the options.
"""

import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pydicom
import pytest
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as e1_1
from django.test import Client
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.tag import BaseTag, Tag
from rest_framework.test import APIClient

from annotator.imaging.dicom.deid import CLEAN_DESCRIPTORS
from annotator.models import Instance, Pseudonym
from tests.annotator.test_dicomweb import DICOM_TYPE, parts

pytestmark = pytest.mark.django_db

CATEGORIES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
TABLE = {
    Tag(entry[0], entry[1]): action
    for category, action in CATEGORIES.items()
    for entry in getattr(e1_1, category)
    # Not in a file's data set: command elements (0000,eeee), and the file meta's UID, which
    # follows SOPInstanceUID (checked below).
    if len(entry) == 2 and entry[0] not in (0x0000, 0x0002)
}
TABLE_KEYWORDS = {keyword_for_tag(tag) for tag in TABLE}
DATE, TIME = "19710203", "101112"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
REPEATING = {  # one attribute of each of the table's repeating groups
    Tag(0x6000, 0x3000): ("OW", b"PHI-overlay-data"),
    Tag(0x6002, 0x4000): ("LT", "PHI overlay comments"),
    Tag(0x5000, 0x3000): ("OB", b"PHI-curve-data"),
}
IDENTIFYING = (b"PHI", DATE.encode(), b"Doe")


def vr_of(tag: BaseTag) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:  # newer than pydicom's dictionary: written as LO
        return "LO"


def identifying_value(tag: BaseTag, index: int, sop_uid: str) -> Any:
    """A value that looks like PHI and is valid for the attribute's VR."""
    marker = f"PHI{index:04d}"
    keyword = keyword_for_tag(tag) or "Unknown"
    vr = vr_of(tag)
    if vr in ("AE", "CS", "SH"):
        return marker
    if vr == "LO":
        return f"{marker} {keyword}"[:64]
    if vr in ("LT", "ST", "UT", "UC"):
        return f"{marker} {keyword} for John Doe MRN-123456"
    if vr == "PN":
        return f"Doe^{marker}"
    if vr == "UR":
        return f"http://example.org/{marker}"
    if vr == "DA":
        return DATE
    if vr == "TM":
        return TIME
    if vr == "DT":
        return f"{DATE}{TIME}+0100"
    if vr == "AS":
        return "042Y"
    if vr in ("DS", "IS"):
        return str(4000 + index)
    if vr in ("US", "SS", "UL", "SL", "UV", "SV", "AT"):
        return 4000 + index
    if vr in ("FL", "FD"):
        return 4000.5 + index
    if vr == "UI":
        return f"1.2.826.0.1.3680043.10.999.{index}"
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE
        item.ReferencedSOPInstanceUID = sop_uid
        item.PersonName = f"Doe^{marker}"
        return [item]
    return f"{marker}-bytes".encode()  # OB, OW, OF, OD, OL, OV, UN: 12 bytes


def phi_ct() -> tuple[bytes, dict[BaseTag, Any]]:
    """CT_small with every attribute of the table set; and the values it was given."""
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    ds = pydicom.dcmread(path)
    originals: dict[BaseTag, Any] = {}
    for index, tag in enumerate(sorted(TABLE)):
        if tag in ds and vr_of(tag) == "UI":
            originals[tag] = ds[tag].value  # the file's own UIDs: the import needs them
            continue
        value = identifying_value(tag, index, ds.SOPInstanceUID)
        ds.add_new(tag, vr_of(tag), value)
        originals[tag] = value
    for tag, (vr, value) in REPEATING.items():
        ds.add_new(tag, vr, value)
    ds.private_block(0x0009, "PHI CREATOR", create=True).add_new(0x01, "LO", "PHI private")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), originals


def assert_nothing_identifying(served: bytes) -> None:
    for marker in IDENTIFYING:
        at = served.find(marker)
        assert at < 0, served[max(0, at - 40) : at + 40]


def empty(ds: Dataset, tag: BaseTag) -> bool:
    return tag not in ds or ds[tag].is_empty


def patient_shift(patient: Pseudonym) -> timedelta:
    return timedelta(days=patient.date_shift_days, seconds=patient.time_shift_seconds)


def moved(keyword: str, vr: str, shift: timedelta) -> str:
    """What the modified-dates option makes of DATE / TIME / DATE+TIME in ``keyword``: a date
    with its time in the table (StudyDate, StudyTime) moves as one moment, a date alone from
    noon, a time alone round the clock, a date-time as one moment without its UTC offset."""
    moment = datetime.strptime(DATE + TIME, "%Y%m%d%H%M%S") + shift
    partner = keyword.replace("Date", "Time") if vr == "DA" else keyword.replace("Time", "Date")
    paired = partner != keyword and partner in TABLE_KEYWORDS
    if vr == "DA":
        day = moment if paired else datetime.strptime(DATE, "%Y%m%d") + timedelta(hours=12) + shift
        return day.strftime("%Y%m%d")
    if vr == "TM":
        clock = moment if paired else datetime.strptime(TIME, "%H%M%S") + shift
        return clock.strftime("%H%M%S")
    return moment.strftime("%Y%m%d%H%M%S")


def check_profile(
    ds: Dataset, originals: dict[BaseTag, Any], uid: Callable[[str], str], options: dict[str, bool]
) -> None:
    """Every attribute of the table as the profile (and its options) says it must be."""
    patient = Pseudonym.objects.get(kind=Pseudonym.Kind.PATIENT)
    wrong = []
    for tag, action in TABLE.items():
        keyword, original, vr = keyword_for_tag(tag) or str(tag), originals[tag], vr_of(tag)
        got = ds[tag].value if tag in ds else None
        if tag in (Tag("PatientName"), Tag("PatientID")):
            ok = str(got) == patient.replacement
        elif options["clean_descriptors"] and tag in CLEAN_DESCRIPTORS:
            ok = empty(ds, tag)
        elif options["modified_dates"] and vr in ("DA", "DT", "TM") and "Birth" not in keyword:
            ok = got == moved(keyword, vr, patient_shift(patient))
        elif action == "X":
            ok = tag not in ds
        elif action in ("Z", "X/Z"):
            ok = empty(ds, tag)
        elif action == "U":
            ok = got == uid(original)
        elif action == "X/Z/U*":  # kept, its items cleaned: references remapped, names gone
            ok = empty(ds, tag) or all(
                item.ReferencedSOPInstanceUID == uid(originals[Tag("SOPInstanceUID")])
                and item.PersonName != original[0].PersonName
                for item in got or []
            )
        elif vr == "SQ":  # D, Z/D, X/D, X/Z/D
            ok = empty(ds, tag) or all(
                item.PersonName != original[0].PersonName
                and item.ReferencedSOPInstanceUID != original[0].ReferencedSOPInstanceUID
                and item.ReferencedSOPClassUID == CT_IMAGE
                for item in got or []
            )
        else:  # D, Z/D, X/D, X/Z/D: a dummy, never the original value
            ok = (action != "D" and empty(ds, tag)) or (not ds[tag].is_empty and got != original)
        if not ok:
            wrong.append(f"{keyword} {action}: {got!r} (was {original!r})")
    assert not wrong, "\n".join(wrong)
    assert all(tag not in ds for tag in REPEATING)
    assert not any(element.tag.is_private for element in ds)
    assert ds.PatientIdentityRemoved == "YES"
    codes = [code.CodeValue for code in ds.DeidentificationMethodCodeSequence]
    expected_codes = ["113100"]
    expected_codes += ["113107"] if options["modified_dates"] else []
    expected_codes += ["113105"] if options["clean_descriptors"] else []
    assert codes == expected_codes
    assert ds.LongitudinalTemporalInformationModified == (
        "MODIFIED" if options["modified_dates"] else "REMOVED"
    )


OPTIONS = [
    {"modified_dates": True, "clean_descriptors": True},
    {"modified_dates": False, "clean_descriptors": False},
]


@pytest.mark.parametrize("options", OPTIONS, ids=["modified-dates+clean-descriptors", "basic"])
def test_every_attribute_of_the_basic_profile_through_wado_and_qido(
    options: dict[str, bool], team: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    api = client_for(team["manager"])
    created = api.post(
        "/api/projects/",
        {
            "name": "Anon",
            "slug": "anon",
            "modality": "CT",
            "lesion_classes": [{"name": "tumour"}],
            "deidentify": True,
            **{f"deidentify_{name}": on for name, on in options.items()},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert {name: created.json()[f"deidentify_{name}"] for name in options} == options

    content, originals = phi_ct()
    upload = io.BytesIO(content)
    upload.name = "phi.dcm"
    response = api.post("/api/projects/anon/imports/", {"files": [upload]}, format="multipart")
    assert response.status_code == 201, response.content
    (instance,) = Instance.objects.filter(series__study__project__slug="anon")
    series, study = instance.series, instance.series.study

    def uid(original: str) -> str:
        return Pseudonym.objects.get(kind=Pseudonym.Kind.UID, original=original).replacement

    assert instance.sop_instance_uid == uid(originals[Tag("SOPInstanceUID")])

    client = Client()
    client.force_login(team["manager"])
    base = (
        f"/dicomweb/studies/{study.study_instance_uid}/series/{series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )
    ((kind, served),) = parts(client.get(base, HTTP_ACCEPT=DICOM_TYPE))
    assert kind.startswith("application/dicom")
    ds = pydicom.dcmread(io.BytesIO(served))
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    check_profile(ds, originals, uid, options)
    assert served[:128] == bytes(128)  # CT_small's preamble is a TIFF header: it could tell
    assert_nothing_identifying(served)

    metadata = client.get(f"{base}/metadata", HTTP_ACCEPT="application/dicom+json")
    assert metadata.status_code == 200, metadata.content
    (item,) = json.loads(metadata.content)
    check_profile(Dataset.from_json(item, lambda *_: b""), originals, uid, options)
    assert_nothing_identifying(metadata.content)

    patient = Pseudonym.objects.get(kind=Pseudonym.Kind.PATIENT)
    searches = {
        "studies": ("/dicomweb/studies", "0020000D", study.study_instance_uid),
        "series": ("/dicomweb/series", "0020000E", series.series_instance_uid),
        "instances": ("/dicomweb/instances", "00080018", instance.sop_instance_uid),
    }
    for level, (url, key, expected_uid) in searches.items():
        found = client.get(url, {"includefield": "all"}, HTTP_ACCEPT="application/dicom+json")
        assert found.status_code == 200, (level, found.content)
        assert_nothing_identifying(found.content)
        (result,) = found.json()
        assert result[key]["Value"] == [expected_uid]
        if level == "studies":
            assert result["00100010"]["Value"] == [{"Alphabetic": patient.replacement}]
            assert result["00100020"]["Value"] == [patient.replacement]
            study_date = result.get("00080020", {}).get("Value")
            shifted_date = [moved("StudyDate", "DA", patient_shift(patient))]
            assert study_date == (shifted_date if options["modified_dates"] else None)
            assert not result.get("00081030", {}).get("Value")  # StudyDescription
            assert not result.get("00080050", {}).get("Value")  # AccessionNumber
        if level == "series":
            assert not result.get("0008103E", {}).get("Value")  # SeriesDescription


def test_the_options_are_project_settings_managers_change(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    url = f"/api/projects/{workspace['project'].slug}/"
    manager = client_for(workspace["manager"])
    shown = manager.get(url).json()
    assert (shown["deidentify_modified_dates"], shown["deidentify_clean_descriptors"]) == (
        True,
        False,
    )
    change = {"deidentify_modified_dates": False, "deidentify_clean_descriptors": True}
    response = manager.patch(url, change, format="json")
    assert response.status_code == 200, response.content
    assert {name: response.json()[name] for name in change} == change
    workspace["project"].refresh_from_db()
    assert not workspace["project"].deidentify_modified_dates
    assert workspace["project"].deidentify_clean_descriptors
    annotator = client_for(workspace["annotator"])
    refused = annotator.patch(url, {"deidentify_modified_dates": True}, format="json")
    assert refused.status_code == 403
