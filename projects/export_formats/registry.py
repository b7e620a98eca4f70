"""The registry of export formats: each format is a writer class registered under its name.

A round's export (:func:`projects.exports.export_round_files`) makes one instance of each chosen
format, gives it every accepted case in turn (:meth:`ExportFormat.write_case`), then lets it
write what belongs to the whole round (:meth:`ExportFormat.finish`). The formats of the
workflow register themselves in this package; a format whose writer needs model code (the
MedSAM2 npz) registers from its own app, so ``projects`` imports none of it."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import SimpleITK as sitk

from annotator.models import Lesion, MaskVersion, Volume
from projects.models import Round, Task

# The date of every zip member an export writes, so that the same input gives the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class FormatSkipped(Exception):
    """The case cannot be written in this format; the message is the reason (the manifest's
    ``skipped``)."""


@dataclass
class CaseExport:
    """One accepted case, as every format's writer reads it."""

    task: Task
    # Its manifest entry: writers add their own keys (how intensities were mapped, UIDs...).
    case: dict[str, Any]
    out: Path  # the export's folder (being written)
    source: Path  # the stored volume file, on local disk
    # Lesion by lesion (by id): the lesion, its final mask version and that mask, (z, y, x).
    masks: list[tuple[Lesion, MaskVersion | None, np.ndarray]]
    instances: np.ndarray  # the instance label map: lesion i of the case has label i

    @property
    def name(self) -> str:
        return str(self.case["case"])

    @property
    def volume(self) -> Volume:
        return self.task.series.volume


class ExportFormat:
    """A format's writer, made once per export for the round and its accepted cases."""

    name: ClassVar[str]
    # The formats' order where they are listed: FORMATS, the manifest's formats and files.
    rank: ClassVar[int]
    # The order a case is written in (so the order of its manifest entry's files and keys).
    write_rank: ClassVar[int]

    def __init__(self, round_: Round, tasks: Sequence[Task]) -> None:
        self.round = round_
        self.tasks = tasks

    def write_case(self, export: CaseExport) -> list[str]:
        """Write the case; the paths written, relative to the export's folder. Raises
        FormatSkipped when the case cannot have this format."""
        raise NotImplementedError

    def finish(self, out: Path, cases: list[dict[str, Any]]) -> list[str]:
        """Write what belongs to the whole round, after every case; the paths written."""
        return []


_REGISTRY: dict[str, type[ExportFormat]] = {}


def register(fmt: type[ExportFormat]) -> type[ExportFormat]:
    """Register ``fmt`` under its name (a class decorator); registering a name again replaces
    the earlier writer."""
    _REGISTRY[fmt.name] = fmt
    return fmt


def format_names() -> tuple[str, ...]:
    """The registered formats' names, by rank."""
    return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].rank))


def format_named(name: str) -> type[ExportFormat]:
    return _REGISTRY[name]


def write_nifti(image: sitk.Image, path: Path) -> None:
    """Write ``image`` gzip-compressed (SimpleITK's gzip header holds no time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def label_dtype(top: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned type for labels up to ``top``: uint8, else uint16."""
    return np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16
