"""The wheel carries the shipped models: `pip install fmnist-edge`, with no repository at hand,
classifies the samples without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from test_runtime_torchfree import BLOCK_TORCH

ROOT = Path(__file__).parents[1]
SHIPPED = "fmnist_edge.shipped"


def config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_list_matches_the_folders():
    """The packages are listed by hand (one of them lives in exported/): a new subpackage must be
    added there, or the wheel silently leaves it out."""
    listed = set(config()["packages"])
    code = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "fmnist_edge").rglob("__init__.py")}
    assert listed == code | {SHIPPED, f"{SHIPPED}.samples"}
    assert config()["package-dir"] == {SHIPPED: "exported"}


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources, so that no build/ or egg-info lands in the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("fmnist_edge", "exported"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("fmnist_edge-*.whl")
    return wheel


def test_the_wheel_alone_classifies_without_torch(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "exported").iterdir() if p.is_file())
    samples = sorted(p.name for p in (ROOT / "exported" / "samples").glob("*.png"))
    assert {f"fmnist_edge/shipped/{name}" for name in shipped} <= names
    assert {f"fmnist_edge/shipped/samples/{name}" for name in samples} <= names
    assert not any(name.startswith(("tests/", "tools/", "benchmarks/")) for name in names)
    assert "fmnist_edge/py.typed" in names  # a program that embeds the runtime gets its types
    (license_file,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(license_file) == (ROOT / "LICENSE").read_bytes()

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    elsewhere = tmp_path / "elsewhere"  # no exported/ here: only the wheel's copy can answer
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "FMNIST_EDGE_MODELS"}
    env["PYTHONPATH"] = str(site)
    env["TORCH_ATTEMPTS"] = str(tmp_path / "torch-attempts.log")  # BLOCK_TORCH notes every try

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env,
                              cwd=elsewhere, timeout=120)

    done = run("-m", "fmnist_edge", "models", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert (found["folder"], found["origin"]) == (str(site / "fmnist_edge" / "shipped"), "installed with the package")
    assert found["samples"] == str(site / "fmnist_edge" / "shipped" / "samples")
    assert {m["file"] for m in found["models"]} == {n for n in shipped if n.endswith((".onnx", ".ort"))}
    assert all(m["status"] == "ok" for m in found["models"])

    sample = Path(found["samples"]) / "shirt.png"
    done = run("-m", "fmnist_edge", "classify", sample, "--int8", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "Shirt"
    done = run("-m", "fmnist_edge", "reconstruct", sample, "-o", elsewhere / "r.png")
    assert done.returncode == 0 and (elsewhere / "r.png").is_file(), done.stderr
    assert not (tmp_path / "torch-attempts.log").exists()  # not even a guarded `import torch`


def test_what_programs_embed_type_checks(tmp_path):
    """The runtime's annotations are what `py.typed` promises a type checker: mypy passes on the
    modules pyproject.toml names (the torch-free runtime and what it imports)."""
    pytest.importorskip("mypy")
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found")


EMBEDDING_PROGRAM = '''\
import numpy as np
from fmnist_edge.runtime import CLASS_NAMES, FashionAutoencoder, FashionClassifier, ImageError, Prediction

clf = FashionClassifier.load(threads=1)
one: Prediction = clf.predict("shirt.png")
many: list[Prediction] = clf.predict(["a.png", b"...", np.zeros((28, 28))])
either = clf.predict(np.zeros((28, 28)))
probs: np.ndarray = clf.probabilities([b"..."], batch_size=8)
latents: np.ndarray = FashionAutoencoder.load().encode("a.png")
names: tuple[str, ...] = CLASS_NAMES
for name, result in clf.classify_files(["a.png"]):
    label = result.label if isinstance(result, Prediction) else str(result)
try:
    pass
except ImageError:
    pass
reveal_type(either)
FashionClassifier.load(threads="two")  # wrong: an error line
clf.predict(12345)  # wrong: an error line
'''


def test_a_program_that_embeds_the_runtime_is_type_checked_against_it(tmp_path):
    """What `py.typed` promises an embedding program: its calls through `fmnist_edge.runtime`'s
    lazy names are checked against the real signatures, not taken as Any."""
    pytest.importorskip("mypy")
    program = tmp_path / "embedding.py"
    program.write_text(EMBEDDING_PROGRAM)
    # --follow-imports silent: the package's own modules are not what is checked, as when installed
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
                           "--follow-imports", "silent", program.name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MYPYPATH": str(ROOT)})
    lines = [line for line in done.stdout.splitlines() if line.startswith(program.name)]
    wrong = [n + 1 for n, text in enumerate(EMBEDDING_PROGRAM.splitlines()) if "wrong:" in text]
    flagged = sorted({int(line.split(":")[1]) for line in lines if ": error:" in line})
    assert flagged == wrong, done.stdout + done.stderr
    revealed = [line for line in lines if "Revealed type" in line]
    assert revealed and "api.Prediction | list[fmnist_edge.runtime.api.Prediction]" in revealed[0].replace(
        "builtins.", ""), done.stdout  # not Any: the lazy name's real class
