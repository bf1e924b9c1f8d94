"""Findings: verdicts (agree / disagree / inconclusive, with the numbers) on the report's
observations, computed from the runs' histories and the classifiers' test accuracies."""

from __future__ import annotations

import numpy as np

from fmnist_edge.train.reproduce import CASES

RISE = 0.02  # a validation loss ending 2% above its minimum, while train loss still falls: overfitting
EARLY_K = 5  # "faster": compare validation losses after this many epochs (or fewer, if a run stopped)
REPORT_ORDER = (1, 3, 2, 4)  # the report's accuracies, best first
HARDEST = {"Shirt", "Coat", "Pullover", "T-shirt/top"}


def _combine(per_seed: dict[int, str | None]) -> str:
    """One verdict from the seeds': unanimous, else inconclusive."""
    seen = [v for v in per_seed.values() if v is not None]
    return seen[0] if seen and all(v == seen[0] for v in seen) else "inconclusive"


def _split(a: bool, b: bool) -> str:
    return "agree" if a and b else "disagree" if not (a or b) else "inconclusive"


def _common(curves: dict, names: list[str]) -> list[int]:
    sets = [{s for s, h in curves.get(n, {}).items() if h} for n in names]
    return sorted(set.intersection(*sets)) if sets else []


def _val(h: list[dict], key: str = "val_loss") -> np.ndarray:
    return np.asarray([r[key] for r in h], dtype=float)


def _avg(numbers: dict[int, dict], key: str) -> float:
    return float(np.mean([v[key] for v in numbers.values()]))


def _missing(names: list[str]) -> dict:
    return {"verdict": "inconclusive", "detail": f"no seed has all of {', '.join(names)} finished", "per_seed": {}}


def _ordering(curves: dict, names: list[str], labels: list[str], decreasing: bool) -> dict:
    """The report says best validation loss decreases (or increases) along `names`."""
    seeds = _common(curves, names)
    if not seeds:
        return _missing(names)
    best = {s: [float(_val(curves[n][s]).min()) for n in names] for s in seeds}
    ordered = (lambda a, b: a > b) if decreasing else (lambda a, b: a < b)
    per_seed = {s: "agree" if all(ordered(a, b) for a, b in zip(v, v[1:])) else "disagree" for s, v in best.items()}
    means = np.mean(list(best.values()), axis=0)
    parts = [f"{labels[0]} {means[0]:.5f}"]
    for i in range(1, len(names)):
        a, b = means[i - 1], means[i]
        parts.append(f"{'>' if a > b else '<' if a < b else '='} {labels[i]} {b:.5f}")
    return {"verdict": _combine(per_seed), "per_seed": per_seed,
            "detail": "best validation loss " + " ".join(parts) + f" (mean of {len(seeds)} seed(s))"}


def _adam_vs_sgd(curves: dict) -> dict:
    seeds = _common(curves, ["ae-base", "ae-sgd"])
    if not seeds:
        return _missing(["ae-base", "ae-sgd"])
    per_seed, numbers = {}, {}
    for s in seeds:
        adam, sgd = _val(curves["ae-base"][s]), _val(curves["ae-sgd"][s])
        k = min(EARLY_K, len(adam), len(sgd))
        target = max(adam.min(), sgd.min())  # a loss both runs reach
        reach_a, reach_s = int(np.argmax(adam <= target)) + 1, int(np.argmax(sgd <= target)) + 1
        numbers[s] = {"k": k, "adam_at_k": adam[k - 1], "sgd_at_k": sgd[k - 1], "target": target,
                      "adam_reach": reach_a, "sgd_reach": reach_s, "adam_epochs": len(adam), "sgd_epochs": len(sgd)}
        per_seed[s] = _split(adam[k - 1] < sgd[k - 1], reach_a < reach_s)
    a = {k: _avg(numbers, k) for k in numbers[seeds[0]]}
    detail = (f"validation loss after {a['k']:.0f} epochs: Adam {a['adam_at_k']:.5f}, SGD {a['sgd_at_k']:.5f}; "
              f"epochs to reach {a['target']:.5f} (the higher best loss): Adam {a['adam_reach']:.1f}, "
              f"SGD {a['sgd_reach']:.1f}; epochs run: Adam {a['adam_epochs']:.1f} (report: ~15), "
              f"SGD {a['sgd_epochs']:.1f}")
    return {"verdict": _combine(per_seed), "per_seed": per_seed, "detail": detail}


def _rises(v: np.ndarray) -> float:
    """Fraction of epoch-to-epoch steps where the validation loss went up."""
    return float(np.mean(np.diff(v) > 0)) if len(v) > 1 else 0.0


def _unstable_lr(curves: dict, diverged: dict) -> dict:
    gone = diverged.get("ae-lr1e-2", set())
    seeds = sorted(set(_common(curves, ["ae-base", "ae-lr1e-2"])) | gone)
    if not seeds:
        return _missing(["ae-base", "ae-lr1e-2"])
    per_seed, parts = {}, []
    for s in seeds:
        if s in gone:
            per_seed[s] = "agree"
            parts.append(f"seed {s}: diverged")
            continue
        base, fast = _val(curves["ae-base"][s]), _val(curves["ae-lr1e-2"][s])
        oscillates, stalls = _rises(fast) > _rises(base), fast.min() > base.min()
        per_seed[s] = _split(oscillates, stalls)
        parts.append(f"seed {s}: validation loss rose in {int(np.sum(np.diff(fast) > 0))}/{max(len(fast) - 1, 0)} "
                     f"epochs (base {int(np.sum(np.diff(base) > 0))}/{max(len(base) - 1, 0)}), best "
                     f"{fast.min():.5f} vs base {base.min():.5f}, fell {100 * (1 - fast.min() / fast[0]):.0f}% "
                     f"from epoch 1 (base {100 * (1 - base.min() / base[0]):.0f}%)")
    return {"verdict": _combine(per_seed), "per_seed": per_seed, "detail": "; ".join(parts)}


def late_rise(h: list[dict]) -> tuple[float, float]:
    """(relative rise of validation loss from its minimum to the end, relative fall of train loss
    over the same epochs)."""
    v, t = _val(h), _val(h, "train_loss")
    b = int(np.argmin(v))
    return float(v[-1] / v[b] - 1), float(1 - t[-1] / t[b]) if b < len(v) - 1 else 0.0


def _overfitting(curves: dict) -> dict:
    names = ["ae-batch50", "ae-base", "ae-batch150"]
    seeds = _common(curves, names)
    if not seeds:
        return _missing(names)
    per_seed, rows = {}, {}
    for s in seeds:
        r = {n: late_rise(curves[n][s]) for n in names}
        score = {n: rise if fall > 0 else 0.0 for n, (rise, fall) in r.items()}
        turned = int(np.argmin(_val(curves["ae-batch50"][s]))) < len(curves["ae-batch50"][s]) - 1
        if not turned:  # still improving when it stopped: its late epochs were never seen
            per_seed[s] = "inconclusive"
        elif score["ae-batch50"] <= RISE:
            per_seed[s] = "disagree"
        else:
            worst_other = max(score["ae-base"], score["ae-batch150"])
            per_seed[s] = "agree" if score["ae-batch50"] > worst_other else "inconclusive"
        rows[s] = {f"{n}_{k}": x for n, (rise, fall) in r.items() for k, x in (("rise", rise), ("fall", fall))}
        rows[s]["gap"] = abs(_val(curves["ae-base"][s]).min() / _val(curves["ae-batch150"][s]).min() - 1)
    a = {k: _avg(rows, k) for k in rows[seeds[0]]}
    detail = "; ".join(f"batch {b}: validation loss ends {100 * a[n + '_rise']:.1f}% above its minimum while "
                       f"train loss fell {100 * a[n + '_fall']:.1f}%"
                       for b, n in ((50, "ae-batch50"), (100, "ae-base"), (150, "ae-batch150")))
    detail += (f" (overfitting: a rise above {100 * RISE:.0f}% with train still falling); best validation loss "
               f"of 100 and 150 differ by {100 * a['gap']:.1f}%")
    return {"verdict": _combine(per_seed), "per_seed": per_seed, "detail": detail}


def _case_order(accuracies: dict[int, dict[int, float]]) -> dict:
    seeds = sorted(set.intersection(*[set(accuracies.get(c, {})) for c in CASES]))
    if not seeds:
        return {"verdict": "inconclusive", "detail": "not all four cases finished in any seed", "per_seed": {}}
    per_seed = {s: "agree" if tuple(sorted(CASES, key=lambda c: -accuracies[c][s])) == REPORT_ORDER else "disagree"
                for s in seeds}
    mean = {c: float(np.mean([accuracies[c][s] for s in seeds])) for c in CASES}
    order = sorted(CASES, key=lambda c: -mean[c])
    shown = [f"{100 * mean[c]:.2f}%" for c in order]
    detail = f"case {order[0]} {shown[0]}"
    for i in range(1, len(order)):  # '=' where the means print the same: a '>' would claim an order
        detail += f" {'=' if shown[i] == shown[i - 1] else '>'} case {order[i]} {shown[i]}"
    return {"verdict": _combine(per_seed), "per_seed": per_seed,
            "detail": f"mean test accuracy {detail} (report: case 1 > 3 > 2 > 4)"}


def _hardest(per_class: dict[int, dict | None]) -> dict:
    lowest = {c: sorted(pc, key=pc.get)[:4] for c, pc in per_class.items() if pc}
    if not lowest:
        return {"verdict": "inconclusive", "detail": "no finished classifier", "per_seed": {}}
    match = {c: len(HARDEST & set(names)) for c, names in lowest.items()}
    verdict = "agree" if all(m == 4 for m in match.values()) else "disagree"
    detail = "; ".join(f"case {c}: {', '.join(names)} ({match[c]}/4 as in the report)" for c, names in lowest.items())
    return {"verdict": verdict, "per_seed": {}, "detail": "four lowest per-class accuracies: " + detail}


def compute_findings(curves: dict[str, dict[int, list[dict]]], diverged: dict[str, set] | None = None,
                     accuracies: dict[int, dict[int, float]] | None = None,
                     per_class: dict[int, dict | None] | None = None) -> dict:
    """Verdicts (agree / disagree / inconclusive, with the numbers) on the report's observations.

    curves: run name -> seed -> history of finished or diverged runs; diverged: run name -> seeds;
    accuracies: case -> seed -> test accuracy; per_class: case -> class -> mean accuracy.
    A verdict holds when every seed gives it; seeds that disagree make it inconclusive."""
    diverged = diverged or {}
    checks = {
        "larger_n_lower_loss": ("larger n gives lower loss",
                                _ordering(curves, ["ae-n32", "ae-base", "ae-n128"], ["n=32", "n=64", "n=128"],
                                          decreasing=True)),
        "larger_p_higher_loss": ("larger p gives higher loss",
                                 _ordering(curves, ["ae-p0.1", "ae-base", "ae-p0.5"], ["p=0.1", "p=0.2", "p=0.5"],
                                           decreasing=False)),
        "adam_faster_than_sgd": ("Adam converges much faster than SGD (early stop at ~15 epochs)",
                                 _adam_vs_sgd(curves)),
        "lr_1e-2_unstable": ("lr=1e-2 oscillates and does not decrease", _unstable_lr(curves, diverged)),
        "batch_50_overfits": ("batch 50 rises in late epochs (overfitting); 100 and 150 are similar",
                              _overfitting(curves)),
    }
    if accuracies is not None:
        checks["case_order"] = ("accuracy: case 1 > case 3 > case 2 > case 4", _case_order(accuracies))
    if per_class is not None:
        checks["hardest_classes"] = ("hardest classes in every case: Shirt, Coat, Pullover, T-shirt/top",
                                     _hardest(per_class))
    return {key: {"observation": text, **result,
                  "per_seed": {str(s): v for s, v in result["per_seed"].items()}}
            for key, (text, result) in checks.items()}
