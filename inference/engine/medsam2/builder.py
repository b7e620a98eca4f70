"""Build MedSAM2 (SAM2.1 hiera-tiny at 512 px) and load a checkpoint, with errors that say why.

The architecture is PyPI sam2 1.1.0's ``configs/sam2.1/sam2.1_hiera_t.yaml`` with the video
predictor's post-processing overrides (as ``build_sam2_video_predictor`` applies them) and
MedSAM2's: image size 512, both RoPE attentions' ``feat_sizes=[32,32]``, no hole filling. The
checkpoint is ``{"model": state_dict}``, read with ``torch.load(weights_only=True)`` and loaded
strictly. The stock config's 1024 px would load the same weights silently: the size is
asserted after building.

This module imports torch and sam2: the backend imports it lazily.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..base import BackendUnavailable
from .predictor import PREDICTOR_TARGET, CachingVideoPredictor

__all__ = [
    "CONFIG",
    "MEDSAM2_OVERRIDES",
    "CheckpointError",
    "build_model",
    "build_predictor",
    "load_checkpoint",
    "read_state_dict",
]

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
IMAGE_SIZE = 512
FEAT_SIZE = IMAGE_SIZE // 16
# What build_sam2_video_predictor adds with apply_postprocessing=True (sam2 1.1.0).
POSTPROCESSING_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
)
MEDSAM2_OVERRIDES = (
    f"++model.image_size={IMAGE_SIZE}",
    f"++model.memory_attention.layer.self_attention.feat_sizes=[{FEAT_SIZE},{FEAT_SIZE}]",
    f"++model.memory_attention.layer.cross_attention.feat_sizes=[{FEAT_SIZE},{FEAT_SIZE}]",
    "++model.fill_hole_area=0",
)


class CheckpointError(BackendUnavailable):
    """The checkpoint file is missing, truncated, in another format or for another model."""


def build_model(device: torch.device, extra_overrides: Sequence[str] = ()) -> CachingVideoPredictor:
    """The MedSAM2 architecture with random weights, on ``device``, in eval mode."""
    try:
        import sam2  # noqa: F401  (initialises Hydra on sam2's bundled configs)
        from hydra import compose
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
    except ImportError as exc:
        raise BackendUnavailable(
            f"MedSAM2 needs PyPI sam2 1.1.0 and hydra-core (make medsam2): {exc}"
        ) from exc
    overrides = [
        f"++model._target_={PREDICTOR_TARGET}",
        *POSTPROCESSING_OVERRIDES,
        *MEDSAM2_OVERRIDES,
        *extra_overrides,
    ]
    cfg = compose(config_name=CONFIG, overrides=overrides)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    if not isinstance(model, CachingVideoPredictor):
        raise BackendUnavailable(f"the config built a {type(model).__name__}, not the predictor")
    check_resolution(model)
    model.to(device)
    model.eval()
    return model


def check_resolution(model: CachingVideoPredictor) -> None:
    """MedSAM2 runs at 512 px: refuse a model built at another size (the stock 1024 trap)."""
    problems = []
    if model.image_size != IMAGE_SIZE:
        problems.append(f"image_size is {model.image_size}")
    for index, layer in enumerate(model.memory_attention.layers):
        for name in ("self_attn", "cross_attn_image"):
            rows = int(getattr(layer, name).freqs_cis.shape[0])
            if rows != FEAT_SIZE * FEAT_SIZE:
                problems.append(f"layer {index} {name} RoPE table covers {rows} positions")
    if problems:
        raise BackendUnavailable(
            f"the model is not built for {IMAGE_SIZE} px ({'; '.join(problems[:3])}): MedSAM2 "
            f"weights would run at the wrong resolution; keep the overrides "
            f"{', '.join(MEDSAM2_OVERRIDES[:3])}"
        )


def read_state_dict(path: Path, expected_bytes: int) -> dict[str, torch.Tensor]:
    """The ``"model"`` state dict of a MedSAM2 checkpoint file, or :class:`CheckpointError`."""
    if not path.exists():
        raise CheckpointError(f"MedSAM2 checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"MedSAM2 checkpoint {path} is not a file")
    size = path.stat().st_size
    hint = (
        f"; the file has {size:,} bytes, the model's weights alone need about "
        f"{expected_bytes:,}: a truncated or interrupted download?"
        if size < expected_bytes
        else ""
    )
    if size == 0:
        raise CheckpointError(f"MedSAM2 checkpoint {path} is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"MedSAM2 checkpoint {path} is not a complete PyTorch checkpoint (no zip directory "
            f"at its end){hint or f'; it has {size:,} bytes'}"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read MedSAM2 checkpoint {path}: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    if not isinstance(loaded, Mapping) or "model" not in loaded:
        got = (
            f"a dict with keys {sorted(map(str, loaded))[:5]}"
            if isinstance(loaded, Mapping)
            else f"a {type(loaded).__name__}"
        )
        raise CheckpointError(
            f"MedSAM2 checkpoint {path} is not in the format {{'model': state_dict}}: it holds "
            f"{got}"
        )
    state = loaded["model"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"MedSAM2 checkpoint {path}: 'model' is not a state dict of named tensors"
        )
    return dict(state)


def _names(keys: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint(model: CachingVideoPredictor, path: Path) -> None:
    """Load ``path`` into ``model`` strictly; mismatches are summarised in the error."""
    expected = model.state_dict()
    expected_bytes = sum(t.numel() * t.element_size() for t in expected.values())
    state = read_state_dict(path, expected_bytes)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_names(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_names(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({_names(mismatched, 2)})")
    if problems:
        raise CheckpointError(
            f"MedSAM2 checkpoint {path} does not fit SAM2.1 hiera-tiny at {IMAGE_SIZE} px: "
            f"{'; '.join(problems)}. Is it a MedSAM2 (SAM2.1 hiera-tiny) checkpoint?"
        )
    model.load_state_dict(state, strict=True)


def build_predictor(
    checkpoint: Path, device: torch.device, extra_overrides: Sequence[str] = ()
) -> CachingVideoPredictor:
    """The MedSAM2 predictor with ``checkpoint``'s weights, on ``device``, in eval mode."""
    model = build_model(torch.device("cpu"), extra_overrides)
    load_checkpoint(model, checkpoint)
    model.to(device)
    model.eval()
    return model
