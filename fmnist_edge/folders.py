"""Whole folders replaced in one step: a new version is built in a hidden staging folder beside
the target, then exchanged with it in one rename (renameat2 RENAME_EXCHANGE on Linux), so that a
kill at any moment leaves either the previous folder or the new one. Used by `export`, `to-ort`
and `report`."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from fmnist_edge.errors import FmnistEdgeError

STAGING_PREFIX = ".staging-"


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where the call is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def install(staging: Path, target: Path) -> None:
    """Put `staging` in `target`'s place in one swap; the previous folder is deleted."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous version
        return
    old = target.with_name(f"{STAGING_PREFIX}{target.name}-old")  # fallback: two renames
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def swapped_folder(path: str | os.PathLike) -> tuple[Path, Path]:
    """The folder that a new version replaces in one swap, and the name to show for it. `.` is
    swapped by its name; a symlink's target is swapped and the link stays a link."""
    shown = Path(os.path.abspath(path))
    return (Path(os.path.realpath(path)) if shown.is_symlink() else shown), shown


@contextlib.contextmanager
def staged(target: Path, shown: Path, what: str, inside_ok: bool = False) -> Iterator[Path]:
    """A fresh staging folder for `target`'s next version, removed on any failure so that the
    previous version stays whole; an error that named the staging folder (gone by the time it
    is read) names `shown` instead. With `inside_ok`, a target whose parent is read-only is
    staged inside itself (the caller then moves the files in, as no swap can happen)."""
    staging = make_staging(target, inside_ok)
    try:
        yield staging
    except OSError as exc:  # disk full, file too large, a folder gone
        shutil.rmtree(staging, ignore_errors=True)
        raise FmnistEdgeError(f"cannot {what} {shown}: {exc.strerror or exc}") from None
    except FmnistEdgeError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise type(exc)(str(exc).replace(str(staging), str(shown))) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def make_staging(out_dir: Path, inside_ok: bool = False) -> Path:
    """An empty hidden folder beside `out_dir` to build its next version in, after cleaning up
    what a killed export, conversion or report left there; inside `out_dir` when `inside_ok`
    and the parent refuses it."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    try:
        previous = out_dir.with_name(f"{STAGING_PREFIX}{out_dir.name}-old")
        if previous.is_dir() and not out_dir.exists():
            os.rename(previous, out_dir)  # killed between the fallback's two renames: put the old one back
        return _new_staging(out_dir.parent, out_dir.name)
    except OSError as exc:
        if inside_ok and out_dir.is_dir():
            try:
                return _new_staging(out_dir, out_dir.name)
            except OSError as inner:
                raise FmnistEdgeError(f"cannot write to {out_dir}: {inner.strerror or inner}") from None
        raise FmnistEdgeError(f"cannot write to {out_dir.parent} (the new {out_dir.name} is built there "
                              f"first): {exc.strerror or exc}") from None


def is_staging_of(name: str, target: str) -> bool:
    """Whether `name` is one of `target`'s own staging folders (mkdtemp's 8-character suffix) or
    the two-rename fallback's `-old`, and not a sibling's such as `model-int8`'s for `model`."""
    return re.fullmatch(re.escape(f"{STAGING_PREFIX}{target}-") + r"(?:[a-z0-9_]{8}|old)", name) is not None


def _new_staging(where: Path, name: str) -> Path:
    """A fresh staging folder for `name` in `where`, after removing the ones a killed export,
    conversion or report left there."""
    for stale in where.glob(f"{STAGING_PREFIX}{name}-*"):
        if is_staging_of(stale.name, name):
            stale.unlink() if stale.is_symlink() else shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=where))
    with contextlib.suppress(OSError):  # some mounts (vfat, CIFS) refuse modes: keep mkdtemp's
        staging.chmod(0o755)  # mkdtemp makes 0700; the installed folder should be readable
    return staging
