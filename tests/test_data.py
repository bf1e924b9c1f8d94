"""fmnist_edge.train.data: in-memory tensors, the fixed validation split, batches, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fmnist_edge.errors import DataError  # noqa: E402
from fmnist_edge.train.config import TrainConfig  # noqa: E402
from fmnist_edge.train.data import (  # noqa: E402
    Tensors, augment, batches, load_test, load_train_val, split_indices, to_tensors)

pytestmark = pytest.mark.torch

FAKE_TRAIN, FAKE_TEST = 600, 200  # the conftest's fake_data_dir


def test_to_tensors():
    images = np.array([[[0] * 28] * 28, [[255] * 28] * 28], dtype=np.uint8)
    t = to_tensors(images, np.array([3, 9]))
    assert t.images.shape == (2, 1, 28, 28) and t.images.dtype == torch.float32
    assert t.images.is_contiguous()
    assert t.images[0].max() == 0 and t.images[1].min() == 1
    assert t.labels.dtype == torch.int64 and t.labels.tolist() == [3, 9]
    assert len(t) == 2


def test_split_indices_fixed_disjoint_complete():
    train, val = split_indices(60_000, 6000, 20250201)
    assert len(train) == 54_000 and len(val) == 6000
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60_000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    again_train, again_val = split_indices(60_000, 6000, 20250201)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, split_indices(60_000, 6000, 1)[1])


def test_load_train_val_small_folder(fake_data_dir):
    train, val = load_train_val(TrainConfig(), fake_data_dir)
    assert len(val) == FAKE_TRAIN // 10 and len(train) == FAKE_TRAIN - FAKE_TRAIN // 10
    assert isinstance(train, Tensors) and train.images.shape[1:] == (1, 28, 28)
    assert set(train.labels.tolist()) == set(range(10))


def test_load_train_val_limit(fake_data_dir):
    train, val = load_train_val(TrainConfig(limit=100), fake_data_dir)
    assert len(train) == 100
    assert len(val) == FAKE_TRAIN // 10  # at least 200 asked, the folder's tenth is all there is
    full_train, full_val = load_train_val(TrainConfig(), fake_data_dir)
    torch.testing.assert_close(train.images, full_train.images[:100])  # the first N training images
    torch.testing.assert_close(val.images, full_val.images)


def test_load_test(fake_data_dir):
    assert len(load_test(fake_data_dir)) == FAKE_TEST
    assert len(load_test(fake_data_dir, limit=50)) == 50


def test_missing_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_train_val(TrainConfig(), tmp_path)


def test_batches_cover_everything_once():
    plain = list(batches(250, 100))
    assert [len(b) for b in plain] == [100, 100, 50]
    assert torch.equal(torch.cat(plain), torch.arange(250))
    shuffled = torch.cat(list(batches(250, 100, torch.Generator().manual_seed(0))))
    assert not torch.equal(shuffled, torch.arange(250))
    assert torch.equal(shuffled.sort().values, torch.arange(250))
    again = torch.cat(list(batches(250, 100, torch.Generator().manual_seed(0))))
    assert torch.equal(shuffled, again)


def test_augment_flips_and_shifts_within_two_pixels():
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 10, 12] = 1.0  # one interior pixel: it moves, it does not vanish
    out, _ = augment(x, torch.Generator().manual_seed(0), shift=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out.sum((1, 2, 3)), torch.ones(64))
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert rows.sub(10).abs().max() <= 2
    flipped_col = 27 - 12
    assert all(min(abs(c - 12), abs(c - flipped_col)) <= 2 for c in cols.tolist())
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5  # not one fixed transform
    again, _ = augment(x, torch.Generator().manual_seed(0), shift=2)
    assert torch.equal(out, again)


def test_augment_without_shift_only_flips():
    x = torch.rand(64, 1, 28, 28)
    out, reported = augment(x, torch.Generator().manual_seed(0))  # the best recipe's: flips only
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | flipped) and 16 < int(flipped.sum()) < 48
    assert torch.equal(reported, flipped)  # distillation looks up the teacher's logits by it
