"""Fashion-MNIST as in-memory tensors: decoded once, batched by indexing, no DataLoader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmnist_edge.idx import load_split
from fmnist_edge.train.config import TrainConfig


@dataclass
class Tensors:
    images: torch.Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> Tensors:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).unsqueeze(1)
    return Tensors(x.contiguous(), torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def split_indices(total: int, val_size: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of the 60k train set; the same for every run of a seed."""
    perm = np.random.default_rng(split_seed).permutation(total)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def load_train_val(cfg: TrainConfig, data_dir=None) -> tuple[Tensors, Tensors]:
    """The training and validation subsets of the 60k train set (the test set stays unseen)."""
    split = load_split("train", data_dir)
    # 6000 of the real 60k; a smaller folder (a subset, test fixtures) keeps the same tenth.
    val_size = min(cfg.val_size, len(split.labels) // 10)
    train_idx, val_idx = split_indices(len(split.labels), val_size, cfg.split_seed)
    if cfg.limit is not None:
        train_idx = train_idx[: cfg.limit]
        val_idx = val_idx[: max(200, min(len(val_idx), cfg.limit // 5))]
    return (to_tensors(split.images[train_idx], split.labels[train_idx]),
            to_tensors(split.images[val_idx], split.labels[val_idx]))


def load_test(data_dir=None, limit: int | None = None) -> Tensors:
    split = load_split("test", data_dir)
    n = len(split.labels) if limit is None else limit
    return to_tensors(split.images[:n], split.labels[:n])


def batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    """Index tensors covering 0..n-1 in batches; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips and shifts of up to `shift` pixels, per image. (B, 1, 28, 28);
    also returns which images were flipped."""
    b = x.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    return (random_shift(x, generator, shift) if shift else x), flip


def random_shift(x: torch.Tensor, generator: torch.Generator, shift: int) -> torch.Tensor:
    """Each image of (B, 1, H, W) moved by up to `shift` pixels each way, zeros filling in."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
