"""reproduce + report: a --quick reproduction end to end on fake data, the findings' verdicts on
hand-made curves, the PCA baseline against a brute-force reconstruction, the overview."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist_edge.cli import app
from fmnist_edge.train.findings import compute_findings, late_rise
from fmnist_edge.train.pca import pca_fit, pca_mse, pca_reconstruct
from conftest import refused  # noqa: E402

FIGURES = ["fig2_bottleneck.png", "fig3_dropout.png", "fig4_optimizer.png", "fig5_learning_rate.png",
           "fig6_batch_size.png", "fig7_classifier_loss.png", "fig8_classifier_accuracy.png", "fig9_confusion.png",
           "reconstructions.png"]
RUN_NAMES = ["ae-base", "ae-n32", "ae-n128", "ae-p0.1", "ae-p0.5", "ae-sgd", "ae-lr1e-2", "ae-lr1e-4",
             "ae-batch50", "ae-batch150", "clf-case1", "clf-case2", "clf-case3", "clf-case4"]


# -- end to end (torch) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory, make_fake_data):
    """A --quick reproduction (one seed, report included) on 400 + 200 fake images, via the CLI."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core box are many times slower than one
    try:
        root = tmp_path_factory.mktemp("reproduce")
        data = make_fake_data(root / "data", 400, 200)
        runs = root / "runs"
        result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(data),
                                          "--device", "cpu", "--jobs", "1"])
        yield {"runs": runs, "data": data, "result": result, "root": root}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.torch
def test_quick_reproduction_writes_every_run_and_the_report(quick):
    result, runs = quick["result"], quick["runs"]
    assert result.exit_code == 0, result.stdout + result.stderr
    for name in RUN_NAMES:
        folder = runs / "seed0" / name
        assert (folder / "model.pt").is_file() or (folder / "diverged.json").is_file(), name
    assert "seed 0 clf-case4: done" in result.stdout  # one line per event when not a terminal
    report = runs / "report"
    for name in FIGURES + ["summary.md", "summary.json"]:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    text = (report / "summary.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in text
    assert "Report's Figure 9" in text and "## Findings" in text


@pytest.mark.torch
def test_report_command_writes_sane_summary_json(quick, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(quick["runs"]), "--out", str(out),
                                      "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    s = json.loads((out / "summary.json").read_text())
    assert set(s["classifier"]) == {"1", "2", "3", "4"}
    for case in s["classifier"].values():
        assert 0.0 <= case["test_accuracy_mean"] <= 1.0 and case["test_accuracy_std"] == 0.0
        assert 0.0 <= case["test_accuracy_tta_mean"] <= 1.0 and case["test_accuracy_tta_std"] == 0.0
        assert case["seeds"] == [0] and set(case["per_class_accuracy"]) >= {"Shirt", "Coat"}
    assert len(s["autoencoder"]) == 10
    for run in s["autoencoder"].values():
        assert {"n", "p", "optimizer", "lr", "batch_size", "test_mse_mean", "test_mse_std", "epochs"} <= set(run)
        assert run["test_mse_mean"] is None or 0.0 < run["test_mse_mean"] < 0.5
        assert run["dead_latent_units"] is None or 0 <= run["dead_latent_units"] <= run["n"]
    assert s["autoencoder"]["ae-sgd"]["optimizer"] == "sgd" and s["autoencoder"]["ae-n32"]["n"] == 32
    pca = [s["pca_mse"][k] for k in ("32", "64", "128")]
    assert all(0.0 < v < 0.2 for v in pca) and pca[0] > pca[1] > pca[2]
    assert s["wall_time_s"] > 0 and s["machine"]["cpu_count"] >= 1
    run_times = [json.loads(p.read_text())["wall_time_s"] for p in quick["runs"].glob("seed0/*/metrics.json")]
    assert len(run_times) == 14 and s["seed_training_time_s"]["0"] == pytest.approx(sum(run_times), abs=0.1)
    assert "Training time per seed (the sum of its runs' times): seed 0" in (out / "summary.md").read_text()
    assert {f["verdict"] for f in s["findings"].values()} <= {"agree", "disagree", "inconclusive"}
    assert {"larger_n_lower_loss", "larger_p_higher_loss", "adam_faster_than_sgd", "lr_1e-2_unstable",
            "batch_50_overfits"} <= set(s["findings"])


@pytest.mark.torch
def test_second_reproduce_skips_finished_runs(quick):
    runs = quick["runs"]
    before = {p: p.stat().st_mtime_ns for p in runs.glob("seed0/*/model.pt")}
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(quick["data"]),
                                      "--device", "cpu", "--no-report"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert time.perf_counter() - started < 10
    assert "running" not in result.stdout
    assert {p: p.stat().st_mtime_ns for p in runs.glob("seed0/*/model.pt")} == before


def _again(runs, data, *extra):
    return CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(data),
                                    "--device", "cpu", "--jobs", "1", "--no-report", *extra])


@pytest.mark.torch
def test_a_finished_run_whose_model_does_not_read_back_is_refused_with_the_way_out(quick, tmp_path):
    """A finished run is skipped only when its model.pt reads back: a damaged one is named, with
    the classifiers trained on its encoder, and nothing is trained or changed."""
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    model = runs / "seed0" / "ae-p0.1" / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    result = _again(runs, quick["data"])
    refused(result, "not a readable PyTorch checkpoint")
    message = result.stderr
    assert f"move {model.parent} out of {runs}" in message and "clf-case1" in message and "clf-case2" in message
    assert "clf-case3" not in message
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()} == before


@pytest.mark.torch
def test_a_finished_run_whose_metrics_or_history_do_not_read_back_gets_them_from_its_model(quick, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    folder = runs / "seed0" / "clf-case4"
    metrics, history = (folder / "metrics.json").read_text(), (folder / "history.json").read_text()
    (folder / "metrics.json").write_text("")
    (folder / "history.json").unlink()
    result = _again(runs, quick["data"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "running" not in result.stdout
    assert f"{folder / 'metrics.json'}: not JSON" in result.stderr
    assert f"{folder / 'history.json'}: missing; written again from model.pt" in result.stderr
    assert json.loads((folder / "metrics.json").read_text()) == json.loads(metrics)
    assert json.loads((folder / "history.json").read_text()) == json.loads(history)


@pytest.mark.torch
@pytest.mark.parametrize("damage", ["truncated", "a model.pt copied over it"])
def test_an_unreadable_resume_point_is_kept_aside_and_the_run_starts_over(quick, tmp_path, damage):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    folder = runs / "seed0" / "clf-case4"
    content = b"PK\x03\x04 truncated" if damage == "truncated" else (folder / "model.pt").read_bytes()
    for name in ("model.pt", "metrics.json"):  # interrupted: history.json stays, as it does
        (folder / name).unlink()
    (folder / "last.pt").write_bytes(content)
    (folder / "last.pt.unreadable").write_bytes(b"set aside before")
    result = _again(runs, quick["data"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "kept as last.pt.unreadable.1; the run starts over" in result.stderr
    assert (folder / "last.pt.unreadable.1").read_bytes() == content
    assert (folder / "last.pt.unreadable").read_bytes() == b"set aside before"
    assert (folder / "model.pt").is_file()
    assert "seed 0 clf-case4: done" in result.stdout
    epochs = json.loads((folder / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in json.loads((folder / "history.json").read_text())] == list(range(1, epochs + 1))


@pytest.mark.torch
def test_an_interrupted_reproduction_says_how_to_continue_it(quick, tmp_path, monkeypatch):
    """Not with train's --resume, which reproduce does not have: with the same command."""
    from fmnist_edge.train.loop import Trainer

    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(runs / "seed0" / "clf-case4")

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", ctrl_c)
    result = _again(runs, quick["data"])
    refused(result, "interrupted in epoch 1", "continue by running the same `fmnist-edge reproduce` command again",
            exit_code=130)


@pytest.mark.torch
def test_parallel_jobs_train_the_same_runs_as_one_at_a_time(quick, tmp_path):
    """--jobs 2: every run in a worker process with its share of the cores; with one thread each,
    as the sequential fixture has, every run computes the same numbers, and a classifier starts
    only once the autoencoder whose encoder it reuses is finished."""
    from fmnist_edge.train.jobs import threads_per_job

    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(quick["data"]),
                                      "--device", "cpu", "--no-report", "--jobs", "2"])
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines.index("seed 0 clf-case1: running") > next(i for i, l in enumerate(lines)
                                                             if l.startswith("seed 0 ae-p0.1: done"))
    record = json.loads((runs / "reproduction.json").read_text())
    assert record["jobs"] == 2 and record["machine"]["torch_threads"] == threads_per_job(2)
    exact = threads_per_job(2) == 1
    for name in RUN_NAMES:
        ours = json.loads((runs / "seed0" / name / "metrics.json").read_text())
        theirs = json.loads((quick["runs"] / "seed0" / name / "metrics.json").read_text())
        for key in ("test_mse", "test_accuracy", "test_accuracy_tta", "best_val_loss", "epochs"):
            if key in theirs:
                assert ours[key] == (theirs[key] if exact else pytest.approx(theirs[key], rel=1e-3)), (name, key)
    from fmnist_edge.train.summary_md import render_markdown

    summary = json.loads((quick["runs"] / "report" / "summary.json").read_text())
    assert "runs at a time" not in render_markdown(summary)
    assert " per run, 2 runs at a time)" in render_markdown({**summary, "jobs": 2})


@pytest.mark.torch
def test_report_on_the_finished_seeds_of_a_running_reproduction(quick, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs)
    plan = json.loads((runs / "plan.json").read_text())
    (runs / "plan.json").write_text(json.dumps({**plan, "seeds": 3}))  # as if seeds 1 and 2 were still to run
    args = ["report", str(runs), "--data-dir", str(quick["data"])]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    notes = json.loads((tmp_path / "all" / "summary.json").read_text())["notes"]
    assert "seed 1 ae-base: missing" in notes
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "first"), "--seeds", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert summary["seeds"] == [0] and not any(n.startswith("seed 1") for n in summary["notes"])
    assert any(n.startswith("seeds 0 of the 3 planned") for n in summary["notes"])
    all_seeds = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert set(all_seeds["seed_training_time_s"]) == {"0"}  # seeds with missing runs have no time


@pytest.mark.torch
def test_a_changed_recipe_is_refused_not_mixed(quick, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs)
    _frozen_heads_without_smoothing(monkeypatch)  # as if a later version changed what "best" means
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(quick["data"]),
                                      "--device", "cpu", "--no-report"])
    refused(result, "other settings (configs=", "use another --out")


def test_a_quick_folder_without_quick_says_how_to_resume_it(quick, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(quick["runs"] / "plan.json", runs / "plan.json")
    result = CliRunner().invoke(app, ["reproduce", "--out", str(runs), "--data-dir", str(quick["data"]),
                                      "--device", "cpu", "--no-report"])
    refused(result, "other settings (quick=True", "add --quick to resume it; use another --out")
    assert [p.name for p in runs.iterdir()] == ["plan.json"]


def test_reproduce_refuses_a_training_run_folder(tmp_path, fake_data_dir):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"a finished run")
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(tmp_path / "run"), "--data-dir",
                                      str(fake_data_dir), "--no-report"])
    refused(result, "holds a training run (model.pt)", "a folder of its own")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["model.pt"]


def _frozen_heads_without_smoothing(monkeypatch):
    """As if a later version changed the recipe of the frozen-encoder cases (2 and 4) only."""
    from fmnist_edge.train import config

    real = config.apply_recipe

    def newer_recipe(cfg, model_cfg):
        cfg = real(cfg, model_cfg)
        if model_cfg.kind == "classifier" and model_cfg.frozen_encoder:
            cfg.label_smoothing = 0.05
        return cfg

    monkeypatch.setattr("fmnist_edge.train.reproduce.apply_recipe", newer_recipe)


@pytest.mark.torch
def test_rerun_changed_retrains_only_the_changed_runs_and_keeps_the_old_ones(quick, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs)
    old_digest = json.loads((runs / "plan.json").read_text())["configs"]
    before = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("seed0/*/model.pt")}
    _frozen_heads_without_smoothing(monkeypatch)
    args = ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(quick["data"]), "--device", "cpu",
            "--no-report"]
    refused(CliRunner().invoke(app, args), "--rerun-changed retrains just the changed runs")
    assert {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("seed0/*/model.pt")} == before  # refused: untouched

    result = CliRunner().invoke(app, args + ["--rerun-changed"])
    assert result.exit_code == 0, result.output
    assert "retraining 2 run(s) per seed whose configs changed: clf-case2, clf-case4" in result.stderr
    after = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("seed0/*/model.pt")}
    assert set(after) == set(before)
    assert {name for name in before if after[name] != before[name]} == {"clf-case2", "clf-case4"}
    shelf = runs / "superseded" / old_digest / "seed0"
    assert sorted(p.name for p in shelf.iterdir()) == ["clf-case2", "clf-case4"]
    assert (shelf / "clf-case2" / "model.pt").stat().st_mtime_ns == before["clf-case2"]  # the old run, kept
    from fmnist_edge.train.checkpoint import load_raw

    assert load_raw(runs / "seed0" / "clf-case2" / "model.pt")["train_config"]["label_smoothing"] == 0.05
    again = CliRunner().invoke(app, args)  # the folder now matches the newer recipe: nothing to do
    assert again.exit_code == 0 and "running" not in again.stdout


def test_best_classifiers_use_their_whole_budget_unless_patience_is_given():
    pytest.importorskip("torch")
    from fmnist_edge.train.reproduce import plan

    def budget(runs):
        return {r.name: (r.train_cfg.max_epochs, r.train_cfg.patience, r.train_cfg.augment_shift)
                for r in runs if r.name.startswith("clf")}

    # trained encoders: 100 epochs of flips and 1-pixel shifts; frozen ones: 30 epochs on cached features
    assert budget(plan(1, "best")) == {"clf-case1": (100, 100, 1), "clf-case2": (30, 30, 0),
                                       "clf-case3": (100, 100, 1), "clf-case4": (30, 30, 0)}
    assert set(budget(plan(1, "paper")).values()) == {(30, 6, 0)}  # the report's recipe stops early everywhere
    assert {p for _, p, _ in budget(plan(1, "best", patience=4)).values()} == {4}
    assert {e for e, _, _ in budget(plan(1, "best", max_epochs=7)).values()} == {7}


def test_a_changed_encoder_makes_the_classifiers_on_it_stale():
    pytest.importorskip("torch")
    from fmnist_edge.train.reproduce import TRANSFER_ENCODER, plan, run_digests

    runs = plan(1, "best", True)
    before = run_digests(runs)
    next(r for r in runs if r.name == f"ae-{TRANSFER_ENCODER}").train_cfg.weight_decay = 1e-4
    after = run_digests(runs)
    assert {name for name in before if before[name] != after[name]} == {f"ae-{TRANSFER_ENCODER}", "clf-case1",
                                                                         "clf-case2"}


@pytest.mark.torch
def test_rerun_changed_refuses_a_plan_without_per_run_digests(quick, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs)
    plan = json.loads((runs / "plan.json").read_text())
    del plan["run_configs"]
    (runs / "plan.json").write_text(json.dumps(plan))
    _frozen_heads_without_smoothing(monkeypatch)
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(quick["data"]),
                                      "--device", "cpu", "--no-report", "--rerun-changed"])
    refused(result, "predates per-run digests")
    assert not (runs / "superseded").exists()


def test_fields_added_later_leave_the_digest_of_earlier_folders_unchanged():
    """A TrainConfig or ModelConfig field added after a folder was planned, at its neutral value,
    stays out of the digest: the digest is the one the code before the field would compute. Set,
    it counts."""
    pytest.importorskip("torch")
    from dataclasses import asdict

    from fmnist_edge.train import reproduce
    from fmnist_edge.train.reproduce import ADDED_FIELDS, ADDED_MODEL_FIELDS, configs_fingerprint, plan

    runs = plan(3, "best", False, None, None)
    for run in runs:  # the recipe as it was when runs/reproduction3 was planned
        run.train_cfg.calibrate_init, run.train_cfg.calibrate_active = False, 0.5
        if run.model_cfg.kind == "autoencoder":
            run.train_cfg.dropout_off_last = 0.25
        elif run.model_cfg.kind == "classifier" and run.model_cfg.frozen_encoder:
            run.train_cfg.label_smoothing, run.train_cfg.lr, run.train_cfg.patience = 0.1, 1e-2, 6
        elif run.model_cfg.kind == "classifier":
            run.train_cfg.augment_shift, run.train_cfg.max_epochs, run.train_cfg.patience = 0, 30, 6
            run.train_cfg.augment_off_last = 0.0
    before_the_fields = reproduce._digest([reproduce.TRAINING_CODE_VERSION] + [
        [r.name, {k: v for k, v in asdict(r.model_cfg).items() if k not in ADDED_MODEL_FIELDS},
         {k: v for k, v in asdict(r.train_cfg).items() if k != "seed" and k not in ADDED_FIELDS}]
        for r in runs if r.seed == 0])
    assert configs_fingerprint(runs) == before_the_fields == "60c32582c864b1cb"  # runs/reproduction3's plan
    case1 = next(r for r in runs if r.seed == 0 and r.name == "clf-case1")
    base = next(r for r in runs if r.seed == 0 and r.name == "ae-base")
    base.model_cfg.decoder_dilation = 1
    assert configs_fingerprint(runs) != before_the_fields
    base.model_cfg.decoder_dilation = 2
    assert configs_fingerprint(runs) == before_the_fields
    base.train_cfg.recon_loss = "bce"
    assert configs_fingerprint(runs) != before_the_fields
    base.train_cfg.recon_loss = "mse"
    assert configs_fingerprint(runs) == before_the_fields
    case1.train_cfg.teacher, case1.train_cfg.distill = "teacher.pt", 0.9
    assert configs_fingerprint(runs) != before_the_fields


@pytest.mark.torch
def test_a_folder_of_an_earlier_version_is_refused(quick, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs)
    plan = json.loads((runs / "plan.json").read_text())
    del plan["configs"]
    (runs / "plan.json").write_text(json.dumps(plan))
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir", str(quick["data"]),
                                      "--device", "cpu", "--no-report"])
    refused(result, "made by an earlier version of fmnist-edge")


@pytest.mark.torch
def test_report_measures_the_mirror_averaged_accuracy_that_older_runs_lack(quick, tmp_path):
    """Runs trained before metrics.json held `test_accuracy_tta` get it from their model.pt: the
    same figure training measured, and the run folder is left as it was."""
    from fmnist_edge.train.report import write_report

    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    metrics_file = runs / "seed0" / "clf-case1" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    measured = metrics.pop("test_accuracy_tta")
    metrics_file.write_text(json.dumps(metrics))
    s = write_report(runs, tmp_path / "out", data_dir=quick["data"])
    assert s["classifier"]["1"]["test_accuracy_tta_mean"] == pytest.approx(measured)
    assert s["classifier"]["1"]["test_accuracy_tta_per_seed"] == {"0": pytest.approx(measured)}
    assert "test_accuracy_tta" not in json.loads(metrics_file.read_text())
    assert "accuracy with --tta measured from model.pt for 1 run(s)" in " ".join(s["notes"])
    md = (tmp_path / "out" / "summary.md").read_text()
    assert f"| {100 * metrics['test_accuracy']:.2f}% | {100 * measured:.2f}% |" in md  # test accuracy, with --tta


@pytest.mark.torch
def test_report_measures_a_run_tested_on_fewer_images_on_those_images(quick, tmp_path, monkeypatch):
    from fmnist_edge.train import report
    from fmnist_edge.train.checkpoint import load_model
    from fmnist_edge.train.data import load_test
    from fmnist_edge.train.evaluate import mirror_averaged_accuracy

    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    folder = runs / "seed0" / "clf-case3"
    metrics = json.loads((folder / "metrics.json").read_text())
    del metrics["test_accuracy_tta"]
    (folder / "metrics.json").write_text(json.dumps({**metrics, "test_limited": True}))
    model = load_model(folder / "model.pt")[0]
    on_all = mirror_averaged_accuracy(model, load_test(quick["data"], limit=200))  # the fake test set's 200
    # a limit whose images give another accuracy than all 200: else the test could not tell them apart
    limit, expected = next((k, a) for k in (50, 40, 30, 60, 70, 20, 80, 90)
                           if (a := mirror_averaged_accuracy(model, load_test(quick["data"], limit=k))) != on_all)
    monkeypatch.setattr(report, "QUICK_LIMIT", limit)
    s = report.write_report(runs, tmp_path / "out", data_dir=quick["data"])
    assert s["classifier"]["3"]["test_accuracy_tta_mean"] == expected


@pytest.mark.torch
def test_report_without_a_readable_checkpoint_says_which_run_and_goes_on(quick, tmp_path):
    from fmnist_edge.train.report import write_report

    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    for case in (2, 4):
        folder = runs / "seed0" / f"clf-case{case}"
        metrics = json.loads((folder / "metrics.json").read_text())
        del metrics["test_accuracy_tta"]
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (runs / "seed0" / "clf-case2" / "model.pt").write_bytes(b"not a checkpoint")
    s = write_report(runs, tmp_path / "out", data_dir=quick["data"])
    notes = " ".join(s["notes"])
    assert "accuracy with --tta not measured: seed 0 clf-case2" in notes
    assert "measured from model.pt for 1 run(s)" in notes  # case 4 after it still measured
    assert s["classifier"]["2"]["test_accuracy_tta_mean"] is None
    assert s["classifier"]["4"]["test_accuracy_tta_mean"] is not None
    row = next(line for line in (tmp_path / "out" / "summary.md").read_text().splitlines() if line.startswith("| 2 |"))
    assert row.split(" | ")[3] == "n/a"  # case, description, test accuracy, with --tta


@pytest.mark.torch
@pytest.mark.parametrize("second_seed", [False, True])
def test_a_reconstruction_row_whose_checkpoint_is_unreadable_comes_from_another_seed_or_is_noted(
        quick, tmp_path, second_seed):
    from fmnist_edge.train.report import write_report

    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    if second_seed:
        shutil.copytree(runs / "seed0", runs / "seed1")
        plan = json.loads((runs / "plan.json").read_text())
        (runs / "plan.json").write_text(json.dumps({**plan, "seeds": 2}))
    model = runs / "seed0" / "ae-n32" / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    s = write_report(runs, tmp_path / "out", data_dir=quick["data"])
    caption = next(f["caption"] for f in s["figures"] if f["file"] == "reconstructions.png")
    note = next(n for n in s["notes"] if n.startswith("ae-n32: model.pt of seed 0 ("))
    if second_seed:
        assert "for n = 32, 64, 128, and the PCA" in caption and note.endswith("drawn from seed 1")
    else:
        assert "for n = 64, 128, and the PCA reconstructions for n = 32, 64, 128." in caption
        assert note.endswith("left out of the reconstruction panel")
    assert note in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.torch
def test_report_tolerates_missing_and_diverged_runs(quick, tmp_path):
    from fmnist_edge.train.report import write_report

    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report", "*.pt"))
    shutil.rmtree(runs / "seed0" / "ae-sgd")
    lr = runs / "seed0" / "ae-lr1e-2"
    (lr / "metrics.json").unlink()
    (lr / "diverged.json").write_text('{"message": "training diverged (nan loss at epoch 2); kept"}')
    s = write_report(runs, tmp_path / "out", data_dir=quick["data"])
    notes = " ".join(s["notes"])
    assert "ae-sgd: missing" in notes and "ae-lr1e-2: diverged" in notes
    assert s["autoencoder"]["ae-sgd"]["test_mse_mean"] is None
    assert s["autoencoder"]["ae-lr1e-2"]["diverged_seeds"] == [0]
    assert s["findings"]["adam_faster_than_sgd"]["verdict"] == "inconclusive"
    assert s["findings"]["lr_1e-2_unstable"]["verdict"] == "agree"
    # no model.pt was copied: every run counts as unfinished, the panel is skipped, nothing crashes
    assert not (tmp_path / "out" / "reconstructions.png").exists()
    assert (tmp_path / "out" / "fig4_optimizer.png").is_file()


# -- no torch needed -----------------------------------------------------------------------------
def test_report_on_a_missing_folder_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr.startswith("fmnist-edge: error:") and result.stderr.count("\n") == 1
    assert "no such runs folder" in result.stderr
    (tmp_path / "a-file").write_text("x")
    refused(CliRunner().invoke(app, ["report", str(tmp_path / "a-file")]), "is a file, not a runs folder")
    (tmp_path / "empty" / "seed0").mkdir(parents=True)
    refused(CliRunner().invoke(app, ["report", str(tmp_path / "empty")]), "its seed folders hold no runs yet")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["seed0"]  # no report written into it


def test_report_refuses_more_seeds_than_planned(tmp_path):
    (tmp_path / "seed0").mkdir()
    (tmp_path / "plan.json").write_text('{"seeds": 1}')
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--seeds", "5"])
    assert result.exit_code == 1 and "--seeds 5" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def _h(val, train=None) -> list[dict]:
    train = train if train is not None else [v * 1.1 for v in val]
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (v, t) in enumerate(zip(val, train))]


def _curves(**runs) -> dict:
    """ae_n32=[...] -> {"ae-n32": {0: history}}; a list of lists gives one seed each."""
    out = {}
    for key, val in runs.items():
        name = key.replace("_", "-").replace("p0-", "p0.")
        seeds = val if isinstance(val[0], list) and isinstance(val[0][0], dict) else [val]
        out[name] = {s: h if isinstance(h[0], dict) else _h(h) for s, h in enumerate(seeds)}
    return out


DOWN = [0.05, 0.03, 0.02, 0.015, 0.013, 0.012]


def test_larger_n_lower_loss_agrees_and_disagrees():
    f = compute_findings(_curves(ae_n32=[x * 1.3 for x in DOWN], ae_base=DOWN, ae_n128=[x * 0.8 for x in DOWN]))
    assert f["larger_n_lower_loss"]["verdict"] == "agree"
    assert "n=32 0.01560 > n=64 0.01200 > n=128 0.00960" in f["larger_n_lower_loss"]["detail"]
    f = compute_findings(_curves(ae_n32=[x * 0.8 for x in DOWN], ae_base=DOWN, ae_n128=[x * 0.9 for x in DOWN]))
    assert f["larger_n_lower_loss"]["verdict"] == "disagree"
    # every finding with runs missing: inconclusive, not a crash
    assert f["larger_p_higher_loss"]["verdict"] == "inconclusive"


def test_seeds_that_disagree_make_a_finding_inconclusive():
    good, bad = _h([x * 1.3 for x in DOWN]), _h([x * 0.9 for x in DOWN])
    curves = {"ae-n32": {0: good, 1: bad}, "ae-base": {0: _h(DOWN), 1: _h(DOWN)},
              "ae-n128": {0: _h([x * 0.8 for x in DOWN]), 1: _h([x * 0.8 for x in DOWN])}}
    f = compute_findings(curves)["larger_n_lower_loss"]
    assert f["verdict"] == "inconclusive" and f["per_seed"] == {"0": "agree", "1": "disagree"}


def test_larger_p_higher_loss():
    f = compute_findings(_curves(ae_p0_1=[x * 0.9 for x in DOWN], ae_base=DOWN, ae_p0_5=[x * 1.5 for x in DOWN]))
    assert f["larger_p_higher_loss"]["verdict"] == "agree"
    f = compute_findings(_curves(ae_p0_1=[x * 1.1 for x in DOWN], ae_base=DOWN, ae_p0_5=[x * 1.5 for x in DOWN]))
    assert f["larger_p_higher_loss"]["verdict"] == "disagree"


def test_adam_faster_than_sgd():
    slow = [0.08, 0.07, 0.06, 0.05, 0.045, 0.04, 0.035, 0.03, 0.025, 0.02]
    f = compute_findings(_curves(ae_base=DOWN, ae_sgd=slow))["adam_faster_than_sgd"]
    assert f["verdict"] == "agree" and "Adam 0.01300, SGD 0.04500" in f["detail"]
    f = compute_findings(_curves(ae_base=slow, ae_sgd=DOWN))["adam_faster_than_sgd"]
    assert f["verdict"] == "disagree"


def test_lr_1e2_unstable():
    wobbly = [0.06, 0.05, 0.07, 0.045, 0.06, 0.05, 0.065]
    assert compute_findings(_curves(ae_base=DOWN, ae_lr1e_2=wobbly))["lr_1e-2_unstable"]["verdict"] == "agree"
    smooth = [x * 0.9 for x in DOWN]
    assert compute_findings(_curves(ae_base=DOWN, ae_lr1e_2=smooth))["lr_1e-2_unstable"]["verdict"] == "disagree"
    f = compute_findings({"ae-base": {0: _h(DOWN)}}, diverged={"ae-lr1e-2": {0}})["lr_1e-2_unstable"]
    assert f["verdict"] == "agree" and "diverged" in f["detail"]


def test_batch_50_overfitting():
    # batch 50: validation bottoms out at epoch 4 and climbs 10% while train loss keeps falling
    over = _h([0.05, 0.03, 0.02, 0.018, 0.0185, 0.019, 0.0198], train=[0.06, 0.04, 0.03, 0.025, 0.02, 0.017, 0.015])
    flat = _h([0.05, 0.03, 0.02, 0.018, 0.0181, 0.018, 0.0181])
    f = compute_findings({"ae-batch50": {0: over}, "ae-base": {0: flat}, "ae-batch150": {0: flat}})
    assert f["batch_50_overfits"]["verdict"] == "agree"
    assert "batch 50: validation loss ends 10.0% above its minimum" in f["batch_50_overfits"]["detail"]
    f = compute_findings({"ae-batch50": {0: flat}, "ae-base": {0: flat}, "ae-batch150": {0: flat}})
    assert f["batch_50_overfits"]["verdict"] == "disagree"
    f = compute_findings({"ae-batch50": {0: _h(DOWN)}, "ae-base": {0: flat}, "ae-batch150": {0: flat}})
    assert f["batch_50_overfits"]["verdict"] == "inconclusive"  # still improving when it stopped
    rise, fall = late_rise(over)
    assert rise == pytest.approx(0.1) and fall == pytest.approx(0.4)


def test_classifier_findings():
    acc = {1: {0: 0.93}, 2: {0: 0.88}, 3: {0: 0.92}, 4: {0: 0.81}}
    hard = {"T-shirt/top": 0.8, "Trouser": 0.99, "Pullover": 0.85, "Dress": 0.92, "Coat": 0.84, "Sandal": 0.98,
            "Shirt": 0.7, "Sneaker": 0.97, "Bag": 0.98, "Ankle boot": 0.96}
    f = compute_findings({}, accuracies=acc, per_class={c: hard for c in (1, 2, 3, 4)})
    assert f["case_order"]["verdict"] == "agree" and f["hardest_classes"]["verdict"] == "agree"
    acc[2][0] = 0.95
    easy_shirt = {**hard, "Shirt": 0.99, "Dress": 0.5}
    f = compute_findings({}, accuracies=acc, per_class={1: easy_shirt, 2: hard, 3: hard, 4: hard})
    assert f["case_order"]["verdict"] == "disagree" and f["hardest_classes"]["verdict"] == "disagree"
    assert "case 2 95.00% > case 1 93.00% > case 3 92.00% > case 4 81.00%" in f["case_order"]["detail"]
    level = {1: {0: 0.9252, 1: 0.9251}, 2: {0: 0.85, 1: 0.85}, 3: {0: 0.9251, 1: 0.9252}, 4: {0: 0.77, 1: 0.77}}
    f = compute_findings({}, accuracies=level)
    assert "case 1 92.52% = case 3 92.52% > case 2 85.00% > case 4 77.00%" in f["case_order"]["detail"]


# -- PCA -----------------------------------------------------------------------------------------
def test_pca_mse_matches_brute_force_reconstruction():
    rng = np.random.default_rng(0)
    train = rng.random((60, 12)) @ rng.random((12, 12))  # correlated columns
    train /= train.max()
    test = rng.random((15, 12)) @ rng.random((12, 12)) / 5
    mean, comps = pca_fit(train)
    # brute force: principal axes from the SVD of the centred data, each test image projected one by one
    _, _, vt = np.linalg.svd(train - train.mean(0), full_matrices=False)
    for n in (1, 4, 7):
        basis = vt[:n]
        brute = np.array([train.mean(0) + sum(((x - train.mean(0)) @ b) * b for b in basis) for x in test])
        assert np.allclose(pca_reconstruct(test, mean, comps, n), brute)
        assert pca_mse(test, mean, comps, n) == pytest.approx(np.mean((brute - test) ** 2))
    errors = [pca_mse(test, mean, comps, n) for n in range(1, 13)]
    assert all(a >= b - 1e-12 for a, b in zip(errors, errors[1:])) and errors[-1] == pytest.approx(0, abs=1e-20)
    # on the fitting data the error is the discarded variance, per pixel
    eig = np.sort(np.linalg.eigvalsh(np.cov(train.T, bias=True)))[::-1]
    assert pca_mse(train, mean, comps, 5) == pytest.approx(eig[5:].sum() / 12)


# -- overview ------------------------------------------------------------------------------------
class _Run:
    def __init__(self, seed, name):
        self.seed, self.name = seed, name


def test_overview_prints_one_line_per_event_when_not_a_terminal():
    from rich.console import Console

    from fmnist_edge.train.overview import Overview

    buf = io.StringIO()
    runs = [_Run(0, "ae-base"), _Run(0, "ae-n32"), _Run(0, "ae-lr1e-2")]
    with Overview(Console(file=buf, width=200)) as ov:
        ov.start(runs, {(0, "ae-base"): "finished", (0, "ae-n32"): "new", (0, "ae-lr1e-2"): "partial"})
        ov.running(runs[1])
        ov.finished(runs[1], "done", 65.2)
        ov.running(runs[2])
        ov.finished(runs[2], "diverged", 3.0)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "3 runs: 1 done, 1 waiting, 1 resumable"
    assert lines[2].startswith("seed 0 ae-n32: done in 1:05 (2/3 runs")
    assert lines[4].startswith("seed 0 ae-lr1e-2: diverged in 0:03 (3/3 runs")


def test_overview_live_table_shows_status_and_times():
    from rich.console import Console

    from fmnist_edge.train.overview import Overview

    runs = [_Run(0, "ae-base"), _Run(0, "ae-n32")]
    ov = Overview(Console(file=io.StringIO(), width=120, force_terminal=True), live=True)
    with ov:
        ov.start(runs, {(0, "ae-base"): "new", (0, "ae-n32"): "new"})
        ov.running(runs[0])
        ov.finished(runs[0], "done", 12.0)
        ov.running(runs[1])
        buf = io.StringIO()
        Console(file=buf, width=120).print(ov.table())
    text = buf.getvalue()
    assert "1/2 runs" in text and "done" in text and "0:12" in text and "running" in text


@pytest.mark.torch
def test_report_with_a_named_data_folder_that_holds_no_data_replaces_nothing(quick, tmp_path):
    """A --data-dir that does not load is an error before any figure is written: a complete
    report is not replaced by one without its PCA baseline and reconstruction panel."""
    out = tmp_path / "report"
    assert CliRunner().invoke(app, ["report", str(quick["runs"]), "--out", str(out),
                                    "--data-dir", str(quick["data"])]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "reconstructions.png" in before
    result = CliRunner().invoke(app, ["report", str(quick["runs"]), "--out", str(out),
                                      "--data-dir", str(tmp_path / "no-data")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "fmnist-edge: error:" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- damaged files, and a report put in place whole ----------------------------------------------
def _snapshot(folder) -> dict:
    """Each file's bytes and inode: a figure drawn again from the same runs has the same bytes,
    but is a new file."""
    return {p.name: (p.read_bytes(), p.stat().st_ino) for p in folder.iterdir()}


@pytest.mark.torch
def test_report_notes_each_damaged_file_and_goes_on(quick, tmp_path):
    """Files of RUNS that are not JSON, of the wrong JSON type or with fields of the wrong type
    each cost their own run and say so in a note; the report is still written."""
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    seed0 = runs / "seed0"
    (seed0 / "ae-n32" / "metrics.json").write_text("{not json")
    (seed0 / "ae-sgd" / "history.json").write_text('{"epoch": 1}')
    history = json.loads((seed0 / "ae-p0.5" / "history.json").read_text())
    history[0]["val_loss"] = "low"
    (seed0 / "ae-p0.5" / "history.json").write_text(json.dumps(history))
    metrics = json.loads((seed0 / "clf-case3" / "metrics.json").read_text())
    del metrics["confusion"]
    (seed0 / "clf-case3" / "metrics.json").write_text(json.dumps(metrics))
    (runs / "plan.json").write_text("[1, 2]")
    (runs / "reproduction.json").write_text('{"wall_time_s": "soon"}')
    (seed0 / "ae-batch50" / "diverged.json").write_text("[]")
    result = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "out"),
                                      "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Traceback" not in result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    expected = ["seed 0 ae-n32: no usable metrics", "metrics.json: not JSON",
                "seed 0 ae-sgd: finished, no curves drawn (history.json: holds a JSON dict, not a list)",
                "history.json: epoch 1: its val_loss is str, not number",
                "seed 0 clf-case3: no usable metrics", "metrics.json: it lacks confusion",
                "plan.json: holds a JSON list, not an object; not used",
                "reproduction.json: its wall_time_s is str, not number",
                "seed 0 ae-batch50: diverged (diverged.json unreadable)"]
    for needle in expected:
        assert sum(needle in line for line in notes) == 1, (needle, notes)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["autoencoder"]["ae-n32"]["test_mse_mean"] is None and s["autoencoder"]["ae-n32"]["seeds"] == []
    assert s["autoencoder"]["ae-sgd"]["seeds"] == [0]  # its metrics are fine: only its curves are lost
    assert s["classifier"]["3"]["test_accuracy_mean"] is None and s["classifier"]["1"]["seeds"] == [0]
    assert s["wall_time_s"] is None and s["seeds"] == [0]


@pytest.mark.torch
@pytest.mark.parametrize("fault, code", [(KeyboardInterrupt, 130), (OSError(28, "No space left on device"), 1)])
def test_a_report_stopped_midway_leaves_the_previous_one_whole(quick, tmp_path, monkeypatch, fault, code):
    from fmnist_edge.train import figures

    out = tmp_path / "report"
    args = ["report", str(quick["runs"]), "--out", str(out), "--data-dir", str(quick["data"])]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = _snapshot(out)

    def stop(*args, **kwargs):
        raise fault

    monkeypatch.setattr(figures, "confusion_grid", stop)  # after six figures, before the summaries
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code and result.stderr.count("\n") == 1, result.stderr
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left beside it


@pytest.mark.torch
def test_a_sigterm_midway_unwinds_like_ctrl_c_and_leaves_no_staging_folder(quick, tmp_path, monkeypatch, capsys):
    """`kill`, `timeout` and service managers stop a command with SIGTERM: the entry point turns it
    into an exception, so the staging folder goes and the previous report stays whole (exit 143)."""
    import signal

    from fmnist_edge.cli import main
    from fmnist_edge.train import figures

    out = tmp_path / "report"
    args = ["report", str(quick["runs"]), "--out", str(out), "--data-dir", str(quick["data"])]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = _snapshot(out)

    def sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends

    monkeypatch.setattr(figures, "confusion_grid", sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_.value.code == 143
    assert capsys.readouterr().err == "fmnist-edge: error: terminated\n"
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


@pytest.mark.torch
def test_a_report_into_a_folder_that_holds_other_files_replaces_only_its_own(quick, tmp_path):
    """RUNS itself, or a folder where the user keeps notes: the report's files are put in it,
    an earlier report's that this one does not write are removed, and nothing else is touched."""
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report", "*.pt"))  # no model: no panel
    (runs / "reconstructions.png").write_bytes(b"an earlier report's panel")
    (runs / "notes.txt").write_text("mine")
    (runs / "summary.md").write_text("an earlier summary")
    from fmnist_edge.train.report import REPORT_FILES

    kept = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file() and not (p.parent == runs and p.name in REPORT_FILES)}
    assert {"plan.json", "reproduction.json", "notes.txt"} <= {p.name for p in kept if p.parent == runs}
    result = CliRunner().invoke(app, ["report", str(runs), "--out", str(runs), "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert {p: p.read_bytes() for p in kept} == kept
    assert not (runs / "reconstructions.png").exists()
    assert "# Reproduction of the report" in (runs / "summary.md").read_text()
    assert (runs / "fig9_confusion.png").stat().st_size > 0 and json.loads((runs / "summary.json").read_text())
    assert not list(tmp_path.glob(".staging-*"))


@pytest.mark.torch
def test_a_report_through_a_symlink_replaces_its_target_and_keeps_the_link(quick, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    result = CliRunner().invoke(app, ["report", str(quick["runs"]), "--out", str(link),
                                      "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert link.is_symlink() and (real / "summary.json").is_file()


@pytest.mark.parametrize("name, content, needle", [
    ("plan.json", "{truncated", "plan.json: not JSON"),
    ("plan.json", '{"seeds": "three"}', "plan.json: its seeds is not a whole number"),
    ("plan.json", '{"seeds": 1, "configs": "x", "run_configs": []}', "its run_configs is not an object"),
    ("plan.json", '{"seeds": 1, "configs": "../..", "run_configs": {}}', "its configs is not a digest"),
    ("reproduction.json", "[]", "reproduction.json: holds a JSON list, not an object"),
    ("reproduction.json", '{"wall_time_s": "an hour"}', "its wall_time_s is not a number"),
    ("reproduction.json", '{"wall_ti', "not JSON (Unterminated string starting at: line 1 column 2 (char 1)); "
                                       "it holds the training time spent so far"),
])
def test_reproduce_refuses_a_damaged_record_of_an_earlier_reproduction(tmp_path, name, content, needle):
    """What plan.json and reproduction.json hold decides which runs are kept and what the time
    spent was: damaged, they are refused in one line before anything is moved or written."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / name).write_text(content)
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(runs), "--data-dir",
                                      str(tmp_path / "no-data"), "--device", "cpu", "--jobs", "1", "--no-report"])
    refused(result, needle)
    assert [p.name for p in runs.iterdir()] == [name] and (runs / name).read_text() == content


@pytest.mark.torch
def test_a_report_into_the_working_folder_keeps_the_folder(quick, tmp_path, monkeypatch):
    """`--out .`: swapping the working folder would leave the shell in a deleted one."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = CliRunner().invoke(app, ["report", str(quick["runs"]), "--out", ".", "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert Path.cwd().samefile(here) and (here / "summary.json").is_file() and (here / "fig9_confusion.png").is_file()
    assert not list(tmp_path.glob(".staging-*"))


@pytest.mark.torch
def test_a_null_in_reproduction_json_is_a_missing_field(quick, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(quick["runs"], runs, ignore=shutil.ignore_patterns("report"))
    record = json.loads((runs / "reproduction.json").read_text())
    (runs / "reproduction.json").write_text(json.dumps({**record, "jobs": None}))
    (runs / "plan.json").write_text(json.dumps({**json.loads((runs / "plan.json").read_text()), "seeds": 10 ** 9}))
    result = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "out"),
                                      "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "plan.json: its seeds (1000000000) are not from 0 to 100" in result.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["jobs"] == 1


@pytest.mark.torch
def test_a_report_into_a_folder_whose_parent_is_read_only_is_staged_inside_it(quick, tmp_path, monkeypatch):
    """A report folder the user may write in, under one they may not (a shared drive): the
    staging folder goes inside it and the files are moved in; none is left behind."""
    from fmnist_edge import folders

    shared = tmp_path / "shared"
    out = shared / "report"
    out.mkdir(parents=True)
    (out / "summary.md").write_text("an earlier summary")
    (out / ".staging-report-killed00").mkdir()  # a killed report's: removed
    (out / ".staging-report-models-old").mkdir()  # the previous version of an export to report/report-models: kept
    (out / ".staging-report-models-old" / "manifest.json").write_text("{}")
    real = folders.tempfile.mkdtemp

    def mkdtemp(suffix=None, prefix=None, dir=None):
        if dir is not None and os.path.samefile(dir, shared):
            raise PermissionError(13, "Permission denied")
        return real(suffix, prefix, dir)

    monkeypatch.setattr(folders.tempfile, "mkdtemp", mkdtemp)
    result = CliRunner().invoke(app, ["report", str(quick["runs"]), "--out", str(out), "--data-dir", str(quick["data"])])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "# Reproduction of the report" in (out / "summary.md").read_text()
    assert (out / "fig9_confusion.png").stat().st_size > 0
    assert [p.name for p in out.iterdir() if p.name.startswith(folders.STAGING_PREFIX)] == [".staging-report-models-old"]
    assert (out / ".staging-report-models-old" / "manifest.json").read_text() == "{}"
    assert [p.name for p in shared.iterdir()] == ["report"]


def test_a_relative_data_dir_is_recorded_absolute_for_the_report(tmp_path, monkeypatch, fake_data_dir):
    """`reproduce --data-dir data` from one folder, `report` from another: the report still finds it."""
    import fmnist_edge.train.reproduce as reproduce

    shutil.copytree(fake_data_dir, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reproduce, "_checked_state", lambda run, runs, root, log: "finished")  # nothing to train
    reproduce.reproduce("runs", quick=True, data_dir="data", jobs=1)
    assert json.loads((tmp_path / "runs" / "plan.json").read_text())["data_dir"] == str(tmp_path / "data")


def test_reproduce_without_data_writes_nothing_and_starts_no_worker(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(tmp_path / "runs"), "--data-dir",
                                      str(tmp_path / "empty")])
    refused(result, "Fashion-MNIST not found")
    assert not (tmp_path / "runs").exists()
