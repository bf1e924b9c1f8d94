"""The PCA baseline: the linear bottleneck the autoencoders should beat, fitted on their own
training images."""

from __future__ import annotations

import numpy as np

from fmnist_edge.train.config import QUICK_LIMIT


def pca_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), components (D, D), columns by decreasing variance) from the covariance's
    eigendecomposition; x is (N, D) in [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0)
    cov = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), 8192):  # chunks: a 54k x 784 float64 copy would be 340 MB
        c = x[start:start + 8192] - mean
        cov += c.T @ c
    values, vectors = np.linalg.eigh(cov / len(x))
    return mean, vectors[:, np.argsort(values)[::-1]]


def pca_reconstruct(x: np.ndarray, mean: np.ndarray, components: np.ndarray, n: int) -> np.ndarray:
    """Project onto the first n components and back (not clipped: the plain linear bottleneck)."""
    v = components[:, :n]
    return (np.asarray(x, dtype=np.float64) - mean) @ v @ v.T + mean


def pca_mse(x: np.ndarray, mean: np.ndarray, components: np.ndarray, n: int) -> float:
    """Mean squared error per pixel of the n-component reconstruction."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean((pca_reconstruct(x, mean, components, n) - x) ** 2))


def pca_data(data_dir, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(train images used for the fit, test images, test labels, description), flat in [0, 1]."""
    from fmnist_edge.idx import load_split
    from fmnist_edge.train.config import TrainConfig
    from fmnist_edge.train.data import split_indices
    from fmnist_edge.train.reproduce import plan

    train, test = load_split("train", data_dir), load_split("test", data_dir)
    cfg = TrainConfig()
    # The autoencoders' own training images: load_train_val's split, and its --limit when quick.
    val_size = min(cfg.val_size, len(train.labels) // 10)
    train_idx, _ = split_indices(len(train.labels), val_size, cfg.split_seed)
    limit = plan(1, quick=True)[0].train_cfg.limit if quick else None
    limited = bool(limit) and limit < len(train_idx)
    train_idx = train_idx[:limit] if limit else train_idx
    n_test = min(len(test.labels), QUICK_LIMIT) if quick else len(test.labels)
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64) / 255.0  # noqa: E731
    what = (f"fit on the autoencoders' {len(train_idx)} training images (train split of "
            f"{len(train.labels)} minus {val_size} validation, split_seed {cfg.split_seed}"
            f"{', first ' + str(limit) + ' as in --quick' if limited else ''}), "
            f"tested on the first {n_test} test images")
    return flat(train.images[train_idx]), flat(test.images[:n_test]), test.labels[:n_test], what
