"""How low the report's decoder can take the test MSE when the encoder has no say.

An autoencoder's test MSE has two sources of error: the encoder's code may not be the best one
for the decoder, and the decoder may not be able to draw the picture from any code. This
separates them for a trained autoencoder:

1. codes only: the decoder frozen, each test image gets the code that minimises its own
   reconstruction error (Adam on the code, started from the encoder's). No encoder can do
   better with this decoder.
2. free codes (GLO, Bojanowski et al. 2018): the decoder and one free code per training image
   are trained together for --free-code-epochs more epochs (started from the autoencoder's
   decoder and its codes), then step 1 is repeated on the test images with the new decoder:
   an estimate of the decoder architecture's own floor, with any encoder in front of it.
3. the encoder trained --encoder-epochs more epochs alone, on the frozen decoder's
   reconstruction error: whether the joint training left the encoder short of its own best.
4. with --code-targets K: the best codes of K training images are fitted as in step 1 (kept
   >= 0, as the encoder's ReLU keeps its own), and the encoder is trained to regress them:
   whether the report's encoder learns to compute codes that good.

    python tools/decoder_capacity.py runs/reproduction/seed0/ae-base/model.pt [--limit 2000]
        [--free-code-epochs 10] [--encoder-epochs 10 [--code-targets 10000]]

Fitted test codes are free in R^n unless --nonnegative (the encoder's end in a ReLU), so
steps 1 and 2 give lower bounds for what the report's encoder could reach with that decoder, as far
as Adam finds the minimum. Dropout is off throughout: the figures are the test-time model's.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.train.checkpoint import load_model
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.data import Tensors, batches, load_test, load_train_val
from fmnist_edge.train.loop import encoded


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """`module`'s parameters take no gradient inside the block; their earlier states come back after."""
    states = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in states:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, state in states:
            p.requires_grad_(state)


def mse(decoder: torch.nn.Module, codes: torch.Tensor, images: torch.Tensor) -> float:
    with torch.no_grad():
        return sum(F.mse_loss(decoder(codes[i:i + 1000]), images[i:i + 1000], reduction="sum").item()
                   for i in range(0, len(images), 1000)) / images.numel()


def fit_codes(decoder: torch.nn.Module, codes: torch.Tensor, images: torch.Tensor, steps: int,
              lr: float, nonnegative: bool = False, chunk: int = 1000) -> torch.Tensor:
    """The codes that minimise each image's reconstruction error through a frozen decoder. Images
    are independent given the decoder, so each chunk is optimised on its own, full batch. With
    `nonnegative` the codes stay >= 0, as the encoder's final ReLU keeps its own."""
    fitted = []
    with frozen(decoder):
        for i in range(0, len(images), chunk):
            z = codes[i:i + chunk].clone().requires_grad_(True)
            target = images[i:i + chunk]
            optimizer = torch.optim.Adam([z], lr=lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
            for _ in range(steps):
                optimizer.zero_grad()
                # a sum over the chunk, so each image's code gets its own gradient, undiluted
                F.mse_loss(decoder(z), target, reduction="sum").backward()
                optimizer.step()
                schedule.step()
                if nonnegative:
                    with torch.no_grad():
                        z.clamp_(min=0)
            fitted.append(z.detach())
    return torch.cat(fitted)


def train_free_codes(decoder: torch.nn.Module, codes: torch.Tensor, train: Tensors, epochs: int,
                     lr: float, code_lr: float, seed: int) -> torch.Tensor:
    """Train the decoder and one free code per training image together; returns the codes."""
    table = torch.nn.Embedding.from_pretrained(codes.clone(), freeze=False, sparse=True)
    decoder_opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    code_opt = torch.optim.SparseAdam(table.parameters(), lr=code_lr)
    steps = epochs * ((len(train) + 99) // 100)
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, steps) for o in (decoder_opt, code_opt)]
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        start, total = time.perf_counter(), 0.0
        for idx in batches(len(train), 100, generator):
            decoder_opt.zero_grad()
            code_opt.zero_grad()
            loss = F.mse_loss(decoder(table(idx)), train.images[idx])
            loss.backward()
            decoder_opt.step()
            code_opt.step()
            for s in schedules:
                s.step()
            total += loss.item() * len(idx)
        print(f"  free codes, epoch {epoch:3d}: train MSE {total / len(train):.5f}  "
              f"{time.perf_counter() - start:.1f}s", flush=True)
    return table.weight.detach()


def train_encoder(encoder: torch.nn.Module, decoder: torch.nn.Module, train: Tensors, epochs: int,
                  lr: float, seed: int, code_targets: torch.Tensor | None = None) -> None:
    """Train `encoder` with `decoder` frozen: on the reconstruction error, or, given
    `code_targets` (one per training image), to regress them. Dropout stays off."""
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * ((len(train) + 99) // 100))
    generator = torch.Generator().manual_seed(seed)
    what = "reconstruction" if code_targets is None else "code regression"
    with frozen(decoder):
        for epoch in range(1, epochs + 1):
            start, total = time.perf_counter(), 0.0
            for idx in batches(len(train), 100, generator):
                optimizer.zero_grad()
                codes = encoder(train.images[idx])
                loss = (F.mse_loss(decoder(codes), train.images[idx]) if code_targets is None
                        else F.mse_loss(codes, code_targets[idx]))
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(idx)
            print(f"  encoder on {what}, epoch {epoch:3d}: train loss {total / len(train):.5f}  "
                  f"{time.perf_counter() - start:.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an autoencoder's model.pt")
    parser.add_argument("--code-steps", type=int, default=500, help="Adam steps per chunk when fitting codes")
    parser.add_argument("--code-lr", type=float, default=0.15, help="Adam's learning rate on the codes being fitted")
    parser.add_argument("--nonnegative", action="store_true", help="keep fitted test codes >= 0, as the encoder's ReLU does")
    parser.add_argument("--free-code-epochs", type=int, default=0,
                        help="step 2: epochs of decoder training with free codes (0: skip)")
    parser.add_argument("--free-code-lr", type=float, default=0.1,
                        help="step 2: SparseAdam's learning rate on the free codes (each is updated once an epoch)")
    parser.add_argument("--encoder-epochs", type=int, default=0,
                        help="step 3: epochs of training the encoder alone on the frozen decoder (0: skip)")
    parser.add_argument("--code-targets", type=int, default=0,
                        help="step 4: fit the best codes of this many training images, then train the encoder "
                             "alone for --encoder-epochs to regress them (0: skip)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the decoder (step 2) and the encoder (3, 4)")
    parser.add_argument("--limit", type=int, default=None, help="the first N test images only")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.code_targets and not args.encoder_epochs:
        parser.error("--code-targets needs --encoder-epochs (the epochs of the regression)")
    torch.manual_seed(args.seed)
    model, _ = load_model(args.checkpoint, expect_kind="autoencoder")
    model.eval()  # dropout off: the test-time model
    test = load_test(args.data_dir, args.limit)
    test_codes = encoded(model.encoder, test).images
    decoder = model.decoder
    print(f"{args.checkpoint}: n={model.encoder.n}, test images {len(test)}")
    print(f"  the autoencoder as trained: test MSE {mse(decoder, test_codes, test.images):.5f}")
    fitted = fit_codes(decoder, test_codes, test.images, args.code_steps, args.code_lr, args.nonnegative)
    print(f"  1. its decoder, the best code per test image: test MSE {mse(decoder, fitted, test.images):.5f}", flush=True)
    distance = (fitted - test_codes).norm(dim=1) / test_codes.norm(dim=1).clamp_min(1e-12)
    print(f"     the best codes lie {distance.median().item():.0%} of a code's length from the encoder's "
          f"(median; mean square of a code {test_codes.pow(2).mean().item():.1f}, "
          f"of the distance {(fitted - test_codes).pow(2).mean().item():.1f})")
    if not (args.free_code_epochs or args.encoder_epochs):
        return
    train, _ = load_train_val(TrainConfig(), args.data_dir)
    if args.free_code_epochs:
        free_decoder = copy.deepcopy(decoder).eval()
        train_free_codes(free_decoder, encoded(model.encoder, train).images, train, args.free_code_epochs,
                         args.lr, args.free_code_lr, args.seed)
        fitted = fit_codes(free_decoder, test_codes, test.images, args.code_steps, args.code_lr, args.nonnegative)
        print(f"  2. a decoder trained with free codes ({args.free_code_epochs} epochs), the best code per test "
              f"image: test MSE {mse(free_decoder, fitted, test.images):.5f}", flush=True)
    if args.encoder_epochs:
        encoder = copy.deepcopy(model.encoder).eval()
        train_encoder(encoder, decoder, train, args.encoder_epochs, args.lr, args.seed)
        print(f"  3. its encoder trained {args.encoder_epochs} more epochs on the frozen decoder: "
              f"test MSE {mse(decoder, encoded(encoder, test).images, test.images):.5f}", flush=True)
    if args.encoder_epochs and args.code_targets:
        subset = Tensors(train.images[:args.code_targets], train.labels[:args.code_targets])
        start = time.perf_counter()
        targets = fit_codes(decoder, encoded(model.encoder, subset).images, subset.images, args.code_steps,
                            args.code_lr, nonnegative=True)
        print(f"  best codes of {len(subset)} training images fitted (train MSE "
              f"{mse(decoder, targets, subset.images):.5f}, {time.perf_counter() - start:.0f}s)", flush=True)
        encoder = copy.deepcopy(model.encoder).eval()
        train_encoder(encoder, decoder, subset, args.encoder_epochs, args.lr, args.seed, code_targets=targets)
        print(f"  4. its encoder trained {args.encoder_epochs} epochs to regress those codes: "
              f"test MSE {mse(decoder, encoded(encoder, test).images, test.images):.5f}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except FmnistEdgeError as exc:
        raise SystemExit(f"decoder_capacity: error: {exc}") from None
