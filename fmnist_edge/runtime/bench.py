"""Latency benchmark: warm-up, timed runs, percentiles, throughput, start-up time and peak memory.

Anything that can run a float32 batch is benchmarked the same way: an ONNX model here, and
the CLI adds PyTorch eager (when torch is installed) and times them side by side
(`bench_side_by_side`).
"""

from __future__ import annotations

import gc
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fmnist_edge.errors import FmnistEdgeError, UsageError, whole_number
from fmnist_edge.machine import cpu_model
from fmnist_edge.runtime.session import OnnxModel

Runner = Callable[[np.ndarray], object]
DEFAULT_BATCHES = (1, 8, 64, 256, 1024)
DEFAULT_THREADS = (1, 2)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark so the next peak belongs to the next model (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def time_calls(run: Runner, x: np.ndarray, seconds: float, warmup: int = 10, min_runs: int = 20,
               max_runs: int = 100_000) -> np.ndarray:
    """Nanoseconds per call: `warmup` untimed calls, then at least `min_runs` and up to
    `seconds` of timed ones."""
    for _ in range(warmup):
        run(x)
    times: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    while len(times) < max_runs:
        t0 = clock()
        run(x)
        t1 = clock()
        times.append(t1 - t0)
        if t1 >= deadline and len(times) >= min_runs:
            break
    return np.asarray(times, dtype=np.float64)


def summarise(times_ns: np.ndarray, batch: int) -> dict:
    us = times_ns / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {"runs": int(us.size), "mean_us": float(us.mean()), "std_us": float(us.std()),
            "p50_us": float(p50), "p90_us": float(p90), "p99_us": float(p99),
            "images_per_s": float(batch / (us.mean() / 1e6))}


MAX_SECONDS = 3600.0


def check_seconds(seconds: float) -> None:
    """Timed seconds per case: a finite number from 0 to an hour (NaN would never end a case)."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        raise UsageError(f"--seconds must be a number from 0 to {MAX_SECONDS:g}, got {seconds}")


MIN_RUNS = 20


def _measure_alone(load: Callable[[int], Runner], threads: int, inputs: list[np.ndarray]) -> tuple[float, list[dict]]:
    """Load one contender with no other loaded: its start-up time in ms and, after its first call
    on each input, the process's peak RSS and its growth since before the load."""
    gc.collect()
    before = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    run = load(threads)
    startup_ms = (time.perf_counter() - t0) * 1e3
    memory = []
    for x in inputs:
        run(x)
        memory.append({"peak_rss_mb": peak_mb(), "rss_growth_mb": max(0.0, peak_mb() - before)})
    return startup_ms, memory


def bench_side_by_side(contenders: list[tuple], batch_sizes, threads_list, seconds: float = 0.3,
                       warmup: int = 10, rounds: int = 1) -> list[dict]:
    """Benchmark every contender `(name, load, input_shape, info)`, `load(threads)` -> runner, on
    the same inputs, for every thread count and batch size; rows by contender, threads, batch.

    Per thread count each contender is first loaded alone (start-up time, peak memory), then
    all are loaded together and timed in `rounds` rounds in which they take turns, in reverse
    order every other round. A shared machine's speed drifts over minutes: timed in turns, a
    ratio between two contenders compares the same stretches of the machine's time."""
    check_seconds(seconds)
    whole_number(rounds, "--rounds")
    if not contenders:
        return []
    names = [c[0] for c in contenders]
    if len(set(names)) < len(names):
        raise FmnistEdgeError(f"two contenders share a name: {', '.join(names)}")
    batch_sizes, threads_list = list(dict.fromkeys(batch_sizes)), list(dict.fromkeys(threads_list))
    rng = np.random.default_rng(0)
    inputs = {(shape, b): rng.random((b, *shape), dtype=np.float32)  # shared by all contenders
              for shape in dict.fromkeys(c[2] for c in contenders) for b in batch_sizes}
    rows: list[list[dict]] = [[] for _ in contenders]  # per contender: by threads, then batch
    for threads in threads_list:
        alone = [_measure_alone(load, threads, [inputs[shape, b] for b in batch_sizes])
                 for _, load, shape, _ in contenders]
        times = _timed_in_turns([load(threads) for _, load, _, _ in contenders],
                                [[inputs[c[2], b] for b in batch_sizes] for c in contenders],
                                seconds, warmup, rounds)
        for i, (name, _, _, info) in enumerate(contenders):
            startup_ms, memory = alone[i]
            for j, batch in enumerate(batch_sizes):
                rows[i].append({"model": name, **(info or {}), "threads": threads, "batch": batch,
                                **summarise(times[i, j], batch), "startup_ms": startup_ms, **memory[j]})
    return [row for contender_rows in rows for row in contender_rows]


def _timed_in_turns(runners: list[Runner], inputs: list[list[np.ndarray]], seconds: float, warmup: int,
                    rounds: int) -> dict[tuple, np.ndarray]:
    """(runner index, input index) -> ns per call over all rounds; the runners are freed on return."""
    times: dict[tuple, list] = {}
    order = list(range(len(runners)))
    for r in range(rounds):
        for j in range(len(inputs[0])):
            for i in order if r % 2 == 0 else order[::-1]:  # nobody always goes first
                times.setdefault((i, j), []).append(time_calls(
                    runners[i], inputs[i][j], seconds / rounds, warmup if r == 0 else min(warmup, 3),
                    min_runs=-(-MIN_RUNS // rounds)))
    return {key: np.concatenate(t) for key, t in times.items()}


def onnx_loader(path: str | os.PathLike, kind: str = "classifier",
                chunk: int | None = None) -> tuple[Callable[[int], Runner], tuple]:
    """A loader that opens a fresh session per thread count, and the model's input shape.

    Every call goes through OnnxModel.run, as the runtime's API does; with `chunk`, in
    sub-batches of `chunk` images."""
    probe = OnnxModel(path, kind, threads=1)
    shape = probe.input_shape
    del probe

    def load(threads: int) -> Runner:
        model = OnnxModel(path, kind, threads=threads)
        return lambda x: model.run(x, batch_size=chunk)  # the API's own path, checks included

    return load, shape


def add_ratios(rows: list[dict], reference: str | None = None, baseline: str | None = None) -> list[dict]:
    """Speed-ups by p50 at the same threads and batch: `vs_<reference>` (fp32 over int8, etc.)
    and `vs_<baseline>` (PyTorch eager over ONNX Runtime)."""
    index = {(r["model"], r["threads"], r["batch"]): r for r in rows}
    for row in rows:
        if baseline is not None and row["model"] == baseline:
            continue  # the baseline is what the others are compared with
        for other in (reference, baseline):
            ref = index.get((other, row["threads"], row["batch"])) if other else None
            if ref is not None and other != row["model"]:
                row[f"speedup_vs_{other}"] = ref["p50_us"] / row["p50_us"]
    return rows


def environment() -> dict:
    import onnxruntime

    return {"python": sys.version.split()[0], "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), **cpu_model(), "platform": platform.platform(),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def to_markdown(rows: list[dict]) -> str:
    ratio_keys = sorted({k for r in rows for k in r if k.startswith("speedup_vs_")})
    head = ["model", "threads", "batch", "p50 us", "p90 us", "p99 us", "mean ± std us", "images/s",
            "start-up ms", "peak RSS MB (+growth)", "size KB"] + [k.replace("speedup_", "x ") for k in ratio_keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        size = f"{r['size_bytes'] / 1024:.0f}" if r.get("size_bytes") else "-"
        cells = [r["model"], str(r["threads"]), str(r["batch"]), f"{r['p50_us']:.1f}", f"{r['p90_us']:.1f}",
                 f"{r['p99_us']:.1f}", f"{r['mean_us']:.1f} ± {r['std_us']:.1f}", f"{r['images_per_s']:,.0f}",
                 f"{r['startup_ms']:.1f}", f"{r['peak_rss_mb']:.0f} (+{r['rss_growth_mb']:.0f})", size]
        cells += [f"{r[k]:.2f}" if k in r else "" for k in ratio_keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def model_label(path: Path) -> str:
    return path.name.removesuffix(".onnx")


def model_labels(paths: list[Path]) -> list[str]:
    """Each file's label: its name, or folder/name where two files share a name, else the path."""
    labels = [model_label(p) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{p.parent.name}/{model_label(p)}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    return labels
