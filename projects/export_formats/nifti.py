"""``nifti``: ``images/<case>.nii.gz`` (the stored volume, byte for byte) and
``labels/<case>.nii.gz``, the instance label map: lesion i of the case (by id) has label i."""

import shutil

from annotator.annotation.masks import to_image
from projects.export_formats.registry import CaseExport, ExportFormat, register, write_nifti


@register
class Nifti(ExportFormat):
    name = "nifti"
    rank = 10
    write_rank = 10

    def write_case(self, export: CaseExport) -> list[str]:
        name = export.name
        (export.out / "images").mkdir(exist_ok=True)
        shutil.copyfile(export.source, export.out / "images" / f"{name}.nii.gz")
        write_nifti(
            to_image(export.instances, export.volume), export.out / "labels" / f"{name}.nii.gz"
        )
        return [f"images/{name}.nii.gz", f"labels/{name}.nii.gz"]
