"""The published MedSAM2 3D recipe as a plain sam2 call sequence, and a random-weight checkpoint.

Shared by the engine's tests (the voxel-for-voxel comparison) and by
``benchmarks/medsam2_overhead.py`` (the bare recipe the worker path is timed against), so that
both measure against ONE reference. Imports torch and sam2 when called, not when imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CONFIG",
    "OVERRIDES_512",
    "WINDOW",
    "reference_masks",
    "reference_predictor",
    "write_random_checkpoint",
]

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
OVERRIDES_512 = [
    "++model.image_size=512",
    "++model.memory_attention.layer.self_attention.feat_sizes=[32,32]",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[32,32]",
]
WINDOW = (40.0, 400.0)  # (center, width): soft tissue


def write_random_checkpoint(path: Path, seed: int = 0) -> Path:
    """The MedSAM2 architecture with random weights, saved as ``{"model": state_dict}``."""
    import torch

    from inference.engine.medsam2.builder import build_model

    torch.manual_seed(seed)
    model = build_model(torch.device("cpu"))
    torch.save({"model": model.state_dict()}, path)
    return path


def reference_predictor(checkpoint: Path, device: str = "cpu") -> Any:
    """sam2's own video predictor at 512 px with the checkpoint's weights (the model load)."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        CONFIG, str(checkpoint), device=device, hydra_overrides_extra=OVERRIDES_512
    )
    assert predictor.image_size == 512
    return predictor


def reference_masks(
    predictor: Any,
    image: npt.NDArray[Any],
    key: int,
    box: tuple[int, int, int, int],
    window: tuple[float, float] = WINDOW,
    *,
    bf16: bool = False,
) -> npt.NDArray[np.bool_]:
    """One box-prompted lesion, as the MedSAM2 scripts segment it: CT window to uint8, every
    slice to a normalised 512x512 RGB frame, forward from ``key``, reset, reverse, OR.

    ``bf16``: under bf16 autocast, as the scripts run on a GPU."""
    from contextlib import nullcontext

    import sam2.sam2_video_predictor as svp
    import torch
    from PIL import Image

    # CT window to uint8, as the MedSAM2 scripts do.
    low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
    pre = np.clip(image, low, high).astype(np.float64)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    pre = pre.astype(np.uint8)
    depth, height, width = pre.shape
    # RGB, 512x512, /255, ImageNet mean and std; the whole stack at once, in float32.
    stack = np.zeros((depth, 3, 512, 512), dtype=np.float32)
    for z in range(depth):
        rgb = Image.fromarray(pre[z]).convert("RGB").resize((512, 512))
        stack[z] = (np.array(rgb) / 255.0).transpose(2, 0, 1)
    device = predictor.device
    frames = torch.from_numpy(stack).to(device)
    frames -= torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32, device=device)[:, None, None]
    frames /= torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32, device=device)[:, None, None]

    # init_state loads frames from a folder of JPEGs; hand it the normalised stack instead.
    original = svp.load_video_frames
    svp.load_video_frames = lambda **kwargs: (frames, height, width)
    try:
        state = predictor.init_state(video_path="unused")
    finally:
        svp.load_video_frames = original
    result = np.zeros(pre.shape, dtype=bool)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.inference_mode(), autocast:
        for reverse in (False, True):
            predictor.reset_state(state)
            predictor.add_new_points_or_box(
                state, frame_idx=key, obj_id=1, box=np.array(box, dtype=np.float32)
            )
            for frame_idx, _, logits in predictor.propagate_in_video(state, reverse=reverse):
                result[frame_idx] |= (logits[0, 0] > 0.0).cpu().numpy()
    return result
