"""Training: run configs, the shared scaffold, and the loops: train(cfg) (text-to-video), train_autoencoder(cfg)."""

from vdmkit.training.config import AERunConfig, RunConfig, load_config
from vdmkit.training.train import train

__all__ = ["AERunConfig", "RunConfig", "load_config", "train"]
