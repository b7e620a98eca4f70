"""The upload limit, enforced while the request streams in (first of ``FILE_UPLOAD_HANDLERS``).

``MAX_UPLOAD_BYTES`` bounds the files of one request together. Two checks, both before a byte
over the limit reaches the disk:

- the declared ``Content-Length``: a body longer than the limit plus ``FORM_ALLOWANCE`` (the
  room for the form's text fields and its multipart framing: a hundred file parts' headers
  take a few kB) is refused at its first file part, before any of that file is read;
- every chunk of file content is counted as it arrives, ahead of the handlers that keep it
  (memory, temporary file): the request is refused as soon as the count passes the limit.

A refusal is :class:`UploadTooLarge`: a 400 naming the file field in the API (a DRF
``ValidationError``), a 400 elsewhere in Django (a ``SuspiciousOperation``). Every file of the
request received so far is closed, which deletes its temporary file, and the rest of the body
is never read.

What a client sees: the answer comes while it may still be sending. The server reads no more;
gunicorn discards what fits in its drain (64 KiB) and closes the connection. A client that
reads the response even when sending fails (curl, Python's urllib3 / requests, browsers'
fetch) gets the 400; one that stops at the failed send sees a reset connection. Clients avoid
both by checking a file's size before sending it.
"""

from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from rest_framework.exceptions import ValidationError


class UploadTooLarge(ValidationError, RequestDataTooBig):
    """The request's files are larger than ``MAX_UPLOAD_BYTES``."""

    def __init__(self, field: str, limit: int, detail: str) -> None:
        super().__init__({"detail": detail, field: [f"at most {limit} bytes in all"]})


FORM_ALLOWANCE = 1024 * 1024


def declared_limit() -> int:
    """The longest ``Content-Length`` a request within the upload limit may declare."""
    return int(settings.MAX_UPLOAD_BYTES) + FORM_ALLOWANCE


class LimitedUploadHandler(FileUploadHandler):
    """Counts the bytes of every file part and refuses the request past ``MAX_UPLOAD_BYTES``."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = int(settings.MAX_UPLOAD_BYTES)
        self.declared = 0
        self.received = 0
        self.open_files: list[Any] = []

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
        self.open_files = []

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        if self.declared > declared_limit():
            self.refuse(
                f"the request declares {self.declared} bytes, more than the upload limit of "
                f"{self.limit} bytes: nothing was read"
            )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._note_open_files()
        self.received += len(raw_data)
        if self.received > self.limit:
            self.refuse(
                f"the uploaded files are larger than the upload limit of {self.limit} bytes: "
                "the upload was stopped"
            )
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) keeps the file

    def _note_open_files(self) -> None:
        # The handlers after this one have opened the part's file by now (new_file comes
        # before the first chunk): note them, to close them if the request is refused.
        for handler in getattr(self.request, "upload_handlers", []):
            file = getattr(handler, "file", None)
            known = any(file is seen for seen in self.open_files)
            if handler is not self and file is not None and not known:
                self.open_files.append(file)

    def refuse(self, detail: str) -> None:
        self._note_open_files()
        for file in self.open_files:
            file.close()  # a temporary upload file is deleted when closed
        if self.request is not None:
            # As Django does after a parse error: nothing reads the half-read body again.
            self.request._mark_post_parse_error()  # type: ignore[attr-defined]
        raise UploadTooLarge(self.field_name, self.limit, detail)
