"""A DICOM file's structure counted before pydicom parses it (annotator.imaging.dicom.structure),
and the scan's caps for label objects (annotator.imaging.dicom.checks).

The walk must see what pydicom will build: its counts are compared with pydicom's own parse on
pydicom's test files and on odd encodings written here. Hostile files (a million sequence
items, nesting thousands deep, a million fragments) are imported through the real service in a
process of their own, timed and measured (tests/annotator/hostile_probe.py).
"""

import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from annotator.imaging.dicom import IMAGE, LABEL, REJECTED, Limits, scan
from annotator.imaging.dicom.checks import MAX_LABEL_FRAMES, pixel_data_problem
from annotator.imaging.dicom.structure import (
    MAX_ITEMS,
    StructureLimits,
    structure_counts,
    structure_problem,
)
from annotator.imaging.dicom.types import DEFAULT_LIMITS
from annotator.models import Series, Study
from projects.models import Project
from tests.annotator.hostile_probe import measured, run_probe
from tests.annotator.test_dicom_reading import write_ct_series, write_ct_slice
from tests.annotator.test_hostile_images import probe

SEG_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.4")
UNDEFINED = 0xFFFFFFFF

# ---------------------------------------------------------------------------------------------
# Encoding by hand (explicit VR little endian), as a hostile writer would


def element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def sequence(group: int, number: int, items: bytes, *, defined: bool = False) -> bytes:
    """A sequence element holding the encoded ``items``: defined length, or undefined length
    closed by a sequence delimiter."""
    if defined:
        return struct.pack("<HH2sHI", group, number, b"SQ", 0, len(items)) + items
    delimiter = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HH2sHI", group, number, b"SQ", 0, UNDEFINED) + items + delimiter


def item(body: bytes, *, defined: bool = False) -> bytes:
    if defined:
        return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body + end


def request_attributes(items: bytes, *, defined: bool = False) -> bytes:
    """(0040,0275) Request Attributes Sequence: between the image attributes and the pixels."""
    return sequence(0x0040, 0x0275, items, defined=defined)


STEP_ID = element(0x0040, 0x0009, b"SH", b"A ")  # (0040,0009) Scheduled Procedure Step ID


def nested(depth: int, *, defined: bool = False) -> bytes:
    """Sequences in items in sequences, ``depth`` levels."""
    body = STEP_ID
    for _ in range(depth):
        body = request_attributes(item(body, defined=defined), defined=defined)
    return body


def ct_with(path: Path, inserted: bytes, *, pixel_data: bytes | None = None) -> Path:
    """A 16 x 16 CT slice with ``inserted`` (encoded elements) before its pixel data, which
    ``pixel_data`` (an encoded element) replaces when given."""
    write_ct_slice(
        path,
        study_uid=str(generate_uid()),
        series_uid=str(generate_uid()),
        position=(0.0, 0.0, 0.0),
        instance_number=1,
        stored=np.zeros((16, 16), np.int16),
    )
    data = path.read_bytes()
    at = data.index(struct.pack("<HH2s", 0x7FE0, 0x0010, b"OW"))
    path.write_bytes(data[:at] + inserted + (data[at:] if pixel_data is None else pixel_data))
    return path


def pydicom_counts(path: Path) -> tuple[int, int, int]:
    """(elements, items, deepest item) of everything pydicom builds from the file."""

    def walk(ds: Dataset, depth: int) -> tuple[int, int, int]:
        elements, items, deepest = 0, 0, depth
        for elem in ds:
            elements += 1
            if elem.VR == "SQ":
                for child in elem.value:
                    e, i, d = walk(child, depth + 1)
                    elements, items, deepest = elements + e, items + i + 1, max(deepest, d)
        return elements, items, deepest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, defer_size=64 * 1024)
        elements, items, deepest = walk(ds, 0)
    return elements + len(ds.file_meta), items, deepest


def ours(path: Path) -> tuple[int, int, int]:
    counts = structure_counts(path)
    return counts.elements, counts.items, counts.depth


# ---------------------------------------------------------------------------------------------
# The walk sees what pydicom builds


def pydicom_test_files() -> list[Path]:
    names = [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "image_dfl.dcm",  # deflated
        "rtplan.dcm",
        "waveform_ecg.dcm",
        "emri_small.dcm",
        "eCT_Supplemental.dcm",
        "SC_rgb_rle_2frame.dcm",
        "JPEG2000.dcm",
        "nested_priv_SQ.dcm",
        "UN_sequence.dcm",
        "reportsi.dcm",
        "test-SR.dcm",
        "liver.dcm",  # a DICOM SEG
        "DICOMDIR",
    ]
    found = [get_testdata_file(name) for name in names]
    return [Path(path) for path in found if isinstance(path, str)]


def test_the_walk_counts_what_pydicom_builds_from_its_test_files() -> None:
    """Explicit and implicit VR, big endian, deflated, encapsulated, private sequences,
    sequences of undefined and of defined length: element for element and item for item."""
    files = pydicom_test_files()
    assert len(files) >= 12
    compared = {}
    for path in files:
        try:
            expected = pydicom_counts(path)
        except Exception:  # pydicom cannot read it either (a file without a meta header)
            continue
        compared[path.name] = (ours(path), expected)
    assert len(compared) >= 10, compared
    assert {name: pair for name, pair in compared.items() if pair[0] != pair[1]} == {}
    assert compared["waveform_ecg.dcm"][1][1] > 200 and compared["test-SR.dcm"][1][2] >= 5


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")
def test_the_walk_counts_what_pydicom_builds_from_real_objects() -> None:
    """Real CT, MR and PET slices, RTSTRUCTs and DICOM SEGs (../shared/data)."""
    paths = [
        *sorted(SHARED.glob("mirp/*/*/*/dicom/mask/*.dcm")),
        *sorted(SHARED.glob("mirp/ct_images_seg_nsclc/*/mask_rtstruct/*.dcm")),
        *sorted(SHARED.glob("mirp/*/*/*/dicom/image/*.dcm"))[::20],
        *sorted(SHARED.glob("dcmqi_ct3slice/*.dcm")),
        *sorted(SHARED.glob("totalsegmentator/example_ct_dicom/*.dcm"))[:3],
    ]
    assert len(paths) >= 10
    compared = {path.name: (ours(path), pydicom_counts(path)) for path in paths}
    assert {name: pair for name, pair in compared.items() if pair[0] != pair[1]} == {}
    assert max(pair[1][1] for pair in compared.values()) > 500  # an RTSTRUCT's items


def test_odd_encodings_are_walked_as_pydicom_reads_them(tmp_path: Path) -> None:
    implicit_items = item(
        struct.pack("<HHI", 0x0040, 0x0009, 2) + b"A "  # implicit VR in an explicit file
    )
    un_sequence = struct.pack("<HH2sHI", 0x0040, 0x0275, b"UN", 0, UNDEFINED)
    un_sequence += item(STEP_ID) * 3 + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    private = element(0x0029, 0x0010, b"LO", b"ACME 1.0") + sequence(
        0x0029, 0x1010, item(STEP_ID) * 2
    )
    # An implicit VR item whose second element's length reads as the VR "AB": the item's first
    # element decides how all of it is read.
    comment = struct.pack("<HHI", 0x0040, 0x0280, 0x4241) + b" " * 0x4241
    implicit_long = item(struct.pack("<HHI", 0x0040, 0x0009, 2) + b"A " + comment)
    # UN of undefined length is a sequence whatever the dictionary says ((0040,0009) is SH).
    un_not_sq = struct.pack("<HH2sHI", 0x0040, 0x0009, b"UN", 0, UNDEFINED)
    un_not_sq += item(STEP_ID) * 2 + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    # A private UN that the private dictionary makes a sequence under its creator: its
    # "items" are read as items whatever their tags.
    known_private = element(0x0071, 0x0010, b"LO", b"AGFA-AG_HPState ")
    known_private += element(0x0071, 0x1018, b"UN", struct.pack("<HHI", 0x0001, 0x0001, 0) * 3)
    cases = {
        "implicit-items": request_attributes(implicit_items * 4),
        "implicit-long": request_attributes(implicit_long * 2),
        "un-sequence": un_sequence,
        "un-not-sq": un_not_sq,
        "private": private,
        "known-private": known_private,
        "defined": request_attributes(item(STEP_ID, defined=True) * 5, defined=True),
        "mixed": request_attributes(
            item(nested(3, defined=True)) * 2 + item(nested(2), defined=True)
        ),
    }
    for name, inserted in cases.items():
        path = ct_with(tmp_path / f"{name}.dcm", inserted)
        assert ours(path) == pydicom_counts(path), name
        assert ours(path)[1] > 0, name

    # An implicit VR element in an explicit VR dataset; a value of undefined length that is
    # not fragments (pydicom searches for its delimiter); elements after encapsulated pixels.
    implicit_element = struct.pack("<HHI", 0x0040, 0x0009, 2) + b"A "
    implicit_element += element(0x0040, 0x0010, b"SH", b"B ")  # then explicit again
    document = struct.pack("<HH2sHI", 0x0042, 0x0011, b"OB", 0, UNDEFINED) + b"%PDF-1.4 ..."
    document += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    padding = element(0xFFFC, 0xFFFC, b"OB", b"\0" * 6)
    for name, inserted, pixels in (
        ("implicit-element", implicit_element, None),
        ("searched", document + request_attributes(item(STEP_ID)), None),
        ("after-pixels", b"", encapsulated(fragments=3) + padding),
    ):
        path = ct_with(tmp_path / f"{name}.dcm", inserted, pixel_data=pixels)
        assert ours(path) == pydicom_counts(path), name

    # The same dataset written by pydicom in each transfer syntax it reads.
    source = pydicom.dcmread(ct_with(tmp_path / "source.dcm", request_attributes(item(STEP_ID))))
    expected = pydicom_counts(tmp_path / "source.dcm")
    for syntax in (ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        source.file_meta.TransferSyntaxUID = syntax
        path = tmp_path / f"{syntax.name}.dcm"
        dcmwrite(
            path,
            source,
            implicit_vr=syntax.is_implicit_VR,
            little_endian=syntax.is_little_endian,
            force_encoding=True,  # big endian: the pixel bytes are left as they are
        )
        assert path.read_bytes()[128:132] == b"DICM"
        assert ours(path) == pydicom_counts(path) == expected, syntax.name


def test_a_deflated_series_is_read_and_built(tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "series", count=3)
    for s in slices:
        ds = pydicom.dcmread(s.path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(s.path, enforce_file_format=True)
    (tmp_path / "work").mkdir()
    result = scan([tmp_path / "series"], workdir=tmp_path / "work")
    assert [f.status for f in result.files] == [IMAGE] * 3
    assert result.series[0].image is not None
    assert result.series[0].image.GetSize() == (16, 16, 3)


# ---------------------------------------------------------------------------------------------
# The caps, exactly


def refused(path: Path, **caps: int) -> str:
    return structure_problem(path, StructureLimits(**caps))


def test_each_cap_allows_its_count_and_refuses_one_more(tmp_path: Path) -> None:
    items = ct_with(tmp_path / "items.dcm", request_attributes(item(STEP_ID) * 10))
    assert structure_counts(items).items == 10
    assert refused(items, max_items=10) == ""
    assert refused(items, max_items=9) == "too complex: more than 9 sequence items"

    deep = ct_with(tmp_path / "deep.dcm", nested(6))
    assert structure_counts(deep).depth == 6
    assert refused(deep, max_depth=6) == ""
    assert "nested more than 5 deep" in refused(deep, max_depth=5)
    deep_defined = ct_with(tmp_path / "deep-defined.dcm", nested(6, defined=True))
    assert "nested more than 5 deep" in refused(deep_defined, max_depth=5)

    elements = structure_counts(items).elements
    assert refused(items, max_elements=elements) == ""
    assert f"more than {elements - 1} data elements" in refused(items, max_elements=elements - 1)

    fragments = ct_with(tmp_path / "fragments.dcm", b"", pixel_data=encapsulated(fragments=7))
    assert structure_counts(fragments).fragments == 8  # the basic offset table is one
    assert refused(fragments, max_fragments=8) == ""
    assert "more than 7 fragments" in refused(fragments, max_fragments=7)


def encapsulated(*, fragments: int) -> bytes:
    """Encapsulated pixel data: an empty offset table and ``fragments`` empty fragments."""
    items = struct.pack("<HHI", 0xFFFE, 0xE000, 0) * (fragments + 1)
    return (
        struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, UNDEFINED)
        + items
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )


def test_a_refused_structure_is_in_the_import_report(tmp_path: Path) -> None:
    path = ct_with(tmp_path / "deep.dcm", nested(40))
    (tmp_path / "work").mkdir()
    result = scan([path], workdir=tmp_path / "work")
    ((status, reason),) = [(f.status, f.reason) for f in result.files]
    assert status == REJECTED
    assert reason == "too complex: sequences nested more than 32 deep"


# ---------------------------------------------------------------------------------------------
# Hostile files: refused fast and small, in a process of their own


def million_items(path: Path) -> None:
    """1,000,000 undefined-length items of one element each (26 MB): pydicom would build a
    Dataset for each as it reads the file (~30 s, ~1 GB)."""
    ct_with(path, request_attributes(item(STEP_ID) * 1_000_000))


def million_defined_items(path: Path) -> None:
    """1,000,000 empty items of defined length (8 MB): built when the sequence is first used."""
    ct_with(path, request_attributes(item(b"", defined=True) * 1_000_000, defined=True))


def nested_deep(path: Path) -> None:
    ct_with(path, nested(10_000))


def nested_deep_defined(path: Path) -> None:
    ct_with(path, nested(10_000, defined=True))


def million_elements(path: Path) -> None:
    ct_with(path, request_attributes(item(STEP_ID * 1_100_000)))


def million_fragments(path: Path) -> None:
    ct_with(path, b"", pixel_data=encapsulated(fragments=1_100_000))
    data, explicit = path.read_bytes(), ExplicitVRLittleEndian.encode()
    assert data.count(explicit) == 1 and len(RLELossless) == len(explicit)
    path.write_bytes(data.replace(explicit, RLELossless.encode(), 1))


def deflated_items(path: Path) -> None:
    """The million items, deflated: 26 MB of dataset in 100 kB."""
    million_items(path)
    data = path.read_bytes()
    dataset = data[132 + 12 + struct.unpack_from("<I", data, 140)[0] :]
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path.write_bytes(deflated_meta(path) + deflate.compress(dataset) + deflate.flush())


def deflated_meta(path: Path) -> bytes:
    """The preamble and file meta of ``path``, naming the deflated transfer syntax."""
    meta = read_file_meta_info(path)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta)
    return b"\0" * 128 + b"DICM" + buffer.getvalue()


HOSTILE_STRUCTURES: dict[str, tuple[Callable[[Path], None], str]] = {
    "items.dcm": (million_items, f"more than {MAX_ITEMS} sequence items"),
    "defined-items.dcm": (million_defined_items, f"more than {MAX_ITEMS} sequence items"),
    "nested.dcm": (nested_deep, "nested more than 32 deep"),
    "nested-defined.dcm": (nested_deep_defined, "nested more than 32 deep"),
    "elements.dcm": (million_elements, "data elements"),
    "fragments.dcm": (million_fragments, "fragments of encapsulated pixel data"),
    "deflated.dcm": (deflated_items, f"more than {MAX_ITEMS} sequence items"),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", sorted(HOSTILE_STRUCTURES))
def test_a_hostile_structure_is_refused_fast_and_small(
    name: str, make_project: Callable[..., Project], tmp_path: Path, media_root: Path
) -> None:
    make_project("hostile")
    build, reason = HOSTILE_STRUCTURES[name]
    path = tmp_path / name
    build(path)
    result = probe("dicom", path)
    print(f"{name}: {path.stat().st_size} bytes, {measured(result)}")
    assert result["cpu_seconds"] < 1.0, result
    assert result["peak_rss_mb"] < 500, result
    (outcome,) = result["report"]["files"]
    assert outcome["status"] == "rejected" and reason in outcome["reason"], outcome
    assert not Series.objects.exists() and not Study.objects.exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------------
# Label objects at the scan: caps of their own


def code(value: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = value, "SCT", meaning
    return ds


def one(**values: Any) -> list[Dataset]:
    """A sequence of one item."""
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return [ds]


def seg_file(
    path: Path,
    *,
    frames: int,
    segments: int,
    rows: int,
    columns: int,
    slices: int = 300,
    functional_groups: bool = True,
    missing_bytes: int = 0,
) -> Path:
    """A BINARY SEG (1 bit a pixel) of ``frames`` frames spread over ``segments`` segments on
    ``slices`` slice positions, with highdicom's functional groups (8 items a frame) in
    sequences of undefined length, as DCMTK writes them. Its pixel data (zeros) is a hole in a
    sparse file, ``missing_bytes`` fewer than the frames need."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SEG_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SEG_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality, ds.SegmentationType = "SEG", "BINARY"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.SegmentSequence = [
        one(
            SegmentNumber=n,
            SegmentLabel=f"structure {n}",
            SegmentAlgorithmType="AUTOMATIC",
            SegmentedPropertyCategoryCodeSequence=[code("123037004", "Anatomical Structure")],
            SegmentedPropertyTypeCodeSequence=[code("10200004", "Liver")],
        )[0]
        for n in range(1, segments + 1)
    ]
    if functional_groups:
        ds.SharedFunctionalGroupsSequence = one(
            PlaneOrientationSequence=one(ImageOrientationPatient=[1, 0, 0, 0, 1, 0]),
            PixelMeasuresSequence=one(PixelSpacing=[0.8, 0.8], SliceThickness=1.5),
        )
        sources = [generate_uid() for _ in range(slices)]
        per_frame = []
        for index in range(frames):
            segment, position = index % segments + 1, index * 7 % slices
            per_frame.extend(
                one(
                    FrameContentSequence=one(DimensionIndexValues=[segment, position + 1]),
                    PlanePositionSequence=one(ImagePositionPatient=[0, 0, 1.5 * position]),
                    DerivationImageSequence=one(
                        SourceImageSequence=one(
                            ReferencedSOPClassUID=CTImageStorage,
                            ReferencedSOPInstanceUID=sources[position],
                            PurposeOfReferenceCodeSequence=[code("121322", "Source image")],
                        ),
                        DerivationCodeSequence=[code("113076", "Segmentation")],
                    ),
                    SegmentIdentificationSequence=one(ReferencedSegmentNumber=segment),
                )
            )
        ds.PerFrameFunctionalGroupsSequence = per_frame
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for child in elem.value:
                child.is_undefined_length_sequence_item = True
    ds.save_as(path, enforce_file_format=True)
    needed = (frames * rows * columns + 7) // 8
    length = needed + needed % 2 - missing_bytes
    with open(path, "ab") as f:
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length + missing_bytes))
        f.truncate(f.tell() + length)
    return path


def scan_probe(path: Path) -> dict[str, Any]:
    """The DICOM scan alone, timed and measured in a process of its own."""
    return run_probe("scan", "-", str(path), database=False)


def test_a_totalsegmentator_size_seg_passes_the_scan_above_the_image_caps(
    tmp_path: Path,
) -> None:
    """117 segments, 6,000 frames of 512 x 512 (bit-packed: 197 MB of pixel data), 48,000
    items of functional groups: 1.6e9 voxels, over the image voxel cap (2^30)."""
    path = seg_file(tmp_path / "seg.dcm", frames=6000, segments=117, rows=512, columns=512)
    assert Limits().max_voxels < 6000 * 512 * 512
    counts = structure_counts(path)
    assert 6000 * 8 <= counts.items < MAX_ITEMS, counts
    result = scan_probe(path)
    print(
        f"SEG {path.stat().st_size} bytes, {counts}: scan {result['seconds']:.2f} s, peak RSS "
        f"{result['peak_rss_mb']:.0f} MB"
    )
    assert result["files"] == [{"status": LABEL, "reason": "label object, imported with labels"}]
    assert result["cpu_seconds"] < 10 and result["peak_rss_mb"] < 500, result

    ds = pydicom.dcmread(path, defer_size=64 * 1024)
    size = path.stat().st_size
    assert pixel_data_problem(ds, path, size, Limits()) == (
        f"too large: 6000 x 512 x 512 voxels (limit {Limits().max_voxels})"
    )
    assert pixel_data_problem(ds, path, size, Limits(), label=True) == ""


def scan_one(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[str, str]:
    work = path.parent / "work"
    work.mkdir(exist_ok=True)
    ((status, reason),) = [
        (f.status, f.reason) for f in scan([path], workdir=work, limits=limits).files
    ]
    return status, reason


def test_label_objects_have_caps_of_their_own_and_must_hold_their_bytes(tmp_path: Path) -> None:
    def seg(name: str, **options: Any) -> Path:
        return seg_file(tmp_path / name, functional_groups=False, segments=2, **options)

    many = seg("many.dcm", frames=MAX_LABEL_FRAMES + 1, rows=1, columns=1)
    assert scan_one(many) == (
        REJECTED,
        f"too large: NumberOfFrames {MAX_LABEL_FRAMES + 1} (limit {MAX_LABEL_FRAMES} for a "
        "label object)",
    )
    assert scan_one(seg("at-cap.dcm", frames=MAX_LABEL_FRAMES, rows=1, columns=1))[0] == LABEL

    large = seg("large.dcm", frames=20_000, rows=1024, columns=512)  # 1.07e10 voxels
    status, reason = scan_one(large)
    assert status == REJECTED and "20000 x 1024 x 512 voxels" in reason, reason
    assert "for a label object" in reason

    # A frame must fit the image voxel cap, whatever the label caps.
    wide = seg("wide.dcm", frames=2, rows=64, columns=64)
    assert scan_one(wide, Limits(max_voxels=4096))[0] == LABEL
    assert scan_one(wide, Limits(max_voxels=4095)) == (
        REJECTED,
        "too large: frames of 64 x 64 pixels (limit 4095)",
    )

    short = seg("short.dcm", frames=100, rows=64, columns=64, missing_bytes=2)
    status, reason = scan_one(short)
    assert status == REJECTED and reason.startswith("truncated pixel data"), reason
