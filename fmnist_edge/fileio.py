"""Atomic writes: a finished file appears whole under its name, or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Callable, Iterator

from fmnist_edge.errors import FmnistEdgeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it into place, else remove it.

    A symlink is followed (its target is replaced, the link kept), an existing file keeps its
    permissions, and a device or pipe (`-o /dev/null`) is written into, not replaced."""
    import tempfile  # only writers pay for it: the runtime's read path stays light

    path, existing = _target(Path(path))
    special = existing is not None and not stat.S_ISREG(existing.st_mode)
    try:
        if not special:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp",
                                   dir=None if special else path.parent)
        os.close(fd)
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if special:
            with open(tmp_path, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp_path.unlink()
            return
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes 0600: an overwritten file keeps its mode, a new one gets the usual
        os.chmod(tmp_path, stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise FmnistEdgeError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _target(path: Path) -> tuple[Path, os.stat_result | None]:
    """The file a write to `path` lands in (a symlink's target) and its stat, None when there is
    none yet; a folder, or a name the system refuses (too long, in a folder that cannot be
    searched), is one error line."""
    try:
        if path.is_symlink():
            path = Path(os.path.realpath(path))
        existing = path.stat()
    except FileNotFoundError:
        return path, None
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(existing.st_mode):  # os.replace's errno would name no folder ('' is '.')
        raise FmnistEdgeError(f"cannot write {path}: it is a folder; name a file")
    return path, existing


def check_writable(path: str | os.PathLike) -> None:
    """Refuse now a file that a later write would fail on: make its folder, write a probe there."""
    import tempfile

    path, existing = _target(Path(path))
    if existing is not None and not stat.S_ISREG(existing.st_mode):  # a device or pipe: written into
        if not os.access(path, os.W_OK):
            raise FmnistEdgeError(f"cannot write {path}: permission denied")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write {path}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Let `writer` fill a temporary file, then move it into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
