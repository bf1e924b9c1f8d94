"""fmnist_edge.fileio: a written file appears whole under its name, or not at all."""

from __future__ import annotations

import hashlib
import json
import os

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


def test_a_symlink_is_followed_not_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fileio.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "real") == []


def test_a_dangling_symlink_writes_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "later.txt")
    fileio.write_text(link, "x")
    assert link.is_symlink() and (tmp_path / "later.txt").read_text() == "x"


def test_a_pipe_is_written_into_not_replaced(tmp_path):
    import os
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)  # never holds pytest
    reader.start()
    fileio.write_bytes(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert fifo.is_fifo() and leftovers(tmp_path) == []


def test_a_device_that_refuses_the_bytes_is_one_error_and_stays_a_device(tmp_path):
    from pathlib import Path

    full = Path("/dev/full")
    if not full.is_char_device():
        pytest.skip("no /dev/full here")
    with pytest.raises(FmnistEdgeError, match="cannot write /dev/full: No space left on device"):
        fileio.write_bytes(full, b"x" * 10)
    assert full.is_char_device()
    fileio.check_writable("/dev/null")  # a device takes no probe beside it
    fileio.write_bytes("/dev/null", b"discarded")
    assert Path("/dev/null").is_char_device()


def test_an_overwritten_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "secret.json"
    target.write_text("old")
    target.chmod(0o600)
    fileio.write_json(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o600
    fileio.write_text(tmp_path / "new.txt", "x")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~fileio._umask()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_an_overwritten_file_keeps_its_owner(tmp_path):
    """As root (CI, a device's service), the new file would be root's: it gets the old one's owner."""
    target = tmp_path / "shared.json"
    target.write_text("old")
    os.chown(target, 1234, 2345)
    fileio.write_json(target, {"a": 1})
    assert (target.stat().st_uid, target.stat().st_gid) == (1234, 2345)
    assert json.loads(target.read_text()) == {"a": 1}


def test_a_name_the_system_refuses_is_one_error(tmp_path):
    too_long = tmp_path / ("a" * 300 + ".json")
    for call in (lambda: fileio.write_text(too_long, "x"), lambda: fileio.check_writable(too_long)):
        with pytest.raises(FmnistEdgeError, match="File name too long"):
            call()
    assert leftovers(tmp_path) == []


def test_dev_stdout_is_written_into_whatever_the_stream_is(tmp_path):
    """/dev/stdout leads through /proc to the stream: a pipe, or a file, which is written into,
    never replaced by a rename (that would swap out the file the shell opened)."""
    import subprocess
    import sys

    code = "from fmnist_edge import fileio; fileio.check_writable('/dev/stdout'); fileio.write_text('/dev/stdout', 'ok')"
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "ok", piped.stderr
    target = tmp_path / "out.txt"
    with open(target, "w") as stream:
        inode = target.stat().st_ino
        done = subprocess.run([sys.executable, "-c", code], stdout=stream, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0 and target.read_text() == "ok" and leftovers(tmp_path) == []
    assert target.stat().st_ino == inode  # the shell's file, written into
