"""Image embeddings of volumes, cached per slice: in memory, and on disk when a folder is set.

An embedding is the image encoder's (256, 64, 64) float32 output for one slice (4 MiB), keyed
by the volume's digest, its intensity mapping and the slice index, so every lesion and prompt on
a volume shares them, whatever process made them: the batch queue pre-encodes a volume (see
``inference.batch``) and an interactive prompt later runs the decoder only.

The disk store (``LITEMEDSAM_EMBEDDINGS_DIR``) keeps one ``.npy`` per slice under a folder per
volume, written to a temporary name and renamed, so a reader never sees half a file; folders
least recently used are removed past ``LITEMEDSAM_EMBEDDINGS_MB``. On a machine of its own a
worker simply encodes again: the store is a cache, never the record.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EMBEDDING_BYTES", "EMBEDDING_SHAPE", "EmbeddingStore"]

EMBEDDING_SHAPE = (256, 64, 64)
EMBEDDING_BYTES = 4 * 256 * 64 * 64


class EmbeddingStore:
    """Slice embeddings by (volume key, slice): a memory LRU of ``memory_mb`` and an optional
    disk folder of at most ``disk_mb``."""

    def __init__(
        self, *, memory_mb: float = 512, folder: Path | None = None, disk_mb: float = 8192
    ) -> None:
        self.memory_limit = int(memory_mb * 2**20)
        self.folder = folder
        self.disk_limit = int(disk_mb * 2**20)
        self._memory: OrderedDict[tuple[str, int], npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    # -- memory ---------------------------------------------------------------------------

    def _remember(self, key: tuple[str, int], value: npt.NDArray[np.float32]) -> None:
        if self.memory_limit < EMBEDDING_BYTES:
            return
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) * EMBEDDING_BYTES > self.memory_limit:
                self._memory.popitem(last=False)

    def get(self, volume_key: str, z: int) -> npt.NDArray[np.float32] | None:
        key = (volume_key, z)
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return found
        found = self._read(volume_key, z)
        if found is not None:
            self.disk_hits += 1
            self._remember(key, found)
            return found
        self.misses += 1
        return None

    def put(self, volume_key: str, z: int, value: npt.NDArray[np.float32]) -> None:
        value = np.ascontiguousarray(value, dtype=np.float32).reshape(EMBEDDING_SHAPE)
        self._remember((volume_key, z), value)
        self._write(volume_key, z, value)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    # -- disk -----------------------------------------------------------------------------

    def _path(self, volume_key: str, z: int) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / volume_key / f"{z:05d}.npy"

    def _read(self, volume_key: str, z: int) -> npt.NDArray[np.float32] | None:
        path = self._path(volume_key, z)
        if path is None or not path.is_file():
            return None
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged cache file is a miss; the slice is encoded again
        if value.shape != EMBEDDING_SHAPE or value.dtype != np.float32:
            return None
        with contextlib.suppress(OSError):
            os.utime(path.parent)  # the folder's time tells the trim what was used last
        return np.asarray(value, dtype=np.float32)

    def _write(self, volume_key: str, z: int, value: npt.NDArray[np.float32]) -> None:
        path = self._path(volume_key, z)
        if path is None or self.disk_limit < EMBEDDING_BYTES:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        with partial.open("wb") as handle:
            np.save(handle, value, allow_pickle=False)
        partial.replace(path)
        if z % 16 == 0:
            self._trim()

    def encoded(self, volume_key: str, slices: range) -> list[int]:
        """The slices of ``slices`` that have an embedding in memory or on disk."""
        found = []
        for z in slices:
            with self._lock:
                if (volume_key, z) in self._memory:
                    found.append(z)
                    continue
            path = self._path(volume_key, z)
            if path is not None and path.is_file():
                found.append(z)
        return found

    def _trim(self) -> None:
        """Remove the least recently used volume folders past the disk budget."""
        if self.folder is None or not self.folder.is_dir():
            return
        folders: list[tuple[float, int, Path]] = []
        total = 0
        for entry in self.folder.iterdir():
            if not entry.is_dir():
                continue
            try:
                size = sum(f.stat().st_size for f in entry.iterdir())
                folders.append((entry.stat().st_mtime, size, entry))
            except OSError:
                continue
            total += size
        now = time.time()
        for mtime, size, entry in sorted(folders):
            if total <= self.disk_limit:
                break
            if now - mtime < 60:
                continue  # in use right now
            shutil.rmtree(entry, ignore_errors=True)
            total -= size

    def describe(self) -> dict[str, Any]:
        return {
            "memory_mb": self.memory_limit / 2**20,
            "folder": str(self.folder) if self.folder else None,
            "disk_mb": self.disk_limit / 2**20,
        }
