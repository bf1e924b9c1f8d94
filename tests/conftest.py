"""Shared fixtures: a small fake Fashion-MNIST folder, the real one when installed, a tiny
trained autoencoder checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist_edge.idx import DEBIAN_DATA_DIR, write_idx

FAKE_TRAIN, FAKE_TEST = 600, 200


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread (FMNIST_EDGE_TEST_THREADS to change) once a test module imported torch.
    Tiny batches on 2 busy cores: two OpenMP threads spin against other processes (measured
    here: 600 ms instead of 20 ms a training step). Never imports torch itself."""
    torch = sys.modules.get("torch")
    threads = int(os.environ.get("FMNIST_EDGE_TEST_THREADS", "1"))
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def fake_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Class k: a vertical bar at column 3 + 2k and a horizontal bar at row 3 + 2k, with noise.
    (N, 28, 28) uint8; simple enough that a few steps learn something."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.float64)
    for i, k in enumerate(labels):
        brightness = rng.uniform(150, 255)
        images[i, 2:26, 3 + 2 * k: 5 + 2 * k] = brightness
        images[i, 3 + 2 * k: 5 + 2 * k, 2:26] = brightness
    return images.clip(0, 255).astype(np.uint8)


def write_fake_dataset(folder: Path, n_train: int = FAKE_TRAIN, n_test: int = FAKE_TEST) -> Path:
    """The four IDX files, train gzipped and test raw (both forms the loader reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = (np.arange(n_train) % 10).astype(np.uint8)
    test_labels = (np.arange(n_test) % 10).astype(np.uint8)
    np.random.default_rng(1).shuffle(train_labels)
    write_idx(folder / "train-images-idx3-ubyte.gz", fake_images(train_labels, seed=2))
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte", fake_images(test_labels, seed=3))
    write_idx(folder / "t10k-labels-idx1-ubyte", test_labels)
    return folder


def refused(result, *needles: str, exit_code: int = 1) -> str:
    """Exit 1, no traceback, exactly one error line on stderr naming every needle."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("fmnist-edge: error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def misused(result, *needles: str) -> str:
    """A usage error the commands find (options that contradict, a value out of range): as
    `refused`, with exit 2, as for the errors the parser finds."""
    return refused(result, *needles, exit_code=2)


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory) -> Path:
    """A small Fashion-MNIST-shaped folder: 600 train and 200 test images of 10 classes."""
    return write_fake_dataset(tmp_path_factory.mktemp("fake-fmnist"))


@pytest.fixture(scope="session")
def make_fake_data():
    """write_fake_dataset(folder, n_train=600, n_test=200) -> folder, for tests that need their own."""
    return write_fake_dataset


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Debian's real Fashion-MNIST folder; the test is skipped when it is not installed."""
    if not (DEBIAN_DATA_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return DEBIAN_DATA_DIR


@pytest.fixture(scope="session")
def tiny_autoencoder(tmp_path_factory, fake_data_dir) -> Path:
    """model.pt of a ConvAutoencoder(n=16, p=0.1) trained one epoch on the fake data."""
    pytest.importorskip("torch")
    from fmnist_edge.train.config import ModelConfig, TrainConfig
    from fmnist_edge.train.loop import Trainer

    run_dir = tmp_path_factory.mktemp("tiny-ae")
    result = Trainer(ModelConfig("autoencoder", n=16, dropout=0.1),
                     TrainConfig(max_epochs=1, limit=300, recipe="paper"),
                     run_dir, data_dir=fake_data_dir, device="cpu", quiet=True).run()
    return result.model_path


def invoke(*args, stdin: bytes | None = None):
    """The CLI in-process: invoke("classify", path, ...) -> typer's Result (stdout, stderr, exit_code),
    with `stdin` as its standard input when given."""
    from typer.testing import CliRunner

    from fmnist_edge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], input=stdin)


@pytest.fixture
def run():
    """`invoke` as a fixture."""
    return invoke
