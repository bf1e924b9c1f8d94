"""Which int8 variant to ship: every quantization method on one classifier, measured in one run.

For each method (fmnist_edge.export.quantize.METHODS, per-channel and per-tensor where it
applies, and for the static methods with 8-bit weights beside their default 7): file size and
ratio to fp32, test accuracy and top-1 agreement with fp32 on the 10k test images, and p50
latency at batch 1 and 64 on 1 and 2 threads as a ratio to fp32 measured alongside (runs
interleaved, so machine noise hits every variant alike).

    .venv/bin/python benchmarks/bench_quantization.py --model exported/classifier.onnx --out benchmarks/quantization
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fmnist_edge.export.pipeline import load_calibration
from fmnist_edge.export.quantize import METHODS, QuantizeConfig, quantize_model
from fmnist_edge.idx import load_split
from fmnist_edge.runtime.session import OnnxModel

from benchlib import checked_classifier, command_line, publish, run_main

BATCHES, THREADS = (1, 64), (1, 2)


def p50_us(model: OnnxModel, x: np.ndarray, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        model.session.run([model.output_name], {model.input_name: x})
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("exported/classifier.onnx"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=400, help="timed calls per case and round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is kept")
    args = parser.parse_args()
    checked_classifier(args.model)

    test = load_split("test")
    x_test = (test.images.astype(np.float32) / 255.0)[:, None]
    calibration = load_calibration(None, 2000)  # training images, never test images
    variants = [("fp32", None)]
    for method in METHODS:
        for per_channel in ((True, False) if QuantizeConfig(method).needs_calibration else (True,)):
            variants.append((f"{method}{'' if per_channel else '-tensor'}", QuantizeConfig(method, per_channel)))
        if QuantizeConfig(method).reduce_range:  # 8-bit weights: saturate on x86 without VNNI (quantize.py)
            variants.append((f"{method}-full-range", QuantizeConfig(method, full_range=True)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": args.model}
        for name, cfg in variants[1:]:
            paths[name] = Path(tmp) / f"{name}.onnx"
            quantize_model(args.model, paths[name], cfg, calibration)
        fp32_pred = None
        models = {}
        for name, cfg in variants:
            full = OnnxModel(paths[name], "classifier")
            pred = full.run(x_test, batch_size=1000).argmax(1)
            fp32_pred = pred if fp32_pred is None else fp32_pred
            rows.append({"variant": name, "size_bytes": paths[name].stat().st_size,
                         "weight_bits": 32 if cfg is None else cfg.weight_bits,
                         "accuracy": float((pred == test.labels).mean()),
                         "agreement_with_fp32": float((pred == fp32_pred).mean())})
            models[name] = {t: OnnxModel(paths[name], "classifier", threads=t) for t in THREADS}
        rng = np.random.default_rng(0)
        inputs = {b: x_test[rng.choice(len(x_test), b, replace=False)] for b in BATCHES}
        timings = {(r["variant"], t, b): [] for r in rows for t in THREADS for b in BATCHES}
        for _ in range(args.repeats):  # interleaved: every variant sees the same machine state
            for t in THREADS:
                for b in BATCHES:
                    for r in rows:
                        m = models[r["variant"]][t]
                        p50_us(m, inputs[b], 20)  # warm-up
                        timings[(r["variant"], t, b)].append(p50_us(m, inputs[b], args.rounds))
    fp32 = rows[0]
    for r in rows:
        r["size_ratio"] = fp32["size_bytes"] / r["size_bytes"]
        r["accuracy_drop_pp"] = 100 * (fp32["accuracy"] - r["accuracy"])
        for t in THREADS:
            for b in BATCHES:
                us = float(np.median(timings[(r["variant"], t, b)]))
                r[f"p50_us_t{t}_b{b}"] = us
                r[f"speed_vs_fp32_t{t}_b{b}"] = float(np.median(timings[("fp32", t, b)])) / us
    command = command_line()
    lines = [f"# int8 variants of {args.model}", "", f"Produced by `{command}` (one run; latency ratios are",
             "fp32 p50 / variant p50, measured interleaved; > 1 means faster than fp32).", "",
             "| variant | weight bits | size (bytes) | smaller | accuracy | drop (pp) | agrees with fp32 | "
             + " | ".join(f"speed b{b} t{t}" for t in THREADS for b in BATCHES) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * (len(THREADS) * len(BATCHES))]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['weight_bits']} | {r['size_bytes']:,} | {r['size_ratio']:.2f}x | {r['accuracy']:.4f} | "
                     f"{r['accuracy_drop_pp']:+.2f} | {r['agreement_with_fp32']:.2%} | "
                     + " | ".join(f"{r[f'speed_vs_fp32_t{t}_b{b}']:.2f}x ({r[f'p50_us_t{t}_b{b}']:.0f} us)"
                                  for t in THREADS for b in BATCHES) + " |")
    text = "\n".join(lines) + "\n"
    publish(args.out, {"command": command, "model": str(args.model), "rows": rows}, text)


if __name__ == "__main__":
    run_main(main)
