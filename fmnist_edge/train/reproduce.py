"""`fmnist-edge reproduce`: the report's ten autoencoder runs (Table I) and four classifier cases.

Layout of RUNS (read by the report):
    RUNS/plan.json                        what was asked: seeds, recipe, quick
    RUNS/seed<S>/ae-<name>/               one Trainer run folder (model.pt, history.json, metrics.json)
    RUNS/seed<S>/clf-case<K>/
    RUNS/reproduction.json                wall time, machine, finished runs
Finished runs are skipped; an interrupted run resumes from its last.pt.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from fmnist_edge.errors import FmnistEdgeError, UsageError
from fmnist_edge.fileio import NUMBER, json_typed, read_json, write_json
from fmnist_edge.idx import load_split
from fmnist_edge.train.config import QUICK_LIMIT, ModelConfig, TrainConfig, apply_recipe, recipe_lr

BASE = dict(n=64, dropout=0.2, optimizer="adam", lr=1e-3, batch_size=100)
# Table I: one hyper-parameter changed at a time. The base run serves experiments 1-6.
AUTOENCODER_RUNS: dict[str, dict] = {
    "base": {},
    "n32": {"n": 32},
    "n128": {"n": 128},
    "p0.1": {"dropout": 0.1},
    "p0.5": {"dropout": 0.5},
    "sgd": {"optimizer": "sgd"},
    "lr1e-2": {"lr": 1e-2},
    "lr1e-4": {"lr": 1e-4},
    "batch50": {"batch_size": 50},
    "batch150": {"batch_size": 150},
}
# The runs that vary n alone, by n: the reconstruction panel and the PCA baseline compare them.
N_RUNS = {32: "ae-n32", 64: "ae-base", 128: "ae-n128"}
EXPERIMENTS = {  # experiment -> (title, runs compared with the base)
    1: ("base", []),
    2: ("bottleneck size n", ["n32", "n128"]),
    3: ("dropout p", ["p0.1", "p0.5"]),
    4: ("optimizer", ["sgd"]),
    5: ("learning rate", ["lr1e-2", "lr1e-4"]),
    6: ("batch size", ["batch50", "batch150"]),
}
TRANSFER_ENCODER = "p0.1"  # the report's choice: n=64, p=0.1, Adam, lr 1e-3, batch 100
CASES = (1, 2, 3, 4)


@dataclass
class RunSpec:
    name: str  # e.g. "ae-base", "clf-case1"
    seed: int
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    encoder_from: str | None = None  # name of the autoencoder run whose encoder is reused

    def folder(self, root: Path) -> Path:
        return root / f"seed{self.seed}" / self.name


def plan(seeds: int = 1, recipe: str = "best", quick: bool = False, max_epochs: int | None = None,
         patience: int | None = None) -> list[RunSpec]:
    """Every run, autoencoders before the classifiers that need them, seed by seed."""
    runs: list[RunSpec] = []
    # Budgeted for under an hour of 2-core CPU per seed with two jobs: the autoencoders' cosine
    # schedule has done its work by epoch 20 (the last 15 without dropout). The best recipe's
    # classifiers whose encoder trains learn from shifted images, which pays off over 100 epochs
    # (30 for the report's recipe); heads on frozen encoders level off by 30.
    ae_epochs = max_epochs or (2 if quick else 20)
    wait = patience or (1 if quick else 6)
    limit = QUICK_LIMIT if quick else None
    for seed in range(seeds):
        for name, change in AUTOENCODER_RUNS.items():
            hp = {**BASE, **change}
            mcfg = ModelConfig(kind="autoencoder", n=hp["n"], dropout=hp["dropout"])
            tcfg = TrainConfig(optimizer=hp["optimizer"], lr=hp["lr"], batch_size=hp["batch_size"],
                               max_epochs=ae_epochs, patience=wait, seed=seed, limit=limit, recipe=recipe)
            runs.append(RunSpec(f"ae-{name}", seed, mcfg, apply_recipe(tcfg, mcfg)))
        for case in CASES:
            mcfg = ModelConfig(kind="classifier", n=64, dropout=0.1, case=case)
            long = recipe == "best" and not mcfg.frozen_encoder
            clf_epochs = max_epochs or (2 if quick else 100 if long else 30)
            # With the best recipe a classifier gets its whole budget: under the cosine schedule its
            # validation loss still creeps down late (case 1 had 10 epochs without a new best before
            # its best, at epoch 98), and a frozen encoder's head trains on cached features in
            # seconds, where stopping early only risked keeping an early best (seed 0's case 2 kept
            # epoch 1 of 7).
            clf_wait = clf_epochs if recipe == "best" and patience is None else wait
            tcfg = TrainConfig(optimizer="adam", lr=recipe_lr(recipe, mcfg), batch_size=100, max_epochs=clf_epochs,
                               patience=clf_wait, seed=seed, limit=limit, recipe=recipe)
            runs.append(RunSpec(f"clf-case{case}", seed, mcfg, apply_recipe(tcfg, mcfg),
                                encoder_from=f"ae-{TRANSFER_ENCODER}" if case in (1, 2) else None))
    return runs


# Raised whenever the training code changes what a run computes for the same configs, so that
# a folder started by the previous code is refused instead of resumed with mixed results.
TRAINING_CODE_VERSION = 2  # 2: revival counts steps over the run and reaches the weight average


# TrainConfig fields added since, with the values that leave a run as it was: at these values
# they stay out of the digest, so a folder started before they existed still resumes.
ADDED_FIELDS = {name: TrainConfig.__dataclass_fields__[name].default
                for name in ("teacher", "distill", "temperature", "calibrate_init", "mask_inputs", "augment_off_last",
                             "calibrate_active", "batch_norm", "recon_loss", "shift_inputs")}
ADDED_MODEL_FIELDS = {"decoder_dilation": ModelConfig.__dataclass_fields__["decoder_dilation"].default}


def _without_neutral(cfg, added: dict) -> dict:
    return {k: v for k, v in asdict(cfg).items() if not (k in added and v == added[k])}


def _config_view(run: RunSpec) -> list:
    """A run's configs as digested: the seed aside, later fields at their neutral values left out."""
    train_view = _without_neutral(run.train_cfg, ADDED_FIELDS)
    del train_view["seed"]
    return [run.name, _without_neutral(run.model_cfg, ADDED_MODEL_FIELDS), train_view]


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def configs_fingerprint(runs: list[RunSpec]) -> str:
    """A digest of every run's model and training config (seed aside) and of the training code's
    version: a recipe that changed between versions changes it, so a resumed folder never mixes
    two recipes."""
    return _digest([TRAINING_CODE_VERSION] + [_config_view(r) for r in runs if r.seed == 0])


def run_digests(runs: list[RunSpec]) -> dict[str, str]:
    """Run name -> a digest of its configs, the training code's version and the digest of the run
    whose encoder it reuses: a changed autoencoder makes the classifiers built on it stale too."""
    digests: dict[str, str] = {}
    for run in (r for r in runs if r.seed == 0):  # autoencoders come before their classifiers
        digests[run.name] = _digest([TRAINING_CODE_VERSION, _config_view(run), digests.get(run.encoder_from)])
    return digests


def _supersede(root: Path, names: list[str], old_configs: str) -> Path:
    """Move the folders of `names`, in every seed, to RUNS/superseded/<old digest>/: they are
    retrained, and nothing finished is deleted. A rename is atomic, so a kill loses nothing."""
    shelf = root / "superseded" / old_configs
    for seed_dir in sorted(p for p in root.glob("seed*") if p.is_dir()):
        for name in names:
            if (seed_dir / name).exists():
                target = shelf / seed_dir.name / name
                target.parent.mkdir(parents=True, exist_ok=True)
                suffix = 1
                while target.exists():  # superseded twice under the same digest: keep both
                    target, suffix = shelf / seed_dir.name / f"{name}.{suffix}", suffix + 1
                (seed_dir / name).rename(target)
    return shelf


def machine_info() -> dict:
    import os

    import torch

    from fmnist_edge.machine import cpu_model

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            **cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def reproduce(root: str | Path, seeds: int = 1, recipe: str = "best", quick: bool = False, data_dir=None,
              max_epochs: int | None = None, patience: int | None = None, device: str = "auto",
              overview=None, rerun_changed: bool = False, log=None, jobs: int | None = None) -> dict:
    """Run (or resume) every planned run, `jobs` at a time (default: one per core, on a CPU);
    returns the reproduction record. With `rerun_changed`, a folder whose recipe changed since
    keeps its unchanged runs and retrains the others."""
    from fmnist_edge.train.jobs import default_jobs
    from fmnist_edge.train.loop import resolve_device

    log = log or (lambda message: None)

    for name, value in (("--max-epochs", max_epochs), ("--patience", patience)):
        if value is not None and value < 1:  # 0 would read as "not given" and train the default
            raise UsageError(f"{name} must be at least 1, got {value}")
    resolve_device(device)  # an unknown device is refused here, not in every worker
    jobs = default_jobs(device) if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    root = Path(root)
    from fmnist_edge.train.checkpoint import MODEL_FILE, RESUME_FILE
    from fmnist_edge.train.run_state import run_state

    held = run_state(root)
    if held != "new":  # its plan.json and seed folders would land beside another run's checkpoint
        file = MODEL_FILE if held == "finished" else RESUME_FILE
        raise FmnistEdgeError(f"{root} holds a training run ({file}); a reproduction needs a folder of its own")
    runs = plan(seeds, recipe, quick, max_epochs, patience)
    for run in runs:  # before plan.json is written
        run.model_cfg.check()
        run.train_cfg.check()
    settings = {"recipe": recipe, "quick": quick, "max_epochs": max_epochs, "patience": patience,
                "configs": configs_fingerprint(runs)}
    digests = run_digests(runs)
    record_path = root / "reproduction.json"
    spent = _time_spent(record_path)  # checked, as plan.json is, before anything is moved or written
    plan_path = root / "plan.json"
    stale: list = []
    if plan_path.is_file():
        before = _earlier_plan(plan_path)
        seeds = max(seeds, before.get("seeds", seeds))
        stale = _stale_runs(root, before, settings, digests, rerun_changed)
    for split in ("train", "test"):  # missing or damaged data is said before anything is moved or written
        load_split(split, data_dir)
    if stale:
        shelf = _supersede(root, stale, before["configs"])
        log(f"retraining {len(stale)} run(s) per seed whose configs changed: {', '.join(stale)} "
            f"(the old ones are in {shelf})")
    # absolute: `report` reads it from wherever it is run, not from this working folder
    named_data = os.path.abspath(data_dir) if data_dir else None
    write_json(plan_path, {**settings, "seeds": seeds, "data_dir": named_data,
                           "runs": [r.name for r in runs if r.seed == 0], "run_configs": digests})
    started = time.perf_counter()
    statuses = {(r.seed, r.name): _checked_state(r, runs, root, log) for r in runs}
    if overview:
        overview.start(runs, statuses)
    todo = [r for r in runs if statuses[(r.seed, r.name)] not in ("finished", "diverged")]

    def started_run(run: RunSpec) -> None:
        if overview:
            overview.running(run)

    def finished_run(run: RunSpec, outcome: str, seconds: float) -> None:
        if overview:
            overview.finished(run, outcome, seconds)
        # after every run, so a kill loses no accounting
        write_json(record_path, _record(seeds, recipe, quick, spent + time.perf_counter() - started, jobs))

    if jobs == 1:
        for run in todo:
            started_run(run)
            t0 = time.perf_counter()
            finished_run(run, train_run(run, root, data_dir, device), time.perf_counter() - t0)
    else:
        from fmnist_edge.train.jobs import run_in_processes

        run_in_processes(sorted(todo, key=_priority(todo)), jobs, key=lambda r: (r.seed, r.name),
                         needs=lambda r: (r.seed, r.encoder_from) if r.encoder_from else None,
                         target=train_run, args=lambda r: (r, root, data_dir, device),
                         on_start=started_run, on_finish=finished_run, label=lambda r: f"seed {r.seed} {r.name}")
    record = _record(seeds, recipe, quick, spent + time.perf_counter() - started, jobs)
    write_json(record_path, record)
    return record


def train_run(run: RunSpec, root: Path, data_dir, device: str) -> str:
    """Train (or resume) one planned run: "done", "diverged", or "skipped" when the autoencoder
    whose encoder it needs diverged. Top-level, so that a worker process can be handed it."""
    from fmnist_edge.train.loop import Diverged, Trainer

    folder = run.folder(root)
    encoder = folder.parent / run.encoder_from / "model.pt" if run.encoder_from else None
    if encoder is not None and not encoder.is_file():  # its autoencoder diverged: nothing to transfer
        return "skipped"
    try:
        Trainer(run.model_cfg, replace(run.train_cfg), folder, data_dir=data_dir, encoder_ckpt=encoder,
                resume=_state(folder) == "partial", device=device, quiet=True,
                resume_how="by running the same `fmnist-edge reproduce` command again",
                restart_how=f"move {folder} away and run again to start that run over").run()
        return "done"
    except Diverged as exc:
        # A diverging configuration (lr 1e-2 may) is a finding, not a crash: record it, go on.
        write_json(folder / "diverged.json", {"message": str(exc)})
        return "diverged"


def _priority(todo: list[RunSpec]):
    """Sort key for parallel runs: seed by seed; within a seed, the encoder others wait for first,
    then the long classifiers whose encoder trains, so that no long run is left to finish alone;
    otherwise the plan's order (sorting is stable)."""
    needed = {(r.seed, r.encoder_from) for r in todo if r.encoder_from}
    return lambda r: (r.seed, (r.seed, r.name) not in needed,
                      not (r.model_cfg.kind == "classifier" and not r.model_cfg.frozen_encoder))


def _time_spent(record_path: Path) -> float:
    """The training time an earlier reproduction in the folder recorded, 0 for a new folder."""
    if not record_path.exists():
        return 0.0
    way_out = "it holds the training time spent so far: put it right, or delete the file to count from zero"
    try:
        spent = read_json(record_path).get("wall_time_s", 0.0)
    except FmnistEdgeError as exc:
        raise FmnistEdgeError(f"{exc}; {way_out}") from None
    if not json_typed(spent, NUMBER):
        raise FmnistEdgeError(f"{record_path}: its wall_time_s is not a number; {way_out}")
    return float(spent)


def _earlier_plan(path: Path) -> dict:
    """The plan.json of an earlier reproduction in the folder, checked: what its runs were trained
    with decides which of them can be kept."""
    before = read_json(path)
    wrong = next((f"its {key} is not {what}" for key, kind, what in
                  (("seeds", int, "a whole number"), ("configs", str, "a digest"), ("run_configs", dict, "an object"))
                  if key in before and not json_typed(before[key], kind)), "")
    if not wrong and "configs" in before and not re.fullmatch(r"[0-9a-f]{1,64}", before["configs"]):
        wrong = "its configs is not a digest"  # it names a folder under superseded/
    if wrong:
        raise FmnistEdgeError(f"{path}: {wrong}; it records what this folder's runs were trained with: put it "
                              "right, or use another --out")
    return before


def _stale_runs(root: Path, before: dict, settings: dict, digests: dict[str, str], rerun_changed: bool) -> list[str]:
    """The runs of an existing folder to retrain ([] when it matches the plan), or a refusal:
    finished runs would otherwise be skipped and silently mixed with runs of other settings."""
    if "configs" not in before:
        raise FmnistEdgeError(f"{root} holds a reproduction made by an earlier version of fmnist-edge, whose "
                              "recipes differ; use another --out")
    changed = [k for k, v in settings.items() if before.get(k) != v]
    if not changed:
        return []
    if changed != ["configs"]:  # another recipe, --quick or epoch budget: every run differs
        resume = {"quick": "add --quick to resume it" if before.get("quick") else "drop --quick to resume it",
                  "recipe": f"--recipe {before.get('recipe')} resumes it"}
        hints = [resume[k] for k in changed if k in resume and before.get(k) is not None]
        raise FmnistEdgeError(f"{root} holds a reproduction with other settings "
                              f"({', '.join(f'{k}={before.get(k)}' for k in changed)}); "
                              + "; ".join([*hints, "use another --out"]))
    if not rerun_changed:
        raise FmnistEdgeError(f"{root} holds a reproduction with other settings (configs={before['configs']}): "
                              "--rerun-changed retrains just the changed runs, or use another --out")
    if "run_configs" not in before:
        raise FmnistEdgeError(f"{root}: its plan.json predates per-run digests, so the changed runs cannot be "
                              "told apart; use another --out")
    return [name for name, digest in digests.items() if before["run_configs"].get(name) != digest]


def _state(folder: Path) -> str:
    from fmnist_edge.train.run_state import run_state

    return "diverged" if (folder / "diverged.json").is_file() else run_state(folder)


def _checked_state(run: RunSpec, runs: list[RunSpec], root: Path, log: Callable[[str], None]) -> str:
    """The run's state, once what it holds is known to read back. A finished run whose model.pt
    does not is refused, naming the way out; its metrics.json or history.json that does not is
    written again from model.pt, which holds both. A resume point that does not read back is
    kept aside as last.pt.unreadable, and the run starts over."""
    from fmnist_edge.train import checkpoint, run_records

    folder = run.folder(root)
    state = _state(folder)
    if state == "finished":
        try:
            payload = checkpoint.load_raw(folder / checkpoint.MODEL_FILE)
        except FmnistEdgeError as exc:
            raise FmnistEdgeError(f"{exc}: this finished run cannot be kept; move {folder} out of {root} "
                                  "and run again to train it anew" + _built_on(run, runs, root)) from None
        for file, key, check in (("metrics.json", "metrics", run_records.checked_metrics),
                                 ("history.json", "history", run_records.checked_history)):
            try:  # a missing file reads as empty
                why = None if check(folder / file, run.name) else f"{file}: missing"
            except FmnistEdgeError as exc:  # its message begins with the file's name
                why = str(exc) if str(exc).startswith(file) else f"{file}: {exc}"
            if why is None:
                continue
            why = f"{folder}/{why}"
            if not payload.get(key):
                raise FmnistEdgeError(f"{why}, and model.pt holds no copy: "
                                      f"move {folder} out of {root} and run again to train it anew")
            try:
                write_json(folder / file, payload[key])
            except (OSError, FmnistEdgeError) as exc:  # a read-only run: the report notes what it lacks
                log(f"{why}; not written again from model.pt ({exc})")
                continue
            log(f"{why}; written again from model.pt")
    elif state == "partial":
        from fmnist_edge.train.run_state import load_resume_point

        resume = folder / checkpoint.RESUME_FILE
        try:
            load_resume_point(resume)
        except FmnistEdgeError as exc:
            aside, suffix = resume.with_name(resume.name + ".unreadable"), 1
            while aside.exists():  # set aside before: keep that one too
                aside, suffix = resume.with_name(f"{resume.name}.unreadable.{suffix}"), suffix + 1
            try:
                resume.rename(aside)
            except OSError as os_exc:
                raise FmnistEdgeError(f"{exc}; it cannot be set aside ({os_exc.strerror}): move it away "
                                      "and run again to start that run over") from None
            log(f"{exc}: kept as {aside.name}; the run starts over")
            return "new"
    return state



def _built_on(run: RunSpec, runs: list[RunSpec], root: Path) -> str:
    """The classifiers, finished or begun, that were trained on the run's encoder, for a message."""
    names = [str(r.folder(root)) for r in runs if r.seed == run.seed and r.encoder_from == run.name
             and r.folder(root).is_dir()]
    return f" (and {', '.join(names)}, trained on its encoder, to train them on the new one)" if names else ""


def _record(seeds: int, recipe: str, quick: bool, wall: float, jobs: int = 1) -> dict:
    from fmnist_edge.train.jobs import threads_per_job

    machine = machine_info()
    if jobs > 1:
        machine["torch_threads"] = threads_per_job(jobs)  # what each run used, not this process
    return {"seeds": seeds, "recipe": recipe, "quick": quick, "wall_time_s": round(wall, 1), "jobs": jobs,
            "machine": machine}
