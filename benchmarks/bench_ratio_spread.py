"""How much the speed-up over PyTorch eager moves from one run to the next on a shared machine.

The runtime's targets are ratios from one run: ONNX Runtime against PyTorch eager on the same
weights, at batch 1 on one thread and at batch 1,024. Both are timed side by side (as
`fmnist-edge bench` does: loaded together, taking turns in rounds), and the whole comparison is
repeated `--runs` times, a pause apart, so that one lucky or unlucky stretch of the host's time
does not decide a target. The ONNX side is the API's path: one image through the buffers bound
per thread, a big batch in chunks of 64 (what `FashionClassifier` does).

    .venv/bin/python benchmarks/bench_ratio_spread.py --model exported/classifier.onnx --out benchmarks/ratio_spread
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fmnist_edge.fileio import check_writable
from fmnist_edge.runtime import bench

from benchlib import checked_classifier, command_line, publish, run_main

# (batch, threads, what the issue asks of it)
TARGETS = [(1, 1, 7.0), (1024, 1, 10.0), (1024, 2, 10.0)]
CHUNK = 64


def one_run(model: Path, seconds: float, rounds: int) -> dict:
    from fmnist_edge.export.baseline import torch_runner

    load, shape = bench.onnx_loader(model, chunk=CHUNK)
    torch_load, torch_shape, _ = torch_runner(model)
    contenders = [("onnxruntime", load, shape, None), ("pytorch-eager", torch_load, torch_shape, None)]
    rows = bench.bench_side_by_side(contenders, [1, 1024], [1, 2], seconds, rounds=rounds)
    by_case = {(r["model"], r["batch"], r["threads"]): r for r in rows}
    p50 = {case: r["p50_us"] for case, r in by_case.items()}
    run = {"time": time.strftime("%H:%M:%S"), "load_average": bench.environment()["load_average"]}
    for batch, threads, _ in TARGETS:
        ort_us, torch_us = p50["onnxruntime", batch, threads], p50["pytorch-eager", batch, threads]
        run[f"b{batch}_t{threads}"] = {"onnxruntime_p50_us": ort_us, "pytorch_p50_us": torch_us,
                                       "ratio": torch_us / ort_us}
    run["b1024_t2_images_per_s"] = by_case["onnxruntime", 1024, 2]["images_per_s"]  # from the mean, as bench's
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("exported/classifier.onnx"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--pause", type=float, default=20.0, help="seconds between runs")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per case and run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.runs < 1 or not 0 <= args.pause <= 3600:
        raise SystemExit("bench_ratio_spread.py: error: --runs must be 1 or more and --pause from 0 to 3600 s")
    model = checked_classifier(args.model)
    if args.out:  # refused now, not after minutes of timing
        check_writable(args.out / "results.json")
    try:
        import torch  # noqa: F401  (the baseline)
    except ImportError:
        raise SystemExit("bench_ratio_spread.py: error: PyTorch eager is the baseline: install the train extra") from None
    runs = []
    for i in range(args.runs):
        if i:
            time.sleep(args.pause)
        runs.append(one_run(model, args.seconds, args.rounds))
        print(f"run {i + 1}/{args.runs}: " + ", ".join(
            f"{k} {v['ratio']:.2f}x" for k, v in runs[-1].items() if isinstance(v, dict)), flush=True)

    keys = [f"b{b}_t{t}" for b, t, _ in TARGETS]
    lines = [f"# Speed-up over PyTorch eager, run after run ({args.model})", "",
             f"Produced by `{command_line()}`: {args.runs} runs, {args.pause:g} s apart; in each, ONNX Runtime "
             f"(the API's path: one image through bound buffers, a batch in chunks of {CHUNK}) and PyTorch "
             f"eager on the same weights are loaded together and timed in {args.rounds} rounds of "
             f"{args.seconds / args.rounds:.2g} s per case, taking turns. Ratios are of p50 latencies.", "",
             "| run | time | load | b1, 1 thread: ORT us / PyTorch us | ratio | b1024, 1 thread | b1024, 2 threads "
             "| images/s, b1024, 2 threads |", "|---|---|---|---|---|---|---|---|"]
    for i, run in enumerate(runs, 1):
        b1 = run["b1_t1"]
        load = "-" if run["load_average"] is None else f"{run['load_average']:.2f}"
        lines.append(f"| {i} | {run['time']} | {load} | {b1['onnxruntime_p50_us']:.1f} / "
                     f"{b1['pytorch_p50_us']:.1f} | {b1['ratio']:.2f}x | {run['b1024_t1']['ratio']:.2f}x | "
                     f"{run['b1024_t2']['ratio']:.2f}x | {run['b1024_t2_images_per_s']:,.0f} |")
    lines += ["", "| ratio | target | min | median | max | runs meeting it |", "|---|---|---|---|---|---|"]
    summary = {}
    for key, (batch, threads, target) in zip(keys, TARGETS):
        ratios = np.array([run[key]["ratio"] for run in runs])
        met = int((ratios >= target).sum())
        summary[key] = {"target": target, "min": float(ratios.min()), "median": float(np.median(ratios)),
                        "max": float(ratios.max()), "runs_meeting": met}
        lines.append(f"| batch {batch}, {threads} thread{'s' if threads > 1 else ''} | {target:g}x | "
                     f"{ratios.min():.2f}x | {np.median(ratios):.2f}x | {ratios.max():.2f}x | {met} of {len(runs)} |")
    throughput = np.array([run["b1024_t2_images_per_s"] for run in runs])
    lines.append(f"| images/s at batch 1024, 2 threads | 100,000 | {throughput.min():,.0f} | "
                 f"{np.median(throughput):,.0f} | {throughput.max():,.0f} | {int((throughput >= 1e5).sum())} "
                 f"of {len(runs)} |")
    publish(args.out, {"command": command_line(), "runs": runs, "summary": summary}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
