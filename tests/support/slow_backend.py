"""A segmentation backend that stalls on its first attempt, to kill a worker mid-job.

Selected with ``INFERENCE_BACKEND=tests.support.slow_backend.SlowBackend``. ``SLOW_BACKEND_MARKER``
names a file: every ``segment`` call appends a line with its process id (so a test knows which
process holds the task and how many attempts there were); the first call then sleeps
``SLOW_BACKEND_SECONDS`` (default 300) before segmenting, later calls segment at once.
"""

import os
import time
from collections.abc import Sequence
from pathlib import Path

from inference.engine import ClassicalBackend, ImageVolume, LesionPrompt, SegmentationResult
from inference.engine.base import ProgressCallback


class SlowBackend(ClassicalBackend):
    name = "slow-test"

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        marker = Path(os.environ["SLOW_BACKEND_MARKER"])
        first = not marker.exists()
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        if first:
            time.sleep(float(os.environ.get("SLOW_BACKEND_SECONDS", "300")))
        return super().segment(volume, prompts, progress=progress)
