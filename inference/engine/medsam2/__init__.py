"""MedSAM2 backend: SAM2.1 hiera-tiny at 512 px propagating box, click and mask prompts.

``INFERENCE_BACKEND=inference.engine.medsam2.MedSAM2Backend`` with ``MEDSAM2_CHECKPOINT``
pointing at a ``{"model": state_dict}`` file. Importing this package does not import torch.
"""

from .backend import MedSAM2Backend, cpu_has_bf16, plan_passes

__all__ = ["MedSAM2Backend", "cpu_has_bf16", "plan_passes"]
