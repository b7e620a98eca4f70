"""File storage through django-storages: local disk by default, S3 when configured.

Keys are relative paths (``projects/<slug>/series/<uid>/volume.nii.gz``). Services write files
before the database rows that name them and delete them again if the transaction fails, so a
failed write leaves no orphan.
"""

import gzip
import io
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


@contextmanager
def cleanup_on_error(keys: list[str]) -> Iterator[list[str]]:
    """Collect the keys written in the block; delete them all if the block raises."""
    try:
        yield keys
    except BaseException:
        delete_quietly(keys)
        raise


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
