"""Evaluation on a tensor set: MSE for an autoencoder, loss, accuracy and confusion for a classifier,
and a classifier's accuracy with its mirror averaged in (what `classify --tta` does)."""

from __future__ import annotations

import torch
from torch import nn

from fmnist_edge.spec import CLASS_NAMES, NUM_CLASSES
from fmnist_edge.train.data import Tensors, batches
from fmnist_edge.train.recipe import distillation_loss

EVAL_BATCH = 100  # batch 1000 took 1.44x the time (benchmarks/train_epoch/eval-batch)


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensors, kind: str, device: str = "cpu", label_smoothing: float = 0.0,
             distill: tuple[torch.Tensor, float, float] | None = None, mirror: bool = False) -> dict:
    """Mean loss over `data`; for classifiers also accuracy, per-class accuracy and confusion.

    `label_smoothing`, and `distill` = (the teacher's logits for `data`, its share of the loss,
    the temperature), make the loss the training objective, so that early stopping on it
    follows what the optimizer minimises. `mirror` adds a classifier's `accuracy_tta`: each
    image's class probabilities (not logits) averaged with its left-right mirror's, as the
    runtime's `--tta` does (`runtime.api.mirror_averaged`)."""
    was_training = model.training
    model.eval()
    total, n, mirror_correct = 0.0, len(data), 0
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    for idx in batches(n, EVAL_BATCH):
        x = data.images[idx].to(device)
        out = model(x)
        if kind == "autoencoder":
            total += nn.functional.mse_loss(out, x, reduction="sum").item() / x[0].numel()
        else:
            y = data.labels[idx].to(device)
            loss = nn.functional.cross_entropy(out, y, reduction="sum", label_smoothing=label_smoothing).item()
            if distill is not None:
                teacher_logits, share, temperature = distill
                taught = distillation_loss(out, teacher_logits[idx].to(device), temperature).item() * len(idx)
                loss = (1 - share) * loss + share * taught
            total += loss
            pred = out.argmax(1).cpu()
            if mirror:
                averaged = (out.softmax(1) + model(x.flip(-1)).softmax(1)) / 2
                mirror_correct += (averaged.argmax(1).cpu() == y.cpu()).sum().item()
            confusion += torch.bincount(y.cpu() * NUM_CLASSES + pred, minlength=NUM_CLASSES ** 2).view(
                NUM_CLASSES, NUM_CLASSES)
    model.train(was_training)
    if kind == "autoencoder":
        return {"mse": total / max(n, 1)}
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    return {
        "loss": total / max(n, 1),
        "accuracy": confusion.diag().sum().item() / max(n, 1),
        "per_class_accuracy": {name: round(per_class[i].item(), 6) for i, name in enumerate(CLASS_NAMES)},
        "confusion": confusion.tolist(),
        **({"accuracy_tta": mirror_correct / max(n, 1)} if mirror else {}),
    }


def mirror_averaged_accuracy(model: nn.Module, data: Tensors, device: str = "cpu") -> float:
    """A classifier's accuracy with mirror averaging alone (see `evaluate`'s `mirror`)."""
    return evaluate(model, data, "classifier", device, mirror=True)["accuracy_tta"]
