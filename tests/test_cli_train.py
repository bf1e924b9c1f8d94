"""`fmnist-edge train ...` and `fmnist-edge evaluate` through typer's CliRunner, on the fake data."""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from fmnist_edge.cli import app  # noqa: E402

pytestmark = pytest.mark.torch

FAST = ["--limit", "300", "--max-epochs", "1", "--quiet", "--device", "cpu"]


@pytest.fixture
def cli(tmp_path, monkeypatch, fake_data_dir):
    """Run the app in an empty folder (default outputs such as runs/ land there), on the fake data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FMNIST_EDGE_DATA", raising=False)
    runner = CliRunner()

    def run(*args: str, data: bool = True):
        argv = [str(a) for a in args] + (["--data-dir", str(fake_data_dir)] if data else [])
        return runner.invoke(app, argv)

    return run


def one_error_line(result, *needles: str, code: int = 1, banner: bool = False) -> str:
    """Exit `code`, no traceback, and one error line on stderr; with `banner`, the run's
    "training ... into DIR" line may come first (the error was found once training began: every
    file is read and checked before it is printed)."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    if banner:
        lines = [line for line in lines if not line.startswith("training ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fmnist-edge: error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- training and evaluating -----------------------------------------------------------------

@pytest.fixture
def trained_ae(cli, tmp_path):
    result = cli("train", "autoencoder", "--n", "16", "--dropout", "0.1", "--out", "ae", *FAST)
    assert result.exit_code == 0, result.output
    return tmp_path / "ae" / "model.pt"


def test_train_autoencoder(cli, trained_ae):
    run = trained_ae.parent
    assert {p.name for p in run.iterdir()} >= {"model.pt", "last.pt", "history.json", "metrics.json"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["kind"], metrics["n"], metrics["dropout"], metrics["epochs"]) == ("autoencoder", 16, 0.1, 1)


def test_train_prints_what_and_where(cli, tmp_path):
    result = cli("train", "autoencoder", "--n", "8", "--out", "ae8", *FAST)
    assert result.exit_code == 0
    assert "training autoencoder (n=8, p=0.2, adam, lr=0.001, batch 100" in result.stderr
    assert "done: 1 epoch (" in result.stderr and str(tmp_path.joinpath("ae8", "model.pt").relative_to(tmp_path)) \
        in result.stderr


def test_classifier_on_a_pretrained_encoder_takes_its_shape(cli, trained_ae, tmp_path):
    result = cli("train", "classifier", "--case", "1", "--encoder", trained_ae, "--out", "clf", *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "clf" / "metrics.json").read_text())
    assert (metrics["kind"], metrics["case"], metrics["n"], metrics["dropout"]) == ("classifier", 1, 16, 0.1)
    assert metrics["encoder_source"] == str(trained_ae)


def test_classifier_random_encoder_default_out(cli, tmp_path):
    result = cli("train", "classifier", "--case", "4", "--n", "8", *FAST)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "classifier-case4" / "model.pt").is_file()


@pytest.mark.parametrize("args, lr", [
    (["--case", "3"], 3e-3),                      # best recipe, trained encoder
    (["--case", "4"], 3e-2),                      # best recipe, frozen encoder: only the head learns
    (["--case", "3", "--recipe", "paper"], 1e-3),  # the report's
    (["--case", "4", "--lr", "5e-4"], 5e-4),      # an explicit --lr wins
])
def test_classifier_learning_rate_defaults_to_the_recipe(cli, tmp_path, args, lr):
    result = cli("train", "classifier", *args, "--n", "8", "--out", "clf", *FAST)
    assert result.exit_code == 0, result.output
    assert f"lr={lr}," in result.stderr
    saved = torch.load(tmp_path / "clf" / "model.pt", weights_only=True)["train_config"]
    assert saved["lr"] == pytest.approx(lr)


@pytest.mark.parametrize("flag, calibrated", [([], True), (["--no-calibrate-init"], False)])
def test_case_4_is_calibrated_by_the_recipe_unless_told_not_to(cli, tmp_path, flag, calibrated):
    result = cli("train", "classifier", "--case", "4", "--n", "8", "--out", "clf", *flag, *FAST)
    assert result.exit_code == 0, result.output
    saved = torch.load(tmp_path / "clf" / "model.pt", weights_only=True)["train_config"]
    assert saved["calibrate_init"] is calibrated


def test_calibrate_active_is_checked_and_needs_calibration(cli, tmp_path):
    for value in ("0", "1.5", "nan"):
        result = cli("train", "classifier", "--case", "4", "--calibrate-active", value, "--out", "clf", *FAST)
        assert result.exit_code == 2 and "--calibrate-active must be in (0, 1]" in result.stderr, result.output
    for value in ("0.9", "0.5"):  # 0.5, the default share, is refused as well: it was given
        result = cli("train", "classifier", "--case", "3", "--calibrate-active", value, "--out", "clf", *FAST)
        one_error_line(result, f"--calibrate-active {value}: it applies to --calibrate-init, which is off", code=2)
    assert not (tmp_path / "clf").exists()


def test_evaluate_json(cli, trained_ae, tmp_path):
    result = cli("evaluate", trained_ae, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["kind"] == "autoencoder" and 0 < out["mse"] < 1 and out["checkpoint"] == str(trained_ae)
    assert 0 <= out["dead_latent_units"] <= 16
    assert cli("train", "classifier", "--case", "3", "--n", "8", "--out", "clf", *FAST).exit_code == 0
    result = cli("evaluate", tmp_path / "clf" / "model.pt", "--json")
    out = json.loads(result.stdout)
    assert out["kind"] == "classifier" and 0 <= out["accuracy"] <= 1
    assert len(out["per_class_accuracy"]) == 10 and "Ankle boot" in out["per_class_accuracy"]
    assert len(out["confusion"]) == 10 and sum(map(sum, out["confusion"])) == 200  # the fake test set
    trained = json.loads((tmp_path / "clf" / "metrics.json").read_text())
    assert out["accuracy"] == trained["test_accuracy"] and out["accuracy_tta"] == trained["test_accuracy_tta"]
    table = cli("evaluate", tmp_path / "clf" / "model.pt")
    assert table.exit_code == 0 and "test accuracy" in table.stdout and "Pullover" in table.stdout
    summary = table.stdout.splitlines()[0]  # one unwrapped line above the table
    assert summary.startswith(str(tmp_path / "clf" / "model.pt")) and "mirror-averaged, as classify --tta" in summary


def test_evaluate_on_validation_reads_the_runs_own_split(cli, tmp_path):
    assert cli("train", "classifier", "--case", "3", "--n", "8", "--out", "clf", *FAST).exit_code == 0
    result = cli("evaluate", tmp_path / "clf" / "model.pt", "--json", "--validation")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    trained = json.loads((tmp_path / "clf" / "metrics.json").read_text())
    best = next(r for r in json.loads((tmp_path / "clf" / "history.json").read_text())
                if r["epoch"] == trained["best_epoch"])
    assert out["split"] == "validation" and out["images"] == 60  # a tenth of the 600 fake training images
    assert out["accuracy"] == best["val_accuracy"]  # what training measured on the same images and weights
    assert 0 <= out["accuracy_tta"] <= 1


def test_plain_train_runs_both_and_says_where(cli, tmp_path):
    result = cli("train", "--out", "both", "--limit", "300", "--max-epochs", "1", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "both" / "autoencoder" / "model.pt").is_file()
    assert (tmp_path / "both" / "classifier" / "model.pt").is_file()
    assert "checkpoints:" in result.stdout and "both/classifier/model.pt" in result.stdout
    clf = json.loads((tmp_path / "both" / "classifier" / "metrics.json").read_text())
    assert (clf["case"], clf["n"], clf["dropout"]) == (1, 64, 0.1)
    assert json.loads((tmp_path / "runs" / "latest.json").read_text()) == {"train_dir": str(tmp_path / "both")}
    # Run again as asked: both reused. With other settings: refused before anything trains,
    # the finished runs named with what differs, not silently handed back as if just trained.
    again = cli("train", "--out", "both", "--limit", "300", "--max-epochs", "1", "--quiet", "--device", "cpu")
    assert again.exit_code == 0 and "reusing it" in again.stderr and "nothing to do" in again.stderr
    before = (tmp_path / "both" / "classifier" / "model.pt").stat().st_mtime_ns
    for other in (["--limit", "600", "--max-epochs", "1"], ["--limit", "300", "--max-epochs", "1", "--seed", "3"],
                  ["--limit", "300", "--max-epochs", "1", "--recipe", "paper"]):
        result = cli("train", "--out", "both", *other, "--quiet", "--device", "cpu")
        one_error_line(result, "already trained with other settings", "--force")
    assert "limit 300 there, 600 asked" in cli("train", "--out", "both", "--limit", "600", "--max-epochs", "1",
                                                "--quiet").stderr
    assert (tmp_path / "both" / "classifier" / "model.pt").stat().st_mtime_ns == before



def test_plain_train_reuses_a_run_of_an_older_version_and_checks_the_teacher_by_content(cli, tmp_path):
    import torch

    small = ["--limit", "300", "--max-epochs", "1", "--quiet", "--device", "cpu"]
    assert cli("train", "teacher", "--n", "16", "--out", "t", *small).exit_code == 0
    shutil.copy(tmp_path / "t" / "model.pt", tmp_path / "copy.pt")
    assert cli("train", "--out", "p", "--teacher", "t/model.pt", *small).exit_code == 0
    ae = tmp_path / "p" / "autoencoder" / "model.pt"
    payload = torch.load(ae, weights_only=True)  # as an earlier version wrote it: fields it did not have
    for field in ("batch_norm", "calibrate_active", "recon_loss"):
        payload["train_config"].pop(field)
    payload["model_config"].pop("decoder_dilation")
    torch.save(payload, ae)
    same = cli("train", "--out", "p", "--teacher", tmp_path / "copy.pt", *small)  # the same bytes, another name
    assert same.exit_code == 0 and "reusing it" in same.stderr, same.stderr
    assert cli("train", "teacher", "--n", "16", "--seed", "5", "--out", "t", "--force", *small).exit_code == 0
    one_error_line(cli("train", "--out", "p", "--teacher", "t/model.pt", *small),
                   "already trained with other settings (teacher another file there, t/model.pt asked)")


def test_plain_train_resumes_only_a_run_started_as_asked(cli, tmp_path, monkeypatch):
    import fmnist_edge.train.loop as loop

    interrupt = [True]  # once: the first run's first epoch

    def ctrl_c_once(record):
        if interrupt.pop() if interrupt else False:
            raise KeyboardInterrupt

    real_init = loop.Trainer.__init__

    def interrupted_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.on_epoch = ctrl_c_once

    monkeypatch.setattr(loop.Trainer, "__init__", interrupted_init)
    small = ["--limit", "300", "--quiet", "--device", "cpu"]
    one_error_line(cli("train", "--out", "p", "--max-epochs", "2", *small), "interrupted in epoch 2", code=130,
                   banner=True)  # after the first epoch: in the second
    one_error_line(cli("train", "--out", "p", "--max-epochs", "3", "--resume", *small),
                   "p/autoencoder: started with other settings (max_epochs 2 there, 3 asked)")
    resumed = cli("train", "--out", "p", "--max-epochs", "2", "--resume", *small)
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "p" / "classifier" / "model.pt").is_file()


@pytest.mark.parametrize("args, needle", [
    (["train", "autoencoder", "--batch-norm", "--revive-every", "10"], "--batch-norm turns revival off"),
    (["train", "classifier", "--case", "4", "--revive-every", "10"], "a classifier case 4 has no latent units"),
    (["train", "classifier", "--case", "4", "--augment-off-last", "0.5"], "trains without augmentation (recipe best)"),
    (["train", "classifier", "--case", "3", "--recipe", "paper", "--augment-off-last", "0.5"], "(recipe paper)"),
    (["train", "autoencoder", "-p", "0", "--dropout-off-last", "0.5"], "this run has no dropout to turn off (p = 0)"),
    (["train", "classifier", "--case", "4", "--dropout-off-last", "0.5"],
     "case 4's frozen encoder runs without dropout"),
])
def test_an_option_for_what_the_run_does_not_do_is_refused_not_stored(cli, tmp_path, args, needle):
    one_error_line(cli(*args, "--out", "r", *FAST), needle, code=2)  # a usage error
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, bf16", [(["avx2"], False), (["avx2", "avx512_bf16"], True), (["amx_bf16"], True)])
def test_the_teachers_bf16_is_on_only_where_the_cpu_computes_in_bf16(monkeypatch, flags, bf16):
    """Emulated on an AVX2-only CPU, bf16 makes the teacher's epochs many times slower than fp32."""
    import torch

    import fmnist_edge.cli.train_cmds as train_cmds
    import fmnist_edge.machine as machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(machine, "cpu_model", lambda: {"cpu": "test", "cpu_flags": flags})
    _, cfg = train_cmds._configs("teacher", 256, 0.3, "adam", None, 100, 30, 8, 0, None, "best", None)
    assert cfg.bf16 is bf16
    _, cfg = train_cmds._configs("teacher", 256, 0.3, "adam", None, 100, 30, 8, 0, None, "best", True)
    assert cfg.bf16 is True  # asked for: given, whatever the CPU
    assert train_cmds.native_bf16("cuda") and train_cmds.native_bf16("cpu") is bf16


def test_a_two_epoch_run_keeps_its_dropout_for_the_first_epoch():
    from fmnist_edge.train.config import TrainConfig
    from fmnist_edge.train.loop import Trainer

    def off_from(max_epochs, fraction):
        trainer = Trainer.__new__(Trainer)
        trainer.cfg = TrainConfig(max_epochs=max_epochs)
        return trainer._off_from(fraction)

    assert [off_from(2, 0.75), off_from(1, 0.75), off_from(20, 0.75), off_from(20, 0.2)] == [1, 1, 5, 16]
    assert [off_from(2, 1.0), off_from(2, 0.0)] == [0, 2]  # all of the run, none of it


def test_a_checkpoint_with_nan_weights_is_refused_by_evaluate_and_as_an_encoder(cli, tmp_path, trained_ae):
    import torch

    payload = torch.load(trained_ae, weights_only=True)
    name = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    one_error_line(cli("evaluate", tmp_path / "nan.pt"), "nan.pt: its weights hold NaN", name)
    one_error_line(cli("train", "classifier", "--case", "1", "--n", "16", "--encoder", tmp_path / "nan.pt",
                       "--out", "c", *FAST), "its weights hold NaN")
    assert not (tmp_path / "c").exists()


def test_finished_run_without_force(cli, trained_ae):
    result = cli("train", "autoencoder", "--n", "16", "--out", "ae", *FAST)
    one_error_line(result, "already holds a finished run", "--force")
    assert cli("train", "autoencoder", "--n", "16", "--out", "ae", "--force", *FAST).exit_code == 0


# -- bad input: one line on stderr, non-zero exit, no traceback ------------------------------

@pytest.mark.parametrize("args,needle,code", [
    (["train", "autoencoder", "--n", "0"], "--n must be", 2),
    (["train", "autoencoder", "--dropout", "1.5"], "--dropout must be in [0, 1)", 2),
    (["train", "autoencoder", "--dropout", "-0.1"], "--dropout", 2),
    (["train", "autoencoder", "--lr", "-1"], "--lr must be a positive number", 2),
    (["train", "autoencoder", "--lr", "nan"], "--lr", 2),
    (["train", "autoencoder", "--optimizer", "rmsprop"], "--optimizer must be one of adam, sgd", 2),
    (["train", "autoencoder", "--batch-size", "0"], "--batch-size", 2),
    (["train", "autoencoder", "--limit", "0"], "--limit", 2),
    (["train", "classifier", "--case", "7"], "--case must be one of 1, 2, 3, 4", 2),
    (["train", "classifier", "--case", "2", "--encoder", "missing.pt"], "missing.pt: no such checkpoint", 1),
    (["evaluate", "missing.pt"], "missing.pt: no such checkpoint", 1),
])
def test_bad_input(cli, args, needle, code):
    """A value no option takes is a usage error (exit 2); a file that is not there, exit 1."""
    one_error_line(cli(*args), needle, code=code)


@pytest.mark.parametrize("args,needle,code", [
    (["train", "autoencoder", "--device", "tpu"], "--device must be auto, cpu or cuda", 2),
    (["train", "classifier", "--case", "1"], "needs a pretrained encoder", 2),
])
def test_bad_input_found_by_the_trainer(cli, args, needle, code):
    one_error_line(cli(*args), needle, code=code)


def test_errors_found_before_training_print_only_the_error(cli):
    one_error_line(cli("train", "autoencoder", "--device", "tpu"), "--device", code=2)


def test_checkpoints_that_are_not_ours(cli, tmp_path):
    (tmp_path / "random.pt").write_bytes(os.urandom(2000))
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "foreign.pt")
    one_error_line(cli("evaluate", "random.pt"), "random.pt")
    one_error_line(cli("evaluate", "foreign.pt"), "not an fmnist-edge checkpoint")
    one_error_line(cli("train", "classifier", "--case", "1", "--encoder", "foreign.pt"),
                   "not an fmnist-edge checkpoint")


def test_encoder_that_is_a_classifier(cli, tmp_path):
    assert cli("train", "classifier", "--case", "3", "--n", "8", "--out", "clf", *FAST).exit_code == 0
    one_error_line(cli("train", "classifier", "--case", "1", "--encoder", "clf/model.pt", "--out", "c1"),
                   "not an autoencoder checkpoint")


def test_missing_data(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("train", "autoencoder", "--out", "x", "--data-dir", "empty", *FAST, data=False)
    one_error_line(result, "Fashion-MNIST not found", "apt-get install dataset-fashion-mnist")


def test_diverging_run_is_one_line(cli, monkeypatch):
    from fmnist_edge.train import loop

    monkeypatch.setattr(loop, "loss_fn", lambda kind, cfg: lambda out, x, y: (out - x).pow(2).mean() * float("nan"))
    result = cli("train", "autoencoder", "--out", "div", *FAST)
    one_error_line(result, "training diverged (nan loss at epoch 1, step 1)", "--force and a lower --lr", banner=True)


def test_usage_error_in_a_subprocess_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fmnist_edge", "train", "autoencoder", "--n", "abc"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fmnist-edge: error: ") and "'--n'" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_force_keeps_the_finished_run_when_the_test_set_is_bad(cli, tmp_path, fake_data_dir, make_fake_data):
    """The test split is read before --force deletes anything, not after the last epoch."""
    import shutil

    assert cli("train", "autoencoder", "--n", "8", "--out", "r", *FAST).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    bad = make_fake_data(tmp_path / "bad")
    shutil.copy(fake_data_dir / "train-images-idx3-ubyte.gz", bad / "train-images-idx3-ubyte.gz")
    data = bytearray((bad / "t10k-images-idx3-ubyte").read_bytes())
    data[3] = 1  # the magic of a labels file
    (bad / "t10k-images-idx3-ubyte").write_bytes(bytes(data))
    result = cli("train", "autoencoder", "--n", "8", "--out", "r", "--force", *FAST, "--data-dir", bad, data=False)
    one_error_line(result, "t10k-images")
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_resume_refuses_a_foreign_resume_point_and_another_kind_of_run(cli, tmp_path):
    import shutil

    assert cli("train", "autoencoder", "--n", "8", "--out", "ae", *FAST).exit_code == 0
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "ae" / "model.pt", tmp_path / "copy" / "last.pt")  # weights, no training state
    line = one_error_line(cli("train", "autoencoder", "--n", "8", "--out", "copy", "--resume", *FAST),
                          "not a resume point", "--force starts the run over")
    assert line.count("--force") == 1, line
    (tmp_path / "copy" / "last.pt").write_bytes((tmp_path / "ae" / "last.pt").read_bytes()[:1000])  # truncated
    one_error_line(cli("train", "autoencoder", "--n", "8", "--out", "copy", "--resume", *FAST),
                   "not a readable PyTorch checkpoint", "--force starts the run over")
    assert cli("train", "classifier", "--case", "3", "--n", "8", "--out", "c3", "--limit", "300", "--max-epochs",
               "3", "--quiet", "--device", "cpu").exit_code == 0
    (tmp_path / "c3" / "model.pt").unlink()  # as if interrupted: resumable from last.pt
    for args in (("autoencoder", "--n", "8"), ("classifier", "--case", "1", "--n", "8")):
        one_error_line(cli("train", *args, "--out", "c3", "--resume", *FAST),
                       "holds a classifier (case 3) run")


def test_unexpected_errors_are_one_line_and_ctrl_c_is_130(monkeypatch, capsys):
    import typer

    from fmnist_edge.cli.common import command
    from fmnist_edge.errors import Interrupted, UsageError

    def raising(exc):
        @command
        def body():
            raise exc
        return body

    for exc, code, needle in [(Interrupted("interrupted in epoch 3; state saved"), 130, "interrupted in epoch 3"),
                              (ValueError("bad\nvalue"), 1, "unexpected ValueError: bad\\nvalue"),
                              (UsageError("--lr must be positive"), 2, "--lr must be positive"),
                              (KeyboardInterrupt(), 130, "interrupted"),
                              (ModuleNotFoundError("No module named 'torch'", name="torch"), 1,
                               "this command needs the train extra (torch is not installed)"),
                              (ModuleNotFoundError("No module named 'yaml'", name="yaml"), 1,
                               "unexpected ModuleNotFoundError: No module named 'yaml'"),
                              (ModuleNotFoundError("No module named 'torch._C'", name="torch._C"), 1,
                               "unexpected ModuleNotFoundError: No module named 'torch._C'")]:  # a broken torch
        capsys.readouterr()
        with pytest.raises(typer.Exit) as exit_info:
            raising(exc)()
        assert exit_info.value.exit_code == code
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured
        assert captured.err.startswith(f"fmnist-edge: error: {needle}"), (captured.err, needle)
    monkeypatch.setenv("FMNIST_EDGE_DEBUG", "1")
    with pytest.raises(ValueError):  # the traceback, on request
        raising(ValueError("x"))()


def test_option_errors_name_the_option_and_a_device_is_no_checkpoint(cli):
    one_error_line(cli("train", "autoencoder", "--dropout-off-last", "2", "--out", "x", *FAST), "--dropout-off-last",
                   code=2)
    one_error_line(cli("evaluate", "/dev/null", data=False), "/dev/null: not a regular file")


def test_resume_refuses_a_setting_that_differs_from_the_runs(cli, tmp_path):
    assert cli("train", "autoencoder", "--n", "8", "--out", "r", "--limit", "300", "--max-epochs", "3", "--quiet",
               "--device", "cpu").exit_code == 0
    (tmp_path / "r" / "model.pt").unlink()  # as if interrupted: resumable from last.pt
    for option, value in (("--lr", "0.5"), ("--n", "16"), ("--max-epochs", "9")):
        args = ["train", "autoencoder", "--n", "8", "--out", "r", "--resume", "--limit", "300", "--max-epochs", "3",
                "--quiet", "--device", "cpu", option, value]
        one_error_line(cli(*args), f"{option} {value} differs from the run's", "leave the option out")
    same = cli("train", "autoencoder", "--n", "8", "--out", "r", "--resume", "--limit", "300", "--max-epochs", "3",
               "--quiet", "--device", "cpu", "--device", "cpu")
    assert same.exit_code == 0, same.output  # the same settings, and where to run: resumed


def test_a_resumed_run_says_so_with_its_own_settings(cli, tmp_path):
    """The line before training names the settings the run trains with: a resumed run's own,
    not the defaults of the options left out."""
    assert cli("train", "autoencoder", "--n", "8", "--out", "r", "--limit", "300", "--max-epochs", "2", "--lr",
               "0.003", "--quiet", "--device", "cpu").exit_code == 0
    (tmp_path / "r" / "model.pt").unlink()  # as if interrupted: resumable from last.pt
    result = cli("train", "autoencoder", "--out", "r", "--resume", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "resuming autoencoder (n=8, p=0.2, adam, lr=0.003, batch 100" in result.stderr
