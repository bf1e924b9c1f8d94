"""The report's figures as PNGs: loss curves (Figs 2-8), confusion matrices (Fig 9), reconstructions.

Every function takes plain data (histories, counts, arrays) and a path; matplotlib (Agg) is
imported inside them so that importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_edge.fileio import write_with
from fmnist_edge.spec import CLASS_NAMES

DPI = 120
COLORS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def stack(histories: dict[int, list[dict]], key: str) -> np.ndarray:
    """(seeds, epochs) of `key`, NaN where a seed stopped earlier (or lacks the key)."""
    rows = [[r.get(key, np.nan) for r in h] for h in histories.values() if h]
    if not rows:
        return np.empty((0, 0))
    out = np.full((len(rows), max(map(len, rows))), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = np.asarray(row, dtype=float)
    return out


def _band(ax, histories: dict[int, list[dict]], key: str, label: str, color, style: str = "-") -> bool:
    """Mean over seeds as a line, min-max over seeds as a shaded band; False if nothing to draw."""
    data = stack(histories, key)
    if data.size == 0 or np.all(np.isnan(data)):
        return False
    epochs = np.arange(1, data.shape[1] + 1)
    with np.errstate(all="ignore"):
        mean, low, high = np.nanmean(data, 0), np.nanmin(data, 0), np.nanmax(data, 0)
    ax.plot(epochs, mean, style, color=color, label=label, lw=1.6, marker="." if len(epochs) < 4 else None)
    if data.shape[0] > 1:
        ax.fill_between(epochs, low, high, color=color, alpha=0.18, lw=0)
    return True


def loss_curves(curves: dict[str, dict[int, list[dict]]], title: str, path: Path,
                log: bool = True, keys=(("train_loss", "train loss"), ("val_loss", "validation loss")),
                ylabel: str = "MSE per pixel") -> Path:
    """One panel per key (train, validation), one colour per run; `curves` is label -> seed -> history."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    seeds = max((len(h) for h in curves.values()), default=0)
    for ax, (key, name) in zip(axes[0], keys):
        drawn = False
        for color, (label, histories) in zip(COLORS, curves.items()):
            drawn |= _band(ax, histories, key, label, color)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log and drawn:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3, which="both")
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes)
    band = f"; mean of {seeds} seeds, band = min-max" if seeds > 1 else ""
    fig.suptitle(title + band, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def confusion_grid(confusions: dict[int, np.ndarray | None], titles: dict[int, str], path: Path) -> Path:
    """Row-normalised confusion matrices of the four cases in a 2x2 grid (the report's Fig 9)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 11))
    for ax, case in zip(axes.flat, (1, 2, 3, 4)):
        counts = confusions.get(case)
        ax.set_title(titles.get(case, f"case {case}"), fontsize=10)
        if counts is None:
            ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        counts = np.asarray(counts, dtype=float)
        norm = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ticks = np.arange(len(CLASS_NAMES))
        ax.set_xticks(ticks, CLASS_NAMES, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, CLASS_NAMES, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in ticks:
            for j in ticks:
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, path)


def reconstruction_panel(originals: np.ndarray, rows: list[tuple[str, np.ndarray]], path: Path,
                         column_titles: list[str] | None = None) -> Path:
    """Test images on top, then one row per (label, reconstructions); images (k, 28, 28) in [0, 1]."""
    plt = _pyplot()
    all_rows = [("test image", originals)] + rows
    k = len(originals)
    fig, axes = plt.subplots(len(all_rows), k, figsize=(1.15 * k + 1.6, 1.2 * len(all_rows)), squeeze=False)
    for r, (label, images) in enumerate(all_rows):
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(np.clip(images[c], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and column_titles:
                ax.set_title(column_titles[c], fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=7.5, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return _save(fig, path)
