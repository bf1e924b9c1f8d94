"""Train an autoencoder variant and read how linearly separable its code is as it trains.

    python tools/probe_epochs.py OUT [--every K] [--contrastive W] [--rotation W] [--clusters W [--k K]] \
        [--edge-weight W] \
        [--code-noise S] [--code-l1 W] [--code-decorrelation W] \
        kind=autoencoder n=64 p=0.1 schedule=cosine revive_every=50 dropout_off_last=0.75 max_epochs=20 ...

FIELD=VALUE pairs as in tools/train_variant.py. After every K-th epoch and the last, the encoder's
weights of that moment get tools/linear_probe.py's probe with --validation (a converged logistic
regression fitted on the 54,000 training images, read on the 6,000 validation images): case 2's
ceiling, the figure to choose an autoencoder recipe on. Each row is printed and appended to
OUT.probe.jsonl.

--contrastive W adds W times a SimCLR loss (NT-Xent at --temperature, on a projection head trained
with the run and then dropped) between two random views of each batch's images: an unsupervised
term that asks the code to stay the same when the garment is mirrored, moved, turned or dimmed.

--rotation W adds W times the cross-entropy of telling, from the code alone, by how many quarter
turns (0 to 3) each image of a rotated copy of the batch was turned (RotNet, Gidaris et al. 2018),
through a Linear(n, 4) head trained with the run and then dropped: an unsupervised pretext task
that asks the code to know which way up a garment is, so what its parts are.

--clusters W adds W times the cross-entropy of naming, from the code alone, which of --k k-means
clusters of the training images' pooled convolution features (regrouped after every epoch) each
image falls in, through a Linear(n, k) head trained with the run and then dropped (DeepCluster,
Caron et al. 2018): pseudo-labels from the 800 features the bottleneck reads, no labels.

--edge-weight W adds W times the mean squared error of the reconstruction's horizontal and
vertical pixel differences (its edges) to the MSE: a reconstruction objective that weighs the
fine details which tell a shirt from a pullover more than plain MSE does.

The --code-* options add a term on the latent code while training, for experiments only (they are
no TrainConfig field, and no recipe uses them): Gaussian noise of S times each unit's standard
deviation over the batch; W times the code's mean absolute value (sparsity); W times the mean
squared correlation between two different units over the batch (decorrelation).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import fmnist_edge.train.loop as loop
import train_variant
from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.data import load_train_val
from linear_probe import FEATURE_DEPTH, fit_head


def edge_error(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the images' differences between neighbouring pixels, down and across."""
    down = torch.nn.functional.mse_loss(out[..., 1:, :] - out[..., :-1, :], x[..., 1:, :] - x[..., :-1, :])
    across = torch.nn.functional.mse_loss(out[..., :, 1:] - out[..., :, :-1], x[..., :, 1:] - x[..., :, :-1])
    return (down + across) / 2


def decorrelation(z: torch.Tensor) -> torch.Tensor:
    """Mean squared correlation between different units of a (B, n) code, over the batch."""
    standard = (z - z.mean(0)) / (z.std(0) + 1e-4)
    corr = standard.T @ standard / len(z)
    off = corr - torch.diag(torch.diag(corr))
    return (off ** 2).sum() / (corr.shape[0] * (corr.shape[0] - 1))


def random_views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view of each image of (B, 1, 28, 28): mirrored half the time, scaled by 0.8-1.2,
    turned by up to 10 degrees, moved by up to 3 pixels, its intensity scaled by 0.6-1.0."""
    b = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=generator)
    angle, scale = u(-10, 10) * torch.pi / 180, u(0.8, 1.2)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u(-3, 3) / 14], 1),
                         torch.stack([sin * flip, cos, u(-3, 3) / 14], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    views = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    return views * u(0.6, 1.0).view(b, 1, 1, 1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss (Chen et al. 2020): each view must pick its twin out of the other 2B - 2."""
    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    twin = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return torch.nn.functional.cross_entropy(sim, twin)


class Contrastive(torch.nn.Module):
    """A contrastive term beside the reconstruction: two random views of each batch's images are
    encoded, projected by a small head (trained with the run, thrown away after) and scored by
    NT-Xent. Only the encoder is kept, so the exported architecture stays the report's."""

    def __init__(self, weight: float, temperature: float, n: int, seed: int):
        super().__init__()
        self.weight, self.temperature = weight, temperature
        self.head = torch.nn.Sequential(torch.nn.Linear(n, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
        self.generator = torch.Generator().manual_seed(seed)

    def penalty(self, encoder: torch.nn.Module, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        views = [encoder.net(random_views(x, self.generator)) for _ in range(2)]
        return self.weight * nt_xent(self.head(views[0]), self.head(views[1]), self.temperature)


def quarter_turns(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Each image of (B, 1, H, W) turned anticlockwise by its own number of quarter turns (0 to 3)."""
    turned = x.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            turned[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
    return turned


class Rotation(torch.nn.Module):
    """A rotation pretext term beside the reconstruction: a copy of the batch, each image turned by a
    random number of quarter turns, is encoded, and a Linear(n, 4) head (trained with the run,
    thrown away after) must name the turn. Only the encoder is kept."""

    def __init__(self, weight: float, n: int, seed: int):
        super().__init__()
        self.weight = weight
        self.head = torch.nn.Linear(n, 4)
        self.generator = torch.Generator().manual_seed(seed)

    def penalty(self, encoder: torch.nn.Module, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        turns = torch.randint(0, 4, (len(x),), generator=self.generator)
        logits = self.head(encoder.net(quarter_turns(x, turns)))
        return self.weight * torch.nn.functional.cross_entropy(logits, turns)


@torch.no_grad()
def pooled(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (B, 800) pooled convolution features of `encoder`, with its dropout off."""
    was_training = encoder.training
    encoder.eval()
    convolutions = encoder.net[:FEATURE_DEPTH["pooled"]]  # up to the Flatten that the bottleneck reads
    features = torch.cat([convolutions(x[i:i + 2000]) for i in range(0, len(x), 2000)])
    encoder.train(was_training)
    return features


def nearest(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The index of each point's nearest centroid (a matrix product: cdist is 3 times slower here)."""
    return ((centroids ** 2).sum(1) - 2 * points @ centroids.T).argmin(1)


def kmeans(points: torch.Tensor, centroids: torch.Tensor, generator: torch.Generator,
           iterations: int = 10) -> torch.Tensor:
    """Lloyd's k-means from `centroids`; an emptied cluster takes a random point."""
    k = len(centroids)
    for _ in range(iterations):
        closest = nearest(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, closest, points)
        counts = torch.bincount(closest, minlength=k)
        empty = counts == 0
        centroids = sums / counts.clamp(min=1).unsqueeze(1)
        if empty.any():
            centroids[empty] = points[torch.randint(len(points), (int(empty.sum()),), generator=generator)]
    return centroids


class Clusters(torch.nn.Module):
    """A pseudo-label term beside the reconstruction (after DeepCluster, Caron et al. 2018): the
    training images' pooled convolution features are grouped by k-means into `k` clusters, again
    after every epoch (10 Lloyd steps from the last epoch's centroids, so that a cluster keeps its
    number and the head its meaning), and a Linear(n, k) head (trained with the run, thrown away
    after) must name each image's cluster from its code. No label is used; the code is asked to keep what separates the groups
    that the 800 pooled features form, which the 64 directions of most variance do not."""

    def __init__(self, weight: float, k: int, n: int, seed: int, images: torch.Tensor):
        super().__init__()
        self.weight, self.k, self.images = weight, k, images
        self.head = torch.nn.Linear(n, k)
        self.generator = torch.Generator().manual_seed(seed)
        self.centroids: torch.Tensor | None = None

    def regroup(self, encoder: torch.nn.Module) -> None:
        """Clusters of `encoder`'s features now (the first time: 20 steps from k random images)."""
        features = pooled(encoder, self.images)
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        points = (features - self.mean) / self.std
        first = self.centroids is None
        start = points[torch.randperm(len(points), generator=self.generator)[:self.k]] if first else self.centroids
        self.centroids = kmeans(points, start.clone(), self.generator, 20 if first else 10)

    def groups(self, encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The cluster of each image of `x`: the pseudo-label its code is asked for."""
        if self.centroids is None:
            self.regroup(encoder)
        return nearest((pooled(encoder, x) - self.mean) / self.std, self.centroids)

    def penalty(self, encoder: torch.nn.Module, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.nn.functional.cross_entropy(self.head(code), self.groups(encoder, x))


class CodeTerms:
    """A forward hook on the encoder that adds noise to its code while training and keeps the
    penalty of the batch it just encoded, for the loss to add."""

    def __init__(self, noise: float, l1: float, decorrelate: float, tasks: list | tuple = (),
                 edge: float = 0.0):
        self.noise, self.l1, self.decorrelate, self.edge = noise, l1, decorrelate, edge
        self.tasks = list(tasks)  # Contrastive, Rotation and Clusters terms, each with its own head
        self.penalty = 0.0

    @property
    def active(self) -> bool:
        return bool(self.noise or self.l1 or self.decorrelate or self.tasks or self.edge)

    def __call__(self, module, args, code):
        if not module.training:
            return code
        self.penalty = self.l1 * code.abs().mean() + (self.decorrelate * decorrelation(code) if self.decorrelate
                                                      else 0.0)
        for task in self.tasks:
            self.penalty = self.penalty + task.penalty(module, args[0], code)
        if self.noise:
            return code + self.noise * code.detach().std(0, keepdim=True) * torch.randn_like(code)
        return code

    def install(self, trainer: loop.Trainer) -> None:
        fresh, make_loss = trainer._fresh_state, loop.loss_fn

        def fresh_with_hook():
            fresh()
            trainer.model.encoder.register_forward_hook(self)
            for task in self.tasks:  # the task's head learns with the run, at its rate
                trainer.optimizer.add_param_group({"params": list(task.head.parameters())})

        def loss_with_penalty(kind, cfg):
            base = make_loss(kind, cfg)
            if not self.edge:
                return lambda out, x, y: base(out, x, y) + self.penalty
            return lambda out, x, y: base(out, x, y) + self.penalty + self.edge * edge_error(out, x)

        trainer._fresh_state = fresh_with_hook
        loop.loss_fn = loss_with_penalty  # the trainer builds its objective from this module global


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="probe every K epochs (and after the last)")
    parser.add_argument("--code-noise", type=float, default=0.0)
    parser.add_argument("--code-l1", type=float, default=0.0)
    parser.add_argument("--code-decorrelation", type=float, default=0.0)
    parser.add_argument("--contrastive", type=float, default=0.0,
                        help="weight of a SimCLR term on two random views of each batch (0: none)")
    parser.add_argument("--temperature", type=float, default=0.5, help="the SimCLR term's temperature")
    parser.add_argument("--rotation", type=float, default=0.0,
                        help="weight of a term that names each rotated image's quarter turns from its code (0: none)")
    parser.add_argument("--clusters", type=float, default=0.0,
                        help="weight of a term that names each image's k-means cluster of pooled features from its code (0: none)")
    parser.add_argument("--k", type=int, default=None, help="the --clusters term's number of clusters (100)")
    parser.add_argument("--edge-weight", type=float, default=0.0,
                        help="weight of the reconstruction's edge error beside its MSE (0: none)")
    args, rest = parser.parse_known_args()
    if args.k is not None and not args.clusters:
        raise FmnistEdgeError("--k sets the number of clusters of the --clusters term; add --clusters W")
    args.k = 100 if args.k is None else args.k
    if not (args.contrastive >= 0 and args.rotation >= 0 and args.clusters >= 0 and args.edge_weight >= 0) \
            or not args.temperature > 0 or args.k < 2:
        raise FmnistEdgeError("--contrastive, --rotation, --clusters and --edge-weight must be 0 or more, "
                              "--temperature more than 0 and --k at least 2")
    out, model_cfg, train_cfg, _ = train_variant.parse(rest)
    if model_cfg.kind != "autoencoder":
        raise FmnistEdgeError("probe_epochs trains autoencoders: pass kind=autoencoder")
    train, val = load_train_val(TrainConfig())  # the probe's split: the training runs' own
    trainer = loop.Trainer(model_cfg, train_cfg, out, force=True, quiet=True)
    tasks = [Contrastive(args.contrastive, args.temperature, model_cfg.n, train_cfg.seed)] if args.contrastive else []
    if args.rotation:
        tasks.append(Rotation(args.rotation, model_cfg.n, train_cfg.seed + 1))
    clusters = Clusters(args.clusters, args.k, model_cfg.n, train_cfg.seed + 2, train.images) if args.clusters else None
    if clusters:
        tasks.append(clusters)
    terms = CodeTerms(args.code_noise, args.code_l1, args.code_decorrelation, tasks, args.edge_weight)
    if terms.active:
        terms.install(trainer)
    log = out.parent / f"{out.name}.probe.jsonl"

    def probe(record: dict) -> None:
        if clusters and record["epoch"] != train_cfg.max_epochs:
            clusters.regroup(trainer.model.encoder)
        if record["epoch"] % args.every and record["epoch"] != train_cfg.max_epochs:
            return
        started, encoder = time.time(), trainer.model.encoder
        was_training = encoder.training
        encoder.eval()
        f_train, f_val = loop.encoded(encoder, train).images, loop.encoded(encoder, val).images
        encoder.train(was_training)
        mean, std = f_train.mean(0), f_train.std(0) + 1e-6
        f_train, f_val = (f_train - mean) / std, (f_val - mean) / std
        weight, bias = fit_head(f_train, train.labels)
        row = {"epoch": record["epoch"], "val_mse": record["val_loss"], "train_loss": record["train_loss"],
               "probe_train": ((f_train @ weight + bias).argmax(1) == train.labels).float().mean().item(),
               "probe_val": ((f_val @ weight + bias).argmax(1) == val.labels).float().mean().item(),
               "probe_seconds": round(time.time() - started, 1)}
        print(json.dumps(row), flush=True)
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")

    trainer.on_epoch = probe
    trainer.run()


if __name__ == "__main__":
    try:
        main()
    except (FmnistEdgeError, ValueError) as exc:
        raise SystemExit(f"probe_epochs: error: {exc}") from None
