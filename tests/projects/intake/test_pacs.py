"""Pulling studies from a real Orthanc PACS over DICOMweb (skipped where Orthanc is absent)."""

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.core.files.storage import default_storage
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

from annotator.models import Instance, Series
from tests.support import orthanc
from tests.test_api_schema import schema_errors

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not orthanc.available(), reason="needs Debian's orthanc + orthanc-dicomweb"),
]


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return Path(path)


@pytest.fixture(scope="module")
def pacs() -> Iterator[orthanc.Orthanc]:
    with orthanc.running_orthanc() as server:
        assert server.upload([sample("emri_small.dcm"), sample("CT_small.dcm")]) == 2
        yield server


@pytest.fixture
def configured(pacs: orthanc.Orthanc, settings: Any) -> orthanc.Orthanc:
    settings.PACS_DICOMWEB_URL = pacs.dicomweb
    return pacs


def test_find_and_pull_a_study_byte_for_byte(
    configured: orthanc.Orthanc, workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    client = client_for(workspace["manager"])
    url = f"/api/projects/{workspace['project'].slug}/pacs"
    found = client.get(f"{url}/studies/").json()
    assert len(found) == 2
    # every field the schema promises, as it says (the schema test cannot reach a PACS)
    assert not schema_errors("GET", f"{url}/studies/", 200, found)
    mr = pydicom.dcmread(sample("emri_small.dcm"))
    (study,) = client.get(f"{url}/studies/", {"StudyInstanceUID": mr.StudyInstanceUID}).json()
    assert study["patient_id"] == mr.PatientID
    assert study["study_instance_uid"] == mr.StudyInstanceUID
    assert study["modalities"] == ["MR"] and study["instances"] == 1

    response = client.post(f"{url}/imports/", {"study_uids": [mr.StudyInstanceUID]}, format="json")
    assert response.status_code == 201, response.content
    # the report names files by study and series, not by the server's temporary folder
    (pulled,) = response.json()["files"]
    assert pulled["source"].startswith(f"PACS/{mr.StudyInstanceUID}/{mr.SeriesInstanceUID}-")
    series = Series.objects.get(series_instance_uid=mr.SeriesInstanceUID)
    assert series.volume.shape_zyx == (mr.NumberOfFrames, mr.Rows, mr.Columns)
    (instance,) = Instance.objects.filter(series=series)
    with default_storage.open(instance.storage_key) as f:
        stored = hashlib.sha256(f.read()).hexdigest()
    assert stored == hashlib.sha256(sample("emri_small.dcm").read_bytes()).hexdigest()
    assert series.tasks.count() == 1

    again = client.post(f"{url}/imports/", {"study_uids": [mr.StudyInstanceUID]}, format="json")
    assert again.status_code == 200
    assert again.json()["series"][0]["status"] == "already imported"


def test_pacs_errors_are_clear(
    configured: orthanc.Orthanc, workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    url = f"/api/projects/{workspace['project'].slug}/pacs/imports/"
    manager = client_for(workspace["manager"])
    missing = manager.post(url, {"study_uids": ["1.2.3.4.5"]}, format="json")
    assert missing.status_code == 400 and "not on the PACS" in missing.json()["detail"]
    assert manager.post(url, {"study_uids": []}, format="json").status_code == 400
    annotator = client_for(workspace["annotator"])
    assert annotator.post(url, {"study_uids": ["1.2"]}, format="json").status_code == 403


def test_no_pacs_configured(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient], settings: Any
) -> None:
    settings.PACS_DICOMWEB_URL = ""
    response = client_for(workspace["manager"]).get(
        f"/api/projects/{workspace['project'].slug}/pacs/studies/"
    )
    assert response.status_code == 400 and "PACS_DICOMWEB_URL" in response.json()["detail"]


def test_pacs_search_pages_through_the_remote_qido(
    configured: orthanc.Orthanc, workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    client = client_for(workspace["manager"])
    url = f"/api/projects/{workspace['project'].slug}/pacs/studies/"
    everything = {s["study_instance_uid"] for s in client.get(url).json()}
    assert len(everything) == 2

    first = client.get(url, {"limit": "1", "ModalitiesInStudy": ""})
    assert first.status_code == 200
    assert len(first.json()) == 1
    assert first["X-Next-Offset"] == "1"
    link = first["Link"]
    assert link.endswith('>; rel="next"') and "offset=1" in link and "limit=1" in link
    # the next page is the URL the Link header names, as a client would follow it
    following = link[1 : link.index(">")].split("testserver", 1)[1]
    second = client.get(following)
    assert second.status_code == 200
    assert len(second.json()) == 1
    assert "Link" not in second and "X-Next-Offset" not in second
    assert {first.json()[0]["study_instance_uid"], second.json()[0]["study_instance_uid"]} == (
        everything
    )
    past_the_end = client.get(url, {"limit": "5", "offset": "2"})
    assert past_the_end.json() == [] and "Link" not in past_the_end

    bad: dict[str, str]
    for bad, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
    ):
        refused = client.get(url, bad)
        assert refused.status_code == 400, bad
        assert field in refused.json(), refused.json()
