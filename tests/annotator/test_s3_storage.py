"""Files in S3 over a real HTTP connection: moto's S3-compatible server on loopback.

Django's default storage is ``annotator.core.storage.S3Storage`` pointed at that server, as
production points it at a bucket; everything goes through the real services (import, mask
versions, cleanup after a failure, export) and the bucket is checked with boto3 directly.
"""

import gzip
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import SimpleITK as sitk
from django.core.files.storage import default_storage, storages
from moto.server import ThreadedMotoServer

from annotator.annotation.services import Author, mask_version_load, mask_version_save
from annotator.core import storage
from annotator.core.errors import InvalidInput
from annotator.core.storage import S3Storage
from annotator.imaging.volumes import volume_array
from annotator.models import Instance, Lesion, Series
from inference.engine import Phantom
from projects import services as project_services
from projects.exports import export_round_files
from projects.intake.image_import import ImportedVolume, volume_import
from projects.models import Project, Role
from projects.services import membership_set
from projects.task_services import task_claim_next, task_review, task_submit

pytestmark = pytest.mark.django_db

REGION = "eu-central-1"
LOCATION = "media"  # AWS_LOCATION: every key lives under this prefix in the bucket


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for this module's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, settings: Any, monkeypatch: pytest.MonkeyPatch, media_root: Path) -> Any:
    """A fresh bucket as Django's default storage; returns a boto3 client bound to the bucket.

    Depends on conftest's ``media_root`` so that its FileSystemStorage override comes first.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    bucket = f"annotator-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "annotator.core.storage.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": s3_endpoint,
                "region_name": REGION,
                "location": LOCATION,
                "file_overwrite": False,
            },
        },
    }
    client.bucket = bucket
    return client


def bucket_keys(s3: Any) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def get_bytes(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=s3.bucket, Key=f"{LOCATION}/{key}")["Body"].read())


def import_phantom(project: Project, phantom_file: Path) -> ImportedVolume:
    with open(phantom_file, "rb") as f:
        return volume_import(project=project, file=f, filename="phantom.nii.gz")


def test_the_default_storage_is_s3(s3: Any) -> None:
    assert isinstance(storages["default"], S3Storage)
    key = storage.save_file("probe/hello.txt", b"hello")
    assert key == "probe/hello.txt"
    assert bucket_keys(s3) == [f"{LOCATION}/probe/hello.txt"]
    # file_overwrite=False: a second save under the same key gets a free variant of it.
    second = storage.save_file("probe/hello.txt", b"again")
    assert second != key and second.startswith("probe/hello")
    assert get_bytes(s3, key) == b"hello" and get_bytes(s3, second) == b"again"
    assert default_storage.listdir("probe/") == ([], sorted(["hello.txt", second.split("/")[-1]]))
    with storage.local_path(key, suffix=".txt") as path:
        assert path.read_bytes() == b"hello"
    storage.delete_quietly([key, second, "probe/never-written"])
    assert bucket_keys(s3) == []


def test_volume_import_stores_the_original_byte_for_byte(
    s3: Any, make_project: Callable[..., Project], phantom_file: Path, phantom: Phantom
) -> None:
    imported = import_phantom(make_project("s3"), phantom_file)
    series, volume = imported.series, imported.volume
    original = f"{series.original_prefix}phantom.nii.gz"
    # Every object in the bucket is a file a row names (the generated DICOM instances too, where
    # the import makes them), and every file a row names is there.
    named = {original, volume.storage_key}
    named |= set(Instance.objects.filter(series=series).values_list("storage_key", flat=True))
    assert bucket_keys(s3) == sorted(f"{LOCATION}/{key}" for key in named)
    assert get_bytes(s3, original) == phantom_file.read_bytes()
    assert default_storage.listdir(series.original_prefix) == ([], ["phantom.nii.gz"])
    # The canonical volume reads back through a local temporary copy.
    np.testing.assert_array_equal(volume_array(volume), phantom.image)


def test_mask_versions_round_trip_through_s3(
    s3: Any, make_project: Callable[..., Project], phantom_file: Path, phantom: Phantom
) -> None:
    imported = import_phantom(make_project("s3"), phantom_file)
    assert imported.task is not None
    lesion = Lesion.objects.create(task=imported.task, lesion_class="tumour")
    mask = phantom.lesion_masks[0]
    first = mask_version_save(
        lesion=lesion, mask=mask, source="import", author=Author(backend="import"), parent=None
    )
    edited = mask.copy()
    edited[mask.shape[0] // 2] = False
    second = mask_version_save(
        lesion=lesion, mask=edited, source="human", author=Author(backend="test"), parent=first
    )
    assert f"{LOCATION}/{first.storage_key}" in bucket_keys(s3)
    np.testing.assert_array_equal(mask_version_load(first), mask)
    np.testing.assert_array_equal(mask_version_load(second), edited)
    # Stored as gzip-compressed .npy, readable without the application.
    raw = gzip.decompress(get_bytes(s3, first.storage_key))
    np.testing.assert_array_equal(np.load(io.BytesIO(raw)), mask)


def test_a_failed_import_leaves_nothing_in_the_bucket(
    s3: Any,
    make_project: Callable[..., Project],
    phantom_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_project("s3")
    content = phantom_file.read_bytes()
    with pytest.raises(InvalidInput, match=r"truncated|cut short"):
        volume_import(
            project=project, file=io.BytesIO(content[: len(content) // 2]), filename="cut.nii.gz"
        )
    assert bucket_keys(s3) == []

    # A failure after both files were uploaded (the rows cannot be written): they are removed.
    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr("projects.intake.image_import.task_create", refuse)
    with pytest.raises(RuntimeError, match="database down"):
        volume_import(project=project, file=io.BytesIO(content), filename="late.nii.gz")
    assert bucket_keys(s3) == []
    assert not Series.objects.exists()


def test_a_round_exports_from_s3(
    s3: Any,
    make_project: Callable[..., Project],
    make_user: Callable[..., Any],
    phantom_file: Path,
    phantom: Phantom,
    tmp_path: Path,
) -> None:
    annotator, reviewer = make_user("ann"), make_user("rev")
    project = make_project("s3", annotator=annotator, reviewer=reviewer)
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    imported = import_phantom(project, phantom_file)
    task = task_claim_next(user=annotator, project=project)
    assert task is not None and task.pk == imported.task.pk  # type: ignore[union-attr]
    lesion = Lesion.objects.create(task=task, lesion_class="tumour")
    mask = phantom.lesion_masks[0]
    mask_version_save(
        lesion=lesion, mask=mask, source="human", author=Author(user=annotator), parent=None
    )
    task_submit(task=task, user=annotator)
    task_review(task=task, reviewer=reviewer, decision="accept")
    round_ = project_services.current_round(project)
    assert round_ is not None

    manifest = export_round_files(round_, tmp_path / "export")
    (case,) = manifest["cases"]
    image_file = tmp_path / "export" / "images" / f"{case['case']}.nii.gz"
    assert image_file.read_bytes() == get_bytes(s3, imported.volume.storage_key)
    labels = sitk.GetArrayFromImage(
        sitk.ReadImage(str(tmp_path / "export" / "labels" / f"{case['case']}.nii.gz"))
    )
    np.testing.assert_array_equal(labels == 1, mask)
    assert case["lesions"][0]["voxels"] == int(mask.sum())


def test_gzip_files_are_stored_without_a_content_encoding(
    s3: Any, make_project: Callable[..., Project], phantom_file: Path
) -> None:
    imported = import_phantom(make_project("s3"), phantom_file)
    for key in (f"{imported.series.original_prefix}phantom.nii.gz", imported.volume.storage_key):
        head = s3.head_object(Bucket=s3.bucket, Key=f"{LOCATION}/{key}")
        assert "ContentEncoding" not in head, (key, head.get("ContentEncoding"))
