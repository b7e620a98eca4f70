"""File storage through django-storages: local disk by default, S3 when configured.

Keys are relative paths (``projects/<slug>/series/<uid>/volume.nii.gz``). Services write files
before the database rows that name them and delete them again if the transaction fails, so a
failed write leaves no orphan. A process killed between the file and the commit cannot clean up:
for that, a write can be marked pending first (:func:`pending_mark`, a small marker object naming
the file, deleted once the row has committed), and :func:`pending_sweep` later removes the files
of markers left behind that no row names.
"""

import gzip
import io
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from storages.backends.s3 import S3Storage as _S3Storage

log = logging.getLogger(__name__)


def save_file(key: str, content: bytes | IO[bytes]) -> str:
    """Store ``content`` under ``key`` (or a free variant of it); returns the key actually used."""
    django_file = ContentFile(content) if isinstance(content, bytes) else File(content)
    return default_storage.save(key, django_file)


def delete_quietly(keys: Iterable[str]) -> None:
    for key in keys:
        try:
            default_storage.delete(key)
        except Exception:  # cleanup after another failure: report, never mask the first error
            log.exception("could not delete %s", key)


def delete_tree(prefix: str) -> None:
    """Delete every file under the folder ``prefix`` (``a/b/``), at any depth."""
    prefix = prefix.rstrip("/")
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return
    delete_quietly(f"{prefix}/{name}" for name in files)
    for folder in folders:
        delete_tree(f"{prefix}/{folder}")


@contextmanager
def cleanup_on_error(keys: list[str]) -> Iterator[list[str]]:
    """Collect the keys written in the block; delete them all if the block raises."""
    try:
        yield keys
    except BaseException:
        delete_quietly(keys)
        raise


PENDING_PREFIX = "pending-writes"


def pending_mark(kind: str, key: str) -> str:
    """Record, before ``key`` is written, that no committed row names it yet; returns the
    marker's key, to delete once the row has committed. The marker's name holds its creation
    time, so a sweep needs no metadata request to age it."""
    marker = f"{PENDING_PREFIX}/{kind}/{time.time_ns() // 1_000_000}-{uuid.uuid4().hex}"
    return save_file(marker, key.encode())


def pending_sweep(
    kind: str, *, older_than_s: float, referenced: Callable[[list[str]], set[str]]
) -> list[str]:
    """Remove the files of ``kind``'s markers older than ``older_than_s`` that no row names
    (``referenced`` answers which of some keys a committed row names), and the markers;
    returns the files removed. A marker younger than that may belong to a save in progress."""
    folder = f"{PENDING_PREFIX}/{kind}"
    try:
        names = default_storage.listdir(folder)[1]
    except FileNotFoundError:  # nothing was ever marked
        return []
    cutoff_ms = (time.time() - older_than_s) * 1000
    stale = {}
    for name in names:
        stamp = name.partition("-")[0]
        if stamp.isdigit() and int(stamp) < cutoff_ms:
            marker = f"{folder}/{name}"
            try:
                with default_storage.open(marker, "rb") as f:
                    stale[marker] = f.read().decode()
            except Exception:  # deleted meanwhile: its save just committed
                log.info("pending marker %s is gone", marker, exc_info=True)
    named = referenced(list(stale.values()))
    orphans = [key for key in stale.values() if key not in named]
    delete_quietly(orphans)
    delete_quietly(stale)
    if orphans:
        log.warning("removed %s files whose rows never committed: %s", kind, orphans)
    return orphans


@contextmanager
def local_path(key: str, suffix: str = "") -> Iterator[Path]:
    """A path on the local disk holding the stored file (a temporary copy for remote storage)."""
    try:
        local: Path | None = Path(default_storage.path(key))
    except NotImplementedError:  # remote storage (S3)
        local = None
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="annotator-") as tmp:
        path = Path(tmp) / f"file{suffix}"
        with default_storage.open(key, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield path


def save_array(key: str, array: np.ndarray) -> str:
    """Store an array as gzip-compressed ``.npy`` (self-describing shape and dtype)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1) as gz:
        np.save(gz, np.ascontiguousarray(array), allow_pickle=False)
    return save_file(key, buffer.getvalue())


def load_array(key: str) -> np.ndarray:
    with default_storage.open(key, "rb") as f, gzip.GzipFile(fileobj=f) as gz:
        return np.load(io.BytesIO(gz.read()), allow_pickle=False)


class S3Storage(_S3Storage):  # type: ignore[misc]
    """S3 storage that keeps files as they are: no ``Content-Encoding`` guessed from the name.

    django-storages marks ``*.nii.gz`` as gzip-encoded, so any HTTP client fetching the object
    would receive it decompressed; our gzip files are file formats, not transfer encodings.
    """

    def _get_write_parameters(self, name: str, content: Any = None) -> dict[str, Any]:
        params: dict[str, Any] = super()._get_write_parameters(name, content)
        if params.pop("ContentEncoding", None) is not None:
            params["ContentType"] = "application/octet-stream"
        return params
