"""Hostile models: a checkpoint carrying pickled code, ONNX files cut short, of another
architecture or altered after export. Each is refused with one clear line, and nothing in it runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fmnist_edge import manifest
from fmnist_edge.errors import ModelError
from fmnist_edge.runtime import FashionClassifier
from conftest import refused  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).parents[1] / "exported" / "samples"


# -- checkpoints with pickled code -----------------------------------------------------------

class Payload:
    """Unpickling this calls os.system: the classic pickle exploit, here only creating a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    """(model.pt whose state_dict is pickled code, the marker file that code would create).
    Shaped like ours in every other way, so only the unpickler can tell."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil" / "model.pt"
    ckpt.parent.mkdir()
    torch.save({"fmnist_edge_checkpoint": 1,
                "model_config": {"kind": "autoencoder", "n": 16, "dropout": 0.1, "case": None},
                "train_config": {}, "state_dict": Payload(marker)}, ckpt)
    # The control: an unsafe load really runs the code, so the file is as hostile as it looks.
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return ckpt, marker


def test_evaluate_refuses_pickled_code(run, evil_checkpoint, fake_data_dir):
    ckpt, marker = evil_checkpoint
    line = refused(run("evaluate", ckpt, "--data-dir", fake_data_dir), str(ckpt),
                   "refused, not a plain-data checkpoint")
    assert "system" in line  # names the code it would have run, not torch's advice to load unsafely
    assert not marker.exists()


def test_export_refuses_pickled_code(run, evil_checkpoint, tmp_path):
    ckpt, marker = evil_checkpoint
    out = tmp_path / "exported"
    refused(run("export", ckpt, "--out", out, "--no-validate"), str(ckpt), "refused")
    assert not marker.exists()
    assert not out.exists() and not list(tmp_path.glob(".staging-*"))  # no half export left behind


def test_train_classifier_refuses_pickled_encoder(run, evil_checkpoint, tmp_path, fake_data_dir):
    ckpt, marker = evil_checkpoint
    out = tmp_path / "clf"
    refused(run("train", "classifier", "--case", "1", "--encoder", ckpt, "--out", out, "--max-epochs", "1",
                "--limit", "300", "--quiet", "--device", "cpu", "--data-dir", fake_data_dir), str(ckpt), "refused")
    assert not marker.exists()
    assert not (out / "model.pt").exists()


# -- ONNX files: truncated, another architecture, altered --------------------------------------

def export_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exported"
    shutil.copytree(FIXTURES, folder, ignore=shutil.ignore_patterns("wrong-shape"))
    return folder


def rewrite_manifest(folder: Path) -> None:
    """As if the export itself had written the bad file: the sha256 check passes, so the
    refusal has to come from the file's content."""
    entries = {name: {k: v for k, v in e.items() if k not in ("size_bytes", "sha256")}
               for name, e in manifest.read(folder)["files"].items()}
    manifest.write(folder, entries)


def truncated(folder: Path) -> None:
    path = folder / "classifier.onnx"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def flipped(folder: Path) -> None:
    path = folder / "classifier.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def encoder_renamed(folder: Path) -> None:
    shutil.copy(folder / "encoder.onnx", folder / "classifier.onnx")


def wrong_input_shape(folder: Path) -> None:
    shutil.copy(FIXTURES / "wrong-shape" / "classifier.onnx", folder / "classifier.onnx")


# (damage, manifest rewritten to match?, what the one line says)
CASES = {
    "truncated": (truncated, False, "differs from its manifest"),
    "truncated-in-manifest": (truncated, True, "not a loadable ONNX model"),
    "byte-flipped": (flipped, False, "differs from its manifest"),
    "encoder-as-classifier": (encoder_renamed, True, "is an encoder model, expected a classifier"),
    "encoder-as-classifier-in-old-manifest": (encoder_renamed, False, "differs from its manifest"),
    "wrong-input-shape": (wrong_input_shape, True, "has shape [batch,1,32,32]"),
}


@pytest.fixture(params=sorted(CASES))
def bad_export(request, tmp_path) -> tuple[Path, str]:
    damage, in_manifest, needle = CASES[request.param]
    folder = export_folder(tmp_path)
    FashionClassifier.load(folder)  # the control: intact, it loads
    damage(folder)
    if in_manifest:
        rewrite_manifest(folder)
    return folder, needle


def test_api_refuses_bad_model(bad_export):
    folder, needle = bad_export
    with pytest.raises(ModelError) as info:
        FashionClassifier.load(folder)
    message = str(info.value)
    assert needle in message and "classifier.onnx" in message and "\n" not in message


def test_classify_refuses_bad_model(run, bad_export):
    folder, needle = bad_export
    result = run("classify", SAMPLES / "shirt.png", "--model", folder, "--json")
    refused(result, "classifier.onnx", needle)
    assert result.stdout == ""  # refused before any picture was classified


@pytest.fixture(scope="module")
def full_test_split(tmp_path_factory, make_fake_data) -> Path:
    """`validate` insists on the full 10,000-image test set: a fake one of that size."""
    return make_fake_data(tmp_path_factory.mktemp("fake-10k"), n_train=100, n_test=10_000)


def test_validate_refuses_bad_model(run, bad_export, full_test_split):
    folder, needle = bad_export
    refused(run("validate", folder, "--data-dir", full_test_split), "classifier.onnx", needle)


def test_validate_passes_the_intact_fixtures(run, tmp_path, full_test_split):
    """The control for the test above: on the undamaged folder every model loads and is
    measured (the linear fixtures may still miss a figure's bound, which is not a refusal)."""
    result = run("validate", export_folder(tmp_path), "--data-dir", full_test_split, "--json")
    assert result.exit_code in (0, 1) and "Traceback" not in result.output  # 1: a figure's bound missed, said
    report = json.loads(result.stdout)
    assert result.exit_code == (1 if report["failures"] else 0)
    assert set(report["models"]) == {"classifier.onnx", "classifier.int8.onnx", "encoder.onnx", "decoder.onnx"}
    assert not any("loadable" in f or "manifest" in f or "expected a" in f for f in report["failures"])
