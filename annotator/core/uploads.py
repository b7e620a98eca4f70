"""Upload limits, enforced while the request streams in, and files kept without a descriptor each.

``FILE_UPLOAD_HANDLERS`` runs :class:`LimitedUploadHandler` first, then Django's memory handler
(a request of at most ``FILE_UPLOAD_MAX_MEMORY_SIZE``), then :class:`TemporaryPathUploadHandler`.

Limits (:class:`LimitedUploadHandler`):

- ``MAX_UPLOAD_FILES`` bounds the files of one request: the one past it is refused before any
  of its content is read (Django's own ``DATA_UPLOAD_MAX_NUMBER_FILES`` is a backstop one past
  it, so this refusal, which names the field, comes first);
- ``MAX_UPLOAD_BYTES`` bounds the files of one request together. Two checks, both before a byte
  over the limit reaches the disk: the declared ``Content-Length``, against the limit plus
  ``FORM_ALLOWANCE`` (the room for the form's text fields and its multipart framing, about
  200 bytes per file part), at the first file part, before any of it is read; and every chunk
  of file content, counted as it arrives, ahead of the handlers that keep it.

Open files: Django's ``TemporaryFileUploadHandler`` keeps every file of a request open until
the request ends, one descriptor per file, so a series of 2,000 slices needs 2,000 descriptors
where many deployments allow a process 1,024. :class:`TemporaryPathUploadHandler` closes each
file when its part ends and reopens it when it is read: a request holds one descriptor while
it is received, whatever its number of files. The web app also raises its soft open-file limit
to the hard one at start (:func:`open_file_limit_raise`, in ``annotator.wsgi`` and ``manage.py
serve``). Should the process still run out of descriptors, the upload is refused (400 naming
the field), never a 500.

A refusal is a 400 naming the file field in the API (a DRF ``ValidationError``), a 400 elsewhere
in Django (a ``SuspiciousOperation``). Every file of the request received so far is closed,
which deletes its temporary file, and the rest of the body is never read.

What a client sees: the answer comes while it may still be sending. The server reads no more;
gunicorn discards what fits in its drain (64 KiB) and closes the connection. A client that
reads the response even when sending fails (curl, Python's urllib3 / requests, browsers'
fetch) gets the 400; one that stops at the failed send sees a reset connection. Clients avoid
both by checking a file's size before sending it.
"""

import errno
import logging
import os
import resource
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, NoReturn

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from rest_framework.exceptions import ValidationError

log = logging.getLogger(__name__)

FORM_ALLOWANCE = 1024 * 1024


class UploadTooLarge(ValidationError, RequestDataTooBig):
    """The request's files are larger than ``MAX_UPLOAD_BYTES``."""

    def __init__(self, field: str, limit: int, detail: str) -> None:
        super().__init__({"detail": detail, field: [f"at most {limit} bytes in all"]})


class TooManyUploadFiles(ValidationError, TooManyFilesSent):
    """The request has more files than ``MAX_UPLOAD_FILES``, or than the server can open."""

    def __init__(self, field: str, detail: str, message: str) -> None:
        super().__init__({"detail": detail, field: [message]})


def declared_limit() -> int:
    """The longest ``Content-Length`` a request within the upload limit may declare."""
    return int(settings.MAX_UPLOAD_BYTES) + FORM_ALLOWANCE


def stop_upload(request: HttpRequest | None, error: Exception) -> NoReturn:
    """Close the files being received (deleting their temporary files) and raise ``error``.

    The files already complete are the parser's: it closes them when the error passes it.
    """
    for handler in getattr(request, "upload_handlers", []):
        file = getattr(handler, "file", None)
        if file is not None:
            file.close()
    if request is not None:
        # As Django does after a parse error: nothing reads the half-read body again.
        request._mark_post_parse_error()  # type: ignore[attr-defined]
    raise error


@contextmanager
def descriptors_refused(field: str) -> Iterator[None]:
    """Turns running out of file descriptors (EMFILE, ENFILE) into a 400 naming ``field``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        raise TooManyUploadFiles(
            field,
            "the server cannot open another file for this upload: send its files in several "
            "requests (each series whole)",
            "more files than the server can open at once",
        ) from exc


class LimitedUploadHandler(FileUploadHandler):
    """Counts the files and bytes of every file part; refuses the request past the limits."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = int(settings.MAX_UPLOAD_BYTES)
        self.max_files = int(settings.MAX_UPLOAD_FILES)
        self.declared = 0
        self.received = 0
        self.files = 0

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, Any],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        self.declared = content_length
        self.received = 0
        self.files = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.files += 1
        if self.files > self.max_files:
            stop_upload(
                self.request,
                TooManyUploadFiles(
                    self.field_name,
                    f"the request has more than {self.max_files} files, the most one upload "
                    "may hold (ANNOTATOR_MAX_UPLOAD_FILES): send them in several requests",
                    f"at most {self.max_files} files in one request",
                ),
            )
        if self.declared > declared_limit():
            self.refuse(
                f"the request declares {self.declared} bytes, more than the upload limit of "
                f"{self.limit} bytes: nothing was read"
            )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.refuse(
                f"the uploaded files are larger than the upload limit of {self.limit} bytes: "
                "the upload was stopped"
            )
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) keeps the file

    def refuse(self, detail: str) -> NoReturn:
        stop_upload(self.request, UploadTooLarge(self.field_name, self.limit, detail))


class TemporaryPathUploadedFile(UploadedFile):
    """An uploaded file in a temporary file of its own, with a descriptor only while it is read.

    It is written through the descriptor it is made with, until :meth:`release`; reading it
    (``read``, ``chunks``, iteration, ``open``) opens it again, read-only. :meth:`close` closes
    it and deletes the file, as ``TemporaryUploadedFile.close`` does, and the end of the request
    closes every uploaded file. ``temporary_file_path()`` is its path.
    """

    _handle: IO[bytes] | None

    def __init__(
        self,
        name: str,
        content_type: str | None,
        charset: str | None,
        content_type_extra: dict[str, bytes] | None = None,
    ) -> None:
        _, ext = os.path.splitext(name)
        fd, path = tempfile.mkstemp(suffix=".upload" + ext, dir=settings.FILE_UPLOAD_TEMP_DIR)
        self._path: str | None = path
        # Deletes the file should the object be dropped without close() (close() runs it too).
        self._remove = weakref.finalize(self, _remove_file, path)
        super().__init__(os.fdopen(fd, "w+b"), name, content_type, 0, charset, content_type_extra)

    @property  # type: ignore[override]
    def file(self) -> IO[bytes]:
        if self._handle is None:
            if self._path is None:
                raise ValueError("I/O operation on a closed uploaded file")
            self._handle = open(self._path, "rb")  # noqa: SIM115 (closed by release/close)
        return self._handle

    @file.setter
    def file(self, value: IO[bytes] | None) -> None:
        self._handle = value

    @property
    def closed(self) -> bool:
        return self._handle is None or self._handle.closed

    def temporary_file_path(self) -> str:
        if self._path is None:
            raise ValueError("the uploaded file was closed")
        return self._path

    def open(
        self, mode: str | None = None, *args: Any, **kwargs: Any
    ) -> "TemporaryPathUploadedFile":
        # Never File.open: it would look for the client's file name in the working directory.
        if mode is not None and any(c in mode for c in "wax+"):
            raise ValueError("an uploaded file is reopened read-only")
        if self.closed:
            self._handle = None
        self.file.seek(0)
        return self

    def release(self) -> None:
        """Close the descriptor, keep the file: the next read opens it again."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        self.release()
        self._path = None
        self._remove()


def _remove_file(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


class TemporaryPathUploadHandler(FileUploadHandler):
    """Streams each file into a temporary file of its own, closed when its part ends.

    Django's ``TemporaryFileUploadHandler`` with one difference: it keeps no descriptor per
    file (see :class:`TemporaryPathUploadedFile`).
    """

    file: TemporaryPathUploadedFile

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        try:
            with descriptors_refused(self.field_name):
                self.file = TemporaryPathUploadedFile(
                    self.file_name or "upload",
                    self.content_type,
                    self.charset,
                    self.content_type_extra,
                )
        except TooManyUploadFiles as refusal:
            stop_upload(self.request, refusal)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> TemporaryPathUploadedFile:
        self.file.size = file_size
        self.file.release()
        return self.file

    def upload_interrupted(self) -> None:
        if hasattr(self, "file"):
            self.file.close()


def open_file_limit_raise() -> tuple[int, int]:
    """Raise this process's soft limit of open files (RLIMIT_NOFILE) to its hard limit.

    Many systems start services with a soft limit of 1,024 (for programs that still use
    ``select()``) and a much higher hard one, which a process may take for itself, as the Go
    and Java runtimes do at start. Returns the (soft, hard) limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    # Linux refuses an infinite RLIMIT_NOFILE (above fs.nr_open, 2^20 by default).
    target = hard if hard != infinity else 1 << 20
    if soft == infinity or soft >= target:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-file limit left at %s (hard limit %s): %s", soft, hard, exc)
        return soft, hard
    log.info("open-file limit raised from %s to %s", soft, target)
    return target, hard
