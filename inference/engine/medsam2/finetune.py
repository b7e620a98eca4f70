"""Fine-tuning MedSAM2 on npz cases: the published recipe (MEDSAM2.md, "Fine-tuning recipe").

Its trainer (:mod:`.trainer`) is what the training job runs. Input: npz cases as
``projects.exports`` and the trainer write them (``imgs`` (D,H,W) uint8, ``gts`` (D,H,W)
instance labels, ``spacing``). :func:`finetune` continues from a ``{"model": state_dict}``
checkpoint and writes one in the same format, which :func:`.builder.load_checkpoint` loads
strictly; :func:`evaluate` measures the Dice of box-prompted propagation through the real
backend (:class:`.backend.MedSAM2Backend`) on held-out cases. The
configurations (:class:`FinetuneConfig`, :data:`RECIPE`, :data:`SMOKE`) are in :mod:`.recipes`.

What one training step does, following sam2's own ``training/`` (SAM2Train and
``MultiStepMultiMasksAndIous``; PyPI sam2 ships that package but it needs tensordict, fvcore and
iopath, so the few pieces used are written here against ``SAM2Base``):

- Sampling (:mod:`.clips`): per case, ``num_frames`` (8) consecutive slices whose first slice
  holds an object; up to ``max_objects`` (3) of that slice's objects, tracked through the clip.
  Frames are made by :func:`.preprocess.frame_from_slice`, the inference preprocessing (512 px
  bicubic, ImageNet normalisation), from the exported uint8 slices; masks are resized with
  nearest neighbours.
- Augmentation, the same for every frame of a clip: horizontal and vertical flips, a random
  affine (rotation, shear, scale), brightness and contrast jitter.
- Prompts on the first frame: with ``prob_mask_prompt`` (0.5) the ground-truth mask, else a box
  (sam2's noised box corners); with a box, up to ``correction_clicks`` (7) correction clicks
  sampled from the error region on the first frame and, at random, one more frame (1-2 frames,
  as SAM2Train's ``num_frames_to_correct_for_train=2``); a corrected frame becomes a
  conditioning frame. The other frames are tracked from memory.
- Loss, per frame and per prompt step: 20 focal + 1 dice + 1 IoU (L1, every mask of a
  multimask output) + 1 object score; focal and dice on the best of the multimask outputs.
- Optimiser: AdamW, lr 5e-5 (image encoder 3e-5), layer decay 0.9 on the trunk's blocks, cosine
  decay to lr/10 over the run, weight decay 0.1 (none on biases and LayerNorms), gradient
  clipping at norm 0.1, bf16 autocast on CUDA; nothing is frozen.

Not done: the reference's multi-GPU data parallelism (one device here, batch ``batch_size``).

Torch and sam2 are imported when a function runs, never when this module is imported.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import EngineError, ImageVolume, LesionPrompt
from ..geometry import dice, key_slice_and_box
from .clips import UINT8_WINDOW, Case, augment, load_cases, sample_clip
from .recipes import RECIPE, FinetuneConfig

if TYPE_CHECKING:
    import torch

    from .predictor import CachingVideoPredictor

__all__ = [
    "Case",
    "FinetuneError",
    "FinetuneResult",
    "evaluate",
    "finetune",
    "load_cases",
]

LOSS_WEIGHTS = {"focal": 20.0, "dice": 1.0, "iou": 1.0, "object": 1.0}


class FinetuneError(EngineError):
    """Nothing to train on (no usable case), or an unusable input file."""


@dataclass
class FinetuneResult:
    checkpoint: Path
    steps: int
    seconds: float
    cases: int
    skipped: list[dict[str, Any]]
    losses: list[float]
    stopped_early: bool

    def metrics(self) -> dict[str, Any]:
        first = self.losses[: max(1, len(self.losses) // 10)]
        last = self.losses[-max(1, len(self.losses) // 10) :]
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "cases": self.cases,
            "skipped": self.skipped,
            "loss_first": round(float(np.mean(first)), 4) if self.losses else None,
            "loss_last": round(float(np.mean(last)), 4) if self.losses else None,
            "stopped_early": self.stopped_early,
        }


# -- the model in training mode -----------------------------------------------------------------


def _track_frame(
    model: CachingVideoPredictor,
    frame_idx: int,
    is_cond: bool,
    feats: list[torch.Tensor],
    pos: list[torch.Tensor],
    feat_sizes: list[tuple[int, int]],
    point_inputs: dict[str, torch.Tensor] | None,
    mask_inputs: torch.Tensor | None,
    output_dict: dict[str, dict[int, Any]],
    num_frames: int,
    gt: torch.Tensor,
    clicks: int,
    config: FinetuneConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """SAM2Train.track_step: one frame through SAM2Base, then ``clicks`` correction clicks
    sampled from the error region, each decoded with the previous low-res logits; every step's
    masks, IoUs and object scores are kept for the loss."""
    from sam2.modeling.sam2_utils import get_next_point
    from sam2.utils.misc import concat_points

    current_out, sam_outputs, high_res_features, pix_feat = model._track_step(
        frame_idx,
        is_cond,
        feats,
        pos,
        feat_sizes,
        point_inputs,
        mask_inputs,
        output_dict,
        num_frames,
        False,
        None,
    )
    (_, high_multi, ious, low_res, high_res, obj_ptr, obj_scores) = sam_outputs
    steps = [(high_multi, ious, obj_scores)]
    for _ in range(clicks):
        from_gt = rng.random() < config.prob_click_from_gt
        points, labels = get_next_point(
            gt_masks=gt, pred_masks=None if from_gt else high_res > 0, method="uniform"
        )
        point_inputs = concat_points(point_inputs, points, labels)
        sam_outputs = model._forward_sam_heads(
            backbone_features=pix_feat,
            point_inputs=point_inputs,
            mask_inputs=low_res,
            high_res_features=high_res_features,
            multimask_output=model._use_multimask(is_cond, point_inputs),
        )
        (_, high_multi, ious, low_res, high_res, obj_ptr, obj_scores) = sam_outputs
        steps.append((high_multi, ious, obj_scores))
    current_out["pred_masks"] = low_res
    current_out["pred_masks_high_res"] = high_res
    current_out["obj_ptr"] = obj_ptr
    model._encode_memory_in_output(
        feats, feat_sizes, point_inputs, True, high_res, obj_scores, current_out
    )
    current_out["loss_steps"] = steps
    return dict(current_out)


def _forward_clips(
    model: CachingVideoPredictor,
    frames: torch.Tensor,
    masks: list[torch.Tensor],
    config: FinetuneConfig,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """SAM2Train.forward for a batch: ``frames`` (B,T,3,S,S), ``masks[b]`` (T,O_b,S,S) bool.
    Returns each frame's output and the (T,N,S,S) targets of the N objects."""
    import torch
    from sam2.modeling.sam2_utils import sample_box_points

    batch, num_frames = frames.shape[:2]
    owner = [b for b, m in enumerate(masks) for _ in range(m.shape[1])]
    targets = torch.cat(masks, dim=1)  # (T,N,S,S)
    backbone_out = model.forward_image(frames.flatten(0, 1))  # image b*T+t
    _, vision_feats, vision_pos, feat_sizes = model._prepare_backbone_features(backbone_out)

    use_mask = rng.random() < config.prob_mask_prompt
    to_correct = {0}
    if not use_mask and config.max_frames_to_correct > 1 and num_frames > 1:
        extra = int(rng.integers(0, config.max_frames_to_correct))  # 0 or 1 more frames
        to_correct |= {int(t) for t in rng.choice(range(1, num_frames), extra, replace=False)}
    output_dict: dict[str, dict[int, Any]] = {
        "cond_frame_outputs": {},
        "non_cond_frame_outputs": {},
    }
    outputs = []
    for t in range(num_frames):
        ids = torch.tensor([b * num_frames + t for b in owner], device=frames.device)
        gt = targets[t].unsqueeze(1)
        point_inputs = mask_inputs = None
        if t == 0 and use_mask:
            mask_inputs = gt.float()
        elif t == 0:
            coords, labels = sample_box_points(gt)
            point_inputs = {"point_coords": coords, "point_labels": labels}
        corrected = not use_mask and t in to_correct
        is_cond = t == 0 or corrected
        out = _track_frame(
            model,
            t,
            is_cond,
            [x[:, ids] for x in vision_feats],
            [x[:, ids] for x in vision_pos],
            feat_sizes,
            point_inputs,
            mask_inputs,
            output_dict,
            num_frames,
            gt,
            config.correction_clicks if corrected else 0,
            config,
            rng,
        )
        output_dict["cond_frame_outputs" if is_cond else "non_cond_frame_outputs"][t] = out
        outputs.append(out)
    del batch
    return outputs, targets


def _losses(outputs: list[dict[str, Any]], targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """sam2's MultiStepMultiMasksAndIous with MedSAM2's settings: focal (alpha 0.25, gamma 2)
    and dice on the best of the multimask outputs, L1 IoU loss on all of them, BCE on the object
    score; mask losses only where the object is present; summed over frames and prompt steps,
    divided by the number of objects."""
    import torch
    import torch.nn.functional as F

    num_objects = max(int(targets.shape[1]), 1)
    parts = {k: torch.zeros((), device=targets.device) for k in LOSS_WEIGHTS}
    for out, target in zip(outputs, targets, strict=True):
        target = target.unsqueeze(1).float()  # (N,1,S,S)
        present = target.flatten(1).any(dim=1, keepdim=True).float()  # (N,1)
        for masks, ious, obj_scores in out["loss_steps"]:
            logits = masks.float()
            expanded = target.expand_as(logits)
            prob = logits.sigmoid()
            ce = F.binary_cross_entropy_with_logits(logits, expanded, reduction="none")
            p_t = prob * expanded + (1 - prob) * (1 - expanded)
            focal = ce * (1 - p_t) ** 2 * (0.25 * expanded + 0.75 * (1 - expanded))
            focal = focal.flatten(2).mean(-1) / num_objects  # (N,M)
            inter = 2 * (prob * expanded).flatten(2).sum(-1)
            union = prob.flatten(2).sum(-1) + expanded.flatten(2).sum(-1)
            dice_loss = (1 - (inter + 1) / (union + 1)) / num_objects  # (N,M)
            hit = (logits.flatten(2) > 0) & (expanded.flatten(2) > 0)
            either = (logits.flatten(2) > 0) | (expanded.flatten(2) > 0)
            actual = hit.sum(-1).float() / either.sum(-1).float().clamp(min=1.0)
            iou = F.l1_loss(ious.float(), actual, reduction="none") / num_objects  # (N,M)
            best = torch.argmin(LOSS_WEIGHTS["focal"] * focal + dice_loss, dim=-1)
            rows = torch.arange(best.shape[0], device=best.device)
            parts["focal"] = parts["focal"] + (focal[rows, best, None] * present).sum()
            parts["dice"] = parts["dice"] + (dice_loss[rows, best, None] * present).sum()
            parts["iou"] = parts["iou"] + (iou.mean(-1, keepdim=True) * present).sum()
            parts["object"] = parts["object"] + (
                F.binary_cross_entropy_with_logits(obj_scores.float(), present, reduction="none")
                .mean(1)
                .sum()
                / num_objects
            )
    parts["total"] = sum(
        (LOSS_WEIGHTS[k] * parts[k] for k in LOSS_WEIGHTS), torch.zeros((), device=targets.device)
    )
    return parts


def _param_groups(model: torch.nn.Module, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups: the image encoder at ``vision_lr``, the rest at ``lr``; the trunk's block i
    scaled by ``layer_decay ** (blocks + 1 - (i + 1))`` (patch embedding: layer 0; the position
    embeddings keep 1.0), as sam2's ``layer_decay_param_modifier``; no weight decay on biases
    and LayerNorms."""
    import torch

    no_decay = {
        f"{module_name}.{name}"
        for module_name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm)
        for name, _ in module.named_parameters(recurse=False)
    }
    blocks = len(model.image_encoder.trunk.blocks)  # type: ignore[union-attr, arg-type]
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = config.vision_lr if name.startswith("image_encoder.") else config.lr
        if name.startswith("image_encoder.trunk.") and "pos_embed" not in name:
            layer = blocks + 1
            if ".patch_embed." in name:
                layer = 0
            elif name.startswith("image_encoder.trunk.blocks."):
                layer = int(name.split(".")[3]) + 1
            lr *= config.layer_decay ** (blocks + 1 - layer)
        decay = 0.0 if name.endswith(".bias") or name in no_decay else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    return [
        {"params": params, "lr": lr, "base_lr": lr, "weight_decay": decay}
        for (lr, decay), params in groups.items()
    ]


def _device(device: str | None) -> torch.device:
    import torch

    name = device or os.environ.get("MEDSAM2_DEVICE") or ""
    if not name:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def finetune(
    checkpoint: Path,
    train: Sequence[Path],
    out: Path,
    config: FinetuneConfig = RECIPE,
    *,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Continue training ``checkpoint`` on the ``train`` npz cases; write ``{"model": ...}`` to
    ``out``. Fewer steps when ``should_stop`` says so or ``max_seconds`` pass (the file is
    written either way and the result says it stopped early). Raises :class:`FinetuneError`
    when no case can give a clip (each skipped case and why is in the error and in the
    result)."""
    import torch

    from .builder import IMAGE_SIZE, build_predictor

    started = time.perf_counter()
    cases, skipped = load_cases(train, config.num_frames)
    if not cases:
        reasons = "; ".join(f"{s['case']}: {s['reason']}" for s in skipped[:5]) or "none given"
        raise FinetuneError(
            f"no usable training case ({len(skipped)} skipped: {reasons}): a case needs at "
            f"least {config.num_frames} slices and an object on a slice that starts a clip"
        )
    where = _device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_predictor(checkpoint, where)
    model.train()
    optimizer = torch.optim.AdamW(_param_groups(model, config))
    per_epoch = math.ceil(len(cases) / config.batch_size)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    use_bf16 = where.type == "cuda" and torch.cuda.is_bf16_supported()
    losses: list[float] = []
    order: list[int] = []
    stopped_early = False
    done = 0
    for step in range(total):
        if (should_stop is not None and should_stop()) or (
            config.max_seconds is not None and time.perf_counter() - started > config.max_seconds
        ):
            stopped_early = True
            break
        factor = config.end_lr_ratio + (1 - config.end_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * step / max(total, 1))
        )
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        clips_frames, clips_masks = [], []
        for _ in range(config.batch_size):
            if not order:
                order = list(rng.permutation(len(cases)))
            frames_np, masks_np = sample_clip(cases[order.pop()], config, rng, IMAGE_SIZE)
            frames_t = torch.from_numpy(frames_np).to(where)
            masks_t = torch.from_numpy(masks_np).to(where).float()
            frames_t, masks_t = augment(frames_t, masks_t, config, rng)
            clips_frames.append(frames_t)
            clips_masks.append(masks_t > 0.5)
        autocast = torch.autocast(where.type, dtype=torch.bfloat16, enabled=use_bf16)
        with autocast:
            outputs, targets = _forward_clips(
                model, torch.stack(clips_frames), clips_masks, config, rng
            )
            loss = _losses(outputs, targets)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if progress is not None:
            progress(done, total)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, partial)
    os.replace(partial, out)
    del model, optimizer
    if where.type == "cuda":
        torch.cuda.empty_cache()
    return FinetuneResult(
        checkpoint=out,
        steps=done,
        seconds=time.perf_counter() - started,
        cases=len(cases),
        skipped=skipped,
        losses=losses,
        stopped_early=stopped_early,
    )


# -- evaluation --------------------------------------------------------------------------------


def evaluate(
    checkpoint: Path,
    cases: Sequence[Path],
    config: FinetuneConfig = RECIPE,
    *,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Dice of box-prompted propagation through MedSAM2 with ``checkpoint``
    (:class:`.backend.MedSAM2Backend`, what :class:`.backend.MedSAM2Backend` runs): each
    object of each case, prompted by the box around it on its largest slice (as the platform
    prompts a lesion). With ``eval_max_propagation`` the Dice is taken over the slices
    propagated to. No cases: the metrics say so (``dice_mean`` None)."""
    from .backend import MedSAM2Backend

    loaded, skipped = load_cases(cases, 1)
    if not loaded:
        return {
            "cases": 0,
            "lesions": 0,
            "dice_mean": None,
            "note": "no validation cases" if not cases else "no usable validation case",
            "skipped": skipped,
        }
    backend = MedSAM2Backend(
        checkpoint,
        device=device,
        max_propagation=config.eval_max_propagation,
        default_ct_window=None,
    )
    jobs = [(case, int(label)) for case in loaded for label in np.unique(case.gts[case.gts > 0])][
        : config.eval_max_lesions
    ]
    scores: dict[str, float] = {}
    reach = config.eval_max_propagation
    for done, (case, label) in enumerate(jobs, start=1):
        truth = case.gts == label
        key, box = key_slice_and_box(truth)
        volume = ImageVolume(case.imgs, case.spacing, "CT", window=UINT8_WINDOW)
        result = backend.segment(volume, [LesionPrompt(str(label), key, box)])
        predicted = result.masks[str(label)]
        if reach is not None:
            zs = slice(max(key - reach, 0), key + reach + 1)
            predicted, truth = predicted[zs], truth[zs]
        scores[f"{case.name}#{label}"] = round(dice(predicted, truth), 4)
        if progress is not None:
            progress(done, len(jobs))
    values = list(scores.values())
    return {
        "cases": len({name.rpartition("#")[0] for name in scores}),
        "lesions": len(values),
        "dice_mean": round(float(np.mean(values)), 4),
        "dice_median": round(float(np.median(values)), 4),
        "dice": scores,
        "skipped": skipped,
        **({"slices_each_way": reach} if reach is not None else {}),
    }
