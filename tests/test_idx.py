"""fmnist_edge.idx: reading IDX files (raw and .gz), refusing corrupt ones, finding the data."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmnist_edge import idx
from fmnist_edge.errors import DataError, FmnistEdgeError

HINT = "apt-get install dataset-fashion-mnist"


def images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def header(magic: int, *dims: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


def refused(func, *args, match: str | None = None) -> str:
    """Call func, expect one DataError line that says how to get the data; return it."""
    with pytest.raises(DataError, match=match) as info:
        func(*args)
    message = str(info.value)
    assert "\n" not in message
    assert HINT in message and "--data-dir" in message
    return message


# -- reading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["imgs", "imgs.gz"])
def test_images_round_trip_raw_and_gz(tmp_path, name):
    array = images(7)
    idx.write_idx(tmp_path / name, array)
    back = idx.read_images(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (7, 28, 28)
    np.testing.assert_array_equal(back, array)


def test_gz_is_really_gzip(tmp_path):
    idx.write_idx(tmp_path / "l.gz", np.arange(10, dtype=np.uint8))
    assert (tmp_path / "l.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress((tmp_path / "l.gz").read_bytes())[:4] == struct.pack(">I", idx.LABELS_MAGIC)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=300), st.booleans())
def test_labels_round_trip(tmp_path_factory, values, gz):
    path = tmp_path_factory.mktemp("labels") / ("labels.gz" if gz else "labels")
    idx.write_idx(path, np.array(values, dtype=np.uint8))
    back = idx.read_labels(path)
    assert back.dtype == np.int64
    assert back.tolist() == values


def test_bad_magic(tmp_path):
    idx.write_idx(tmp_path / "labels", np.zeros(30, np.uint8))
    refused(idx.read_images, tmp_path / "labels", match="bad magic number 0x00000801")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04" + bytes(100))
    refused(idx.read_labels, tmp_path / "junk", match="bad magic")


def test_too_short_for_a_header(tmp_path):
    (tmp_path / "short").write_bytes(struct.pack(">I", idx.IMAGES_MAGIC) + b"\x00\x00")
    refused(idx.read_images, tmp_path / "short", match="too short")
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    refused(idx.read_labels, tmp_path / "empty.gz", match="too short")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_payload(tmp_path, suffix):
    data = header(idx.IMAGES_MAGIC, 5, 28, 28) + images(5).tobytes()
    data = data[:-100]
    path = tmp_path / ("imgs" + suffix)
    path.write_bytes(gzip.compress(data) if suffix else data)
    refused(idx.read_images, path, match="truncated")


def test_longer_than_header_says(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(header(idx.LABELS_MAGIC, 3) + bytes(4))
    refused(idx.read_labels, path, match="longer than its header says")


def test_count_in_header_too_small_or_large(tmp_path):
    body = images(4).tobytes()
    (tmp_path / "more").write_bytes(header(idx.IMAGES_MAGIC, 5, 28, 28) + body)
    refused(idx.read_images, tmp_path / "more", match="truncated")
    (tmp_path / "fewer").write_bytes(header(idx.IMAGES_MAGIC, 3, 28, 28) + body)
    refused(idx.read_images, tmp_path / "fewer", match="longer")


def test_truncated_gzip_stream(tmp_path):
    idx.write_idx(tmp_path / "imgs.gz", images(50))
    whole = (tmp_path / "imgs.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    refused(idx.read_images, tmp_path / "cut.gz", match="unreadable or truncated")


def test_gz_name_that_is_not_gzip(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"this is not gzip at all" * 10)
    refused(idx.read_images, tmp_path / "x.gz", match="unreadable or truncated")


def test_corrupt_gzip_body(tmp_path):
    idx.write_idx(tmp_path / "imgs.gz", images(50))
    data = bytearray((tmp_path / "imgs.gz").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # CRC or inflate fails
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    refused(idx.read_images, tmp_path / "bad.gz")


def test_labels_out_of_range(tmp_path):
    idx.write_idx(tmp_path / "labels", np.array([0, 3, 10, 9], np.uint8))
    refused(idx.read_labels, tmp_path / "labels", match="label 10 out of range")


def test_images_of_the_wrong_size(tmp_path):
    idx.write_idx(tmp_path / "imgs", np.zeros((2, 27, 27), np.uint8))
    refused(idx.read_images, tmp_path / "imgs", match="expected 28x28")


@pytest.mark.parametrize("dims", [(0xFFFFFFFF, 28, 28), (2**31, 2**31, 4), (70_000, 100, 100)])
def test_huge_header_fails_fast_without_allocating(tmp_path, dims):
    # (2^31, 2^31, 4) is 2^64 bytes: a product in int64 wraps to 0 and slips past a size check.
    path = tmp_path / "huge"
    path.write_bytes(header(idx.IMAGES_MAGIC, *dims) + bytes(1000))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        refused(idx.read_images, path, match="header claims")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 1 << 20


@pytest.mark.parametrize("name", ["imgs", "imgs.gz"])
def test_lying_header_below_the_cap_allocates_only_what_is_there(tmp_path, name):
    # 196 MB claimed (below MAX_PAYLOAD_BYTES), 1000 bytes present: refused as truncated.
    data = header(idx.IMAGES_MAGIC, 250_000, 28, 28) + bytes(1000)
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    tracemalloc.start()
    try:
        refused(idx.read_images, tmp_path / name, match="truncated")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 8 << 20


def test_huge_labels_header_refused(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(header(idx.LABELS_MAGIC, 0xFFFFFFFF)))
    refused(idx.read_labels, path, match="header claims")


# -- finding and loading a folder ------------------------------------------------------------

def test_load_split_small_user_folder(tmp_path, make_fake_data):
    folder = make_fake_data(tmp_path / "d", n_train=30, n_test=20)
    train = idx.load_split("train", folder)
    test = idx.load_split("test", folder)
    assert train.images.shape == (30, 28, 28) and train.labels.shape == (30,)
    assert test.images.shape == (20, 28, 28)
    assert set(test.labels.tolist()) == set(range(10))


def test_load_split_expect_full_refuses_a_subset(tmp_path, make_fake_data):
    folder = make_fake_data(tmp_path / "d", n_train=30, n_test=20)
    refused(idx.load_split, "test", folder, True, match="has 20 images, expected 10000")


def test_standard_folder_must_hold_the_full_set(tmp_path, monkeypatch, make_fake_data):
    folder = make_fake_data(tmp_path / "debian", n_train=30, n_test=20)
    monkeypatch.setattr(idx, "DEBIAN_DATA_DIR", folder)
    monkeypatch.delenv(idx.ENV_DATA_DIR, raising=False)
    refused(idx.load_split, "train", None, match="expected 60000")
    refused(idx.load_split, "train", folder, match="expected 60000")  # named, but still Debian's


def test_images_and_labels_of_different_lengths(tmp_path, make_fake_data):
    folder = make_fake_data(tmp_path / "d", n_train=30, n_test=20)
    idx.write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    refused(idx.load_split, "test", folder, match="20 images but 19 labels")


def test_empty_split_refused(tmp_path, make_fake_data):
    folder = make_fake_data(tmp_path / "d", n_train=30, n_test=20)
    idx.write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    idx.write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(0, np.uint8))
    refused(idx.load_split, "test", folder, match="no images")


def test_alternative_file_names(tmp_path, make_fake_data):
    folder = make_fake_data(tmp_path / "d", n_train=30, n_test=20)
    for path in list(folder.iterdir()):
        path.rename(folder / path.name.replace("-idx", ".idx"))  # train-images.idx3-ubyte.gz
    assert len(idx.load_split("train", folder).labels) == 30


def test_missing_files_say_how_to_get_the_data(tmp_path, monkeypatch, make_fake_data):
    monkeypatch.delenv(idx.ENV_DATA_DIR, raising=False)
    message = refused(idx.find_data_dir, tmp_path, match="Fashion-MNIST not found")
    assert str(tmp_path) in message
    folder = make_fake_data(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    refused(idx.load_split, "train", folder, match="not found")  # all four files or none
    assert issubclass(DataError, FmnistEdgeError)


def test_lookup_order(tmp_path, monkeypatch, make_fake_data):
    given_dir = make_fake_data(tmp_path / "given", 20, 10)
    env_dir = make_fake_data(tmp_path / "env", 20, 10)
    debian_dir = make_fake_data(tmp_path / "debian", 20, 10)
    monkeypatch.setattr(idx, "DEBIAN_DATA_DIR", debian_dir)
    monkeypatch.setattr(idx, "CACHE_DATA_DIR", tmp_path / "cache")
    monkeypatch.setenv(idx.ENV_DATA_DIR, str(env_dir))
    assert idx.find_data_dir(given_dir) == given_dir  # --data-dir first
    assert idx.find_data_dir() == env_dir  # then $FMNIST_EDGE_DATA
    monkeypatch.delenv(idx.ENV_DATA_DIR)
    assert idx.find_data_dir() == debian_dir  # then Debian's folder
    assert idx.candidate_dirs() == [debian_dir, tmp_path / "cache", tmp_path / "cache" / "FashionMNIST" / "raw"]
    cache_raw = make_fake_data(tmp_path / "cache" / "FashionMNIST" / "raw", 20, 10)
    monkeypatch.setattr(idx, "DEBIAN_DATA_DIR", tmp_path / "nowhere")
    assert idx.find_data_dir() == cache_raw  # then torchvision's download cache


def test_named_folder_does_not_fall_back(tmp_path, monkeypatch, make_fake_data):
    monkeypatch.setattr(idx, "DEBIAN_DATA_DIR", make_fake_data(tmp_path / "debian", 20, 10))
    monkeypatch.setenv(idx.ENV_DATA_DIR, str(tmp_path / "empty-env"))
    refused(idx.find_data_dir, match="empty-env")
    refused(idx.find_data_dir, tmp_path / "empty-arg", match="empty-arg")


def test_debian_default_location():
    assert idx.DEBIAN_DATA_DIR == Path("/usr/share/datasets/fashion-mnist")


def test_real_test_split(real_data_dir):
    test = idx.load_split("test", real_data_dir)
    assert test.images.shape == (10_000, 28, 28)
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10
