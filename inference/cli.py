"""Command line for the segmentation engine, without the web app (no Django import).

    python -m inference segment --image CT.nii.gz --box X0 Y0 X1 Y1 --slice K --out mask.nii.gz
        [--slice-range FIRST LAST] [--backend default|litemedsam|medsam2|package.module.Class]
        [--checkpoint PATH] [--device DEVICE] [--model-dir DIR] [--window CENTER WIDTH]
        [--series UID]

``--model-dir DIR`` uses the learned default backend with the model ``DIR/model.joblib`` (or the
folder's only ``*.joblib`` file), as written by ``inference.engine.learned.LearnedModel.save``.
``--backend`` also takes any backend class by its dotted path, as the server's
``INFERENCE_BACKEND`` setting does.

``--image`` is a NIfTI, NRRD or MetaImage file, a 2D image (PNG, JPEG, ...: one slice), or a
folder of one DICOM series. Colour images (RGB; RGBA, whose alpha is dropped; colour DICOM;
vector MetaImage or NRRD of 3 or 4 components) go to the backend as they are, (z, y, x, 3): a
backend that works on grey values takes their luma. Coordinates are voxel indices of the image
as SimpleITK reads it: ``--slice`` indexes the third axis (axis 0 of ``GetArrayFromImage``; 0
for a 2D image), x is the column and y the row, the box's corners inclusive. ``--slice-range``
gives the lesion's first and last slice (inclusive, around ``--slice``): the mask stays within
them. The mask is written as a uint8 label image (1 = lesion) on the input's grid (same size,
spacing, origin and direction; 2D for a 2D image, so ``--out mask.png`` suits a PNG input; never
JPEG, which is lossy), and a JSON summary goes to stdout. Any error exits with status 2 and one
line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import SimpleITK as sitk

from inference.engine import (
    EngineError,
    ImageVolume,
    LesionPrompt,
    SegmentationBackend,
    load_backend,
    validate_prompts,
)
from inference.engine.base import BACKEND_ALIASES

BACKENDS = BACKEND_ALIASES
LEARNED = "inference.engine.learned.LearnedBackend"
MODEL_FILE = "model.joblib"
EXIT_ERROR = 2
# Components per pixel the CLI reads: grey, RGB, RGBA (alpha dropped).
GREY, RGB, RGBA = 1, 3, 4
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jp2", ".j2k")
_DOTTED = re.compile(r"[A-Za-z_][\w.]*[.:][A-Za-z_]\w*")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_ERROR)


def _backend(value: str) -> str:
    if value in BACKENDS or _DOTTED.fullmatch(value):
        return value
    raise argparse.ArgumentTypeError(
        f"invalid choice: {value!r} (choose from {', '.join(map(repr, sorted(BACKENDS)))}, "
        "or a backend class as package.module.Class)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m inference", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    seg = commands.add_parser("segment", help="segment one lesion in 3D from a box on a slice")
    seg.add_argument("--image", required=True, type=Path, help="image file or DICOM folder")
    seg.add_argument(
        "--box",
        required=True,
        nargs=4,
        type=int,
        metavar=("X0", "Y0", "X1", "Y1"),
        help="inclusive voxel indices on the key slice (x = column, y = row)",
    )
    seg.add_argument("--slice", required=True, type=int, metavar="K", help="key slice (third axis)")
    seg.add_argument(
        "--slice-range",
        nargs=2,
        type=int,
        metavar=("FIRST", "LAST"),
        help="the lesion's first and last slice (inclusive): the mask stays within them",
    )
    seg.add_argument(
        "--out", required=True, type=Path, help="mask file (.nii.gz, .nrrd, .mha; .png for 2D)"
    )
    seg.add_argument(
        "--backend",
        type=_backend,
        default="default",
        metavar="BACKEND",
        help=f"{', '.join(sorted(BACKENDS))}, or a backend class as package.module.Class",
    )
    seg.add_argument("--checkpoint", type=Path, help="model weights (medsam2)")
    seg.add_argument("--device", help="torch device for model backends, e.g. cuda:0 or cpu")
    seg.add_argument("--model-dir", type=Path, help="a learned default model (default backend)")
    seg.add_argument(
        "--window",
        nargs=2,
        type=float,
        metavar=("CENTER", "WIDTH"),
        help="intensity window for CT (e.g. 40 400)",
    )
    seg.add_argument("--series", help="SeriesInstanceUID, when the DICOM folder holds several")
    return parser


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def read_image(path: Path, series: str | None = None) -> sitk.Image:
    """The image of a file or a DICOM series folder, as read: 2D or 3D, grey (one component
    per pixel) or colour (RGB or RGBA); :func:`volume_array` makes the engine's array of it."""
    if not path.exists():
        raise CliError(f"image not found: {path}")
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series_ids = list(reader.GetGDCMSeriesIDs(str(path)))
        if not series_ids:
            raise CliError(f"no DICOM series found in the folder {path}")
        if series is None and len(series_ids) > 1:
            raise CliError(
                f"{path} holds {len(series_ids)} DICOM series; choose one with --series "
                f"({', '.join(series_ids)})"
            )
        uid = series or series_ids[0]
        if uid not in series_ids:
            raise CliError(f"series {uid} is not in {path} (found {', '.join(series_ids)})")
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), uid))
        read = reader.Execute
    else:
        file_reader = sitk.ImageFileReader()
        file_reader.SetFileName(str(path))
        read = file_reader.Execute
    try:
        image = read()
    except RuntimeError as exc:
        raise CliError(f"cannot read {path} as an image: {_last_line(exc)}") from exc
    components = image.GetNumberOfComponentsPerPixel()
    if components not in (GREY, RGB, RGBA):
        raise CliError(
            f"{path} has {components} components per voxel; expected grey values, RGB or RGBA"
        )
    if image.GetDimension() not in (2, 3):
        raise CliError(f"{path} has {image.GetDimension()} dimensions; expected 2 or 3")
    return image


def volume_array(image: sitk.Image) -> np.ndarray:
    """The engine's array of an image from :func:`read_image`: (z, y, x) grey or (z, y, x, 3)
    colour, alpha dropped; a 2D image is one slice."""
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 2:
        array = array[np.newaxis]
    if image.GetNumberOfComponentsPerPixel() == RGBA:
        array = array[..., :3]
    return array


def _check_slice_range(slice_range: Sequence[int], key_slice: int, depth: int) -> tuple[int, int]:
    first, last = slice_range
    where = f"--slice-range {first} {last}"
    if first > last:
        raise CliError(f"{where}: FIRST must not come after LAST")
    if first < 0 or last >= depth:
        raise CliError(f"{where} lies outside the image's slices 0..{depth - 1}")
    if 0 <= key_slice < depth and not first <= key_slice <= last:
        raise CliError(f"{where} does not contain the key slice {key_slice} (--slice)")
    return first, last


def _import_backend(dotted: str, missing: str) -> None:
    """Import the backend's module first, so that an absent one is reported as such."""
    module_name, _, attr = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"{missing}: {_last_line(exc)}") from exc
    if not hasattr(module, attr):
        raise CliError(f"{missing}: {module_name} has no {attr}")


def model_file(folder: Path) -> Path:
    """The learned model in ``folder``: ``model.joblib``, or its only ``*.joblib`` file."""
    if not folder.is_dir():
        raise CliError(f"model folder not found: {folder}")
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    candidates = sorted(p for p in folder.glob("*.joblib") if p.is_file())
    if len(candidates) != 1:
        raise CliError(
            f"no learned model is available in {folder}: expected {MODEL_FILE} "
            f"(or a single *.joblib file), found {len(candidates)} candidates"
        )
    return candidates[0]


def make_backend(args: argparse.Namespace) -> SegmentationBackend:
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CliError(f"checkpoint not found: {args.checkpoint}")
    if args.model_dir is not None:
        if args.backend != "default" or args.checkpoint is not None:
            raise CliError("--model-dir is for the learned default backend, without --checkpoint")
        path = model_file(args.model_dir)
        _import_backend(LEARNED, "no learned model is available (no learned backend here)")
        return load_backend(LEARNED, checkpoint=str(path.resolve()))
    dotted = BACKENDS.get(args.backend, args.backend).replace(":", ".")
    _import_backend(dotted, f"the {args.backend} backend is not installed")
    checkpoint = str(args.checkpoint.resolve()) if args.checkpoint is not None else None
    options = {"device": args.device} if args.device else {}
    return load_backend(args.backend, checkpoint=checkpoint, **options)


def segment(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    out: Path = args.out
    if not out.parent.is_dir():
        raise CliError(f"output folder does not exist: {out.parent}")
    if out.name.lower().endswith(LOSSY_SUFFIXES):
        raise CliError(f"cannot write {out}: JPEG is lossy; write the mask as .png or .nii.gz")
    image = read_image(args.image, args.series)
    flat = image.GetDimension() == 2
    spacing = (*image.GetSpacing(), 1.0) if flat else image.GetSpacing()
    try:
        volume = ImageVolume(
            array=volume_array(image),
            spacing=tuple(spacing),  # type: ignore[arg-type]
            window=tuple(args.window) if args.window else None,
        )
    except EngineError as exc:
        raise CliError(f"{args.image}: {exc}") from exc
    slice_range = None
    if args.slice_range is not None:
        slice_range = _check_slice_range(args.slice_range, args.slice, volume.shape[0])
    x0, y0, x1, y1 = args.box
    prompt = LesionPrompt(
        lesion_id="1", key_slice=args.slice, box=(x0, y0, x1, y1), z_range=slice_range
    )
    validate_prompts(volume, [prompt])  # before loading a model: a bad box fails fast
    backend = make_backend(args)
    loaded = time.perf_counter()
    result = backend.segment(volume, [prompt])
    mask = np.asarray(result.masks[prompt.lesion_id], dtype=np.uint8)
    # A 2D input gets a 2D mask, on the image's own grid.
    label = sitk.GetImageFromArray(mask[0] if flat else mask)
    label.CopyInformation(image)
    try:
        sitk.WriteImage(label, str(out), useCompression=True)
    except RuntimeError as exc:
        raise CliError(f"cannot write {out}: {_last_line(exc)}") from exc
    finished = time.perf_counter()
    summary: dict[str, object] = {
        "out": str(out),
        "voxels": int(mask.sum()),
        "volume_ml": float(mask.sum() * np.prod(spacing) / 1000.0),
        "seconds": round(finished - started, 3),
        "segment_seconds": round(finished - loaded, 3),
        "backend": backend.name,
        "backend_info": backend.describe(),
        "size": list(image.GetSize()),
        "colour": volume.is_colour,
    }
    if slice_range is not None:
        summary["slice_range"] = list(slice_range)
    if result.notes:
        summary["notes"] = result.notes
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's multi-line warnings: errors say it
    try:
        summary = segment(args)
    except (CliError, EngineError) as exc:
        sys.stderr.write(f"error: {_last_line(exc)}\n")
        return EXIT_ERROR
    json.dump(summary, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0
