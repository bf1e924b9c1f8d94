"""Faults during work, each really done: processes killed with SIGKILL mid-way, a disk that
fills up, an output folder that cannot be written. No finished work is lost, no half-written
file is left under a real name, and every refusal is one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmnist_edge import manifest
from fmnist_edge.cli import app
from fmnist_edge.fileio import sha256_file
from fmnist_edge.runtime import FashionAutoencoder, FashionClassifier

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).parents[1] / "exported" / "samples"
# One thread per child: two OpenMP threads on 2 shared cores are many times slower.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CHILD_ENV.pop("FMNIST_EDGE_DATA", None)
CLI = [sys.executable, "-m", "fmnist_edge"]


def start(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], env=CHILD_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], env=CHILD_ENV, capture_output=True, text=True, timeout=300,
                          **kwargs)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll until `condition()`; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"process ended (exit {proc.returncode}) before the moment to kill it: "
                        f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to kill")
        time.sleep(0.01)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def one_error_line(stderr: str, *needles: str) -> str:
    """No traceback, exactly one `fmnist-edge: error:` line (progress lines may precede it)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("fmnist-edge: error: ")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def hidden_leftovers(folder: Path) -> list[Path]:
    """Temporary files and staging folders: what a killed or failed write may leave."""
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".staging-")]


def all_whole(folder: Path) -> None:
    """Every file under its real name is complete: JSON parses, checkpoints load. (A kill in
    the middle of an atomic write may leave a hidden .NAME.*.tmp, never a torn NAME.)"""
    from fmnist_edge.train.checkpoint import load_raw

    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert files
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            load_raw(path)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


# -- training killed mid-epoch ---------------------------------------------------------------
TRAIN = ["train", "autoencoder", "--n", "8", "--batch-size", "1", "--max-epochs", "3", "--patience", "5",
         "--recipe", "paper", "--device", "cpu", "--quiet"]


def history(run: Path) -> list[dict]:
    path = run / "history.json"
    return json.loads(path.read_text()) if path.is_file() else []


@pytest.mark.torch
def test_training_killed_mid_epoch_resumes_to_the_same_run(tmp_path, fake_data_dir):
    """540 steps an epoch (batch size 1), killed 0.3 s into epoch 2; --resume ends with the
    same epochs, and the same losses, as a run never interrupted."""
    pytest.importorskip("torch")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = start(*TRAIN, "--out", whole, "--data-dir", fake_data_dir)  # meanwhile, uninterrupted
    proc = start(*TRAIN, "--out", killed, "--data-dir", fake_data_dir)
    wait_for(lambda: len(history(killed)) == 1 and (killed / "last.pt").is_file(), proc)
    time.sleep(0.3)
    kill(proc)
    assert len(history(killed)) == 1, "the kill came too late: epoch 2 had finished"
    assert not (killed / "model.pt").exists()

    result = cli(*TRAIN, "--out", killed, "--data-dir", fake_data_dir)  # without --resume: told how
    one_error_line(result.stderr, "interrupted run", "--resume")
    before = history(killed)
    result = cli(*TRAIN, "--out", killed, "--data-dir", fake_data_dir, "--resume")
    assert result.returncode == 0, result.stderr
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err

    resumed, uninterrupted = history(killed), history(whole)
    assert resumed[0] == before[0]  # epoch 1 kept as it was, its wall time too: resumed, not trained again
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in uninterrupted] == [1, 2, 3]
    for a, b in zip(resumed, uninterrupted):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["epochs"] == json.loads((whole / "metrics.json").read_text())["epochs"] == 3
    assert (killed / "model.pt").is_file()
    all_whole(killed)


@pytest.mark.torch
def test_training_stopped_by_sigterm_saves_its_state_mid_epoch_and_resumes(tmp_path, fake_data_dir):
    """A service manager's stop (SIGTERM) 0.3 s into epoch 2 of 540 steps: the step under way
    finishes, the state is saved mid-epoch, exit 143 with one line; --resume goes on from there."""
    from fmnist_edge.train.checkpoint import load_raw

    run = tmp_path / "run"
    proc = start(*TRAIN, "--max-epochs", "2", "--out", run, "--data-dir", fake_data_dir)
    wait_for(lambda: len(history(run)) == 1 and (run / "last.pt").is_file(), proc)
    time.sleep(0.3)
    assert proc.poll() is None and len(history(run)) == 1, "the signal came too late: epoch 2 had finished"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    one_error_line(err, "terminated in epoch 2; state saved to", "last.pt", "--resume")
    saved = load_raw(run / "last.pt")
    assert saved["epoch"] == 1 and 0 < saved["step"] < 540, saved["step"]  # mid-epoch, not at its start
    assert not (run / "model.pt").exists() and not hidden_leftovers(run)
    before = history(run)
    result = cli(*TRAIN, "--max-epochs", "2", "--out", run, "--data-dir", fake_data_dir, "--resume")
    assert result.returncode == 0, result.stderr
    after = history(run)
    assert [r["epoch"] for r in after] == [1, 2] and after[0] == before[0] and (run / "model.pt").is_file()


# -- reproduce killed mid-way ----------------------------------------------------------------
def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.torch
@pytest.mark.parametrize("jobs", [1, 2])
def test_reproduce_killed_midway_does_not_redo_finished_runs(tmp_path, fake_data_dir, jobs):
    """With --jobs 2 the workers outlive a SIGKILLed parent only long enough to save their
    resume points: none of them trains on beside the reproduction that resumes."""
    pytest.importorskip("torch")
    root = tmp_path / "repro"
    args = ["reproduce", "--quick", "--no-report", "--out", root, "--data-dir", fake_data_dir, "--device", "cpu",
            "--jobs", jobs]
    proc = start(*args)
    wait_for(lambda: len(list(root.glob("seed0/*/model.pt"))) >= 3, proc)
    workers = children(proc.pid)
    kill(proc)
    if jobs > 1:
        assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "a worker kept running after its parent was killed"
    finished = {p: p.stat().st_mtime_ns for p in root.glob("seed0/*/model.pt")}
    assert 3 <= len(finished) < 14

    result = cli(*args)
    assert result.returncode == 0, result.stderr
    models = sorted(root.glob("seed0/*/model.pt"))
    assert len(models) == 14  # ten autoencoders, four classifier cases
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # none of them trained again
    started = [line for line in result.stdout.splitlines() if line.endswith(": running")]
    assert len(started) == 14 - len(finished), result.stdout
    all_whole(root)


# -- export killed mid-write -----------------------------------------------------------------
# Runs the CLI with one export step slowed down, so that the kill lands exactly there:
# "mid-write" leaves half of decoder.onnx on disk, "before-swap" has everything staged.
SLOW_EXPORT = """
import pathlib, sys, time
import onnx
import fmnist_edge.manifest as manifest
step, marker = sys.argv[1], pathlib.Path(sys.argv[2])
real_save, real_write = onnx.save, manifest.write

def save(model, path, *args, **kwargs):
    if step == "mid-write" and pathlib.Path(path).name == "decoder.onnx":
        data = model.SerializeToString()
        pathlib.Path(path).write_bytes(data[: len(data) // 2])
        marker.touch()
        time.sleep(300)
    return real_save(model, path, *args, **kwargs)

def write(*args, **kwargs):
    out = real_write(*args, **kwargs)
    if step == "before-swap":
        marker.touch()
        time.sleep(300)
    return out

onnx.save, manifest.write = save, write
from fmnist_edge.cli import main
main(sys.argv[3:])
"""


def loads_and_verifies(folder: Path) -> None:
    """What a user of the runtime needs: every listed file matches, both APIs load."""
    for name in manifest.read(folder)["files"]:
        manifest.verify(folder / name)
    FashionClassifier.load(folder).predict(SAMPLES / "trouser.png")
    FashionAutoencoder.load(folder).encode(SAMPLES / "trouser.png")


@pytest.mark.torch
def test_export_killed_mid_write_leaves_the_previous_export(tmp_path, tiny_autoencoder):
    pytest.importorskip("onnx")
    target = tmp_path / "exported"
    shutil.copytree(FIXTURES, target, ignore=shutil.ignore_patterns("wrong-shape"))
    before = snapshot(target)
    export_args = ["export", tiny_autoencoder, "--out", target, "--no-validate"]
    for step in ("mid-write", "before-swap"):
        marker = tmp_path / f"{step}.reached"
        proc = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, step, str(marker), *map(str, export_args)],
                                env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(marker.exists, proc)
        kill(proc)
        assert snapshot(target) == before, step  # not one byte of the previous export changed
        assert not hidden_leftovers(target)
        loads_and_verifies(target)
    assert hidden_leftovers(tmp_path)  # the killed exports' staging folders, hidden beside it

    result = cli(*export_args)  # the next export finishes and sweeps up what the kills left
    assert result.returncode == 0, result.stderr
    assert not hidden_leftovers(tmp_path)
    after = snapshot(target)
    assert after["encoder.onnx"] != before["encoder.onnx"]  # the new autoencoder...
    assert after["classifier.onnx"] == before["classifier.onnx"]  # ...beside the kept classifier
    loads_and_verifies(target)
    assert FashionAutoencoder.load(target).n == 16


# -- a full disk -----------------------------------------------------------------------------
def file_size_limit(nbytes: int):
    """preexec_fn: writes past `nbytes` fail with EFBIG, as on a full disk (SIGXFSZ ignored,
    else the kernel would kill the process instead of failing the write)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.torch
def test_full_disk_while_training(tmp_path, fake_data_dir):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    result = cli("train", "autoencoder", "--n", "8", "--max-epochs", "1", "--limit", "300", "--device", "cpu",
                 "--quiet", "--out", run, "--data-dir", fake_data_dir, preexec_fn=file_size_limit(20_000))
    assert result.returncode == 1
    one_error_line(result.stderr, str(run / "last.pt"), "File too large")
    assert not (run / "last.pt").exists() and not (run / "model.pt").exists()
    assert not hidden_leftovers(run)


@pytest.mark.torch
def test_full_disk_while_exporting(tmp_path, tiny_autoencoder):
    pytest.importorskip("onnx")
    target = tmp_path / "exported"
    shutil.copytree(FIXTURES, target, ignore=shutil.ignore_patterns("wrong-shape"))
    before = snapshot(target)
    result = cli("export", tiny_autoencoder, "--out", target, "--no-validate", preexec_fn=file_size_limit(20_000))
    assert result.returncode == 1
    one_error_line(result.stderr, f"cannot export to {target}", "File too large")
    assert snapshot(target) == before and not hidden_leftovers(tmp_path)
    loads_and_verifies(target)


def test_full_disk_while_encoding(tmp_path):
    out = tmp_path / "latents.npy"
    result = cli("encode", SAMPLES, "-o", out, "--model", FIXTURES, preexec_fn=file_size_limit(100))
    assert result.returncode == 1
    one_error_line(result.stderr, f"cannot write {out}", "File too large")
    assert not out.exists() and not hidden_leftovers(tmp_path)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 256 kB tmpfs, so writes fail with ENOSPC; skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.torch
def test_really_full_disk_while_training(tiny_filesystem, fake_data_dir):
    pytest.importorskip("torch")
    run = tiny_filesystem / "run"
    result = cli("train", "autoencoder", "--n", "64", "--max-epochs", "1", "--limit", "300", "--device", "cpu",
                 "--quiet", "--out", run, "--data-dir", fake_data_dir)
    assert result.returncode == 1
    one_error_line(result.stderr, "cannot write", "No space left on device")
    assert not (run / "model.pt").exists() and not hidden_leftovers(tiny_filesystem)


# -- an output folder that cannot be written -------------------------------------------------
@pytest.fixture(params=["under-a-file", "immutable"])
def unwritable(request, tmp_path) -> Path:
    """A folder path that denies writes even to root: one under a regular file (ENOTDIR), or an
    immutable folder (chattr +i; skipped where the filesystem has no such flag)."""
    if request.param == "under-a-file":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        yield blocker / "out"
        return
    folder = tmp_path / "immutable"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                       capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            yield folder / "out"
        else:
            pytest.skip("chattr +i did not deny writes")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


@pytest.fixture
def run_cli():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def nothing_created(path: Path) -> None:
    parent = path.parent
    assert not path.exists()
    if parent.is_dir():
        assert not [p for p in parent.iterdir() if p.name != "probe"]


def test_unwritable_folder_encode(run_cli, unwritable):
    out = unwritable / "latents.npy"
    result = run_cli("encode", SAMPLES / "bag.png", "-o", out, "--model", FIXTURES)
    assert result.exit_code == 1
    one_error_line(result.stderr, "cannot write")
    nothing_created(unwritable)


def test_unwritable_folder_reconstruct(run_cli, unwritable):
    result = run_cli("reconstruct", SAMPLES / "bag.png", "-o", unwritable / "rec.png", "--model", FIXTURES)
    assert result.exit_code == 1
    one_error_line(result.stderr, "cannot write")
    nothing_created(unwritable)


@pytest.mark.torch
def test_unwritable_folder_train(run_cli, unwritable, fake_data_dir):
    pytest.importorskip("torch")
    result = run_cli("train", "autoencoder", "--n", "8", "--max-epochs", "1", "--limit", "300", "--quiet",
                     "--device", "cpu", "--out", unwritable / "run", "--data-dir", fake_data_dir)
    assert result.exit_code == 1
    one_error_line(result.stderr, "cannot create")
    nothing_created(unwritable)


@pytest.mark.torch
def test_unwritable_folder_export(run_cli, unwritable, tiny_autoencoder):
    pytest.importorskip("onnx")
    result = run_cli("export", tiny_autoencoder, "--out", unwritable / "exported", "--no-validate")
    assert result.exit_code == 1
    one_error_line(result.stderr, "cannot write")
    nothing_created(unwritable)
