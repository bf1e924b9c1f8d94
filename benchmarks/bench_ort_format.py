"""The exported models in ORT format against the .onnx files they come from: start-up and latency.

Converts the folder's models twice into temporary folders (`fmnist-edge to-ort`, checked against
their sources on the test set): `--platform portable` (what `exported/` ships) and `--platform
x86`. Then, on one thread, times the classifier's fp32 and int8 files in all three forms:
session start-up (the runtime's `OnnxModel`, median of `--loads` loads taken in turns) and
latency per batch size (`fmnist-edge bench`'s side-by-side timing, the files taking turns).

    .venv/bin/python benchmarks/bench_ort_format.py --models exported --out benchmarks/ort_format
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from fmnist_edge import manifest
from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.export.ort_format import convert_folder, ort_name
from fmnist_edge.runtime import bench
from fmnist_edge.runtime.session import OnnxModel
from fmnist_edge.spec import CLASSIFIER, MANIFEST_NAME

from benchlib import command_line, publish, run_main


def _converted(source: Path, into: Path, platform: str) -> Path:
    """A copy of the folder's ONNX models and manifest, with their ORT twins for `platform`."""
    into.mkdir()
    entries = {n: e for n, e in manifest.read(source)["files"].items() if n.endswith(".onnx")}
    for name in entries:
        shutil.copy2(source / name, into / name)
    manifest.write(into, {n: {k: v for k, v in e.items() if k not in ("size_bytes", "sha256")}
                          for n, e in entries.items()}, producer="fmnist-edge")
    convert_folder(into, platform=platform, log=lambda msg: None)
    return into


def _startup_ms(paths: dict[str, Path], loads: int) -> dict[str, float]:
    """Median time to construct OnnxModel (manifest check, session, spec check), loads in turns."""
    times: dict[str, list] = {label: [] for label in paths}
    for _ in range(loads):
        for label, path in paths.items():
            started = time.perf_counter()
            OnnxModel(path, "classifier", threads=1)
            times[label].append((time.perf_counter() - started) * 1e3)
    return {label: float(np.median(t)) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("exported"), help="an export folder")
    parser.add_argument("--batch-sizes", default="1,64,1024")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per file and batch size, over all rounds")
    parser.add_argument("--loads", type=int, default=21, help="session loads per file for the start-up median")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if manifest.read(args.models) is None:
        raise FmnistEdgeError(f"{args.models}: no {MANIFEST_NAME}; name an export folder")
    names = [n for n in (CLASSIFIER.filename, CLASSIFIER.int8_filename) if (args.models / n).is_file()]
    if CLASSIFIER.filename not in names:
        raise FmnistEdgeError(f"{args.models}: no {CLASSIFIER.filename}")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folders = {platform: _converted(args.models, Path(tmp) / platform, platform) for platform in ("portable", "x86")}
        paths = {}
        for name in names:
            paths[name] = folders["portable"] / name
            for platform, folder in folders.items():
                paths[f"{ort_name(name)} ({platform})"] = folder / ort_name(name)
        startup = _startup_ms(paths, args.loads)
        contenders = []
        for label, path in paths.items():
            load, shape = bench.onnx_loader(path)
            contenders.append((label, load, shape, {"path": path.name, "size_bytes": path.stat().st_size}))
        rows = bench.bench_side_by_side(contenders, batches, [1], args.seconds, rounds=args.rounds)
    bench.add_ratios(rows, reference=CLASSIFIER.filename)
    command = command_line()
    result = {"models": str(args.models), "startup_ms_median": startup, "loads": args.loads, "rows": rows,
              "command": command}
    lines = [f"# ORT format against ONNX ({args.models}, one thread)", "", f"Produced by `{command}`.", "",
             "Start-up: median time to load the file with the runtime's `OnnxModel` (manifest check, session, "
             f"spec check), {args.loads} loads each, in turns. Latency: p50 of `fmnist-edge bench`'s timing, the "
             f"files taking turns in {args.rounds} rounds. Speed-up: {CLASSIFIER.filename}'s p50 over the file's.", "",
             "| file | bytes | start-up ms | " + " | ".join(f"batch {b}: p50 us (speed-up)" for b in batches) + " |",
             "|---|---|---|" + "---|" * len(batches)]
    for label in paths:
        cells = []
        for b in batches:
            row = next(r for r in rows if r["model"] == label and r["batch"] == b)
            cells.append(f"{row['p50_us']:.1f} ({row.get('speedup_vs_' + CLASSIFIER.filename, 1.0):.2f}x)")
        size = next(r for r in rows if r["model"] == label)["size_bytes"]
        lines.append(f"| {label} | {size:,} | {startup[label]:.2f} | " + " | ".join(cells) + " |")
    publish(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
