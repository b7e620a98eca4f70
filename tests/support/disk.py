"""Watching what a server or a service holds on disk while a request runs."""

import contextlib
import os
import threading
import time
from pathlib import Path


class DiskWatch:
    """The most bytes held by files under ``folder``, sampled every millisecond or so while
    the ``with`` block runs (files come and go: the peak is what was written and kept at once).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def held(self) -> int:
        total = 0
        for root, _, names in os.walk(self.folder):  # walk skips folders removed meanwhile
            for name in names:
                with contextlib.suppress(FileNotFoundError):  # removed while counting
                    total += os.stat(os.path.join(root, name)).st_size
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.held())
            time.sleep(0.001)

    def __enter__(self) -> "DiskWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.held())
