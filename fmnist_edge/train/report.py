"""`fmnist-edge report`: figures, summary.md and summary.json from a reproduction's RUNS folder.

Reads what `reproduce` wrote (run_records.py reads and checks it; see reproduce.py for the
layout): missing, partial, diverged and damaged runs are noted, never fatal. The report is built
in a staging folder and put in place whole (fmnist_edge.folders), so that a report stopped
midway leaves the previous one as it was. Sections: summarising, writing. The PCA baseline
(the linear bottleneck the autoencoders should beat) is in pca.py; the findings (verdicts
computed from the curves) in findings.py; summary.md, rendered from the summary dict, in
summary_md.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_edge.errors import DataError, FmnistEdgeError
from fmnist_edge.fileio import write_json, write_text
from fmnist_edge.folders import put_in_place, staged, swapped_folder
from fmnist_edge.spec import CLASS_NAMES
from fmnist_edge.train import figures
from fmnist_edge.train.config import CASES as CASE_TEXT
from fmnist_edge.train.config import QUICK_LIMIT
from fmnist_edge.train.findings import compute_findings
from fmnist_edge.train.pca import pca_data, pca_fit, pca_mse, pca_reconstruct
from fmnist_edge.train.reproduce import AUTOENCODER_RUNS, BASE, CASES, EXPERIMENTS, N_RUNS
from fmnist_edge.train.run_records import load_runs, read_plan, read_record
from fmnist_edge.train.summary_md import pct, render_markdown

REPORT_ACCURACY = {1: 0.906, 2: 0.812, 3: 0.875, 4: 0.704}  # PAPER.md, from the report's Fig. 9
EXPERIMENT_FIGURES = {2: "fig2_bottleneck", 3: "fig3_dropout", 4: "fig4_optimizer", 5: "fig5_learning_rate",
                      6: "fig6_batch_size"}
# Every file a report writes, in the order they are put in place when the folder holds other
# files too: the summaries last, so that a summary never names figures older than itself.
REPORT_FILES = (*(f"{stem}.png" for stem in EXPERIMENT_FIGURES.values()), "fig7_classifier_loss.png",
                "fig8_classifier_accuracy.png", "fig9_confusion.png", "reconstructions.png", "summary.md",
                "summary.json")


# -- summarising -------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 with one value; None with none)."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _finished(seeds: dict[int, dict]) -> dict[int, dict]:
    return {s: r["metrics"] for s, r in seeds.items() if r["status"] == "finished"}


def summarise_autoencoders(runs: dict) -> dict:
    out = {}
    for key, change in AUTOENCODER_RUNS.items():
        hp = {**BASE, **change}
        per_seed = runs.get(f"ae-{key}", {})
        done = _finished(per_seed)
        mse_mean, mse_std = _mean_std([m["test_mse"] for m in done.values()])
        out[f"ae-{key}"] = {
            "n": hp["n"], "p": hp["dropout"], "optimizer": hp["optimizer"], "lr": hp["lr"],
            "batch_size": hp["batch_size"], "test_mse_mean": mse_mean, "test_mse_std": mse_std,
            "epochs": _mean_std([m["epochs"] for m in done.values()])[0],
            "best_epoch": _mean_std([m["best_epoch"] for m in done.values()])[0],
            "best_val_loss": _mean_std([m["best_val_loss"] for m in done.values()])[0],
            "best_val_loss_std": _mean_std([m["best_val_loss"] for m in done.values()])[1],
            "wall_time_s": _mean_std([m["wall_time_s"] for m in done.values()])[0],
            "dead_latent_units": _dead_units(done),
            "stop_reasons": sorted({m["stop_reason"] for m in done.values()}),
            "seeds": sorted(done),
            "diverged_seeds": sorted(s for s, r in per_seed.items() if r["status"] == "diverged"),
            "test_limited": any(m.get("test_limited") for m in done.values()),
        }
    return out


def summarise_classifiers(runs: dict) -> dict:
    out = {}
    for case in CASES:
        done = _finished(runs.get(f"clf-case{case}", {}))
        per_seed = {str(s): m["test_accuracy"] for s, m in done.items()}
        tta_per_seed = {str(s): m.get("test_accuracy_tta") for s, m in done.items()}
        acc_mean, acc_std = _mean_std(list(per_seed.values()))
        tta_mean, tta_std = _mean_std(list(tta_per_seed.values())) if None not in tta_per_seed.values() else (None, None)
        per_class = {c: _mean_std([m["per_class_accuracy"][c] for m in done.values()])[0] for c in CLASS_NAMES}
        confusion = (np.sum([np.asarray(m["confusion"]) for m in done.values()], axis=0).tolist() if done else None)
        out[str(case)] = {
            "description": CASE_TEXT[case], "test_accuracy_mean": acc_mean, "test_accuracy_std": acc_std,
            "test_accuracy_tta_mean": tta_mean, "test_accuracy_tta_std": tta_std,
            "test_accuracy_per_seed": per_seed, "test_accuracy_tta_per_seed": tta_per_seed,
            "report_accuracy": REPORT_ACCURACY[case], "seeds": sorted(done),
            "per_class_accuracy": per_class if done else None, "confusion": confusion,
            "epochs": _mean_std([m["epochs"] for m in done.values()])[0],
            "wall_time_s": _mean_std([m["wall_time_s"] for m in done.values()])[0],
            "dead_latent_units": _dead_units(done),
            "test_limited": any(m.get("test_limited") for m in done.values()),
        }
    return out


def add_mirror_averaged_accuracies(runs: dict, data_dir) -> str | None:
    """Measure, from model.pt, the mirror-averaged test accuracy (`classify --tta`) of finished
    classifier runs whose metrics.json lacks it (trained before training measured it), in memory only,
    on the test images the run was tested on. Returns a note saying what was measured or not."""
    lacking = {(c, s): r for c in CASES for s, r in runs.get(f"clf-case{c}", {}).items()
               if r["status"] == "finished" and "test_accuracy_tta" not in r["metrics"]}
    if not lacking:
        return None
    try:
        from fmnist_edge.train.checkpoint import load_model
        from fmnist_edge.train.data import Tensors, load_test
        from fmnist_edge.train.evaluate import mirror_averaged_accuracy

        test_set = load_test(data_dir)
    except (ImportError, FmnistEdgeError) as exc:
        return f"accuracy with --tta not measured for runs that lack it: {str(exc).split(';')[0]}"
    limited = Tensors(test_set.images[:QUICK_LIMIT], test_set.labels[:QUICK_LIMIT])
    failed = []
    for (case, seed), r in lacking.items():
        try:
            model = load_model(r["folder"] / "model.pt", expect_kind="classifier")[0]
        except FmnistEdgeError as exc:
            failed.append(f"seed {seed} clf-case{case} ({str(exc).split(';')[0]})")
            continue
        tested_on = limited if r["metrics"].get("test_limited") else test_set
        r["metrics"]["test_accuracy_tta"] = mirror_averaged_accuracy(model, tested_on)
    done = len(lacking) - len(failed)
    return "; ".join(([f"accuracy with --tta measured from model.pt for {done} run(s) trained before "
                       "metrics.json held it"] if done else [])
                     + ([f"accuracy with --tta not measured: {', '.join(failed)}"] if failed else []))


def seed_training_times(runs: dict, seeds: list[int]) -> dict[str, float]:
    """Per seed whose every run finished, the sum of its runs' training times: what one seed
    costs, the single-seed wall time, whatever else happened between its runs (a pause and a
    --resume add nothing but the epoch they repeat)."""
    out = {}
    for seed in seeds:
        per_run = [per_seed.get(seed) for per_seed in runs.values()]
        if per_run and all(r is not None and r["status"] == "finished" for r in per_run):
            out[str(seed)] = round(sum(r["metrics"]["wall_time_s"] for r in per_run), 1)
    return out


def _dead_units(done: dict[int, dict]) -> float | None:
    """Mean over seeds of the latent units no test image activates (runs before 0.2 lack it)."""
    counts = [m["dead_latent_units"] for m in done.values() if m.get("dead_latent_units") is not None]
    return _mean_std(counts)[0] if counts else None


# -- writing -----------------------------------------------------------------------------------
def write_report(runs_dir, out_dir, data_dir=None, only_seeds: int | None = None) -> dict:
    """Figures, summary.md and summary.json for the reproduction in `runs_dir`; returns the summary.
    They replace an earlier report in `out_dir` together, or not at all."""
    root = Path(runs_dir)
    if root.exists() and not root.is_dir():
        raise FmnistEdgeError(f"{root}: is a file, not a runs folder (`fmnist-edge reproduce --out RUNS` makes one)")
    if not root.is_dir():
        raise FmnistEdgeError(f"{root}: no such runs folder (make one with `fmnist-edge reproduce --out {root}`)")
    notes: list[str] = []
    plan_info = read_plan(root, notes)
    runs, seeds, run_notes = load_runs(root, only_seeds, plan=plan_info)
    notes += run_notes
    planned = plan_info.get("seeds") or len(seeds)
    if only_seeds is not None and only_seeds > max(planned, len(seeds)):
        raise FmnistEdgeError(f"--seeds {only_seeds}: {root} holds {max(planned, len(seeds))} seed(s)")
    if only_seeds is not None and planned > len(seeds):
        notes.append(f"seeds {', '.join(map(str, seeds))} of the {planned} planned; the wall time is the "
                     "reproduction's total when this report was written (reproduction.json)")
    if not seeds:
        raise FmnistEdgeError(f"{root}: holds no seed* run folders; is it a `fmnist-edge reproduce` output?")
    if all(r["status"] == "missing" for per_seed in runs.values() for r in per_seed.values()):
        raise FmnistEdgeError(f"{root}: its seed folders hold no runs yet; is it a `fmnist-edge reproduce` output?")
    target, shown = swapped_folder(out_dir)
    if target.exists() and not target.is_dir():
        raise FmnistEdgeError(f"{shown}: exists and is not a folder; choose another --out")
    if data_dir is not None:  # named: its data must load, before a figure of an earlier report is replaced
        from fmnist_edge.idx import load_split

        load_split("test", data_dir)
    record = read_record(root, notes)
    with staged(target, shown, "write the report to", inside_ok=True) as staging:
        summary = _write(runs, seeds, notes, plan_info, record, root, staging, data_dir)
        # the summaries last: a reader that sees the new summary.json sees the new figures
        put_in_place(staging, target, REPORT_FILES.__contains__, last=("summary.md", "summary.json"))
    return summary


def _write(runs, seeds, notes, plan_info, record, root, out: Path, data_dir) -> dict:
    """Every figure and both summaries into the empty folder `out`; returns the summary."""
    named, data_dir = data_dir is not None, data_dir or plan_info.get("data_dir")  # else the reproduction's own
    quick = bool(plan_info.get("quick", record.get("quick", False)))
    tta_note = add_mirror_averaged_accuracies(runs, data_dir)
    if tta_note:
        notes.append(tta_note)
    curves = {name: {s: r["history"] for s, r in per_seed.items() if r["history"]} for name, per_seed in runs.items()}
    diverged = {name: {s for s, r in per_seed.items() if r["status"] == "diverged"} for name, per_seed in runs.items()}
    autoencoders, classifiers = summarise_autoencoders(runs), summarise_classifiers(runs)
    settled = {name: {s: r["history"] for s, r in per_seed.items()
                      if r["history"] and r["status"] in ("finished", "diverged")} for name, per_seed in runs.items()}
    accuracies = {c: {s: m["test_accuracy"] for s, m in _finished(runs.get(f"clf-case{c}", {})).items()}
                  for c in CASES}
    findings = compute_findings(settled, diverged, accuracies,
                                {c: classifiers[str(c)]["per_class_accuracy"] for c in CASES})
    figs: list[tuple[str, str]] = []  # (file name, caption)

    for exp, stem in EXPERIMENT_FIGURES.items():
        title, variants = EXPERIMENTS[exp]
        labelled = {_label(f"ae-{v}", exp): curves.get(f"ae-{v}", {}) for v in ["base"] + variants}
        figures.loss_curves(labelled, f"Experiment {exp}: {title}", out / f"{stem}.png")
        figs.append((f"{stem}.png", f"Report's Figure {exp}: experiment {exp} ({title}), train and validation "
                                    "loss per epoch against the base run."))
    clf_curves = {f"case {c}": curves.get(f"clf-case{c}", {}) for c in CASES}
    figures.loss_curves(clf_curves, "Classifier: cross-entropy loss", out / "fig7_classifier_loss.png",
                        ylabel="cross-entropy")
    figs.append(("fig7_classifier_loss.png", "Report's Figure 7: the four classifier cases' train and "
                                             "validation loss per epoch."))
    figures.loss_curves(clf_curves, "Classifier: accuracy", out / "fig8_classifier_accuracy.png", log=False,
                        keys=(("train_accuracy", "train accuracy"), ("val_accuracy", "validation accuracy")),
                        ylabel="accuracy")
    figs.append(("fig8_classifier_accuracy.png", "Report's Figure 8: the four classifier cases' train and "
                                                 "validation accuracy per epoch."))
    titles = {c: f"case {c}: {CASE_TEXT[c]}\n" + (f"accuracy {pct(classifiers[str(c)]['test_accuracy_mean'])} "
                                                 f"(report {pct(REPORT_ACCURACY[c])})") for c in CASES}
    figures.confusion_grid({c: classifiers[str(c)]["confusion"] for c in CASES}, titles,
                           out / "fig9_confusion.png")
    figs.append(("fig9_confusion.png", "Report's Figure 9: row-normalised test confusion matrices of the four "
                                       "cases (counts summed over seeds)."))

    pca, pca_what = {str(n): None for n in N_RUNS}, "not computed"
    try:
        train_x, test_x, test_y, pca_what = pca_data(data_dir, quick)
        mean, components = pca_fit(train_x)
        pca = {str(n): pca_mse(test_x, mean, components, n) for n in N_RUNS}
        drawn = _panel(runs, test_x, test_y, mean, components, out / "reconstructions.png", notes)
        if drawn:
            sizes = ", ".join(str(n) for n in drawn)
            figs.append(("reconstructions.png", "Report has no such figure: one test image per class, its "
                                                f"autoencoder reconstructions for n = {sizes}, and the PCA "
                                                "reconstructions for n = "
                                                + ", ".join(str(n) for n in N_RUNS) + "."))
        else:
            notes.append("reconstruction panel skipped: no finished ae-n32/ae-base/ae-n128 run whose "
                         "model.pt reads back, or no torch")
    except DataError as exc:
        if named:  # the folder was named: a report without its baseline is not what was asked
            raise
        notes.append(f"PCA baseline and reconstruction panel skipped: {str(exc).split(';')[0]}")

    summary = {
        "runs_dir": str(root.resolve()), "seeds": seeds, "recipe": plan_info.get("recipe", record.get("recipe")),
        "quick": quick, "wall_time_s": record.get("wall_time_s"), "jobs": record.get("jobs", 1),
        "seed_training_time_s": seed_training_times(runs, seeds), "machine": record.get("machine"),
        "autoencoder": autoencoders, "classifier": classifiers, "pca_mse": pca, "pca": pca_what,
        "findings": findings, "figures": [{"file": f, "caption": c} for f, c in figs], "notes": notes,
    }
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", render_markdown(summary))
    return summary


def _label(name: str, exp: int) -> str:
    """Legend text: the value the experiment varies, '(base)' on the base run."""
    key = {2: "n", 3: "dropout", 4: "optimizer", 5: "lr", 6: "batch_size"}[exp]
    hp = {**BASE, **AUTOENCODER_RUNS[name[3:]]}
    text = {"n": f"n={hp['n']}", "dropout": f"p={hp['dropout']}",
            "optimizer": "SGD" if hp["optimizer"] == "sgd" else "Adam", "lr": f"lr={hp['lr']:g}",
            "batch_size": f"batch {hp['batch_size']}"}
    return text[key] + (" (base)" if name == "ae-base" else "")


def _panel(runs, test_x, test_y, mean, components, path: Path, notes: list[str]) -> list[int]:
    """One test image per class; rows: autoencoder (the first finished seed whose model.pt reads
    back) and PCA per n. Returns the n whose autoencoder row was drawn; a row left out, or taken
    from a later seed, gets a note."""
    try:
        import torch

        from fmnist_edge.train.checkpoint import load_model
    except ImportError:
        return []
    picks = [int(np.flatnonzero(test_y == k)[0]) for k in range(len(CLASS_NAMES)) if np.any(test_y == k)]
    x = test_x[picks]
    rows, drawn = [], []
    for n, name in N_RUNS.items():
        done = sorted(s for s, r in runs.get(name, {}).items() if r["status"] == "finished")
        model, unreadable = None, []
        for seed in done:
            try:
                model = load_model(runs[name][seed]["folder"] / "model.pt", expect_kind="autoencoder")[0]
                break
            except FmnistEdgeError as exc:  # an unreadable checkpoint costs its seed, not the report
                unreadable.append(f"seed {seed} ({exc})")
        if unreadable:
            fallback = f"drawn from seed {seed}" if model is not None else "left out of the reconstruction panel"
            notes.append(f"{name}: model.pt of {'; '.join(unreadable)}: {fallback}")
        if model is not None:
            with torch.no_grad():
                rec = model(torch.from_numpy(x.astype(np.float32)).view(-1, 1, 28, 28)).numpy().reshape(len(x), -1)
            rows.append((f"AE n={n}\nMSE {np.mean((rec - x) ** 2):.4f}", rec.reshape(-1, 28, 28)))
            drawn.append(n)
        pca_rec = pca_reconstruct(x, mean, components, n)
        rows.append((f"PCA n={n}\nMSE {np.mean((pca_rec - x) ** 2):.4f}", pca_rec.reshape(-1, 28, 28)))
    if drawn:
        figures.reconstruction_panel(x.reshape(-1, 28, 28), rows, path,
                                     column_titles=[CLASS_NAMES[int(test_y[i])] for i in picks])
    return drawn
