"""Training speed: one autoencoder epoch (60k images, batch 100, n=64, p=0.2, Adam lr 1e-3), in images/s.

Side by side in one run: the plain approach (torchvision's FashionMNIST + ToTensor + DataLoader,
nn.Dropout, fp32, default settings) and ours (in-memory tensors, FastDropout), plus bf16
autocast, channels_last, one thread, and an ablation that swaps one ingredient at a time.
Every variant runs the same training step, starts from the same weights (one seed) and reads
the same IDX files; only the data path, the dropout and the numerics differ.

    .venv/bin/python benchmarks/bench_train_epoch.py --out benchmarks/train_epoch
    .venv/bin/python benchmarks/bench_train_epoch.py --steps 30 --out /tmp/bench   # quick check
"""

from __future__ import annotations

import argparse
import copy
import gzip
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from fmnist_edge.idx import SPLITS, _find_file, find_data_dir, load_split
from fmnist_edge.train import evaluate as evaluate_mod
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.data import batches, load_test, to_tensors
from fmnist_edge.train.dropout import FastDropout
from fmnist_edge.train.recipe import loss_fn, make_optimizer
from fmnist_edge.train.models import ConvAutoencoder

from benchlib import publish

BATCH, N, P, LR, EPOCH_IMAGES = 100, 64, 0.2, 1e-3, 60_000


@dataclass(frozen=True)
class Variant:
    name: str
    loader: str = "memory"  # or "torchvision"
    fast_dropout: bool = True
    bf16: bool = False
    channels_last: bool = False
    threads: int | None = None  # None: torch's default
    seed: int = 0
    note: str = ""


VARIANTS = [
    Variant("plain", "torchvision", fast_dropout=False, note="torchvision FashionMNIST + ToTensor + DataLoader, nn.Dropout"),
    Variant("plain+fastdropout", "torchvision", note="ablation: only the dropout changed"),
    Variant("memory+nn.dropout", fast_dropout=False, note="ablation: only the data path changed"),
    Variant("ours", note="in-memory tensors + FastDropout, fp32 (what `fmnist-edge train` does)"),
    Variant("ours+bf16", bf16=True, note="bf16 autocast (`--bf16`)"),
    Variant("ours+channels_last", channels_last=True),
    Variant("ours+bf16+channels_last", bf16=True, channels_last=True),
    Variant("ours+1thread", threads=1, note="torch.set_num_threads(1)"),
]
NOISE = [Variant("plain@seed1", "torchvision", fast_dropout=False, seed=1, note="seed-to-seed noise"),
         Variant("ours@seed1", seed=1, note="seed-to-seed noise")]


def torchvision_root(data_dir: Path, tmp: Path) -> Path:
    """The same IDX files laid out as torchvision expects (FashionMNIST/raw/, uncompressed,
    which is what its download step leaves behind)."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stems in SPLITS.values():
        for stem in stems[:2]:
            src = _find_file(data_dir, stem)
            if src.suffix == ".gz":
                with gzip.open(src, "rb") as f, open(raw / stem, "wb") as out:
                    shutil.copyfileobj(f, out)
            else:
                os.symlink(src.resolve(), raw / stem)
    return tmp


def torchvision_batches(root: Path, seed: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    dataset = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return (x for x, _ in loader)


def memory_batches(images: torch.Tensor, seed: int):
    return (images[idx] for idx in batches(len(images), BATCH, torch.Generator().manual_seed(seed)))


def build(variant: Variant) -> nn.Module:
    torch.manual_seed(variant.seed)  # the same initial weights for every variant of a seed
    model = ConvAutoencoder(N, P)
    if not variant.fast_dropout:
        for module in model.modules():
            if isinstance(module, nn.Sequential):
                for i, layer in enumerate(module):
                    if isinstance(layer, FastDropout):
                        module[i] = nn.Dropout(layer.p)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def train_steps(model: nn.Module, data, steps: int, variant: Variant) -> tuple[float, float, int]:
    """The training loop's step (fmnist_edge.train.loop): forward, MSE, .item(), backward, Adam.
    Returns (seconds, mean train loss, images)."""
    cfg = TrainConfig(optimizer="adam", lr=LR, batch_size=BATCH)
    optimizer, objective = make_optimizer(list(model.parameters()), cfg), loss_fn("autoencoder", cfg)
    model.train()
    total, seen = 0.0, 0
    started = time.perf_counter()
    for _, x in zip(range(steps), data):
        if variant.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.bf16):
            out = model(x)
        loss = objective(out.float(), x, None)
        value = loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += value * len(x)
        seen += len(x)
    return time.perf_counter() - started, total / max(seen, 1), seen


def run_variant(variant: Variant, images: torch.Tensor, test, root: Path | None, steps: int, warmup: int) -> dict:
    default_threads = torch.get_num_threads()
    if variant.threads:
        torch.set_num_threads(variant.threads)
    try:
        make_data = ((lambda seed: torchvision_batches(root, seed)) if variant.loader == "torchvision"
                     else (lambda seed: memory_batches(images, seed)))
        if warmup:  # oneDNN builds its kernels on first use; a throwaway copy pays for that
            train_steps(copy.deepcopy(build(variant)), make_data(1000 + variant.seed), warmup, variant)
        model = build(variant)
        seconds, train_loss, seen = train_steps(model, make_data(variant.seed), steps, variant)
        model.eval()
        eval_mse = evaluate_mod.evaluate(model, test, "autoencoder")["mse"]
    finally:
        torch.set_num_threads(default_threads)
    per_epoch = seconds / seen * EPOCH_IMAGES
    return {**asdict(variant), "steps": seen // BATCH, "measured_s": round(seconds, 3),
            "s_per_epoch": round(per_epoch, 2), "images_per_s": round(seen / seconds, 1),
            "train_loss": round(train_loss, 6), "test_mse_after": round(eval_mse, 6)}


def eval_speed(images: torch.Tensor, test) -> list[dict]:
    """fmnist_edge.train.evaluate at its EVAL_BATCH and at batch 1000, for the choice of EVAL_BATCH."""
    model = build(Variant("ours")).eval()
    out = []
    default = evaluate_mod.EVAL_BATCH
    try:
        for batch in (default, 1000):
            evaluate_mod.EVAL_BATCH = batch
            evaluate_mod.evaluate(model, test, "autoencoder")  # warm-up
            started = time.perf_counter()
            evaluate_mod.evaluate(model, test, "autoencoder")
            seconds = time.perf_counter() - started
            out.append({"eval_batch": batch, "images": len(test), "seconds": round(seconds, 3),
                        "images_per_s": round(len(test) / seconds, 1)})
    finally:
        evaluate_mod.EVAL_BATCH = default
    return out


def ratio(results: dict, slow: str, fast: str) -> str:
    if slow in results and fast in results:
        r = results[slow]["s_per_epoch"] / results[fast]["s_per_epoch"]
        saved = results[slow]["s_per_epoch"] - results[fast]["s_per_epoch"]
        return f"{r:.2f}x ({'saves' if saved >= 0 else 'costs'} {abs(saved):.1f} s/epoch)"
    return "not run"


def markdown(report: dict) -> str:
    res = {r["name"]: r for r in report["variants"]}
    lines = [
        "# One autoencoder training epoch: plain vs ours", "",
        "Reproduce:", "", "```", report["command"], "```", "",
        f"{report['mode']}; torch {report['torch']}, {report['threads']} threads, {report['cpu']}; "
        f"load average {report['load_before']} before, {report['load_after']} after "
        "(other jobs on the machine slow every variant alike only roughly).", "",
        "| variant | s/epoch | images/s | speed-up vs plain | train loss | test MSE after | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    plain = res.get("plain")
    for r in report["variants"]:
        speed = f"{plain['s_per_epoch'] / r['s_per_epoch']:.2f}x" if plain else "-"
        lines.append(f"| {r['name']} | {r['s_per_epoch']:.1f} | {r['images_per_s']:.0f} | {speed} | "
                     f"{r['train_loss']:.5f} | {r['test_mse_after']:.5f} | {r['note']} |")
    lines += ["", "## What helped, and by how much", "",
              f"- in-memory tensors instead of DataLoader + ToTensor: {ratio(res, 'plain', 'memory+nn.dropout')} "
              f"with nn.Dropout, {ratio(res, 'plain+fastdropout', 'ours')} with FastDropout",
              f"- FastDropout instead of nn.Dropout: {ratio(res, 'plain', 'plain+fastdropout')} with the DataLoader, "
              f"{ratio(res, 'memory+nn.dropout', 'ours')} in memory",
              f"- bf16 autocast on top of ours: {ratio(res, 'ours', 'ours+bf16')}",
              f"- channels_last on top of ours: {ratio(res, 'ours', 'ours+channels_last')}",
              f"- bf16 + channels_last on top of ours: {ratio(res, 'ours', 'ours+bf16+channels_last')}",
              f"- two threads instead of one: {ratio(res, 'ours+1thread', 'ours')}", ""]
    if report["eval"]:
        chosen, large = report["eval"]
        lines.append(f"- evaluation of {chosen['images']} test images: {chosen['images_per_s']:.0f} images/s at batch "
                     f"{chosen['eval_batch']} (EVAL_BATCH), {large['images_per_s']:.0f} at batch {large['eval_batch']} "
                     f"(batch {large['eval_batch']} takes {large['seconds'] / chosen['seconds']:.2f}x the time)")
    lines += ["", "## Same loss curve?", "",
              "All variants start from the same weights; batch order and dropout masks differ by construction. "
              "Compare the plain-vs-ours gap with the seed-to-seed gap of one method."]
    if plain and "ours" in res:
        gap = abs(res["ours"]["test_mse_after"] - plain["test_mse_after"])
        lines.append(f"- plain vs ours, test MSE after training: |{plain['test_mse_after']:.5f} - "
                     f"{res['ours']['test_mse_after']:.5f}| = {gap:.5f}")
        for a, b in (("plain", "plain@seed1"), ("ours", "ours@seed1")):
            if b in res:
                lines.append(f"- {a}, seed 0 vs seed 1: {abs(res[a]['test_mse_after'] - res[b]['test_mse_after']):.5f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="time only N steps and extrapolate to an epoch")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and results.md here")
    parser.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST folder (default: the usual look-up)")
    parser.add_argument("--only", default=None, help="comma-separated variant names to run (plain is always run)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps on a throwaway copy per variant")
    parser.add_argument("--no-noise", action="store_true", help="skip the seed-1 reruns that measure noise")
    args = parser.parse_args(argv)
    steps = args.steps or EPOCH_IMAGES // BATCH

    data_dir = find_data_dir(args.data_dir)
    started = time.perf_counter()
    train = load_split("train", data_dir)
    images = to_tensors(train.images, train.labels).images  # (60000, 1, 28, 28), decoded once
    test = load_test(data_dir)
    setup_s = time.perf_counter() - started
    variants = VARIANTS + ([] if args.no_noise else NOISE)
    if args.only:
        wanted = {"plain", *args.only.split(",")}
        variants = [v for v in variants if v.name in wanted]
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(data_dir, Path(tmp)) if any(v.loader == "torchvision" for v in variants) else None
        for variant in variants:
            r = run_variant(variant, images, test, root, steps, args.warmup)
            print(f"{r['name']:26s} {r['s_per_epoch']:7.1f} s/epoch {r['images_per_s']:8.0f} images/s  "
                  f"train loss {r['train_loss']:.5f}  test MSE {r['test_mse_after']:.5f}", file=sys.stderr)
            results.append(r)
    report = {
        "command": ".venv/bin/python benchmarks/bench_train_epoch.py " + shlex.join(argv if argv is not None
                                                                                  else sys.argv[1:]),
        "mode": (f"{steps} timed steps per variant, extrapolated to 600" if args.steps
                 else "one full epoch (600 steps) per variant"),
        "setup": {"batch": BATCH, "n": N, "p": P, "optimizer": "adam", "lr": LR, "epoch_images": EPOCH_IMAGES,
                  "data_dir": str(data_dir), "load_s": round(setup_s, 2)},
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "variants": results, "eval": eval_speed(images, test),
    }
    publish(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
