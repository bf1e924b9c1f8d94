"""fmnist_edge.fileio: a written file appears whole under its name, or not at all."""

from __future__ import annotations

import hashlib
import json

import pytest

from fmnist_edge import fileio
from fmnist_edge.errors import FmnistEdgeError


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_write_json_and_text(tmp_path):
    fileio.write_json(tmp_path / "sub" / "a.json", {"x": [1, 2], "y": None})
    assert json.loads((tmp_path / "sub" / "a.json").read_text()) == {"x": [1, 2], "y": None}
    assert (tmp_path / "sub" / "a.json").read_text().endswith("\n")
    fileio.write_text(tmp_path / "b.txt", "héllo")
    assert (tmp_path / "b.txt").read_bytes() == "héllo".encode()
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "sub") == []


def test_replaces_an_existing_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    fileio.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_failure_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def writer(tmp):
        tmp.write_text("half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        fileio.write_with(target, writer)
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_failure_before_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "new.json"
    with pytest.raises(KeyboardInterrupt):
        with fileio.atomic_path(target):
            raise KeyboardInterrupt
    assert not target.exists() and leftovers(tmp_path) == []


def test_unserialisable_json_keeps_old_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("{}")
    with pytest.raises(TypeError):
        fileio.write_json(target, {"x": object()})
    assert target.read_text() == "{}"


def test_unwritable_folder_is_one_project_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FmnistEdgeError, match="cannot write") as info:
        fileio.write_text(tmp_path / "a-file" / "out.json", "x")  # parent is a file
    assert "\n" not in str(info.value)


def test_sha256_file(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read block
    (tmp_path / "d").write_bytes(data)
    assert fileio.sha256_file(tmp_path / "d") == hashlib.sha256(data).hexdigest()
