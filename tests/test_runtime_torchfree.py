"""The runtime needs no torch: every runtime command runs in a process where importing torch fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = ROOT / "exported" / "samples"

BLOCK_TORCH = '''
import sys

class BlockTorch:
    """Any `import torch` (or torchvision) fails, as on a machine without the train extra."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the torch-free test)")
        return None

sys.meta_path.insert(0, BlockTorch())
'''


def run(tmp_path: Path, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "FMNIST_EDGE_MODELS": str(FIXTURES)}
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, env=env, cwd=tmp_path,
                          timeout=120, input=stdin if stdin is not None else b"")
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def test_torch_is_really_blocked(tmp_path):
    done = run(tmp_path, "-c", "import torch")
    assert done.returncode != 0 and "blocked by the torch-free test" in done.stderr


def test_runtime_commands_run_without_torch(tmp_path):
    done = run(tmp_path, "-m", "fmnist_edge", "classify", SAMPLES / "shirt.png", SAMPLES / "bag.png", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["label"] for line in done.stdout.splitlines()] == ["Shirt", "Bag"]

    done = run(tmp_path, "-m", "fmnist_edge", "classify", "-", "--json", stdin=(SAMPLES / "shirt.png").read_bytes())
    assert done.returncode == 0, done.stderr  # a real pipe into standard input
    row = json.loads(done.stdout)
    assert (row["file"], row["label"]) == ("-", "Shirt")

    done = run(tmp_path, "-m", "fmnist_edge", "classify", SAMPLES / "shirt.png")  # the Rich table
    assert done.returncode == 0 and "Shirt" in done.stdout, done.stderr

    done = run(tmp_path, "-m", "fmnist_edge", "encode", SAMPLES, "-o", tmp_path / "z.npy")
    assert done.returncode == 0 and (tmp_path / "z.npy").is_file(), done.stderr

    done = run(tmp_path, "-m", "fmnist_edge", "reconstruct", SAMPLES / "coat.png", "-o", tmp_path / "r.png")
    assert done.returncode == 0 and (tmp_path / "r.png").is_file(), done.stderr

    fake_ckpt = tmp_path / "model.pt"  # asks for the PyTorch baseline, which must bow out cleanly
    fake_ckpt.write_bytes(b"x")
    done = run(tmp_path, "-m", "fmnist_edge", "bench", "--batch-sizes", "1,8", "--threads", "1",
               "--seconds", "0.01", "--checkpoint", fake_ckpt)
    assert done.returncode == 0, done.stderr
    assert "| classifier |" in done.stdout and "PyTorch eager: skipped (torch is not installed)" in done.stdout


def test_to_ort_converts_and_the_runtime_runs_the_result_without_torch(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for item in FIXTURES.iterdir():
        if item.is_file():
            (folder / item.name).write_bytes(item.read_bytes())
    done = run(tmp_path, "-m", "fmnist_edge", "to-ort", folder, "--no-validate")
    assert done.returncode == 0, done.stderr
    assert (folder / "classifier.ort").is_file() and (folder / "required_operators.config").is_file()
    done = run(tmp_path, "-m", "fmnist_edge", "classify", SAMPLES / "shirt.png", "--json",
               "--model", folder / "classifier.ort")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["file"].endswith("shirt.png")


def test_runtime_modules_import_no_torch(tmp_path):
    code = ("import sys, fmnist_edge.runtime.api, fmnist_edge.runtime.bench, fmnist_edge.runtime.inputs, "
            "fmnist_edge.cli; heavy = {'torch', 'matplotlib', 'onnx'} & set(sys.modules); "
            "assert not heavy, heavy")
    done = run(tmp_path, "-c", code)
    assert done.returncode == 0, done.stderr
