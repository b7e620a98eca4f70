"""Segmentation engine: prompt-driven 3D lesion segmentation, free of Django.

Used by the Celery workers, the CLI and notebooks. Start with :func:`load_backend` (or
:class:`ClassicalBackend` directly), an :class:`ImageVolume` and one :class:`LesionPrompt` per
lesion.
"""

from .base import (
    BackendUnavailable,
    BoxPrompt,
    EngineError,
    ImageVolume,
    InvalidInput,
    LesionPrompt,
    ProgressCallback,
    SegmentationBackend,
    SegmentationResult,
    load_backend,
    validate_prompts,
)
from .classical import ClassicalBackend
from .geometry import connected_components, dice, key_slice_and_box
from .medsam2 import MedSAM2Backend
from .phantom import Phantom, make_ct_phantom, to_sitk, write_phantom

__all__ = [
    "BackendUnavailable",
    "BoxPrompt",
    "ClassicalBackend",
    "EngineError",
    "ImageVolume",
    "InvalidInput",
    "LesionPrompt",
    "MedSAM2Backend",
    "Phantom",
    "ProgressCallback",
    "SegmentationBackend",
    "SegmentationResult",
    "connected_components",
    "dice",
    "key_slice_and_box",
    "load_backend",
    "make_ct_phantom",
    "to_sitk",
    "validate_prompts",
    "write_phantom",
]
