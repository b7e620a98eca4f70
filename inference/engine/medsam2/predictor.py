"""SAM2's video predictor with image embeddings cached per volume, and its tracking state.

SAM2's ``SAM2VideoPredictor`` keeps the image-encoder output of the LAST frame only
(``inference_state["cached_features"]``). A 3D lesion is propagated twice (forward, then
reverse) and a volume usually has several lesions, so :class:`CachingVideoPredictor` looks a
frame's features up in a :class:`FeatureCache` that the backend keeps per volume, and runs the
image encoder only on a miss. The builder selects this class with
``++model._target_=inference.engine.medsam2.predictor.CachingVideoPredictor``.

This module imports torch and sam2: the backend imports it lazily.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

__all__ = ["PREDICTOR_TARGET", "CachingVideoPredictor", "FeatureCache", "new_state"]

PREDICTOR_TARGET = "inference.engine.medsam2.predictor.CachingVideoPredictor"


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.element_size() * t.numel() for t in tensors)


class FeatureCache:
    """Image-encoder outputs of one volume, by frame index.

    Only ``backbone_fpn`` is kept per frame (about 4 MiB at 512 px in fp32): the positional
    encodings depend on the shape alone and are kept once. Frames are kept while ``nbytes``
    stays within ``limit`` (set by the backend from its budget); later ones are recomputed.
    """

    def __init__(self) -> None:
        self.frames: dict[int, list[torch.Tensor]] = {}
        self.pos_enc: list[torch.Tensor] | None = None
        self.nbytes = 0
        self.limit = 2**62
        self.encoder_calls = 0
        self.encoder_seconds = 0.0

    def store(self, frame_idx: int, fpn: list[torch.Tensor]) -> None:
        size = _nbytes(fpn)
        if frame_idx not in self.frames and self.nbytes + size <= self.limit:
            self.frames[frame_idx] = fpn
            self.nbytes += size

    def clear(self) -> None:
        self.frames.clear()
        self.pos_enc = None
        self.nbytes = 0


class CachingVideoPredictor(SAM2VideoPredictor):  # type: ignore[misc]
    """``SAM2VideoPredictor`` whose image features come from a per-volume :class:`FeatureCache`.

    The cache travels in ``inference_state["feature_cache"]``; a state without one behaves
    exactly like SAM2's own.
    """

    def _get_image_feature(
        self, inference_state: dict[str, Any], frame_idx: int, batch_size: int
    ) -> Any:
        cache = inference_state.get("feature_cache")
        if isinstance(cache, FeatureCache):
            device = inference_state["device"]
            fpn = cache.frames.get(frame_idx)
            pos_enc = cache.pos_enc
            if fpn is None or pos_enc is None:
                image = inference_state["images"][frame_idx].to(device).float().unsqueeze(0)
                started = time.perf_counter()
                backbone_out = self.forward_image(image)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                cache.encoder_seconds += time.perf_counter() - started
                cache.encoder_calls += 1
                fpn = list(backbone_out["backbone_fpn"])
                if cache.pos_enc is None:
                    cache.pos_enc = list(backbone_out["vision_pos_enc"])
                pos_enc = cache.pos_enc
                cache.store(frame_idx, fpn)
            # SAM2 returns the frame itself as the first feature, which no video path reads:
            # a 1x1 stand-in keeps its shape contract without holding 3 MiB per frame.
            stand_in = torch.zeros((1, 3, 1, 1), device=device)
            inference_state["cached_features"] = {
                frame_idx: (stand_in, {"backbone_fpn": fpn, "vision_pos_enc": pos_enc})
            }
        return super()._get_image_feature(inference_state, frame_idx, batch_size)


def new_state(
    predictor: CachingVideoPredictor,
    images: Sequence[torch.Tensor],
    height: int,
    width: int,
    cache: FeatureCache | None,
    *,
    offload_state_to_cpu: bool = False,
) -> dict[str, Any]:
    """The tracking state ``SAM2VideoPredictor.init_state`` builds (sam2 1.1.0), for frames
    given as a sequence instead of a folder of JPEGs, without its frame-0 warm-up."""
    device = predictor.device
    return {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": offload_state_to_cpu,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
        "feature_cache": cache,
    }
