"""Start-to-answer time of `fmnist-edge classify one.png` against a bare onnxruntime + Pillow script.

Both processes classify the same picture with the same model; they run alternately, several
times, and the medians are compared (issue 5's target: the CLI takes at most 1.3x the bare script).
Usage: python benchmarks/bench_startup.py [--image exported/samples/shirt.png] [--model DIR] [--reps 11]
Writes benchmarks/runtime/startup.json and startup.md.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmnist_edge.fileio import write_json, write_text
from fmnist_edge.machine import environment_line
from fmnist_edge.runtime.bench import environment

from benchlib import fmnist_edge_cli, run_main

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3

# The least a script can do: import onnxruntime and Pillow, load the model, classify, print.
BARE = '''
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image
names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.asarray(Image.open(sys.argv[2]).convert("L").resize((28, 28)), np.float32)[None, None] / 255.0
logits = session.run(None, {"image": x})[0][0]
print(sys.argv[2], names[int(logits.argmax())])
'''


FRAMEWORK = "import typer.main"  # what the CLI framework alone costs to import


def default_model() -> Path:
    for folder in (os.environ.get("FMNIST_EDGE_MODELS"), ROOT / "exported", ROOT / "tests" / "fixtures"):
        if folder and (Path(folder) / "classifier.onnx").is_file():
            return Path(folder)
    raise SystemExit("no classifier.onnx found; pass --model")


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "exported" / "samples" / "shirt.png")
    parser.add_argument("--model", type=Path, default=None, help="Model folder (default: exported/, else the fixture).")
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runtime")
    args = parser.parse_args()
    # As an installed package is: byte-compiled. An editable install is not, and where
    # PYTHONDONTWRITEBYTECODE is set every CLI start would compile the runtime's modules again.
    compileall.compile_dir(str(ROOT / "fmnist_edge"), quiet=1)
    model = args.model or default_model()
    cli = fmnist_edge_cli()
    cli += ["classify", str(args.image), "--model", str(model)]
    with tempfile.TemporaryDirectory() as tmp:
        bare_script = Path(tmp) / "bare_classify.py"
        bare_script.write_text(BARE)
        bare = [sys.executable, str(bare_script), str(model / "classifier.onnx"), str(args.image)]
        empty, framework = [sys.executable, "-c", "pass"], [sys.executable, "-c", FRAMEWORK]
        commands = {"bare": bare, "cli": cli, "python": empty, "typer": framework}
        for cmd in commands.values():
            run(cmd)  # warm the page cache
        times = {name: [] for name in commands}
        for _ in range(args.reps):
            for name, cmd in commands.items():
                times[name].append(run(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["cli"] / med["bare"]
    result = {"image": str(args.image), "model": str(model), "reps": args.reps, "median_s": med,
              "ratio": ratio, "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO,
              "all_s": times, "cli_command": " ".join(cli), "load_avg": os.getloadavg()}
    command = "python benchmarks/bench_startup.py " + " ".join(sys.argv[1:])
    result["command"] = command
    result["environment"] = environment()
    write_json(args.out / "startup.json", result)
    write_text(args.out / "startup.md", f"Produced by `{command}` (medians of {args.reps} alternating runs).\n\n"
               "| process | median s |\n|---|---|\n"
        f"| bare onnxruntime + Pillow script | {med['bare']:.3f} |\n"
        f"| `fmnist-edge classify {args.image.name}` | {med['cli']:.3f} |\n"
        f"| ratio (target <= {TARGET_RATIO}) | {ratio:.2f} |\n"
        f"| python -c pass | {med['python']:.3f} |\n"
        f"| python -c '{FRAMEWORK}' | {med['typer']:.3f} |\n"
        f"\nLoad average during the run: {result['load_avg'][0]:.1f} on {os.cpu_count()} CPUs.\n"
        f"\n{environment_line(result['environment'])}\n")
    framework = med["typer"] - med["python"]
    print(f"bare {med['bare']:.3f}s  cli {med['cli']:.3f}s  ratio {ratio:.2f} (target <= {TARGET_RATIO}); "
          f"typer alone adds {framework:.3f}s; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_main(main)
