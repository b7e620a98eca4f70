"""Safe extraction of zip archives: no path traversal, no zip bombs.

Entries are extracted under names chosen here (never the entry's own name), streaming, and every
byte is counted as it is written: the sizes an archive declares are not trusted.
"""

import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 16 * 1024**3
MAX_RATIO = 200
# Entries smaller than this may have any ratio (a tiny file of zeros compresses very well).
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

    Unsafe entries (absolute, ``..``, symbolic links) are refused one by one; a bomb (too many
    entries, too many bytes in all, or an entry that inflates more than ``max_ratio`` times its
    compressed size) refuses the whole archive: :class:`ArchiveRefused`, with ``dest`` emptied.
    """
    result = ExtractedArchive()
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > max_entries:
                raise ArchiveRefused(
                    f"zip bomb refused: {len(infos)} entries (limit {max_entries})"
                )
            total = 0
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
                total += _extract_entry(archive, info, target, total, max_total_bytes, max_ratio)
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


def _extract_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    total_before: int,
    max_total_bytes: int,
    max_ratio: float,
) -> int:
    written = 0
    # The compressed size is the one number a bomb cannot lie about for long: reading it is
    # bounded by the archive's real size, and the output is bounded by it times the ratio.
    allowed = max(RATIO_GRACE_BYTES, int(max(info.compress_size, 1) * max_ratio))
    with archive.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > allowed:
                raise ArchiveRefused(
                    f"zip bomb refused: entry {info.filename!r} inflates more than "
                    f"{max_ratio:g} times its compressed size ({info.compress_size} bytes)"
                )
            if total_before + written > max_total_bytes:
                raise ArchiveRefused(
                    f"zip bomb refused: more than {max_total_bytes} bytes uncompressed in all"
                )
            out.write(chunk)
    return written


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_file():
            child.unlink()
