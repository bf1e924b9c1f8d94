"""summary.md rendered from a summary dict alone (no runs, no torch)."""

from __future__ import annotations

import math

from fmnist_edge.spec import CLASS_NAMES
from fmnist_edge.train.summary_md import pct, render_markdown


def summary(**changes) -> dict:
    autoencoder = {"n": 64, "p": 0.2, "optimizer": "adam", "lr": 1e-3, "batch_size": 100, "diverged_seeds": [],
                   "best_val_loss": 0.00991, "test_mse_mean": 0.0102, "test_mse_std": 0.00013, "epochs": 20.0,
                   "best_epoch": 19.0, "stop_reasons": ["max-epochs"], "dead_latent_units": 0.0,
                   "wall_time_s": 325.0, "test_limited": False}
    case = {"description": "pretrained encoder, fine-tuned", "test_accuracy_mean": 0.922, "test_accuracy_std": 0.002,
            "test_accuracy_tta_mean": 0.9258, "test_accuracy_tta_std": None,
            "test_accuracy_per_seed": {"0": 0.92, "1": 0.9219}, "report_accuracy": 0.906, "seeds": [0, 1],
            "epochs": 100.0, "dead_latent_units": 0.0,
            "per_class_accuracy": {name: 0.5 for name in CLASS_NAMES} | {"Shirt": float("nan")}}
    s = {"runs_dir": "runs/r", "seeds": [0, 1], "recipe": "best", "quick": False, "wall_time_s": 3017.0,
         "jobs": 2, "seed_training_time_s": {"0": 5669.0}, "notes": ["seed 1 ae-n32: missing"],
         "machine": {"processor": "x86_64", "cpu_count": 2, "torch": "2.14.1", "torch_threads": 1},
         "autoencoder": {"ae-base": autoencoder}, "pca_mse": {"64": 0.0104}, "pca": "fit on the train set",
         "classifier": {"1": case}, "findings": {}, "figures": [{"file": "fig9.png", "caption": "Confusion"}]}
    return s | changes


def test_pct_gives_one_decimal_and_n_a_for_missing_values():
    assert pct(0.9258) == "92.6%"
    assert pct(None) == "n/a" and pct(math.nan) == "n/a"


def test_the_cases_row_has_mean_std_tta_and_per_seed_accuracy():
    md = render_markdown(summary())
    row = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert "| 92.20 ± 0.20% | 92.58% | 90.6% | 2 | s0 92.00%, s1 92.19% |" in row
    assert "| Shirt | n/a |" in md  # a NaN class accuracy is not printed as a number
    assert "| ae-base | 64 | 0.2 | adam | 0.001 | 100 | 0.00991 | 0.01020 ± 0.00013 | 0.01040 |" in md
    assert "50.3 min" in md and "1 thread per run, 2 runs at a time" in md
    assert "Training time per seed (the sum of its runs' times): seed 0 94.5 min." in md
    assert "- seed 1 ae-n32: missing" in md and "![fig9](fig9.png)" in md


def test_a_quick_run_says_it_is_no_result():
    assert "**quick**" in render_markdown(summary(quick=True))
    assert "**quick**" not in render_markdown(summary())
