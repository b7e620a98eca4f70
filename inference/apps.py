from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and inference jobs"

    def ready(self) -> None:
        # The MedSAM2 npz export format is the inference side's: it registers with the
        # workflow's export formats here, so projects/ imports no inference code.
        from inference import export_medsam2  # noqa: F401
