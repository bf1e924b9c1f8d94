"""Load: one loaded classifier shared by 8 threads gives one thread's answers, and `classify`
over thousands of files keeps its memory flat and reports bad files without stopping."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist_edge.idx import DEBIAN_DATA_DIR, load_split
from fmnist_edge.runtime import FashionClassifier

FIXTURES = Path(__file__).parent / "fixtures"
N_IMAGES, THREADS, CHUNK = 4_000, 8, 125


def test_images() -> np.ndarray:
    """(N_IMAGES, 28, 28) uint8: the first real test images when installed, else synthetic garments."""
    if (DEBIAN_DATA_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        return load_split("test", DEBIAN_DATA_DIR).images[:N_IMAGES]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 30, (N_IMAGES, 28, 28), dtype=np.uint8)
    for i, (top, left, h, w, value) in enumerate(zip(rng.integers(0, 10, N_IMAGES), rng.integers(0, 10, N_IMAGES),
                                                    rng.integers(8, 18, N_IMAGES), rng.integers(8, 18, N_IMAGES),
                                                    rng.integers(80, 256, N_IMAGES))):
        images[i, top:top + h, left:left + w] = value
    return images


test_images.__test__ = False  # a helper, not a test


def as_inputs(images: np.ndarray, start: int) -> list:
    """Every kind of input the API takes, so preprocessing runs in the threads too: framed
    28x28 arrays, larger arrays to frame, and PIL photos (dark garment on white)."""
    out = []
    for i, im in enumerate(images, start):
        if i % 3 == 0:
            out.append(im)
        elif i % 3 == 1:
            out.append(np.kron(im, np.ones((2, 2), np.uint8)))  # (56, 56)
        else:
            out.append(Image.fromarray(255 - im))
    return out


def test_eight_threads_give_one_threads_answers():
    clf = FashionClassifier.load(FIXTURES, threads=2)  # its large batches' chunks side by side too
    images = test_images()
    chunks = [as_inputs(images[i:i + CHUNK], i) for i in range(0, N_IMAGES, CHUNK)]
    alone = [clf.probabilities(chunk) for chunk in chunks]  # one thread, chunk by chunk
    with ThreadPoolExecutor(THREADS) as pool:
        together = list(pool.map(clf.probabilities, chunks))  # the same chunks, 8 at a time
        predictions = list(pool.map(clf.predict, chunks))
    assert len(together) == len(alone) == N_IMAGES // CHUNK
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    labels = np.concatenate([p.argmax(1) for p in alone])
    assert [p.index for batch in predictions for p in batch] == labels.tolist()
    assert len(set(labels.tolist())) > 1  # the answers are not all one class, so a mix-up would show


# -- classify over thousands of files ---------------------------------------------------------
def write_pictures(folder: Path, count: int, corrupt: set[int]) -> None:
    """`count` 96x96 RGB PNG photos (each 27 kB decoded, so holding them all would show);
    the indices in `corrupt` get a damaged file instead."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    variants = []
    for k in range(40):
        canvas = np.full((96, 96, 3), 250, np.uint8)
        top, left = rng.integers(0, 40, 2)
        canvas[top:top + 50, left:left + rng.integers(20, 50)] = rng.integers(0, 120, 3)
        canvas += rng.integers(0, 5, canvas.shape, dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="PNG", compress_level=1)
        variants.append(buf.getvalue())
    for i in range(count):
        data = variants[i % len(variants)]
        if i in corrupt:
            data = data[: len(data) // 3] if i % 2 else b"definitely not a picture"
        (folder / f"{i:05d}.png").write_bytes(data)


def classify_peak_rss(folder: Path, out: Path) -> tuple[int, int]:
    """(exit code, peak RSS in kB) of one `classify --json` child over the folder (wait4 gives
    this child's own peak, not the largest of all children so far)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(out, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "fmnist_edge", "classify", str(folder), "--model",
                                 str(FIXTURES), "--json", "--threads", "1"], stdout=stdout,
                                stderr=subprocess.PIPE, env=env)
        proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


def test_classify_thousands_of_files_memory_flat_and_errors_per_file(tmp_path):
    corrupt_small, corrupt_big = {7, 250, 499}, {3, 1000, 2501, 4444, 4999}
    write_pictures(tmp_path / "small", 500, corrupt_small)
    write_pictures(tmp_path / "big", 5000, corrupt_big)

    code_small, rss_small = classify_peak_rss(tmp_path / "small", tmp_path / "small.jsonl")
    code_big, rss_big = classify_peak_rss(tmp_path / "big", tmp_path / "big.jsonl")

    for name, count, corrupt, code in (("small", 500, corrupt_small, code_small),
                                       ("big", 5000, corrupt_big, code_big)):
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert code == 1  # some files failed...
        assert len(rows) == count  # ...and every file has its line, in order
        assert [r["file"] for r in rows] == [str(tmp_path / name / f"{i:05d}.png") for i in range(count)]
        failed = {i for i, r in enumerate(rows) if "error" in r}
        assert failed == corrupt
        assert all(r["label"] and 0 <= r["index"] <= 9 for i, r in enumerate(rows) if i not in failed)
    # Ten times the files, about the same memory. 4,500 more files may add 13 MB at most:
    # less than holding their decoded pictures (120 MB) or even all their 28x28 inputs
    # (14 MB) at once; what may grow is the list of results, under 1 kB a file.
    assert rss_big - rss_small < 13_000, f"peak RSS {rss_small} kB for 500 files, {rss_big} kB for 5000"
