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
    from fmnist_edge.runtime.bench import environment, environment_line

    env = environment()
    result = {**result, "environment": result.get("environment", env)}
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
