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


def bottleneck(model: nn.Module) -> nn.Linear:
    """The encoder's Linear(800, n), whose ReLU outputs are the latent code."""
    return model.encoder.net[9]


def dead_units(model: nn.Module, images: torch.Tensor) -> int:
    """How many latent units no image activates (in evaluation mode)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pre = torch.cat([bottleneck(model)(model.encoder.net[:9](images[i:i + 1000]))
                         for i in range(0, len(images), 1000)])
    model.train(was_training)
    return int((pre.max(0).values <= 0).sum())


def revive_dead_units(model: nn.Module, optimizer: torch.optim.Optimizer, probe: torch.Tensor) -> int:
    """Bring back bottleneck units that no probe image activates; returns how many there were.

    With the report's settings about half of the n latent units die in the first 50 Adam steps
    (their ReLU is negative for every image, so no gradient ever reaches them again) and stay
    dead: the code has n/2 useful numbers. A dead unit's bias is moved so that half of the probe
    images activate it again, and its Adam momentum is cleared so the next step does not undo it.
    The architecture is unchanged; only where training sends the weights.
    """
    layer = bottleneck(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pre = layer(model.encoder.net[:9](probe))
        dead = pre.max(0).values <= 0
        count = int(dead.sum())
        if count:
            layer.bias[dead] -= pre[:, dead].median(0).values
            for param in (layer.weight, layer.bias):
                state = optimizer.state.get(param, {})
                if "exp_avg" in state:
                    state["exp_avg"][dead] = 0
                if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                    state["momentum_buffer"][dead] = 0
    model.train(was_training)
    return count


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
