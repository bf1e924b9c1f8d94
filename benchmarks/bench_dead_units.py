"""Dead latent units: how many of the n bottleneck ReLUs no image activates, with and without revival.

With the report's settings (Adam, lr 1e-3) about half of the autoencoder's latent units die in
the first steps and never come back, so the code has n/2 useful numbers and the classifier
built on the encoder inherits the dead units. This trains the base autoencoder (n=64, p=0.2,
Adam 1e-3, batch 100, cosine schedule) through the package's Trainer with revival off and on,
and records per epoch the dead units (on the 6,000 validation images) and the validation MSE.
It also counts the dead units of any checkpoints named with --checkpoints.

    .venv/bin/python benchmarks/bench_dead_units.py --epochs 3 --out benchmarks/dead_units
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fmnist_edge.train import checkpoint
from fmnist_edge.train.config import ModelConfig, TrainConfig
from fmnist_edge.train.data import load_test, load_train_val
from fmnist_edge.train.loop import Trainer
from fmnist_edge.train.recipe import dead_units

from benchlib import command_line, publish, run_main


def train(revive_every: int, epochs: int, seed: int, val_images: torch.Tensor) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(ModelConfig("autoencoder", n=64, dropout=0.2),
                          TrainConfig(max_epochs=epochs, patience=epochs, seed=seed, recipe="paper",
                                      schedule="cosine", revive_every=revive_every),
                          folder, quiet=True)

        def record(epoch: dict) -> None:
            rows.append({"epoch": epoch["epoch"], "val_mse": epoch["val_loss"],
                         "dead_units": dead_units(trainer.model, val_images.to(trainer.device)),
                         "revived_units": epoch.get("revived_units", 0)})

        trainer.on_epoch = record
        trainer.run()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    _, val = load_train_val(TrainConfig())
    result = {"n": 64, "p": 0.2, "epochs": args.epochs, "seed": args.seed,
              "without_revival": train(0, args.epochs, args.seed, val.images),
              "revive_every_50_steps": train(50, args.epochs, args.seed, val.images),
              "checkpoints": {}}
    test_images = load_test().images
    for path in args.checkpoints:
        model, payload = checkpoint.load_model(path)
        result["checkpoints"][str(path)] = {"n": model.encoder.n, "dead_units": dead_units(model, test_images),
                                            "recipe": payload["train_config"].get("recipe"),
                                            "revive_every": payload["train_config"].get("revive_every", 0)}
    command = command_line()
    result["command"] = command
    lines = [f"# Dead latent units (autoencoder n=64, p=0.2, seed {args.seed})", "",
             f"Produced by `{command}`. A unit is dead when no image activates its ReLU.", "",
             "| epoch | dead units, no revival | validation MSE | dead units, revival every 50 steps "
             "| validation MSE | units revived in the epoch |", "|---|---|---|---|---|---|"]
    for off, on in zip(result["without_revival"], result["revive_every_50_steps"]):
        lines.append(f"| {off['epoch']} | {off['dead_units']} / 64 | {off['val_mse']:.5f} | {on['dead_units']} / 64 "
                     f"| {on['val_mse']:.5f} | {on['revived_units']} |")
    if result["checkpoints"]:
        lines += ["", "Finished checkpoints (dead units on the 10,000 test images):", "",
                  "| checkpoint | recipe | revive every | dead units |", "|---|---|---|---|"]
        for path, c in result["checkpoints"].items():
            lines.append(f"| `{path}` | {c['recipe']} | {c['revive_every']} | {c['dead_units']} / {c['n']} |")
    text = "\n".join(lines) + "\n"
    publish(args.out, result, text)


if __name__ == "__main__":
    run_main(main)
