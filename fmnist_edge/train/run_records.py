"""What `reproduce` left in a RUNS folder, read for `report` and checked field by field.

A file that is unreadable, not JSON, or holds fields of the wrong type is never fatal here: it
becomes a note that names it, and its run counts as unfinished (curves still drawn from a good
history) or missing, so that one damaged file costs its run, not the report.
"""

from __future__ import annotations

import re
from pathlib import Path

from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.fileio import NUMBER, json_typed, read_json
from fmnist_edge.spec import CLASS_NAMES
from fmnist_edge.train.reproduce import AUTOENCODER_RUNS, CASES

MAX_SEEDS = 100  # reproduce --seeds' own limit
KNOWN_RUNS = [f"ae-{k}" for k in AUTOENCODER_RUNS] + [f"clf-case{c}" for c in CASES]
# The fields the report reads, by the kind of run; other fields may be there or not.
METRICS_FIELDS = {"epochs": int, "best_epoch": int, "best_val_loss": NUMBER, "wall_time_s": NUMBER,
                  "stop_reason": str}
AUTOENCODER_METRICS = {"test_mse": NUMBER}
CLASSIFIER_METRICS = {"test_accuracy": NUMBER, "per_class_accuracy": dict, "confusion": list}
OPTIONAL_METRICS = {"test_accuracy_tta": NUMBER, "dead_latent_units": int, "test_limited": bool}
HISTORY_FIELDS = {"epoch": int, "train_loss": NUMBER, "val_loss": NUMBER}
CLASSIFIER_HISTORY = {"train_accuracy": NUMBER, "val_accuracy": NUMBER}
PLAN_FIELDS = {"seeds": int, "runs": list, "data_dir": str, "quick": bool, "recipe": str}
RECORD_FIELDS = {"wall_time_s": NUMBER, "jobs": int, "machine": dict, "quick": bool, "recipe": str}


def _name(kind) -> str:
    return "number" if kind is NUMBER else kind.__name__


def _wrong_fields(data: dict, required: dict, optional: dict | None = None) -> str:
    """What is wrong with `data`'s fields, "" when nothing (None stands for an optional value)."""
    for name, kind in required.items():
        if name not in data:
            return f"it lacks {name}"
        if not json_typed(data[name], kind):
            return f"its {name} is {type(data[name]).__name__}, not {_name(kind)}"
    for name, kind in (optional or {}).items():
        if data.get(name) is not None and not json_typed(data[name], kind):
            return f"its {name} is {type(data[name]).__name__}, not {_name(kind)}"
    return ""


def _read(path: Path, kind: type = dict):
    """The JSON value in `path`, None when there is no such file; FmnistEdgeError naming the
    file alone when it cannot be used."""
    return read_json(path, kind, shown=path.name) if path.exists() else None


def read_plan(root: Path, notes: list[str]) -> dict:
    """RUNS/plan.json, checked; {} (with a note) when it is missing or unusable."""
    try:
        plan = _read(root / "plan.json") or {}
        plan = {key: value for key, value in plan.items() if value is not None}
        wrong = _wrong_fields(plan, {}, PLAN_FIELDS)
        if not wrong and plan.get("seeds") is not None and not 0 <= plan["seeds"] <= MAX_SEEDS:
            wrong = f"its seeds ({plan['seeds']}) are not from 0 to {MAX_SEEDS}"
        unknown = [r for r in plan.get("runs") or [] if r not in KNOWN_RUNS]
        if not wrong and unknown:
            wrong = f"it names runs a reproduction does not make ({', '.join(map(str, unknown[:3]))})"
        if wrong:
            raise FmnistEdgeError(f"plan.json: {wrong}")
        return plan
    except FmnistEdgeError as exc:
        notes.append(f"{exc}; not used: the runs are read from the seed folders, the data from --data-dir "
                     "or the default folder")
        return {}


def read_record(root: Path, notes: list[str]) -> dict:
    """RUNS/reproduction.json (wall time, machine), checked; {} with a note when unusable."""
    try:
        record = _read(root / "reproduction.json")
    except FmnistEdgeError as exc:
        notes.append(f"{exc}: no wall time or machine recorded")
        return {}
    if record is None:
        notes.append("reproduction.json missing: no wall time or machine recorded")
        return {}
    wrong = _wrong_fields(record, {}, RECORD_FIELDS)
    if wrong:
        notes.append(f"reproduction.json: {wrong}: no wall time or machine recorded")
        return {}
    return {key: value for key, value in record.items() if value is not None}  # a null is a missing field


def checked_metrics(path: Path, name: str) -> dict | None:
    """A run's metrics.json, checked for what the report reads of its kind of run."""
    metrics = _read(path)
    if metrics is None:
        return None
    classifier = name.startswith("clf-")
    wrong = _wrong_fields(metrics, {**METRICS_FIELDS, **(CLASSIFIER_METRICS if classifier else AUTOENCODER_METRICS)},
                          OPTIONAL_METRICS)
    if not wrong and classifier:
        per_class = metrics["per_class_accuracy"]
        if any(not json_typed(per_class.get(c), NUMBER) for c in CLASS_NAMES):
            wrong = "its per_class_accuracy lacks a class"
        confusion = metrics["confusion"]
        if not (len(confusion) == len(CLASS_NAMES)
                and all(isinstance(row, list) and len(row) == len(CLASS_NAMES) and all(json_typed(v, NUMBER) for v in row)
                        for row in confusion)):
            wrong = wrong or f"its confusion is not {len(CLASS_NAMES)}x{len(CLASS_NAMES)} numbers"
    if wrong:
        raise FmnistEdgeError(f"metrics.json: {wrong}")
    return metrics


def checked_history(path: Path, name: str) -> list[dict]:
    """A run's history.json: a list of epochs, each checked for what the figures draw."""
    history = _read(path, list) or []
    fields = {**HISTORY_FIELDS, **(CLASSIFIER_HISTORY if name.startswith("clf-") else {})}
    for number, epoch in enumerate(history, 1):
        wrong = "it is not an object" if not isinstance(epoch, dict) else _wrong_fields(epoch, fields)
        if wrong:
            raise FmnistEdgeError(f"history.json: epoch {number}: {wrong}")
    return history


def _diverged_message(path: Path) -> str:
    try:
        record = _read(path) or {}
    except FmnistEdgeError:
        return "diverged.json unreadable"
    message = record.get("message")
    return message.split(";")[0] if isinstance(message, str) else ""


def load_runs(root: Path, only_seeds: int | None = None, plan: dict | None = None
              ) -> tuple[dict[str, dict[int, dict]], list[int], list[str]]:
    """name -> seed -> {status, history, metrics, folder}; the seeds; notes on what is missing or
    odd. With `only_seeds` K, seeds 0..K-1 alone (a finished part of a reproduction still running)."""
    notes: list[str] = []
    plan = read_plan(root, notes) if plan is None else plan
    found = sorted(int(m.group(1)) for p in root.glob("seed*") if (m := re.fullmatch(r"seed(\d+)", p.name)))
    seeds = sorted(set(found) | set(range(plan.get("seeds") or 0)))
    if only_seeds is not None:
        seeds = [s for s in seeds if s < only_seeds]
    names = plan.get("runs") or KNOWN_RUNS
    runs: dict[str, dict[int, dict]] = {name: {} for name in names}
    for seed in seeds:
        for name in names:
            runs[name][seed] = _run(root / f"seed{seed}" / name, f"seed {seed} {name}", name, notes)
    return runs, seeds, notes


def _run(folder: Path, label: str, name: str, notes: list[str]) -> dict:
    """One run's status, history and metrics; what is wrong with its files goes into `notes`."""
    damaged = []
    try:
        history = checked_history(folder / "history.json", name)
    except FmnistEdgeError as exc:
        history = []
        damaged.append(str(exc))
    try:
        metrics = checked_metrics(folder / "metrics.json", name)
    except FmnistEdgeError as exc:
        metrics = None
        damaged.append(str(exc))
    why = f" ({'; '.join(damaged)})" if damaged else ""
    if (folder / "diverged.json").is_file():
        status = "diverged"
        notes.append(f"{label}: diverged ({_diverged_message(folder / 'diverged.json')}){why}")
    elif metrics is not None and (folder / "model.pt").is_file():
        status = "finished"
        if damaged:
            notes.append(f"{label}: finished, no curves drawn{why}")
    elif folder.is_dir() and history:
        status = "partial"
        state = "no usable metrics" if damaged else "unfinished"
        notes.append(f"{label}: {state} ({len(history)} epochs){why}; curves drawn, no test numbers")
    else:
        status = "missing"
        notes.append(f"{label}: {'unusable' if damaged else 'missing'}{why}")
    return {"status": status, "history": history, "metrics": metrics, "folder": folder}
