"""The errors the engine raises on purpose, apart so that its numpy modules (:mod:`.geometry`,
:mod:`.metrics`) raise them without importing the backend contract (:mod:`.base` re-exports them).
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "EngineError", "InvalidInput"]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidInput(EngineError, ValueError):
    """The image or a prompt is unusable; the message says exactly what is wrong."""


class BackendUnavailable(EngineError):
    """A backend cannot be imported, constructed or run here (missing module, weights, GPU)."""
