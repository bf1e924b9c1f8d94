"""Dropout before max-pooling: how far training-mode activations drift from evaluation mode.

Inverted dropout scales kept values by 1/(1-p) so that a mean is preserved through linear
layers; a max-pool after it is not linear, so training sees larger pooled activations than
evaluation. This measures it on an exported autoencoder (PyTorch rebuilt from the ONNX weights):
the pooled activations of both encoder blocks, train mode over eval mode, and the test MSE of
the eval-mode model against the average of several train-mode passes.

    .venv/bin/python benchmarks/bench_dropout_pooling.py --models exported --out benchmarks/dropout_pooling
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fmnist_edge.export.baseline import model_from_onnx
from fmnist_edge.train.data import load_test

from benchlib import command_line, publish, run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("exported"))
    parser.add_argument("--images", type=int, default=2000, help="first N test images")
    parser.add_argument("--passes", type=int, default=8, help="training-mode passes to average")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = model_from_onnx(args.models / "encoder.onnx", args.models / "decoder.onnx")
    x = load_test(limit=args.images).images
    net = model.encoder.net
    result = {"p": model.encoder.net[2].p, "n": model.encoder.n, "images": len(x), "passes": args.passes}
    with torch.no_grad():
        for name, upto in (("block1", 4), ("block2", 8)):
            model.eval()
            evaluated = net[:upto](x).mean().item()
            model.train()
            trained = torch.stack([net[:upto](x).mean() for _ in range(args.passes)]).mean().item()
            result[f"{name}_pooled_mean_train_over_eval"] = trained / evaluated
        model.eval()
        result["eval_mode_mse"] = ((model(x) - x) ** 2).mean().item()
        model.train()
        averaged = torch.stack([model(x) for _ in range(args.passes)]).mean(0)
        result["train_mode_average_mse"] = ((averaged - x) ** 2).mean().item()
    command = command_line()
    result["command"] = command
    text = (f"# Dropout before max-pooling ({args.models}, n={result['n']}, p={result['p']})\n\n"
            f"Produced by `{command}`.\n\n| measure | value |\n|---|---|\n"
            f"| pooled activations, block 1, train / eval | {result['block1_pooled_mean_train_over_eval']:.3f} |\n"
            f"| pooled activations, block 2, train / eval | {result['block2_pooled_mean_train_over_eval']:.3f} |\n"
            f"| test MSE, eval-mode model | {result['eval_mode_mse']:.5f} |\n"
            f"| test MSE, average of {args.passes} train-mode passes | {result['train_mode_average_mse']:.5f} |\n")
    publish(args.out, result, text)


if __name__ == "__main__":
    run_main(main)
