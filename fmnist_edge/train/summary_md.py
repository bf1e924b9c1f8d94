"""summary.md: the reproduction's summary dict (report.py) rendered as Markdown."""

from __future__ import annotations

import math

from fmnist_edge.errors import counted
from fmnist_edge.spec import CLASS_NAMES
from fmnist_edge.train.config import QUICK_LIMIT


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; 'n/a' for none or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _num(x, fmt: str = ".5f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _pm(mean, std, fmt: str = ".5f", scale: float = 1.0) -> str:
    if mean is None:
        return "n/a"
    return format(mean * scale, fmt) + (f" ± {format(std * scale, fmt)}" if std else "")


def _pct_pm(mean, std) -> str:
    """An accuracy as 'mean ± std%' in percent, two decimals; 'n/a' without one."""
    return "n/a" if mean is None else _pm(mean, std, ".2f", 100) + "%"


def render_markdown(s: dict) -> str:
    """summary.md from the summary dict alone."""
    wall = s["wall_time_s"]
    machine = s["machine"] or {}
    lines = [
        "# Reproduction of the report: summary", "",
        f"Runs: `{s['runs_dir']}`; seeds {', '.join(map(str, s['seeds']))}; recipe {s['recipe']}"
        + ("; **quick** (small subset: a smoke test, not a result)" if s["quick"] else "") + ".",
        f"Wall time of the reproduction: {_num(wall and wall / 60, '.1f')} min"
        + (f" on {machine.get('cpu') or machine.get('processor')} ({machine.get('cpu_count')} CPUs, "
           f"torch {machine.get('torch')}, "
           f"{counted(machine.get('torch_threads'), 'thread')}"
           + (f" per run, {s['jobs']} runs at a time" if s.get("jobs", 1) > 1 else "") + ")" if machine else "") + ".",
        "Test numbers are on the test set, never used for early stopping; ± is the sample standard "
        "deviation over seeds.", "",
    ]
    per_seed = s.get("seed_training_time_s") or {}
    if per_seed:
        lines[-1:-1] = ["Training time per seed (the sum of its runs' times): "
                        + ", ".join(f"seed {k} {v / 60:.1f} min" for k, v in per_seed.items()) + "."]
    if s["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in s["notes"]] + [""]
    lines += ["## Autoencoders (Table I)", "",
              "| run | n | p | optimizer | lr | batch | best val loss | test MSE | PCA MSE, same n | epochs "
              "(best) | stop | dead latent units | wall time |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in s["autoencoder"].items():
        pca = s["pca_mse"].get(str(r["n"]))  # every run of that n, not only experiment 2's
        diverged = f" (diverged: seeds {r['diverged_seeds']})" if r["diverged_seeds"] else ""
        lines.append(f"| {name}{diverged} | {r['n']} | {r['p']} | {r['optimizer']} | {r['lr']:g} | {r['batch_size']} "
                     f"| {_num(r['best_val_loss'])} | {_pm(r['test_mse_mean'], r['test_mse_std'])} | {_num(pca)} "
                     f"| {_num(r['epochs'], '.1f')} ({_num(r['best_epoch'], '.1f')}) | {', '.join(r['stop_reasons'])} "
                     f"| {_num(r['dead_latent_units'], '.1f')} / {r['n']} | {_num(r['wall_time_s'], '.0f')} s |")
    limited = any(r["test_limited"] for r in s["autoencoder"].values())
    lines += ["", f"PCA: {s['pca']}." + (" These runs were tested on at most the first "
                                         f"{QUICK_LIMIT} test images (--quick)." if limited else ""), ""]
    lines += ["## Classifier (four cases)", "", "| case | | test accuracy | with --tta | report | seeds | per seed "
              "| epochs | dead latent units |", "|---|---|---|---|---|---|---|---|---|"]
    for case, r in s["classifier"].items():
        accuracy = _pct_pm(r["test_accuracy_mean"], r["test_accuracy_std"])
        mirrored = _pct_pm(r.get("test_accuracy_tta_mean"), r.get("test_accuracy_tta_std"))
        per_seed = ", ".join(f"s{s} {100 * a:.2f}%" for s, a in (r.get("test_accuracy_per_seed") or {}).items()) or "n/a"
        lines.append(f"| {case} | {r['description']} | {accuracy} | {mirrored} | {pct(r['report_accuracy'])} "
                     f"| {len(r['seeds'])} | {per_seed} | {_num(r['epochs'], '.1f')} "
                     f"| {_num(r['dead_latent_units'], '.1f')} / 64 |")
    lines += ["", "With --tta: each test image's class probabilities averaged with its mirror image's, as "
              "`fmnist-edge classify --tta` does; one more pass per image.", "",
              "Per-class test accuracy (mean over seeds):", "",
              "| class | " + " | ".join(f"case {c}" for c in s["classifier"]) + " |",
              "|---|" + "---|" * len(s["classifier"])]
    for cls in CLASS_NAMES:
        lines.append(f"| {cls} | " + " | ".join(pct((r["per_class_accuracy"] or {}).get(cls))
                                                for r in s["classifier"].values()) + " |")
    lines += ["", "## Findings: our curves against the report's observations", ""]
    for f in s["findings"].values():
        lines.append(f"- **{f['verdict']}**: {f['observation']}. {f['detail']}.")
    lines += ["", "## Figures", ""]
    for fig in s["figures"]:
        lines += [f"![{fig['file'][:-4]}]({fig['file']})", "", f"*{fig['caption']}*", ""]
    return "\n".join(lines)
