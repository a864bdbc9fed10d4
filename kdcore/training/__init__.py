"""The training loop in pieces, shaped like mdistiller's trainer: ``prepare_run`` builds what a job
trains with, :class:`Trainer` runs epochs (``train_epoch``) of steps (``train_step``), ``resume``
restores a checkpoint exactly, and ``metrics`` turns the losses into reported points."""

from kdcore.training.entry import train
from kdcore.training.guard import RunGuard
from kdcore.training.run import TrainingRun, prepare_run
from kdcore.training.trainer import Trainer

__all__ = ["RunGuard", "Trainer", "TrainingRun", "prepare_run", "train"]
