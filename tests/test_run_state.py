"""A run folder's state, as `reproduce` and `train --resume` read it (the round trip of last.pt
itself is tested through resumed runs in test_train_loop.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from fmnist_edge.train import checkpoint  # noqa: E402
from fmnist_edge.train.run_state import run_state  # noqa: E402

pytestmark = pytest.mark.torch


def test_a_folder_is_new_partial_or_finished(tmp_path):
    assert run_state(tmp_path / "absent") == "new"
    assert run_state(tmp_path) == "new"
    (tmp_path / checkpoint.RESUME_FILE).write_bytes(b"")
    assert run_state(tmp_path) == "partial"
    (tmp_path / checkpoint.MODEL_FILE).write_bytes(b"")
    assert run_state(tmp_path) == "finished"  # model.pt is written when training has ended
    (tmp_path / checkpoint.RESUME_FILE).unlink()
    assert run_state(tmp_path) == "finished"
