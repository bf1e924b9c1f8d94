"""What a TrainConfig turns into: optimizer, learning-rate schedule, loss and weight averaging."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from fmnist_edge.train.config import HALF_ACTIVE, TrainConfig


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
    """loss(out, x, y): MSE (or BCE) to the input for an autoencoder, cross-entropy for a classifier."""
    if kind == "autoencoder":
        if cfg.recon_loss == "bce":
            return lambda out, x, y: nn.functional.binary_cross_entropy(out, x)
        return lambda out, x, y: nn.functional.mse_loss(out, x)
    return lambda out, x, y: nn.functional.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: KL(teacher || student) at `temperature`, times T^2 so that
    its gradients keep their size whatever the temperature."""
    t = temperature
    return nn.functional.kl_div(nn.functional.log_softmax(student_logits / t, 1),
                                nn.functional.log_softmax(teacher_logits / t, 1),
                                reduction="batchmean", log_target=True) * t * t


def bottleneck(model: nn.Module) -> nn.Linear:
    """The encoder's Linear(800, n), whose ReLU outputs are the latent code."""
    return model.encoder.net[9]


@torch.no_grad()
def _before_bottleneck(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The flattened features the bottleneck reads, in evaluation mode, 1000 images at a time."""
    was_training = model.training
    model.eval()
    features = torch.cat([model.encoder.net[:9](images[i:i + 1000]) for i in range(0, len(images), 1000)])
    model.train(was_training)
    return features


def dead_units(model: nn.Module, images: torch.Tensor) -> int:
    """How many latent units no image activates (in evaluation mode)."""
    with torch.no_grad():
        pre = bottleneck(model)(_before_bottleneck(model, images))
    return int((pre.max(0).values <= 0).sum())


@torch.no_grad()
def calibrate_biases(model: nn.Module, probe: torch.Tensor, active: float = HALF_ACTIVE) -> None:
    """Set each encoder layer's biases, first to last, so that each unit's pre-activation is
    positive on the `active` share of `probe` (every position of a convolution's map counts):
    minus the median for half of them. The weights stay as drawn. With PyTorch's default
    initialisation a random encoder has about 9 of its 64 latent units dead and most others
    active on few images; a frozen random encoder's features are what its classifier gets."""
    was_training = model.training
    model.eval()
    net = model.encoder.net
    x = probe
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.bias.zero_()
            pre = layer(x)
            per_unit = pre.transpose(0, 1).reshape(pre.shape[1], -1) if pre.dim() == 4 else pre.T
            if active == HALF_ACTIVE:  # torch.median, the lower middle value, as before the share was a setting
                level = per_unit.median(1).values
            else:  # the value that the `active` share of the probe's values is above
                # at most the second largest value: the largest stays above it, so no unit is dead
                k = min(per_unit.shape[1] - 1, max(1, round((1.0 - active) * per_unit.shape[1])))
                level = per_unit.kthvalue(k, dim=1).values
            layer.bias.copy_(-level)
        x = layer(x)
    model.train(was_training)


def latent_consumer(model: nn.Module) -> nn.Linear:
    """The layer that reads the latent code: the decoder's first Linear, or the classifier's head."""
    return model.head if hasattr(model, "head") else model.decoder.net[0]


def revive_dead_units(model: nn.Module, optimizer: torch.optim.Optimizer, probe: torch.Tensor,
                      generator: torch.Generator, average: "WeightAverage | None" = None) -> int:
    """Re-initialise bottleneck units that no probe image activates; returns how many there were.

    With the report's settings about half of the n latent units die in the first 50 Adam steps
    (their ReLU is negative for every image, so no gradient ever reaches them again) and stay
    dead: the code has n/2 useful numbers. A dead unit gets fresh incoming weights (PyTorch's
    Linear initialisation) and a bias that lets half of the probe images through; its outgoing
    weights are set to zero, so the network computes exactly the same function at the moment of
    revival and the unit is then learned like any other. Its optimizer momentum is cleared, and
    a moving average of the weights gets the same rows, so the average stays a function of
    living units too.
    The architecture is unchanged; only where training sends the weights.
    """
    layer, consumer = bottleneck(model), latent_consumer(model)
    features = _before_bottleneck(model, probe)
    with torch.no_grad():
        dead = layer(features).max(0).values <= 0
        count = int(dead.sum())
        if count:
            bound = layer.in_features ** -0.5
            fresh = (torch.rand(count, layer.in_features, generator=generator) * 2 - 1).mul_(bound)
            fresh = fresh.to(layer.weight)
            layer.weight[dead] = fresh
            layer.bias[dead] = -(features @ fresh.T).median(0).values
            consumer.weight[:, dead] = 0
            names = {id(p): n for n, p in model.named_parameters()}
            for param, index in ((layer.weight, dead), (layer.bias, dead), (consumer.weight, (slice(None), dead))):
                _clear_momentum(optimizer, param, index)
                if average is not None:
                    averaged = average.state[names[id(param)]]
                    averaged[index] = param.detach()[index].to(averaged.device)
    return count


def _clear_momentum(optimizer: torch.optim.Optimizer, param: torch.Tensor, index) -> None:
    state = optimizer.state.get(param, {})
    for key in ("exp_avg", "momentum_buffer"):  # Adam(W), SGD
        if state.get(key) is not None:
            state[key][index] = 0


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
