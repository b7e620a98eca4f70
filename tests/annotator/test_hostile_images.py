"""Hostile image input: files that name other files, headers that lie about their size, numbers
that are not numbers, UIDs that are not UIDs, and error messages that would show server paths.

Every file is written here by the test and sent through the real endpoints (volume, label-map and
mask uploads, the DICOM import); the memory and time bounds are measured in a separate process.
"""

import gzip
import io
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid
from rest_framework.test import APIClient

from annotator.models import Instance, MaskVersion, Series, Study
from projects.models import Project, Task
from tests.annotator.hostile_probe import measured, run_probe
from tests.annotator.test_dicom_reading import write_ct_series, write_ct_slice

pytestmark = pytest.mark.django_db

SECRET = b"SECRET-BYTES-OF-THE-SERVER-" * 10  # 270 bytes; a 4 x 4 x 4 uint8 image needs 64


# ---------------------------------------------------------------------------------------------
# Helpers: uploads and what they leave behind


@pytest.fixture
def manager(workspace: dict[str, Any], client_for: Callable[[Any], APIClient]) -> APIClient:
    return client_for(workspace["manager"])


def named(name: str, content: bytes) -> io.BytesIO:
    f = io.BytesIO(content)
    f.name = name
    return f


def post_volume(client: APIClient, name: str, content: bytes, labels: Any = None) -> Any:
    data: dict[str, Any] = {"file": named(name, content)}
    if labels is not None:
        data["labels"] = named(*labels)
    return client.post("/api/projects/alpha/volumes/", data, format="multipart")


def post_mask(lesion: dict[str, Any], name: str, content: bytes) -> Any:
    return lesion["client"].post(
        f"/api/lesions/{lesion['id']}/masks/",
        {"mask": named(name, content), "encoding": "image", "parent": ""},
        format="multipart",
    )


def state(media_root: Path) -> tuple[Any, ...]:
    """Rows and stored files that an upload could leave behind."""
    files = sorted(str(p) for p in media_root.rglob("*") if p.is_file())
    counts = (Study.objects.count(), Series.objects.count(), Task.objects.count())
    return counts, MaskVersion.objects.count(), Instance.objects.count(), files


def no_server_path(response: Any) -> None:
    text = response.content.decode("utf-8", "replace")
    assert tempfile.gettempdir() + "/" not in text, text
    assert "annotator-" not in text, text  # the prefix of every server temporary folder


def phantom_bytes(phantom_file: Path) -> tuple[str, bytes]:
    return "scan.nii.gz", phantom_file.read_bytes()


# ---------------------------------------------------------------------------------------------
# Files that name another file


def detached_headers(secret: Path) -> dict[str, bytes]:
    """Headers for a 4 x 4 x 4 uint8 image whose voxels are ``secret``'s first 64 bytes."""
    mha = (
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
        f"ElementDataFile = {secret}\n"
    )
    nrrd = (
        f"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: {secret}\n\n"
    )
    return {
        "scan.mha": mha.encode(),
        "scan.mhd": mha.encode(),
        "scan.nrrd": nrrd.encode(),
        "scan.nhdr": nrrd.encode(),
        # Spellings a careless check would miss: teem reads field names in any case, and
        # MetaIO only ends its header at the exact "ElementDataFile" (a decoy line before it).
        "upper.nrrd": nrrd.replace("data file", "DataFile").encode(),
        "decoy.mha": mha.replace(
            "ElementDataFile", "elementdatafile = LOCAL\nElementDataFile"
        ).encode(),
        "list.mha": mha.replace(str(secret), f"LIST\n{secret}").encode(),
    }


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside any upload, which the headers name; ITK reads it when nothing stops it."""
    path = tmp_path / "outside" / "secret.raw"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    header = tmp_path / "outside" / "check.mha"
    header.write_bytes(detached_headers(path)["scan.mha"])
    voxels = sitk.GetArrayFromImage(sitk.ReadImage(str(header))).tobytes()
    assert voxels == SECRET[:64]  # the attack works on plain SimpleITK: the guard is needed
    return path


def refused_naming(response: Any, field: str) -> str:
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert SECRET[:12] not in response.content
    no_server_path(response)
    return str(body["detail"])


@pytest.mark.parametrize(
    "name",
    ["scan.mha", "scan.mhd", "scan.nrrd", "scan.nhdr", "upper.nrrd", "decoy.mha", "list.mha"],
)
def test_a_header_naming_another_file_is_refused_for_volumes_labels_and_masks(
    name: str,
    secret: Path,
    manager: APIClient,
    lesion: dict[str, Any],
    phantom_file: Path,
    media_root: Path,
) -> None:
    header = detached_headers(secret)[name]
    suffix = "." + name.rsplit(".", 1)[1]
    before = state(media_root)

    detail = refused_naming(post_volume(manager, name, header), "file")
    assert "data file" in detail.lower() or "ambiguous" in detail
    refused_naming(
        post_volume(manager, *phantom_bytes(phantom_file), labels=(f"labels{suffix}", header)),
        "labels",
    )
    refused_naming(post_mask(lesion, f"mask{suffix}", header), "mask")
    assert state(media_root) == before


def test_a_two_file_nifti_header_is_refused(manager: APIClient, tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(tmp_path / "a.nii"))
    content = bytearray((tmp_path / "a.nii").read_bytes())
    content[344:348] = b"ni1\0"  # "header only: the voxels are in a.img"
    detail = refused_naming(post_volume(manager, "scan.nii", bytes(content)), "file")
    assert "two-file NIfTI" in detail


def test_the_reader_follows_the_suffix_not_the_content(manager: APIClient, tmp_path: Path) -> None:
    """A MetaImage file sent as .nii is read by the NIfTI reader, which refuses it."""
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(tmp_path / "a.mha"))
    response = post_volume(manager, "scan.nii", (tmp_path / "a.mha").read_bytes())
    assert "not a NIfTI file" in refused_naming(response, "file")


def test_a_metaimage_carrying_its_voxels_is_accepted_as_mha_and_mhd(
    manager: APIClient, tmp_path: Path
) -> None:
    image = sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5))
    image.SetSpacing((0.5, 0.75, 2.0))
    sitk.WriteImage(image, str(tmp_path / "a.mha"))
    for name in ("scan.mha", "scan.mhd"):
        response = post_volume(manager, name, (tmp_path / "a.mha").read_bytes())
        assert response.status_code == 201, response.content
        assert response.json()["spacing"] == [0.5, 0.75, 2.0]


# ---------------------------------------------------------------------------------------------
# Headers that lie about their size: refused fast and small, in a process of their own


def huge_mha() -> bytes:
    return (
        b"ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 1000\n"
        b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\0" * 64
    )


def huge_nrrd() -> bytes:
    return (
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 1000\nencoding: raw\n"
        b"endian: little\n\n" + b"\0" * 64
    )


def lying_compressed_mha() -> bytes:
    """Within the voxel cap, but the few bytes present cannot inflate to 1000^3 x 2 bytes."""
    data = gzip.compress(b"\0" * 1000)
    return (
        b"ObjectType = Image\nNDims = 3\nDimSize = 1000 1000 1000\nElementType = MET_SHORT\n"
        b"CompressedData = True\nCompressedDataSize = 1000000000000\n"
        b"ElementDataFile = LOCAL\n" + data
    )


def short_raw_nrrd() -> bytes:
    return (
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 1000 1000 500\nencoding: raw\n"
        b"endian: little\n\n" + b"\0" * 4096
    )


def huge_frames_dicom(path: Path) -> None:
    """A one-frame CT object (16 x 16) that claims 2147483647 frames: about 3 kB."""
    write_ct_slice(
        path,
        study_uid=str(generate_uid()),
        series_uid=str(generate_uid()),
        position=(0.0, 0.0, 0.0),
        instance_number=1,
        stored=np.zeros((16, 16), np.int16),
    )
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2147483647
    ds.save_as(path, enforce_file_format=True)


def short_frames_dicom(path: Path) -> None:
    """9000 frames claimed (under the frame cap), one frame of pixel data present."""
    huge_frames_dicom(path)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 9000
    ds.save_as(path, enforce_file_format=True)


def fragment_short_dicom(path: Path) -> None:
    """RLE (encapsulated) claiming 5000 frames of 512 x 512 with two fragments present."""
    huge_frames_dicom(path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = 5000
    ds.PixelData = encapsulate([b"\0" * 64, b"\0" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def probe(kind: str, path: Path) -> dict[str, Any]:
    """Import ``path`` into project "hostile" in a process of its own (hostile_probe.py)."""
    return run_probe(kind, "hostile", str(path))


HUGE_FILES: dict[str, Callable[[Path], object]] = {
    "huge.mha": lambda p: p.write_bytes(huge_mha()),
    "huge.nrrd": lambda p: p.write_bytes(huge_nrrd()),
    "lying-compressed.mha": lambda p: p.write_bytes(lying_compressed_mha()),
    "short-raw.nrrd": lambda p: p.write_bytes(short_raw_nrrd()),
    "frames.dcm": huge_frames_dicom,
    "short-frames.dcm": short_frames_dicom,
    "fragments.dcm": fragment_short_dicom,
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", sorted(HUGE_FILES))
def test_a_header_announcing_a_huge_image_is_refused_fast_and_small(
    name: str, make_project: Callable[..., Project], tmp_path: Path, media_root: Path
) -> None:
    make_project("hostile")
    path = tmp_path / name
    HUGE_FILES[name](path)
    assert path.stat().st_size < 16 * 1024
    result = probe("dicom" if name.endswith(".dcm") else "volume", path)
    print(f"{name}: {measured(result)}")
    assert result["cpu_seconds"] < 1.0, result
    assert result["peak_rss_mb"] < 500, result
    if name.endswith(".dcm"):
        report = result["report"]
        (outcome,) = report["files"]
        assert outcome["status"] == "rejected", report
        assert any(word in outcome["reason"] for word in ("too large", "truncated", "fragment"))
        assert report["counts"]["series"] == 0
    else:
        assert result["status"] == "refused" and "file" in result["fields"], result
        assert "could not be read as an image" in result["detail"]
    assert not Series.objects.exists() and not Study.objects.exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------------
# Accepted before, wrong all the same: numbers that are not numbers


def nifti(array: np.ndarray, *, pixdim1: float | None = None, gz: bool = True) -> bytes:
    image = sitk.GetImageFromArray(array)
    with tempfile.TemporaryDirectory() as tmp:
        sitk.WriteImage(image, f"{tmp}/a.nii")
        content = bytearray(Path(f"{tmp}/a.nii").read_bytes())
    if pixdim1 is not None:
        struct.pack_into("<f", content, 80, pixdim1)  # pixdim[1]: the x spacing
        struct.pack_into("<h", content, 252, 0)  # qform_code 0: ITK takes pixdim as it is
        struct.pack_into("<h", content, 254, 0)
    return gzip.compress(bytes(content)) if gz else bytes(content)


def written(array: np.ndarray, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        sitk.WriteImage(sitk.GetImageFromArray(array), f"{tmp}/a{suffix}", useCompression=True)
        return Path(f"{tmp}/a{suffix}").read_bytes()


def mha(fields: str, data: bytes = b"\0" * 64) -> bytes:
    return (
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
        f"{fields}ElementDataFile = LOCAL\n"
    ).encode() + data


def nrrd(fields: str) -> bytes:
    return (
        f"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n{fields}\n"
    ).encode() + b"\0" * 64


ONES = np.ones((4, 4, 4), np.float32)
NAN_VOXELS = ONES.copy()
NAN_VOXELS[1, 2, 3] = np.nan
INF_VOXELS = ONES.astype(np.float64)
INF_VOXELS[0, 0, 0] = -np.inf

WRONG_NUMBERS = {
    "nan-voxels.nii.gz": (nifti(NAN_VOXELS), "NaN or infinite"),
    "inf-voxels.nii": (nifti(INF_VOXELS, gz=False), "NaN or infinite"),
    "nan-voxels.mha": (written(NAN_VOXELS, ".mha"), "NaN or infinite"),
    "inf-voxels.nrrd": (written(INF_VOXELS, ".nrrd"), "NaN or infinite"),
    "zero-pixdim.nii.gz": (nifti(ONES, pixdim1=0.0), "pixdim"),
    "negative-pixdim.nii.gz": (nifti(ONES, pixdim1=-1.0), "pixdim"),
    "nan-pixdim.nii": (nifti(ONES, pixdim1=float("nan"), gz=False), "pixdim"),
    "zero-spacing.mha": (mha("ElementSpacing = 0 1 1\n"), "ElementSpacing"),
    "negative-spacing.mha": (mha("ElementSpacing = 1 -2 1\n"), "ElementSpacing"),
    "nan-spacing.mha": (mha("ElementSpacing = 1 1 nan\n"), "ElementSpacing"),
    "nan-offset.mha": (mha("Offset = 0 nan 0\n"), "Offset"),
    "zero-spacings.nrrd": (nrrd("spacings: 0 1 1\n"), "spacings"),
    "nan-spacings.nrrd": (nrrd("spacings: nan nan nan\n"), "spacings"),
    "zero-direction.nrrd": (
        nrrd("space: left-posterior-superior\nspace directions: (1,0,0) (0,0,0) (0,0,1)\n"),
        "space directions",
    ),
    "inf-origin.nrrd": (
        nrrd(
            "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
            "space origin: (0,inf,0)\n"
        ),
        "space origin",
    ),
}


@pytest.mark.parametrize("name", sorted(WRONG_NUMBERS))
def test_non_numbers_in_a_volume_upload_are_a_400_leaving_nothing(
    name: str, manager: APIClient, media_root: Path
) -> None:
    content, reason = WRONG_NUMBERS[name]
    before = state(media_root)
    response = post_volume(manager, name, content)
    assert reason in refused_naming(response, "file")
    assert state(media_root) == before


@pytest.mark.parametrize("name", ["nan-voxels.nii.gz", "zero-pixdim.nii.gz", "zero-spacing.mha"])
def test_non_numbers_in_labels_and_masks_are_a_400_naming_the_field(
    name: str, manager: APIClient, lesion: dict[str, Any], phantom_file: Path, media_root: Path
) -> None:
    content, reason = WRONG_NUMBERS[name]
    suffix = name[name.index(".") :]
    before = state(media_root)
    response = post_volume(manager, *phantom_bytes(phantom_file), labels=(f"l{suffix}", content))
    assert reason in refused_naming(response, "labels")
    assert reason in refused_naming(post_mask(lesion, f"m{suffix}", content), "mask")
    assert state(media_root) == before


# ---------------------------------------------------------------------------------------------
# DICOM: positions, spacings, voxels and UIDs that cannot be used


@pytest.fixture
def imaging(make_project: Callable[..., Project], team: dict[str, Any]) -> Project:
    return make_project("imaging", manager=team["manager"])


def import_files(client: APIClient, paths: list[Path]) -> Any:
    files = [named(p.name, p.read_bytes()) for p in paths]
    return client.post("/api/projects/imaging/imports/", {"files": files}, format="multipart")


def patched(path: Path, old: bytes, new: bytes) -> None:
    content = path.read_bytes()
    assert content.count(old) == 1 and len(old) == len(new)
    path.write_bytes(content.replace(old, new))


def series_with(folder: Path, change: Callable[[Path], None] | None = None) -> list[Path]:
    slices = write_ct_series(folder, count=3, step=2.5)
    if change is not None:
        change(slices[1].path)
    return [s.path for s in slices]


def set_value(keyword: str, value: str) -> Callable[[Path], None]:
    """Rewrite one attribute's value as raw text, bypassing pydicom's checks (as a hostile
    writer would)."""

    def change(path: Path) -> None:
        ds = pydicom.dcmread(path)
        number = pydicom.datadict.tag_for_keyword(keyword)
        assert number is not None
        tag = pydicom.tag.Tag(number)
        old = ds[tag]
        raw = pydicom.dataelem.RawDataElement(
            tag, old.VR, len(value), value.encode(), 0, False, True
        )
        ds._dict[tag] = raw  # a raw element: the only way to write text pydicom would refuse
        ds.save_as(path, enforce_file_format=True)

    return change


DICOM_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "text-position": (set_value("ImagePositionPatient", "abc\\def\\gh"), "ImagePositionPatient"),
    "nan-position": (set_value("ImagePositionPatient", "NaN\\0\\5 "), "ImagePositionPatient"),
    "short-orientation": (set_value("ImageOrientationPatient", "1\\0\\0\\0"), "ImageOrientation"),
    "text-orientation": (
        set_value("ImageOrientationPatient", "1\\0\\0\\0\\x\\0"),
        "ImageOrientationPatient",
    ),
    "zero-spacing": (set_value("PixelSpacing", "0\\0.5 "), "PixelSpacing"),
    "negative-spacing": (set_value("PixelSpacing", "-1\\1 "), "PixelSpacing"),
    "nan-spacing": (set_value("PixelSpacing", "nan\\1 "), "PixelSpacing"),
    "nan-rescale": (set_value("RescaleSlope", "NaN "), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_dicom_geometry_and_values_that_are_not_numbers_reject_the_series(
    case: str,
    imaging: Project,
    team: dict[str, Any],
    client_for: Callable[..., APIClient],
    tmp_path: Path,
    media_root: Path,
) -> None:
    change, reason = DICOM_CASES[case]
    paths = series_with(tmp_path / case, change)
    response = import_files(client_for(team["manager"]), paths)
    assert response.status_code == 400, response.content
    body = response.json()
    (series,) = body["series"]
    assert series["status"] == "rejected" and reason in series["reason"], series
    assert all(f["status"] == "rejected" for f in body["files"])
    no_server_path(response)
    assert not Series.objects.exists() and not Study.objects.exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("keyword", "uid"),
    [
        ("SOPInstanceUID", "1.2.3/../../etc"),
        ("SOPInstanceUID", "1.2.3.4a"),
        ("StudyInstanceUID", "1.2.03.4"),
        ("SeriesInstanceUID", "1.2..3"),
        ("FrameOfReferenceUID", "1.2.3.x"),
        ("SeriesInstanceUID", "1.2.3."),
    ],
)
def test_an_invalid_uid_rejects_the_file_with_the_reason(
    keyword: str,
    uid: str,
    imaging: Project,
    team: dict[str, Any],
    client_for: Callable[..., APIClient],
    tmp_path: Path,
    media_root: Path,
) -> None:
    path = tmp_path / "bad.dcm"
    write_ct_slice(
        path,
        study_uid=str(generate_uid()),
        series_uid=str(generate_uid()),
        sop_uid=str(generate_uid()),
        position=(0.0, 0.0, 0.0),
        instance_number=1,
        stored=np.zeros((8, 8), np.int16),
    )
    set_value(keyword, uid + (" " if len(uid) % 2 else ""))(path)
    response = import_files(client_for(team["manager"]), [path])
    assert response.status_code == 400, response.content
    (outcome,) = response.json()["files"]
    assert outcome["status"] == "rejected"
    assert f"{keyword} {uid!r} is not a valid UID" in outcome["reason"], outcome
    assert not Series.objects.exists() and not Instance.objects.exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()]


def test_an_invalid_uid_in_a_label_object_rejects_it(tmp_path: Path) -> None:
    """RTSTRUCT / SEG objects are refused by the same UID rule before their labels are read."""
    from annotator.imaging.dicom import REJECTED, scan

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.481.3")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.481.3")
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.save_as(tmp_path / "rt.dcm", enforce_file_format=True)
    set_value("SeriesInstanceUID", "1.2.3/x ")(tmp_path / "rt.dcm")
    (tmp_path / "work").mkdir()
    result = scan([tmp_path / "rt.dcm"], workdir=tmp_path / "work")
    ((status, reason),) = [(f.status, f.reason) for f in result.files]
    assert status == REJECTED and "SeriesInstanceUID '1.2.3/x' is not a valid UID" in reason
    assert result.labels == []


# ---------------------------------------------------------------------------------------------
# No server path in any message


def test_no_error_message_shows_a_server_path(
    manager: APIClient,
    lesion: dict[str, Any],
    imaging: Project,
    team: dict[str, Any],
    client_for: Callable[..., APIClient],
    phantom_file: Path,
    tmp_path: Path,
) -> None:
    cut = phantom_file.read_bytes()[:2000]
    responses = [
        post_volume(manager, "scan.nii", b"\x5c\x01\0\0" + b"\0" * 400),
        post_volume(manager, "scan.nii.gz", cut),
        post_volume(manager, "scan.mha", b"ObjectType = Image\nNDims = 3\n"),
        post_volume(manager, "scan.nrrd", b"NRRD0004\ntype: short\ndimension: 3\n"),
        post_volume(manager, "clip.mp4", b"\0\0\0\x18ftypmp42 this is not a video"),
        post_volume(manager, "clip.avi", b"RIFF"),
        post_volume(manager, *phantom_bytes(phantom_file), labels=("l.nii.gz", cut)),
        post_mask(lesion, "m.nii.gz", cut),
        post_mask(lesion, "m.mha", b"garbage"),
    ]
    for response in responses:
        assert response.status_code == 400, response.content
        no_server_path(response)
    assert "could not be read as a video" in responses[4].json()["detail"]

    data = write_ct_series(tmp_path / "d", count=2)[0].path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 100])
    (tmp_path / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    response = import_files(
        client_for(team["manager"]), [tmp_path / "cut.dcm", tmp_path / "garbage.dcm"]
    )
    assert response.status_code == 400
    assert all(f["reason"] for f in response.json()["files"])
    no_server_path(response)
