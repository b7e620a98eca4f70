from annotator.celery import acks_late_task
from inference import services


@acks_late_task(queue="gpu-interactive")
def run_segmentation_job(*, job_id: int) -> None:
    services.segmentation_run(job_id=job_id)
