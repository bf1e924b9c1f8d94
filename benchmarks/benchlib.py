"""What every benchmark script does with its result: say the command that made it, print it, save it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.fileio import write_json, write_text


def command_line() -> str:
    """`python benchmarks/NAME.py ARGS...`, quoted as a shell would: how the result was produced."""
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def fmnist_edge_cli() -> list[str]:
    """The command that runs this environment's fmnist-edge: its console script, else `python -m`."""
    exe = Path(sys.executable).parent / "fmnist-edge"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "fmnist_edge"]


def publish(out: Path | None, result: dict, text: str) -> None:
    """Print the Markdown; with --out, write OUT/results.json and OUT/results.md (atomically).
    Both end with what the figures were measured on: machines of one kind differ."""
    from fmnist_edge.machine import environment_line
    from fmnist_edge.runtime.bench import environment

    result = {**result, "environment": result.get("environment") or environment()}
    text = text.rstrip("\n") + "\n\n" + environment_line(result["environment"]) + "\n"
    print(text)
    if out:
        write_json(out / "results.json", result)
        write_text(out / "results.md", text)


def run_main(main) -> None:
    """Run a benchmark's main(): a project error (no data, no model, a bad file) is one line on
    stderr and exit status 1, as in the CLI, never a traceback."""
    try:
        main()
    except FmnistEdgeError as exc:
        raise SystemExit(f"{Path(sys.argv[0]).name}: error: {exc}") from None


def checked_classifier(path: Path) -> Path:
    """`path`, once the runtime has loaded it as a classifier: a missing, corrupt or foreign file
    is refused with one line (through `run_main`) before a benchmark reads it any other way."""
    from fmnist_edge.runtime.session import OnnxModel

    OnnxModel(path, "classifier")
    return path


def interleaved_args(description: str, rounds: int, seconds: float = 0.2, more=None):
    """--model, --rounds, --seconds and --out, parsed, for a benchmark of interleaved variants of a
    classifier, with the options `more(parser)` adds; the model is checked (one line through
    `run_main` when it is not one)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, default=Path("exported/classifier.onnx"))
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=seconds, help="per variant, per round")
    parser.add_argument("--out", type=Path, default=None)
    if more is not None:
        more(parser)
    args = parser.parse_args()
    checked_classifier(args.model)
    return args


def cpu_session(model, threads: int = 1):
    """An ONNX Runtime session on `threads` threads with the runtime's options, from a path or bytes."""
    import onnxruntime as ort

    from fmnist_edge.runtime.session import session_options

    return ort.InferenceSession(model, session_options(threads), providers=["CPUExecutionProvider"])


def interleaved_p50_us(variants: dict, x, rounds: int, seconds: float) -> dict:
    """name -> the median over `rounds` of each runner's p50 on `x`, in microseconds. The runners
    take turns within every round, so every one of them sees the same machine load."""
    import numpy as np

    from fmnist_edge.runtime.bench import time_calls

    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(float(np.median(time_calls(run, x, seconds))) / 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}
