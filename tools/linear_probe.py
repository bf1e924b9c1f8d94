"""The best a linear head can do on an encoder's features: a converged logistic regression.

Cases 2 and 4 train Linear(n, 10) on a frozen encoder. This fits the same head to convergence
(L-BFGS on the whole training set, features standardised, a tiny L2 penalty) so that a run's
test accuracy can be read against the ceiling of its features.

    python tools/linear_probe.py runs/reproduction3/seed0/ae-p0.1/model.pt [more checkpoints]

Each checkpoint is an autoencoder or a classifier (its encoder is used). Trains on all 60,000
training images (the head has no hyper-parameter left to choose on validation) and prints
train and test accuracy. With `--validation` it fits on the training runs' 54,000 images and
prints the accuracy on their 6,000 validation images instead of the test set's: the figure to
choose a recipe on. `--features` probes an earlier layer of the encoder instead of its code:
`pre-relu` (the code before its ReLU) or `pooled` (the 800 pooled convolution features the
bottleneck's Linear(800, n) reads), to see where the encoder loses what a linear head could use.
`--pca K` probes the features' first K principal components (fitted on the training images)
instead: what a K-unit code that kept the features' largest variance, as a reconstruction does,
would give a linear head.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.idx import load_split
from fmnist_edge.train.checkpoint import load_model
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.data import load_test, load_train_val, to_tensors
from fmnist_edge.train.loop import encoded


# How many of the encoder's layers (Encoder.net) each --features choice runs: the code is the
# whole encoder; pre-relu stops before the bottleneck's ReLU, pooled before its Linear(800, n).
FEATURE_DEPTH = {"code": None, "pre-relu": -2, "pooled": -3}


def principal_components(train: torch.Tensor, test: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets projected on the training set's first `k` principal components."""
    if not 1 <= k <= min(train.shape):
        raise FmnistEdgeError(f"--pca {k}: the features have {train.shape[1]} dimensions")
    mean = train.mean(0)
    _, _, vectors = torch.linalg.svd(train - mean, full_matrices=False)
    return (train - mean) @ vectors[:k].T, (test - mean) @ vectors[:k].T


def fit_head(train: torch.Tensor, labels: torch.Tensor, iterations: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(train.shape[1], 10, requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, history_size=50,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(train @ weight + bias, labels) + 1e-5 * (weight ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--validation", action="store_true",
                        help="fit on the training split, report the validation split (not the test set)")
    parser.add_argument("--features", choices=sorted(FEATURE_DEPTH), default="code",
                        help="which of the encoder's layers to probe (default: its code, what cases 2 and 4 read)")
    parser.add_argument("--pca", type=int, default=None, metavar="K",
                        help="probe the features' first K principal components instead")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.validation:
        train, test = load_train_val(TrainConfig(), args.data_dir)
    else:
        train_split = load_split("train", args.data_dir)
        train, test = to_tensors(train_split.images, train_split.labels), load_test(args.data_dir)
    held_out = "validation" if args.validation else "test"
    for path in args.checkpoints:
        model, _ = load_model(path)
        encoder = model.encoder.eval().net[:FEATURE_DEPTH[args.features]]
        f_train, f_test = encoded(encoder, train).images, encoded(encoder, test).images
        what = args.features
        if args.pca is not None:
            f_train, f_test = principal_components(f_train, f_test, args.pca)
            what = f"the first {args.pca} principal components of {args.features}"
        mean, std = f_train.mean(0), f_train.std(0) + 1e-6
        f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
        weight, bias = fit_head(f_train, train.labels)
        train_acc = ((f_train @ weight + bias).argmax(1) == train.labels).float().mean().item()
        test_acc = ((f_test @ weight + bias).argmax(1) == test.labels).float().mean().item()
        print(f"{path}: linear probe on {what} ({f_train.shape[1]} features) train {train_acc:.4f}, {held_out} {test_acc:.4f}")


if __name__ == "__main__":
    try:
        main()
    except FmnistEdgeError as exc:
        raise SystemExit(f"linear_probe: error: {exc}") from None
