"""Export formats, one module each, registered by name (:mod:`.registry`).

Importing this package registers the workflow's formats (``nifti``, ``nnunet``, ``dicom-seg``);
the inference app registers ``medsam2-npz`` (:mod:`inference.export_medsam2`) when it is ready."""

from projects.export_formats import dicom_seg, nifti, nnunet
from projects.export_formats.registry import (
    CaseExport,
    ExportFormat,
    FormatSkipped,
    format_named,
    format_names,
    register,
)

__all__ = [
    "CaseExport",
    "ExportFormat",
    "FormatSkipped",
    "dicom_seg",
    "format_named",
    "format_names",
    "nifti",
    "nnunet",
    "register",
]
