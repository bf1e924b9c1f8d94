"""Bad input found by sweeping every command: each is one line and exit 1 (2 for usage), and
finished work survives. Contradictory options are refused instead of one silently winning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import invoke, misused, refused
from fmnist_edge.fileio import sha256_file

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).parents[1] / "exported" / "samples"
SHIRT = SAMPLES / "shirt.png"


def usage_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr


# -- runtime: thread counts, bench options ---------------------------------------------------

@pytest.mark.parametrize("threads", ["100000", "257"])
def test_thread_counts_are_bounded(threads):
    usage_error(invoke("classify", SHIRT, "--model", FIXTURES, "--threads", threads), "--threads")
    usage_error(invoke("bench", "--models", FIXTURES, "--threads", threads, "--no-torch"), "from 1 to 256")


def test_the_api_bounds_threads_too():
    import numpy as np

    from fmnist_edge.errors import UsageError
    from fmnist_edge.runtime import FashionClassifier

    for bad in (100_000, -1, 0, 2.5, "4", True):  # 0 too, as on the command line and in FMNIST_EDGE_THREADS
        with pytest.raises(UsageError, match=f"threads must be an integer from 1 to 256 .*got {bad!r}$"):
            FashionClassifier.load(FIXTURES, threads=bad)
    for fine in (np.int64(2), None):  # None: one per core
        assert FashionClassifier.load(FIXTURES, threads=fine).predict(SHIRT).label


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e9"])
def test_bench_seconds_must_be_finite(seconds):
    misused(invoke("bench", "--models", FIXTURES, "--seconds", seconds, "--no-torch"), "--seconds must be")


def test_bench_checks_seconds_for_api_callers():
    from fmnist_edge.errors import FmnistEdgeError
    from fmnist_edge.runtime import bench

    with pytest.raises(FmnistEdgeError, match="--seconds must be"):
        bench.bench_side_by_side([("x", lambda threads: None, (1, 28, 28), None)], [1], [1], seconds=float("nan"))


def test_bench_refuses_contradictions_and_unwritable_outputs_before_running(tmp_path):
    usage_error(invoke("bench", "--models", FIXTURES, "--checkpoint", "x.pt", "--no-torch"), "--no-torch")
    same = tmp_path / "out.txt"
    usage_error(invoke("bench", "--models", FIXTURES, "--no-torch", "--json", same, "--markdown", same),
                "the same file")
    (tmp_path / "file.txt").write_text("")
    result = invoke("bench", "--models", FIXTURES, "--no-torch", "--seconds", "0.01", "--batch-sizes", "1",
                    "--threads", "1", "--json", tmp_path / "file.txt" / "b.json")
    refused(result, "cannot write")
    assert "benchmarking" not in result.stderr  # refused before any model ran
    result = invoke("bench", "--models", FIXTURES, "--no-torch", "--seconds", "0.01", "--batch-sizes", "1",
                    "--threads", "1", "--json", tmp_path / "new" / "folder" / "b.json")
    assert result.exit_code == 0, result.output  # a folder that does not exist yet is made, as elsewhere
    assert json.loads((tmp_path / "new" / "folder" / "b.json").read_text())["results"]
    assert not list((tmp_path / "new" / "folder").glob(".*probe"))


def test_bench_with_a_bad_checkpoint_named_is_an_error(tmp_path):
    pytest.importorskip("torch")
    result = invoke("bench", "--models", FIXTURES, "--seconds", "0.01", "--batch-sizes", "1", "--threads", "1",
                    "--checkpoint", tmp_path / "nonexistent.pt")
    refused(result, "nonexistent.pt")
    assert "benchmarking" not in result.stderr  # before any model ran


def test_int8_with_a_named_fp32_file_is_refused():
    misused(invoke("classify", SHIRT, "--model", FIXTURES / "classifier.onnx", "--int8"),
            "name the int8 file itself")


# -- model folders whose manifest lies --------------------------------------------------------

def folder_with_manifest(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(FIXTURES, folder, ignore=shutil.ignore_patterns("wrong-shape", "*.py"))
    data = json.loads((folder / "manifest.json").read_text())
    edit(data, folder)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("edit, needle", [
    (lambda d, f: d["files"].update({"classifier.onnx": 1}), "has no sha256"),
    (lambda d, f: d["files"]["classifier.onnx"].pop("sha256"), "has no sha256"),
    (lambda d, f: d["files"].update({"../classifier.onnx": d["files"]["classifier.onnx"]}), "not a file name"),
    (lambda d, f: d.update(format=99), "manifest format 99"),
    (lambda d, f: (f / "classifier.onnx").unlink(), "no such model file"),
])
def test_validate_and_classify_refuse_a_lying_manifest(tmp_path, edit, needle):
    folder = folder_with_manifest(tmp_path, edit)
    refused(invoke("validate", folder), needle)
    refused(invoke("classify", SHIRT, "--model", folder), needle)


# -- train, export, reproduce ------------------------------------------------------------------

FAST = ["--limit", "300", "--max-epochs", "1", "--quiet", "--device", "cpu"]


@pytest.fixture
def cli(tmp_path, monkeypatch, fake_data_dir):
    """invoke() in tmp_path, with the fake data unless data=False."""
    monkeypatch.chdir(tmp_path)

    def run(*args, data: bool = True):
        return invoke(*args, *(["--data-dir", fake_data_dir] if data else []))

    return run


@pytest.mark.torch
@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999"])
def test_seeds_out_of_range_are_refused(cli, tmp_path, seed):
    result = cli("train", "autoencoder", "--n", "8", "--seed", seed, "--out", "ae", *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--seed" in result.stderr
    assert not (tmp_path / "ae").exists()


@pytest.mark.torch
def test_a_failed_force_retrain_keeps_the_finished_run(cli, tmp_path, make_fake_data):
    assert cli("train", "autoencoder", "--n", "8", "--out", "ae", *FAST).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "ae").iterdir()}
    corrupt = make_fake_data(tmp_path / "corrupt")
    for gz in corrupt.iterdir():
        gz.write_bytes(gz.read_bytes()[:100])  # truncated: found only when the data is read
    result = invoke("train", "autoencoder", "--n", "8", "--out", "ae", "--force", *FAST, "--data-dir", corrupt)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "ae").iterdir()} == before


@pytest.mark.torch
def test_resume_and_force_together_are_refused(cli, tmp_path):
    misused(cli("train", "autoencoder", "--n", "8", "--out", "ae", "--resume", "--force", *FAST), "pass one of them")


@pytest.mark.torch
def test_an_encoder_for_a_random_encoder_case_is_refused(cli, tmp_path, tiny_autoencoder):
    misused(cli("train", "classifier", "--case", "3", "--encoder", tiny_autoencoder, "--out", "c", *FAST),
            "--encoder is for classifier cases 1 and 2")
    assert not (tmp_path / "c").exists()


@pytest.mark.torch
def test_plain_train_options_before_a_subcommand_are_refused(cli, tmp_path):
    misused(cli("train", "--max-epochs", "1", "--limit", "300", "autoencoder", data=False),
            "--max-epochs", "--limit", "put them after `autoencoder`")


@pytest.mark.torch
def test_plain_train_checks_the_classifier_before_training_the_autoencoder(cli, tmp_path):
    misused(cli("train", "--distill", "0.5", "--out", "t", *FAST), "need a --teacher")
    assert not (tmp_path / "t").exists()


@pytest.mark.torch
def test_export_refuses_an_existing_file_as_its_folder(cli, tmp_path, tiny_autoencoder):
    keep = tmp_path / "important.txt"
    keep.write_text("mine")
    refused(cli("export", tiny_autoencoder, "--out", keep, "--no-validate", data=False), "is not a folder")
    assert keep.read_text() == "mine" and not list(tmp_path.glob(".*important*"))


@pytest.mark.torch
def test_validate_fails_a_model_with_nan_weights(cli, tmp_path, tiny_autoencoder, make_fake_data):
    import torch

    payload = torch.load(tiny_autoencoder, weights_only=True)
    payload["state_dict"] = {k: torch.full_like(v, float("nan")) if k.endswith("weight") else v
                             for k, v in payload["state_dict"].items()}
    torch.save(payload, tmp_path / "nan.pt")
    full_test_split = make_fake_data(tmp_path / "fake-10k", n_train=100, n_test=10_000)  # validate wants 10,000
    result = cli("export", tmp_path / "nan.pt", "--out", "ex", "--data-dir", full_test_split, data=False)
    refused(result, "NaN or infinite outputs")
    assert not (tmp_path / "ex").exists()


@pytest.mark.torch
@pytest.mark.parametrize("option, value, needle", [("--max-epochs", "0", "--max-epochs must be at least 1"),
                                                   ("--patience", "0", "--patience must be at least 1"),
                                                   ("--device", "tpu", "--device must be")])
def test_reproduce_refuses_bad_settings_before_writing_a_plan(cli, tmp_path, option, value, needle):
    misused(cli("reproduce", "--quick", "--out", "rp", option, value, "--no-report"), needle)
    assert not (tmp_path / "rp").exists()


@pytest.mark.torch
def test_a_shape_that_contradicts_the_encoder_is_refused(cli, tmp_path, tiny_autoencoder):
    refused(cli("train", "classifier", "--case", "1", "--encoder", tiny_autoencoder, "--n", "32", "--out", "c",
                *FAST), "--n 32 differs from the encoder's 16")
    result = cli("train", "classifier", "--case", "1", "--encoder", tiny_autoencoder, "--n", "16", "--out", "c",
                 *FAST)
    assert result.exit_code == 0, result.output  # the same shape, said out loud, is fine


def test_an_output_that_is_a_folder_is_named_as_such(tmp_path):
    refused(invoke("encode", SHIRT, "--model", FIXTURES, "-o", tmp_path), "it is a folder; name a file")
    refused(invoke("reconstruct", SHIRT, "--model", FIXTURES, "-o", tmp_path), "it is a folder; name a file")


@pytest.mark.torch
def test_calibrate_active_reaches_the_run_and_is_reset_when_calibration_is_off(cli, tmp_path):
    import torch

    def saved(folder):
        return torch.load(tmp_path / folder / "model.pt", weights_only=True)["train_config"]

    assert cli("train", "classifier", "--case", "4", "--n", "8", "--calibrate-active", "0.8", "--out", "a",
               *FAST).exit_code == 0
    assert saved("a")["calibrate_init"] and saved("a")["calibrate_active"] == 0.8
    assert cli("train", "classifier", "--case", "4", "--n", "8", "--no-calibrate-init", "--out", "b",
               *FAST).exit_code == 0
    assert not saved("b")["calibrate_init"] and saved("b")["calibrate_active"] == 0.5


@pytest.mark.torch
def test_decoder_dilation_is_for_autoencoders_and_marks_its_checkpoints(tmp_path):
    import torch

    from fmnist_edge.errors import FmnistEdgeError
    from fmnist_edge.train import checkpoint
    from fmnist_edge.train.config import ModelConfig, TrainConfig
    from fmnist_edge.train.models import build_model

    with pytest.raises(FmnistEdgeError, match="--decoder-dilation is for autoencoders"):
        ModelConfig("classifier", n=8, case=3, decoder_dilation=1).check()
    for dilation, version in ((2, checkpoint.FORMAT_VERSION), (1, checkpoint.UNDILATED_FORMAT_VERSION)):
        cfg = ModelConfig(n=8, decoder_dilation=dilation)
        checkpoint.save(tmp_path / f"d{dilation}.pt", cfg, TrainConfig(), build_model(cfg))
        assert torch.load(tmp_path / f"d{dilation}.pt", weights_only=True)[checkpoint.FORMAT_KEY] == version
        model, _ = checkpoint.load_model(tmp_path / f"d{dilation}.pt")
        assert model.decoder.net[4].dilation == (dilation, dilation)


@pytest.mark.torch
def test_resume_with_nothing_to_resume_says_so(cli, tmp_path):
    result = cli("train", "autoencoder", "--n", "8", "--out", "fresh", "--resume", *FAST)
    assert result.exit_code == 0, result.output
    assert "nothing to resume in fresh" in result.stderr and (tmp_path / "fresh" / "model.pt").is_file()


# -- empty paths (an unset "$OUT"): refused, never the working folder ------------------------

def _parameters(command, where=()):
    """(command path, parameter) for every parameter of every command, subcommands included."""
    for param in command.params:
        yield where, param
    for name, sub in getattr(command, "commands", {}).items():
        yield from _parameters(sub, (*where, name))


def test_every_path_parameter_goes_through_the_parser_that_refuses_an_empty_one():
    import typer.main

    from fmnist_edge.cli import build_app
    from fmnist_edge.cli.common import nonempty_path

    found = list(_parameters(typer.main.get_command(build_app())))
    parsed = [(w, p.name) for w, p in found if getattr(p.type, "func", None) is nonempty_path]
    unparsed = [(w, p.name) for w, p in found if p.type.name == "path" and (w, p.name) not in parsed]
    assert not unparsed
    assert len(parsed) >= 20 and (("export",), "out") in parsed and (("classify",), "model") in parsed


@pytest.mark.parametrize("args", [("classify", SHIRT, "--model", ""), ("encode", SHIRT, "-o", ""),
                                  ("reconstruct", SHIRT, "-o", ""), ("models", ""), ("export", "--out", ""),
                                  ("export", "--out="), ("report", ""), ("reproduce", "--out", ""),
                                  ("bench", "--no-torch", "--json", "")])
def test_an_empty_path_is_a_usage_error_not_the_working_folder(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    usage_error(invoke(*args), "an empty path names nothing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- a sweep of exit codes: a usage error is 2 wherever it is found, before the folder and the data

@pytest.mark.torch
@pytest.mark.parametrize("args, needle", [
    (["--ort-format", "--platform", ""], "--platform must be one of portable, x86, got ''"),
    (["--ort-format", "--platform", "arm"], "--platform must be one of"),
    (["--quantize-method", ""], "--quantize-method must be one of"),  # not the default method, silently
    (["--calibration-size", "100"], "--calibration-size is used by the static methods"),
    (["--quantize", "--calibration-size", "100"], "weights does not calibrate"),
])
def test_export_refuses_an_option_it_would_not_use_as_a_usage_error(cli, tmp_path, tiny_autoencoder, args, needle):
    misused(cli("export", tiny_autoencoder, "--out", "out", "--no-validate", *args, data=False), needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.torch
def test_export_reads_the_test_set_before_it_exports_anything(cli, tmp_path, tiny_autoencoder, monkeypatch):
    from fmnist_edge.export import onnx_export

    exported = []
    monkeypatch.setattr(onnx_export, "export_checkpoint", lambda *a: exported.append(a) or {})
    refused(cli("export", tiny_autoencoder, "--out", "out", "--data-dir", tmp_path / "none", data=False),
            "Fashion-MNIST not found")
    assert not exported and not (tmp_path / "out").exists()


@pytest.mark.parametrize("keep", [(), ("required_operators.config",)])
def test_validate_refuses_a_manifest_that_lists_no_models(tmp_path, keep):
    def edit(data, folder):
        if keep:
            (folder / keep[0]).write_text("# ops\n")
        data["files"] = {name: {"sha256": sha256_file(folder / name), "size_bytes": 6} for name in keep}
    refused(invoke("validate", folder_with_manifest(tmp_path, edit)), "lists no ONNX models; nothing to validate")


@pytest.mark.torch
def test_contradictions_are_said_before_the_machine_the_folder_or_the_data(cli, tmp_path, tiny_autoencoder):
    assert cli("train", "autoencoder", "--n", "8", "--out", "done", *FAST).exit_code == 0
    misused(cli("train", "autoencoder", "--out", "done", "--resume", "--force", *FAST[:-1], "cuda"),
            "--resume continues a run and --force starts it over")  # not "no CUDA device"
    misused(cli("train", "classifier", "--case", "3", "--encoder", tiny_autoencoder, "--out", "done", *FAST),
            "--encoder is for classifier cases 1 and 2")  # not "already holds a finished run"
    misused(cli("train", "classifier", "--case", "3", "--encoder", tiny_autoencoder, "--out", "c", *FAST,
                "--data-dir", tmp_path / "none", data=False), "--encoder is for classifier cases 1 and 2")
    misused(cli("train", "autoencoder", "--batch-norm", "--out", "bn", *FAST[2:], "--limit", "1"),
            "--batch-norm needs at least 2 training images (--limit)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]


@pytest.mark.torch
def test_messages_the_sweep_found_unclear(cli, tmp_path, tiny_autoencoder):
    (tmp_path / "afile").write_text("")
    refused(cli("export", tiny_autoencoder, "--out", tmp_path / "afile" / "sub", "--no-validate", data=False),
            "afile is a file, not a folder")
    refused(cli("export", tiny_autoencoder, "--out", "o", "--quantize-method", "qdq", "--calibration",
                tmp_path / "none.npy", "--no-validate", data=False), "none.npy: no such file")
    refused(invoke("models", tmp_path / "afile"), "afile: is a file, not a model folder")
    refused(invoke("bench", "--models", FIXTURES, "--checkpoint", FIXTURES / "encoder.onnx", "--batch-sizes", "1",
                   "--threads", "1", "--seconds", "0.01"), "is an encoder model; the PyTorch baseline is a classifier")
    misused(cli("train", "--seed", "3", "autoencoder", data=False), "--seed before `autoencoder` belongs to plain")


def test_the_entry_point_runs_outside_the_main_thread(capsys):
    """A host program may call main() from a worker thread, where no signal handler can be set."""
    import threading

    from fmnist_edge.cli import main

    codes = []

    def target():
        try:
            main(["--version"])
        except SystemExit as exc:
            codes.append(exc.code)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert codes == [0] and capsys.readouterr().out.startswith("fmnist-edge ")
