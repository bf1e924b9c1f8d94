"""Whole folders replaced in one step: a new version is built in a hidden staging folder beside
the target, then exchanged with it in one rename (renameat2 RENAME_EXCHANGE on Linux), so that a
kill at any moment leaves either the previous folder or the new one. Where the folder also holds
what is not the command's own (a user's files, the working folder), only the command's own files
are replaced, one rename each. Used by `export`, `to-ort` and `report`."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import filecmp
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

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


def put_in_place(staging: Path, target: Path, is_own: Callable[[str], bool], last: Sequence[str] = ()) -> None:
    """The new version in `staging` for the old one in `target`: the folder swapped whole, or,
    where a swap would take something away or cannot happen, the own files moved in one by one,
    the names in `last` last and in that order, and the own files that the new version dropped
    removed. A swap would take away what is not the command's own (`is_own(name)` false: a user's
    notes, RUNS itself), the working folder or a mount point; a staging folder inside `target`
    (its parent is read-only) counts too. One by one is not atomic: a kill between two moves
    leaves some files new and some old (the manifest or summary, moved last, still the old one).
    An own file or folder that already holds what the new version has is left as it is."""
    def stale(p: Path) -> bool:  # a killed run's staging folder inside the target
        return is_staging_of(p.name, target.name) and p.is_dir() and p != staging

    others = [p for p in target.iterdir() if not is_own(p.name) and not stale(p)] if target.is_dir() else []
    here = Path.cwd().resolve()
    in_use = target.is_dir() and (os.path.ismount(target) or here == target.resolve()
                                  or target.resolve() in here.parents)
    if not others and not in_use:
        try:
            install(staging, target)
            return
        except OSError:  # across devices, or busy: the files, one by one
            pass
    target.mkdir(parents=True, exist_ok=True)
    # On the target's device, under a staging name (a killed run's is cleaned up by the next):
    # `new` for what is copied across devices first, `old` for what a move puts aside.
    hold = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-", dir=target))
    (hold / "new").mkdir()
    (hold / "old").mkdir()
    across = staging.stat().st_dev != target.stat().st_dev
    drawn = sorted((p.name for p in staging.iterdir()),
                   key=lambda name: (name in last, last.index(name) if name in last else 0, name))
    for name in drawn:
        source = staging / name
        if _same(source, target / name):  # kept as it is: its inode, and a shell inside a folder
            continue
        if across:
            copy_as_is(source, hold / "new" / name)
            source = hold / "new" / name
        _move_in(source, target / name, hold / "old")
    for old in target.iterdir():  # an earlier version's, which this one does not have
        if is_own(old.name) and old.name not in drawn and not stale(old):
            shutil.rmtree(old) if _is_folder(old) else old.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    for left in filter(stale, target.iterdir()):  # `hold` among them
        shutil.rmtree(left, ignore_errors=True)


def copy_as_is(item: Path, dest: Path) -> None:
    """A copy of a file or folder, its links kept as links (followed, one to / would copy it all)."""
    if _is_folder(item):
        shutil.copytree(item, dest, symlinks=True)
    else:
        shutil.copy2(item, dest, follow_symlinks=False)


def _same(new: Path, old: Path) -> bool:
    """Whether `old` already holds what `new` does: the same link, the same bytes and mode, or a
    folder of the same mode and names, each the same."""
    try:
        if new.is_symlink() or old.is_symlink():
            return new.is_symlink() and old.is_symlink() and os.readlink(new) == os.readlink(old)
        if stat.S_IMODE(new.stat().st_mode) != stat.S_IMODE(old.stat().st_mode):
            return False  # a mode the new version mends (a chmod, an older export's 0700)
        if new.is_dir() and old.is_dir():
            names = sorted(os.listdir(new))
            return names == sorted(os.listdir(old)) and all(_same(new / name, old / name) for name in names)
        return same_bytes(new, old)
    except OSError:  # unreadable or gone: replace it, as a rename can without reading it
        return False


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two regular files hold the same bytes (False when either is missing or unreadable)."""
    try:
        return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _move_in(source: Path, dest: Path, aside: Path) -> None:
    """`source`, on `dest`'s device, in `dest`'s place: one rename over a file or a link, one
    exchange of two folders; else what is in the way (a folder) is first moved into `aside`."""
    if _is_folder(source) and _is_folder(dest) and _exchange(source, dest):
        return  # the old folder is now at `source`, removed with the rest
    if os.path.lexists(dest) and (_is_folder(dest) or _is_folder(source)):
        os.rename(dest, aside / dest.name)
    os.replace(source, dest)


def file_in_the_way(path: Path) -> Path | None:
    """The nearest of `path` and its parents that exists, when it is not a folder: what makes
    creating `path` as a folder fail with a bare "File exists" or "Not a directory"."""
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    return blocker if blocker is not None and not blocker.is_dir() else None


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
        blocker = file_in_the_way(out_dir.parent)
        if blocker is not None:  # "File exists" would not say which
            raise FmnistEdgeError(f"cannot write to {out_dir}: {blocker} is a file, not a folder") from None
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
