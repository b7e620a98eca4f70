"""Training behind one contract: how a backend's model learns from a round's accepted cases.

Like MONAI Label's ``TrainTask``. The *training job* (``inference.training``, a Celery job on
the ``train`` queue) collects the accepted cases once, in the neutral form below
(:class:`Cases`: what is known of each lesion at once, its image and mask read when iterated),
and hands them to the *trainer* of the project's current model (:func:`.trainers.trainer_for`
says which). The trainer writes a model file under ``out_dir`` and says what to record
(:class:`TrainResult`); the job stores it as a ModelVersion. A trainer raises
:class:`TrainingError` (an :class:`EngineError`) with the reason when it cannot train.

Trainers: the learned draft (:mod:`.learned_training`: the learned and hybrid backends, and any
backend without a trainer of its own), LiteMedSAM's decoder tuning (:mod:`.litemedsam.trainer`)
and MedSAM2's fine-tuning (:mod:`.medsam2.trainer`).

Nothing here imports Django or torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import ImageVolume, LesionPrompt, ProgressCallback, SegmentationBackend
from .errors import EngineError
from .geometry import key_slice_and_box

__all__ = [
    "Case",
    "CaseInfo",
    "Cases",
    "ModelRef",
    "TrainResult",
    "Trainer",
    "TrainingContext",
    "TrainingError",
    "progress_part",
]

BoolArray = npt.NDArray[np.bool_]


class TrainingError(EngineError):
    """A trainer cannot train: nothing to start from, nothing to train on, a bad setting."""


@dataclass(frozen=True)
class CaseInfo:
    """One accepted lesion, as known without reading its image.

    ``lesion``: the platform's id (its ``str`` is the prompt's ``lesion_id``). ``image``: cases
    with the same image share it (read once when consecutive). ``group``: the cases annotated
    together on one image (one task). ``patient``: cases of one patient are held out together
    (``"patient:<id>"``, else ``"study:<uid>"``). ``split``: the export's side, "train" or
    "validation". ``source``: who drew the final mask ("human", "model", ...). ``key_slice`` and
    ``box``: the prompt it was drawn with (None: the mask's largest slice and its box)."""

    lesion: int | str
    image: str
    group: str
    patient: str
    split: str = "train"
    source: str = ""
    key_slice: int | None = None
    box: tuple[int, int, int, int] | None = None

    @property
    def name(self) -> str:
        return str(self.lesion)


@dataclass(frozen=True, eq=False)
class Case:
    """A loaded case: the image, the reference mask (bool, the image's (z, y, x) shape) and the
    box prompt."""

    info: CaseInfo
    volume: ImageVolume
    reference: BoolArray
    prompt: LesionPrompt


@dataclass(eq=False)
class Cases:
    """The accepted cases a trainer learns from.

    ``read_image`` and ``read_mask`` read one case's image and final mask; :meth:`load` calls
    them lazily, one image in memory at a time. ``origin`` says where the cases come from, for
    messages ("rounds 0..3"); ``validation_percent`` is the share of patients the split holds
    out."""

    infos: list[CaseInfo]
    read_image: Callable[[CaseInfo], ImageVolume]
    read_mask: Callable[[CaseInfo], npt.NDArray[Any]]
    origin: str = ""
    validation_percent: int = 20

    def split(self) -> tuple[list[CaseInfo], list[CaseInfo]]:
        """(train, validation) by the export's split."""
        validation = [info for info in self.infos if info.split == "validation"]
        return [info for info in self.infos if info.split != "validation"], validation

    def load(
        self,
        infos: Sequence[CaseInfo],
        *,
        progress: ProgressCallback | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Iterator[Case]:
        """``infos`` as loaded cases, skipping those whose mask is empty. ``stats`` (when
        given) counts the yielded cases by ``source`` (``stats["sources"]``) and lists the
        skipped ones (``stats["skipped"]``); ``progress``: (done, len(infos))."""
        cached: tuple[str, ImageVolume] | None = None
        for done, info in enumerate(infos, start=1):
            reference = np.asarray(self.read_mask(info)).astype(bool, copy=False)
            if not reference.any():
                if stats is not None:
                    stats.setdefault("skipped", []).append(
                        {"lesion": info.lesion, "reason": "empty mask"}
                    )
            else:
                if cached is None or cached[0] != info.image:
                    cached = None  # the previous image leaves memory before the next is read
                    cached = (info.image, self.read_image(info))
                if info.key_slice is not None and info.box is not None:
                    key_slice, box = int(info.key_slice), tuple(int(v) for v in info.box)
                else:  # drawn by hand without a box: prompt with the mask's largest slice
                    key_slice, box = key_slice_and_box(reference)
                prompt = LesionPrompt(info.name, key_slice, box)  # type: ignore[arg-type]
                if stats is not None:
                    sources = stats.setdefault("sources", {})
                    sources[info.source] = sources.get(info.source, 0) + 1
                yield Case(info, cached[1], reference, prompt)
            if progress is not None:
                progress(done, len(infos))


@dataclass(frozen=True)
class ModelRef:
    """A model: its backend (a dotted path or an alias), its file (a storage key or a path on
    the workers; "" none), its name, and the platform's id of its version (None: the site's
    default backend)."""

    backend: str
    checkpoint: str = ""
    name: str = ""
    version: int | None = None


@dataclass(frozen=True)
class TrainingContext:
    """What a trainer may ask of the platform.

    ``current``: the model the project uses now (its active one, else the round's, else the
    site's default): what a new model continues from or must beat. ``round_model``: the model
    the round pre-annotated with (else the site's default). ``label`` names the new model
    ("r3 (job 12)"). ``load_model`` builds a model's backend (its file fetched); ``local_file``
    gives a checkpoint as a local path; ``setting`` reads a site setting (None: unset);
    ``metadata`` goes into model files that keep some."""

    current: ModelRef
    round_model: ModelRef
    label: str
    load_model: Callable[[ModelRef], SegmentationBackend]
    local_file: Callable[[str], str]
    setting: Callable[[str], object]
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass
class TrainResult:
    """A model file a trainer wrote and what to record about it: the backend it is for, its
    name and metrics. ``promote``: it validated better than ``context.current`` (named in
    ``metrics["compared_with"]["model_version"]``), so it becomes the project's model at once."""

    checkpoint: Path
    metrics: dict[str, Any]
    backend: str
    name: str
    promote: bool = False


class Trainer(ABC):
    """How one kind of model learns from accepted cases (module docs)."""

    def __init__(self, context: TrainingContext) -> None:
        self.context = context

    @abstractmethod
    def train(
        self,
        cases: Cases,
        out_dir: Path,
        *,
        progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> TrainResult:
        """Train on ``cases``, write the model file under ``out_dir`` and return it.
        ``progress(done, total)`` as work advances; ``should_stop()`` turns True when the work
        is no longer wanted (a trainer that can stops early and still writes its file). Raises
        :class:`TrainingError` with the reason when it cannot train."""


def progress_part(
    progress: ProgressCallback, *, offset: int = 0, tail: int = 0
) -> ProgressCallback:
    """A part of a longer run: ``(done, total)`` reported as ``(offset + done, offset + total +
    tail)``."""

    def report(done: int, total: int) -> None:
        progress(offset + done, offset + total + tail)

    return report
