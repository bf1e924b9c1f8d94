"""What every benchmark script does with its result: say the command that made it, print it, save it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from fmnist_edge.fileio import write_json, write_text


def command_line() -> str:
    """`python benchmarks/NAME.py ARGS...`, quoted as a shell would: how the result was produced."""
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def fmnist_edge_cli() -> list[str]:
    """The command that runs this environment's fmnist-edge: its console script, else `python -m`."""
    exe = Path(sys.executable).parent / "fmnist-edge"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "fmnist_edge"]


def publish(out: Path | None, result: dict, text: str) -> None:
    """Print the Markdown; with --out, write OUT/results.json and OUT/results.md (atomically)."""
    print(text)
    if out:
        write_json(out / "results.json", result)
        write_text(out / "results.md", text)
