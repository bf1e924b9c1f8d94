"""Run `fmnist-edge bench` and keep its results under benchmarks/runtime/ (the README's figures).

With the exported models in exported/ (and a classifier checkpoint for the PyTorch baseline)
this is the same as `fmnist-edge bench --json ... --markdown ...`. Until the export lands,
`--stand-in` benchmarks the report's classifier architecture with random weights instead: a
checkpoint and a plain ONNX export (plus ORT dynamic int8) built in a temporary folder. Latency
does not depend on the weights, so the figures are indicative of the real models'.
Usage: python benchmarks/bench_runtime.py [--stand-in] [--seconds 0.3] [-- extra bench options]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "runtime"


def build_stand_in(folder: Path) -> Path:
    """Random-weight classifier (n=64, p=0.1): checkpoint, classifier.onnx, classifier.int8.onnx."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fmnist_edge.train.checkpoint import save
    from fmnist_edge.train.config import ModelConfig, TrainConfig
    from fmnist_edge.train.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(kind="classifier", n=64, dropout=0.1, case=3)
    model = build_model(cfg).eval()
    ckpt = folder / "model.pt"
    save(ckpt, cfg, TrainConfig(), model)
    onnx_path = folder / "classifier.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(onnx_path), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    quantize_dynamic(onnx_path, folder / "classifier.int8.onnx", weight_type=QuantType.QInt8)
    return ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stand-in", action="store_true", help="Random-weight stand-in for the exported models.")
    parser.add_argument("--seconds", default="0.3")
    parser.add_argument("--name", default=None, help="Result file stem (default: bench, or bench-stand-in).")
    args, extra = parser.parse_known_args()
    from fmnist_edge.cli import main as cli

    name = args.name or ("bench-stand-in" if args.stand_in else "bench")
    common = ["bench", "--seconds", args.seconds, "--json", str(OUT / f"{name}.json"),
              "--markdown", str(OUT / f"{name}.md"), *[e for e in extra if e != "--"]]
    if not args.stand_in:
        cli(common)
        return
    with tempfile.TemporaryDirectory(prefix="fmnist-edge-bench-") as tmp:
        ckpt = build_stand_in(Path(tmp))
        print(f"stand-in models in {tmp}", file=sys.stderr)
        cli(common + ["--models", tmp, "--checkpoint", str(ckpt)])


if __name__ == "__main__":
    main()
