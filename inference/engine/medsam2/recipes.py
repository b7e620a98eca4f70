"""MedSAM2 fine-tuning's configurations: one run's settings (:class:`FinetuneConfig`, the
published recipe by default), the recipe itself and the CPU tests' smoke run, by the names
``MEDSAM2_TRAIN_CONFIG`` takes.

Apart from :mod:`.finetune` so that the clip sampler (:mod:`.clips`), the fine-tuning and its
trainer (:mod:`.trainer`) share them without importing each other back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CONFIGS", "RECIPE", "SMOKE", "FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run's settings; the defaults are the published recipe."""

    name: str = "recipe"
    num_frames: int = 8
    max_objects: int = 3
    batch_size: int = 2
    epochs: int = 75  # an epoch samples one clip per training case
    max_steps: int | None = None
    # Stop (and keep what was learned) after this long: the train queue's time limit is 1 h.
    max_seconds: float | None = 3000.0
    lr: float = 5e-5
    vision_lr: float = 3e-5
    end_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    layer_decay: float = 0.9
    grad_clip: float = 0.1
    prob_mask_prompt: float = 0.5
    correction_clicks: int = 7
    max_frames_to_correct: int = 2
    prob_click_from_gt: float = 0.1
    flip_prob: float = 0.5
    affine_degrees: float = 25.0
    affine_shear: float = 20.0
    affine_scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1
    contrast: float = 0.03
    # A square crop (original pixels) around the first object, resized to 512: None = the slice.
    crop_size: int | None = None
    # Evaluation: slices propagated each way from the key slice (None: the whole volume), and
    # at most this many lesions (None: all).
    eval_max_propagation: int | None = None
    eval_max_lesions: int | None = None
    eval_baseline: bool = True  # also measure the starting checkpoint
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPE = FinetuneConfig()
# CPU tests: two steps on 2-frame clips of small crops (still 512 px model input), batch 1.
SMOKE = FinetuneConfig(
    name="smoke",
    num_frames=2,
    batch_size=1,
    epochs=2,
    max_steps=2,
    max_seconds=None,
    correction_clicks=1,
    crop_size=32,
    eval_max_propagation=1,
    eval_max_lesions=1,
    eval_baseline=False,
)
CONFIGS = {"recipe": RECIPE, "smoke": SMOKE}
