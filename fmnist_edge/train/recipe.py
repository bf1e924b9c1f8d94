"""What a TrainConfig turns into: optimizer, learning-rate schedule, loss and weight averaging."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from fmnist_edge.train.config import TrainConfig


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.weight_decay:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """A per-epoch schedule, or None for a constant learning rate."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.max_epochs)
    return None


def loss_fn(kind: str, cfg: TrainConfig):
    """loss(out, x, y): MSE to the input for an autoencoder, cross-entropy for a classifier."""
    if kind == "autoencoder":
        return lambda out, x, y: nn.functional.mse_loss(out, x)
    return lambda out, x, y: nn.functional.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)


def cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class WeightAverage:
    """An exponential moving average of a model's weights, with TensorFlow's warm-up: early
    steps average over fewer steps. `state` and `steps` are plain data for checkpoints."""

    def __init__(self, decay: float, state: dict, steps: int = 0):
        self.decay, self.state, self.steps = decay, state, steps

    def update(self, model: nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if value.is_floating_point():
                    self.state[name].lerp_(value.detach().cpu(), 1.0 - decay)

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module):
        """Within the block the model holds the averaged weights; then its own come back."""
        own = cpu_state(model)
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(own)
