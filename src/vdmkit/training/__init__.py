"""Training: train(cfg) as one readable function, EMA, resume."""

from vdmkit.training.train import train

__all__ = ["train"]
