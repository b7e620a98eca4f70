"""Safe extraction of zip archives: no path traversal, no zip bombs.

Entries are extracted under names chosen here (never the entry's own name), streaming. A bomb is
refused on the sizes it declares before anything is written, and every byte is counted again as
it is written (declared sizes are not trusted). The limits, all of them for the whole archive:

- ``max_entries`` entries and ``max_total_bytes`` uncompressed (the web import ties this to the
  upload limit: projects.intake.views);
- the archive inflates to at most ``max_ratio`` times its own size in bytes (beyond a first
  ``RATIO_GRACE_BYTES``: a small archive of a few blank images compresses very well);
- each entry inflates to at most ``max_ratio`` times its compressed size, and what entries write
  beyond that comes out of one ``RATIO_GRACE_BYTES`` shared by the whole archive, so thousands
  of small entries of zeros cannot each take a grace of their own.
"""

import dataclasses
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 16 * 1024**3
MAX_RATIO = 200
# What an archive may inflate beyond its ratio, over all its entries (a small file of zeros
# compresses very well; thousands of them are a bomb).
RATIO_GRACE_BYTES = 1024 * 1024
CHUNK = 1024 * 1024


class ArchiveRefused(Exception):
    """The archive as a whole is refused (a zip bomb, or not a readable zip)."""


@dataclass
class ExtractedArchive:
    # (name inside the archive, local path of the extracted copy)
    entries: list[tuple[str, Path]] = field(default_factory=list)
    # (name inside the archive, why it was refused)
    refused: list[tuple[str, str]] = field(default_factory=list)


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def declared_bytes(path: Path) -> int:
    """The uncompressed size a zip archive's entries declare in all (0 for any other file, or
    an unreadable zip: that is refused when it is extracted)."""
    try:
        if not is_zip(path):
            return 0
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
        return 0


def unsafe_name_reason(name: str) -> str | None:
    """Why an entry name is refused (absolute, a drive, ``..``), or None when it is safe."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "unsafe path in archive: absolute entry name refused"
    if ".." in PurePosixPath(normalized).parts:
        return "unsafe path in archive: '..' in entry name refused (path traversal)"
    return None


def extract_zip(
    path: Path,
    dest: Path,
    *,
    max_entries: int = MAX_ENTRIES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> ExtractedArchive:
    """Extract the archive's files into ``dest`` (which must exist and be empty).

    Unsafe entries (absolute, ``..``, symbolic links) are refused one by one; a bomb (see the
    module's limits) refuses the whole archive: :class:`ArchiveRefused`, with ``dest`` emptied.
    """
    result = ExtractedArchive()
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            budget = Budget(
                archive_bytes=path.stat().st_size,
                max_total_bytes=max_total_bytes,
                max_ratio=max_ratio,
            )
            if len(infos) > max_entries:
                raise ArchiveRefused(
                    f"zip bomb refused: {len(infos)} entries (limit {max_entries})"
                )
            budget.check_declared([info for info in infos if not info.is_dir()])
            for index, info in enumerate(infos):
                if info.is_dir():
                    continue
                reason = unsafe_name_reason(info.filename)
                if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                    reason = "unsafe entry in archive: symbolic link refused"
                if reason is not None:
                    result.refused.append((info.filename, reason))
                    continue
                target = dest / f"{index:06d}.entry"
                _extract_entry(archive, info, target, budget)
                result.entries.append((info.filename, target))
    except ArchiveRefused:
        _empty(dest)
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        EOFError,
        zlib.error,
    ) as exc:
        _empty(dest)
        raise ArchiveRefused(f"unreadable zip archive: {exc}") from exc
    except RuntimeError as exc:  # encrypted entries
        _empty(dest)
        raise ArchiveRefused(f"unreadable zip archive: {exc}") from exc
    return result


@dataclass
class Budget:
    """What an archive may still write: its limits, and the bytes and grace already used."""

    archive_bytes: int
    max_total_bytes: int
    max_ratio: float
    written: int = 0
    grace_used: int = 0

    def entry_allowance(self, info: zipfile.ZipInfo) -> int:
        """The entry's own ratio allowance (the compressed size is bounded by the archive's
        real size, so the entry's output is bounded by it times the ratio)."""
        return int(max(info.compress_size, 1) * self.max_ratio)

    def archive_allowance(self) -> int:
        return max(RATIO_GRACE_BYTES, int(self.archive_bytes * self.max_ratio))

    def check_declared(self, infos: list[zipfile.ZipInfo]) -> None:
        """Refuse on the uncompressed sizes the entries declare, before extracting any."""
        declared = sum(info.file_size for info in infos)
        if declared > self.max_total_bytes:
            raise ArchiveRefused(self._too_many_bytes())
        trial = dataclasses.replace(self, written=0, grace_used=0)
        for info in infos:
            trial.draw_grace(info, 0, info.file_size)
        if declared > self.archive_allowance():
            raise ArchiveRefused(self._archive_inflates(declared))

    def draw_grace(self, info: zipfile.ZipInfo, before: int, after: int) -> None:
        """Take what ``info`` writes beyond its own ratio, from ``before`` to ``after`` bytes
        of it, out of the archive's grace; refuse the archive once that is spent."""
        allowance = self.entry_allowance(info)
        over = max(0, after - allowance)
        drawn = over - max(0, before - allowance)
        if self.grace_used + drawn > RATIO_GRACE_BYTES:
            raise ArchiveRefused(self._entry_inflates(info, alone=over > RATIO_GRACE_BYTES))
        self.grace_used += drawn

    def add(self, info: zipfile.ZipInfo, entry_written: int, chunk: int) -> None:
        """Count ``chunk`` more bytes of ``info`` (``entry_written`` before it)."""
        self.draw_grace(info, entry_written, entry_written + chunk)
        self.written += chunk
        if self.written > self.max_total_bytes:
            raise ArchiveRefused(self._too_many_bytes())
        if self.written > self.archive_allowance():
            raise ArchiveRefused(self._archive_inflates(self.written))

    def _too_many_bytes(self) -> str:
        return f"zip bomb refused: more than {self.max_total_bytes} bytes uncompressed in all"

    def _entry_inflates(self, info: zipfile.ZipInfo, *, alone: bool) -> str:
        reason = (
            f"zip bomb refused: entry {info.filename!r} inflates more than "
            f"{self.max_ratio:g} times its compressed size ({info.compress_size} bytes)"
        )
        if alone:
            return reason
        return (
            f"{reason}, and with the entries before it the archive's entries inflate more "
            f"than {RATIO_GRACE_BYTES} bytes beyond that ratio in all"
        )

    def _archive_inflates(self, size: int) -> str:
        return (
            f"zip bomb refused: the entries inflate to {size} bytes or more, over "
            f"{self.max_ratio:g} times the archive's {self.archive_bytes} bytes"
        )


def _extract_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: Budget
) -> None:
    written = 0
    with archive.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            budget.add(info, written, len(chunk))
            written += len(chunk)
            out.write(chunk)


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_file():
            child.unlink()
