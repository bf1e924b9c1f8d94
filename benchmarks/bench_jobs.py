"""A whole reproduction, one run at a time with every core against `--jobs N` runs side by side.

Runs `fmnist-edge reproduce --seeds 1 --max-epochs E --no-report` on the real data, in a fresh
folder each time, first with `--jobs 1` (one process, PyTorch's default threads: one per core)
and then with `--jobs N` (N processes of cores/N threads each), and reports the wall time of each
process and the ratio. The same 14 runs, with fewer epochs than the real budget so that the
comparison takes minutes; every run still starts, loads the data and evaluates on the test set,
so the fixed costs weigh more here than in a full reproduction.

    .venv/bin/python benchmarks/bench_jobs.py --out benchmarks/jobs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import command_line, fmnist_edge_cli, publish, run_main


def reproduce(folder: Path, jobs: int, epochs: int, data_dir: str | None) -> dict:
    cli = fmnist_edge_cli()
    args = cli + ["reproduce", "--out", str(folder), "--seeds", "1", "--max-epochs", str(epochs), "--no-report",
                  "--jobs", str(jobs), "--device", "cpu"] + (["--data-dir", data_dir] if data_dir else [])
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    runs = {p.parent.name: json.loads(p.read_text())["wall_time_s"] for p in folder.glob("seed0/*/metrics.json")}
    record = json.loads((folder / "reproduction.json").read_text())
    return {"jobs": jobs, "threads_per_run": record["machine"]["torch_threads"], "wall_s": round(wall, 1),
            "runs": len(runs), "sum_of_run_times_s": round(sum(runs.values()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="the parallel variant (default: cores)")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        one = reproduce(Path(tmp) / "jobs1", 1, args.max_epochs, args.data_dir)
        many = reproduce(Path(tmp) / f"jobs{args.jobs}", args.jobs, args.max_epochs, args.data_dir)
    speedup = one["wall_s"] / many["wall_s"]
    result = {"command": command_line(), "cpu_count": os.cpu_count(), "max_epochs": args.max_epochs,
              "one_at_a_time": one, "side_by_side": many, "speedup": round(speedup, 2),
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    rows = [f"| `--jobs {r['jobs']}` | {r['threads_per_run']} | {r['runs']} | {r['wall_s']:.1f} | "
            f"{r['sum_of_run_times_s']:.1f} |" for r in (one, many)]
    text = "\n".join([
        "# A reproduction one run at a time against runs side by side", "",
        f"Produced by `{result['command']}`: `fmnist-edge reproduce --seeds 1 --max-epochs {args.max_epochs} "
        f"--no-report` on the real data, {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
        f"{result['load_average_after'][0]:.2f} after.", "",
        "| variant | threads per run | runs | wall time s | sum of the runs' own times s |",
        "|---|---|---|---|---|", *rows, "",
        f"`--jobs {args.jobs}` finishes the same runs {speedup:.2f} times sooner.", ""])
    publish(args.out, result, text)


if __name__ == "__main__":
    run_main(main)
