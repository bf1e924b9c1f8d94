"""fmnist_edge.runtime.bench: statistics, ratios and the Markdown table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_edge.runtime import bench

FIXTURES = Path(__file__).parent / "fixtures"


def test_summarise():
    stats = bench.summarise(np.array([1000.0] * 98 + [5000.0, 9000.0]), batch=10)
    assert stats["runs"] == 100 and stats["p50_us"] == 1.0 and stats["p99_us"] > 4.0
    assert abs(stats["images_per_s"] - 10 / (stats["mean_us"] / 1e6)) < 1e-6


def test_bench_runner_ratios_and_markdown():
    load, shape = bench.onnx_loader(FIXTURES / "classifier.onnx")
    rows = bench.bench_runner("fp32", load, shape, [1, 4], [1], seconds=0.0, warmup=1)
    slow = [dict(r, model="eager", p50_us=r["p50_us"] * 10) for r in rows]
    rows = bench.add_ratios(rows + slow, reference="fp32", baseline="eager")
    assert all(abs(r["speedup_vs_eager"] - 10) < 1e-9 for r in rows if r["model"] == "fp32")
    assert not any("speedup_vs_fp32" in r for r in rows)  # the eager rows are the baseline
    table = bench.to_markdown(rows)
    assert table.count("\n") == 2 + 4 and "x vs_eager" in table
