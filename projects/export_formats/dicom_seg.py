"""``dicom-seg``: ``dicom-seg/<case>.dcm``, one BINARY segment per lesion, each lesion whole,
referencing the source series (:mod:`projects.dicom_seg`; a volume imported from an image file
references the DICOM generated for it at import). UIDs derive from the content and the dates
from the acceptance, so the same case gives the same file. A case that cannot get one is
skipped, with the reason."""

from datetime import datetime

from pydicom.uid import generate_uid

from annotator.models import MaskVersion
from projects.dicom_seg import SegSegment, SegUnavailable, seg_write
from projects.export_formats.registry import CaseExport, ExportFormat, FormatSkipped, register


def tracking_uid(series_uid: str, lesion_pk: int) -> str:
    """The lesion's Tracking UID in a DICOM SEG: the same in every export of it."""
    return str(generate_uid(entropy_srcs=["lesion", series_uid, str(lesion_pk)]))


def _algorithm(version: MaskVersion | None) -> tuple[str, str] | None:
    if version is None or version.source != MaskVersion.Source.MODEL:
        return None
    if version.author_model is not None:
        return version.author_model.name, str(version.author_model.pk)
    return version.author_backend or "model", version.author_backend or "unknown"


@register
class DicomSeg(ExportFormat):
    name = "dicom-seg"
    rank = 40
    write_rank = 40

    def write_case(self, export: CaseExport) -> list[str]:
        task, case, name = export.task, export.case, export.name
        series_uid = task.series.series_instance_uid
        accepted = case["accepted_at"] or case["times"]["submitted"] or case["times"]["created"]
        seed = [
            task.round.project.slug,
            str(task.round.number),
            name,
            series_uid,
            *(str(final.pk if final else "-") for _, final, _ in export.masks),
        ]
        segments = [
            SegSegment(
                label=f"{lesion.lesion_class} {label}",
                mask=mask,
                tracking_id=f"lesion {lesion.pk}",
                tracking_uid=tracking_uid(series_uid, lesion.pk),
                algorithm=_algorithm(final),
            )
            for label, (lesion, final, mask) in enumerate(export.masks, start=1)
        ]
        target = export.out / "dicom-seg" / f"{name}.dcm"
        try:
            uids = seg_write(
                target,
                series=task.series,
                segments=segments,
                seed=seed,
                when=datetime.fromisoformat(accepted),
                description=f"{task.round.project.slug} round {task.round.number}",
            )
        except SegUnavailable as exc:
            target.unlink(missing_ok=True)
            raise FormatSkipped(str(exc)) from exc
        case["dicom_seg"] = uids
        return [f"dicom-seg/{name}.dcm"]
