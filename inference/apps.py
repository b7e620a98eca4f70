from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and inference jobs"

    def ready(self) -> None:
        # export_medsam2: the MedSAM2 npz export format is the inference side's; it registers
        # with the workflow's export formats here, so projects/ imports no inference code.
        # tasks: the job tasks join the Celery app here; the services send them by name
        # (inference.jobs.job_send), and tasks.py imports the services, never the reverse.
        from inference import export_medsam2, tasks  # noqa: F401
        from inference.encoding import task_claimed_pre_encode
        from projects.signals import task_claimed

        # A claimed task's volume is encoded ahead of the annotator's first prompt.
        task_claimed.connect(task_claimed_pre_encode, dispatch_uid="inference.pre_encode")
