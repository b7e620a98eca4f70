"""What a DICOM file declares, checked before anything is allocated for it.

A few kilobytes of header can announce two billion frames or gigabytes of pixels; every such
number is held against a cap (:class:`annotator.imaging.dicom.types.Limits`) and against the bytes
the file actually holds before a frame list or a pixel array is built. UIDs become database keys,
storage paths and DICOMweb URL parts, so they must follow PS3.5 9.1 exactly.
"""

import io
import warnings
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

from annotator.imaging.dicom.types import Limits

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# The UIDs that become keys (rows, storage paths, URLs): each must be a valid UID when present.
KEY_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# A label object (SEG) is never made into one volume: the labels import places its frames
# without their pixels and decodes them one at a time onto the reference series' grid, so its
# memory does not grow with them. Its own caps bound that work (a TotalSegmentator SEG of 117
# segments on a 512 x 512 x 300 CT: about 6,000 frames, 1.6e9 voxels); a frame must still fit
# the image voxel cap, and the pixel bytes present must still be those declared. The structure
# caps (annotator.imaging.dicom.structure) allow the functional groups of about 25,000 frames.
MAX_LABEL_FRAMES = 25_000
MAX_LABEL_VOXELS = 8 * 1024**3


def uid_problem(keyword: str, value: str) -> str:
    """Why ``value`` is not a valid UID (PS3.5 9.1: at most 64 characters, components of digits
    separated by dots, no leading zero but "0" itself), or ""."""
    if len(value) > 64:
        return f"{keyword} longer than 64"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we report
        valid = UID(value).is_valid
    if not valid:
        shown = value if len(value) <= 64 else value[:64] + "..."
        return (
            f"{keyword} {shown!r} is not a valid UID (digits in dot-separated components, no "
            "leading zeros)"
        )
    return ""


def uid_problems(ds: Dataset, keywords: tuple[str, ...] = KEY_UIDS) -> list[str]:
    problems = []
    for keyword in keywords:
        value = ds.get(keyword)
        if value not in (None, ""):
            problem = uid_problem(keyword, str(value).strip())
            if problem:
                problems.append(problem)
    return problems


def number_of_frames(ds: Dataset) -> int | None:
    """NumberOfFrames (1 when absent), or None when it is not a positive integer."""
    value = ds.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    try:
        frames = int(value)
    except (TypeError, ValueError):
        return None
    return frames if frames >= 1 else None


def pixel_data_problem(
    ds: Dataset, path: Path, file_size: int, limits: Limits, *, label: bool = False
) -> str:
    """Why the object's declared pixel data cannot be right or is too large, or "".

    Rows x Columns x NumberOfFrames must be within the caps (an image's, or for a ``label``
    object MAX_LABEL_FRAMES and MAX_LABEL_VOXELS, a frame within the image voxel cap); native
    pixel data must hold the bytes Rows x Columns x SamplesPerPixel x BitsAllocated x
    NumberOfFrames need (counted in the file: the value itself is not read); encapsulated pixel
    data must hold a fragment per frame.
    """
    max_frames, max_voxels = (
        (MAX_LABEL_FRAMES, MAX_LABEL_VOXELS) if label else (limits.max_frames, limits.max_voxels)
    )
    what = " for a label object" if label else ""
    frames = number_of_frames(ds)
    if frames is None:
        return f"NumberOfFrames {ds.get('NumberOfFrames')!r} is not a positive integer"
    if frames > max_frames:
        return f"too large: NumberOfFrames {frames} (limit {max_frames}{what})"
    try:
        rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        samples = int(ds.get("SamplesPerPixel", 1))
        bits = int(ds.get("BitsAllocated", 0))
    except (TypeError, ValueError):
        return "Rows, Columns, SamplesPerPixel and BitsAllocated must be integers"
    if rows < 1 or columns < 1 or samples not in (1, 3) or bits not in (1, 8, 16, 32, 64):
        return (
            f"invalid image size: Rows {rows}, Columns {columns}, SamplesPerPixel {samples}, "
            f"BitsAllocated {bits}"
        )
    if rows * columns > limits.max_voxels:
        return f"too large: frames of {rows} x {columns} pixels (limit {limits.max_voxels})"
    if rows * columns * frames > max_voxels:
        return f"too large: {frames} x {rows} x {columns} voxels (limit {max_voxels}{what})"
    keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
    element = ds.get_item(keyword, keep_deferred=True)
    value = getattr(element, "value", None)
    if getattr(element, "is_undefined_length", False) or (
        keyword == "PixelData"
        and UID(str(ds.file_meta.get("TransferSyntaxUID", ""))).is_encapsulated
    ):
        return _fragments_problem(value, path, int(getattr(element, "value_tell", 0) or 0), frames)
    if isinstance(value, (bytes, bytearray)):
        present = len(value)
    else:  # deferred: its length as declared, as far as the file actually reaches
        tell = int(getattr(element, "value_tell", 0) or 0)
        present = min(int(getattr(element, "length", 0) or 0), max(file_size - tell, 0))
    try:
        expected = get_expected_length(ds, unit="bytes")
    except (AttributeError, TypeError, ValueError) as exc:
        return f"invalid pixel description: {exc}"
    if present < expected:
        return (
            f"truncated pixel data: {keyword} holds {present} bytes; Rows x Columns x "
            f"SamplesPerPixel x BitsAllocated x NumberOfFrames ({rows} x {columns} x {samples} "
            f"x {bits} x {frames}) need {expected}"
        )
    return ""


def _fragments_problem(value: object, path: Path, tell: int, frames: int) -> str:
    """Encapsulated pixel data must hold at least one fragment per frame (PS3.5 A.4). Counted
    from the item headers (in the file when the value was left there), never the fragments."""
    try:
        with (
            io.BytesIO(value) if isinstance(value, (bytes, bytearray)) else open(path, "rb")
        ) as buffer:
            if not isinstance(value, (bytes, bytearray)):
                buffer.seek(tell)
            parse_basic_offsets(buffer)
            fragments, _ = parse_fragments(buffer)
    except Exception as exc:  # pydicom raises several types for malformed items
        return f"the encapsulated pixel data is malformed: {exc}"
    if fragments < frames:
        return (
            f"NumberOfFrames is {frames} but the encapsulated pixel data holds {fragments} "
            "fragment(s): at least one per frame is needed"
        )
    return ""
