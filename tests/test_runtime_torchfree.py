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
import os
import sys

class BlockTorch:
    """Any `import torch` (or torchvision) fails, as on a machine without the train extra, and
    is written down in $TORCH_ATTEMPTS: a guarded `try: import torch` fails too, but is seen."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            if os.environ.get("TORCH_ATTEMPTS"):
                with open(os.environ["TORCH_ATTEMPTS"], "a") as log:
                    log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the torch-free test)", name=name)
        return None

sys.meta_path.insert(0, BlockTorch())
'''


def run(tmp_path: Path, *args, stdin: bytes | None = None, block: bool = True) -> subprocess.CompletedProcess:
    """`python ARGS` with torch blocked (unless `block` is False); `.torch_attempts` lists the
    torch modules the process tried to import."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    log = tmp_path / "torch-attempts.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "FMNIST_EDGE_MODELS": str(FIXTURES), "TORCH_ATTEMPTS": str(log)}
    if block:
        env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, env=env, cwd=tmp_path,
                          timeout=120, input=stdin if stdin is not None else b"")
    result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
    result.torch_attempts = log.read_text().split() if log.exists() else []
    return result


def test_torch_is_really_blocked_and_every_attempt_is_seen(tmp_path):
    done = run(tmp_path, "-c", "import torch")
    assert done.returncode != 0 and "blocked by the torch-free test" in done.stderr
    assert done.torch_attempts == ["torch"]
    done = run(tmp_path, "-c", "try:\n    import torchvision.io\nexcept ImportError:\n    pass")
    assert done.returncode == 0 and done.torch_attempts == ["torchvision"]  # guarded, and still seen


def test_runtime_commands_run_without_torch(tmp_path):
    done = run(tmp_path, "-m", "fmnist_edge", "classify", SAMPLES / "shirt.png", SAMPLES / "bag.png", "--json")
    assert done.returncode == 0 and done.torch_attempts == [], done.stderr
    assert [json.loads(line)["label"] for line in done.stdout.splitlines()] == ["Shirt", "Bag"]

    done = run(tmp_path, "-m", "fmnist_edge", "classify", "-", "--json", stdin=(SAMPLES / "shirt.png").read_bytes())
    assert done.returncode == 0, done.stderr  # a real pipe into standard input
    row = json.loads(done.stdout)
    assert (row["file"], row["label"]) == ("-", "Shirt")

    done = run(tmp_path, "-m", "fmnist_edge", "classify", SAMPLES / "shirt.png")  # the Rich table
    assert done.returncode == 0 and "Shirt" in done.stdout and done.torch_attempts == [], done.stderr

    done = run(tmp_path, "-m", "fmnist_edge", "encode", SAMPLES, "-o", tmp_path / "z.npy")
    assert done.returncode == 0 and (tmp_path / "z.npy").is_file() and done.torch_attempts == [], done.stderr

    done = run(tmp_path, "-m", "fmnist_edge", "reconstruct", SAMPLES / "coat.png", "-o", tmp_path / "r.png")
    assert done.returncode == 0 and (tmp_path / "r.png").is_file() and done.torch_attempts == [], done.stderr

    done = run(tmp_path, "-m", "fmnist_edge", "models")
    assert done.returncode == 0 and "classifier.onnx" in done.stdout and done.torch_attempts == [], done.stderr

    fake_ckpt = tmp_path / "model.pt"  # asks for the PyTorch baseline, which must bow out cleanly
    fake_ckpt.write_bytes(b"x")
    done = run(tmp_path, "-m", "fmnist_edge", "bench", "--batch-sizes", "1,8", "--threads", "1",
               "--seconds", "0.01", "--checkpoint", fake_ckpt)
    assert done.returncode == 0, done.stderr
    assert "| classifier |" in done.stdout and "PyTorch eager: skipped (torch is not installed)" in done.stdout
    assert done.torch_attempts[:1] == ["torch"]  # the baseline asked for torch, and bowed out
    done = run(tmp_path, "-m", "fmnist_edge", "bench", "--batch-sizes", "1", "--threads", "1", "--seconds", "0.01",
               "--no-torch")
    assert done.returncode == 0 and done.torch_attempts == [], done.stderr


def test_commands_that_need_torch_say_so_in_one_line_on_a_base_install(tmp_path):
    fake_ckpt = tmp_path / "model.pt"
    fake_ckpt.write_bytes(b"x")
    for args in (["train", "--out", tmp_path / "r"], ["train", "autoencoder", "--out", tmp_path / "a"],
                 ["train", "classifier", "--case", "3", "--out", tmp_path / "c"], ["evaluate", fake_ckpt],
                 ["reproduce", "--quick", "--out", tmp_path / "runs"], ["export", fake_ckpt, "--out", tmp_path / "e"],
                 ["report", tmp_path, "--out", tmp_path / "rep"]):  # said before RUNS is looked at
        done = run(tmp_path, "-m", "fmnist_edge", *args)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr == ("fmnist-edge: error: this command needs the train extra (torch is not installed): "
                               "pip install 'fmnist-edge[train]'\n"), args
    assert not any((tmp_path / name).exists() for name in ("r", "a", "c", "runs", "e", "rep"))
    # bench's baseline bows out without torch, but a --checkpoint that is not there is still an error
    done = run(tmp_path, "-m", "fmnist_edge", "bench", "--batch-sizes", "1", "--threads", "1", "--seconds", "0.01",
               "--checkpoint", tmp_path / "missing.pt")
    assert done.returncode == 1 and done.stderr.endswith("missing.pt: no such file\n"), done.stderr
    assert "| classifier |" not in done.stdout


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


RUNTIME_IMPORTS = ("import pkgutil, sys, fmnist_edge.runtime, fmnist_edge.cli, fmnist_edge.cli.runtime_cmds\n"
                   "for module in pkgutil.walk_packages(fmnist_edge.runtime.__path__, 'fmnist_edge.runtime.'):\n"
                   "    __import__(module.name)\n"
                   "print(sorted(m for m in sys.modules if m.startswith('fmnist_edge.runtime.')))\n"
                   "heavy = {'torch', 'torchvision', 'matplotlib', 'onnx'} & set(sys.modules)\n"
                   "assert not heavy, heavy\n")


def test_runtime_modules_import_no_torch(tmp_path):
    """Every module of fmnist_edge/runtime/, found by walking the package, and the runtime
    commands' module: imported with torch blocked, none of them even tries torch; imported with
    torch installed and not blocked, torch is not loaded."""
    for block in (True, False):
        done = run(tmp_path, "-c", RUNTIME_IMPORTS, block=block)
        assert done.returncode == 0, done.stderr
        assert done.torch_attempts == []
        imported = eval(done.stdout)
        assert {"fmnist_edge.runtime.api", "fmnist_edge.runtime.inventory", "fmnist_edge.runtime.session",
                "fmnist_edge.runtime.preprocess", "fmnist_edge.runtime.bench"} <= set(imported)
