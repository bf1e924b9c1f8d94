"""Knowledge distillation: a teacher's logits for every training batch of the report's classifier."""

from __future__ import annotations

from pathlib import Path

import torch

from fmnist_edge.errors import ModelError, with_article
from fmnist_edge.train import checkpoint

TEACHER_BATCH = 500


def load_teacher(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A checkpoint that predicts labels (a teacher, or another classifier), in evaluation mode."""
    model, payload = checkpoint.load_model(path)
    if not payload["model_config_obj"].predicts_labels:
        kind = payload["model_config_obj"].kind
        raise ModelError(f"{path}: is {with_article(kind)} checkpoint; a teacher must predict labels")
    return model, payload


class TeacherLogits:
    """The teacher's logits for the images a training step sees.

    When augmentation is at most a horizontal flip, each training image has two versions, so
    the teacher runs once over both before training (about an epoch of its inference) and each
    step looks its logits up; with shifts it runs on every batch."""

    def __init__(self, path: str | Path, images: torch.Tensor, device: str, flips_only: bool):
        with torch.random.fork_rng(devices=[]):  # building the model draws random weights: keep the
            self.model = load_teacher(path)[0]  # training's random stream as a resumed run has it
        self.model.to(device)
        self.table = None
        if flips_only:
            self.table = torch.stack([self.logits(images, device), self.logits(images.flip(3), device)], 1)  # (N, 2, 10)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, device: str) -> torch.Tensor:
        """The teacher's logits for `images`, on the CPU."""
        return torch.cat([self.model(images[i:i + TEACHER_BATCH].to(device)).float().cpu()
                          for i in range(0, len(images), TEACHER_BATCH)])

    def for_batch(self, idx: torch.Tensor, x: torch.Tensor, flipped: torch.Tensor | None) -> torch.Tensor:
        """Logits for the batch `x` made from training images `idx` (flipped where `flipped`)."""
        if self.table is None:
            with torch.no_grad():
                return self.model(x).float()
        which = flipped.long() if flipped is not None else torch.zeros(len(idx), dtype=torch.long)
        return self.table[idx, which].to(x.device)
