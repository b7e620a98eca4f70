"""Which trainer teaches which backend's model (the contract is :mod:`.training`).

Like the trainers a MONAI Label app lists: one table, here, rather than a hook on each backend,
so that a trainer may build and validate the very backend it trains without the backend
importing its trainer back. A backend class (or a subclass of one) listed in :data:`TRAINERS`
is trained by its trainer; every other backend by the learned draft
(:class:`.learned_training.LearnedDraftTrainer`, which says which backend the draft is for).
"""

from __future__ import annotations

from .base import SegmentationBackend, backend_class
from .learned_training import LearnedDraftTrainer
from .litemedsam.backend import LiteMedSAMBackend
from .litemedsam.trainer import LiteMedSAMTrainer
from .medsam2.backend import MedSAM2Backend
from .medsam2.trainer import MedSAM2Trainer
from .training import Trainer, TrainingContext

__all__ = ["TRAINERS", "trainer_for"]

# Backend class -> its trainer: LiteMedSAM's decoder tuning (promoted when it validates better),
# MedSAM2's fine-tuning from the current checkpoint.
TRAINERS: dict[type[SegmentationBackend], type[Trainer]] = {
    LiteMedSAMBackend: LiteMedSAMTrainer,
    MedSAM2Backend: MedSAM2Trainer,
}


def trainer_for(context: TrainingContext) -> Trainer:
    """The trainer of ``context.current``'s backend: the first class of its hierarchy listed in
    :data:`TRAINERS`; the learned draft for a backend with none."""
    cls = backend_class(context.current.backend)
    for klass in cls.__mro__ if cls is not None else ():
        trainer = TRAINERS.get(klass)
        if trainer is not None:
            return trainer(context)
    return LearnedDraftTrainer(context)
