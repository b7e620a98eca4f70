"""DICOM wildcard matching (``*``, ``?``, PS3.4 C.2.2.2.4) as SQL pattern matching.

Two lookups on text fields: ``wildcard`` (case-sensitive) and ``iwildcard`` (case-insensitive,
for person names). ``*`` matches any run of characters and ``?`` any one character; every other
character, SQL's own ``%``, ``_`` and ``\\`` included, matches itself.

Why not a regular expression: a backtracking regex for ``*a*a*a*b`` costs exponential time in
the number of ``*`` on a long value, and any member can send one. SQLite's LIKE / GLOB and
PostgreSQL's LIKE give up on a ``*`` as soon as the rest of the pattern fails at every later
position, so a match costs at most (pattern length x value length) character comparisons.

Case: PostgreSQL's LIKE is case-sensitive, and ``UPPER(...) LIKE UPPER(...)`` makes it
insensitive. SQLite's LIKE ignores ASCII case (only ASCII, like its UPPER), so the
case-sensitive lookup there is GLOB, which has no ESCAPE clause: a literal ``[`` is written as
the one-character class ``[[]``.
"""

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Lookup, TextField
from django.db.models.sql.compiler import SQLCompiler

ESCAPE = "\\"


def like_pattern(value: str) -> str:
    """The LIKE pattern (escape character ``\\``) of a DICOM wildcard value."""
    out = []
    for c in value:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c in ("%", "_", ESCAPE):
            out.append(ESCAPE + c)
        else:
            out.append(c)
    return "".join(out)


def glob_pattern(value: str) -> str:
    """The SQLite GLOB pattern of a DICOM wildcard value (``*`` and ``?`` are GLOB's own)."""
    return value.replace("[", "[[]")


class Wildcard(Lookup):
    """``field__wildcard="D?e*"``: DICOM wildcard matching, case-sensitive."""

    lookup_name = "wildcard"
    case_insensitive = False

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if not isinstance(self.rhs, str):
            raise TypeError("a wildcard lookup takes a plain string")
        # The placeholder as the backend writes it; its parameter is the translated pattern.
        rhs, _ = self.process_rhs(compiler, connection)
        if connection.vendor == "sqlite" and not self.case_insensitive:
            return f"{lhs} GLOB {rhs}", [*lhs_params, glob_pattern(self.rhs)]
        params = [*lhs_params, like_pattern(self.rhs)]
        if self.case_insensitive and connection.vendor != "sqlite":
            return f"UPPER({lhs}) LIKE UPPER({rhs}) ESCAPE '\\'", params
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", params


class IWildcard(Wildcard):
    """``field__iwildcard="doe*"``: DICOM wildcard matching, ignoring case."""

    lookup_name = "iwildcard"
    case_insensitive = True


for _field in (CharField, TextField):
    _field.register_lookup(Wildcard)
    _field.register_lookup(IWildcard)
