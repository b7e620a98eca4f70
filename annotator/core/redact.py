"""Messages for clients carry no server path.

Library errors (ITK, FFmpeg, pydicom, the OS) name the files they were reading: temporary copies
of an upload, the storage root. Before such a text reaches a client the known local paths become
the names the user knows, and any other absolute path is cut down to its last component.
"""

import re
from collections.abc import Mapping

# An absolute POSIX path: a "/" not glued to a word, a dot, a colon or another "/" (so "1/2",
# "a.b/c" and URLs stay), then at least one character that cannot end a path in prose.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\"`,;()\[\]{}<>|]+")


def without_paths(text: str, known: Mapping[str, str] | None = None) -> str:
    """``text`` with each key of ``known`` (a local path) replaced by its value (the user's name
    for it), longest first, then every remaining absolute path replaced by its last component."""
    # Known paths become placeholders first, so that a shown name that is itself a path (a
    # command-line argument) is kept whole.
    pairs = sorted(((k, v) for k, v in (known or {}).items() if k), key=lambda kv: -len(kv[0]))
    for index, (local, _) in enumerate(pairs):
        text = text.replace(local, f"\0{index}\0")
    text = _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    for index, (_, shown) in enumerate(pairs):
        text = text.replace(f"\0{index}\0", shown)
    return text
