"""Atomic writes: a finished file appears whole under its name, or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Callable, Iterator

from fmnist_edge.errors import FmnistEdgeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it into place, else remove it.

    A symlink is followed (its target is replaced, the link kept) and an overwritten file keeps
    its permissions and, where allowed, its owner. A device, pipe or standard stream
    (`/dev/null`, `/dev/stdout`, a process substitution) is itself yielded and written into:
    it cannot be replaced, and must not be."""
    import tempfile  # only writers pay for it: the runtime's read path stays light

    shown = Path(path)
    target, existing = _target(shown)
    if target is None:
        try:
            yield shown
        except OSError as exc:
            raise FmnistEdgeError(f"cannot write {shown}: {exc.strerror or exc}") from None
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:NAME_KEPT]}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes 0600: an overwritten file keeps its mode and owner, a new one gets the usual
        os.chmod(tmp_path, existing.st_mode & 0o777 if existing is not None else 0o666 & ~_umask())
        if existing is not None and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(OSError):  # only root may give a file away
                os.chown(tmp_path, existing.st_uid, existing.st_gid)
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise FmnistEdgeError(f"cannot write {shown}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


NAME_KEPT = 64  # of a target's name, in its temporary file's: the temporary name must fit too


def _target(path: Path) -> tuple[Path | None, os.stat_result | None]:
    """The regular file a write to `path` replaces (a symlink's target) and its stat, None when
    there is none yet; (None, stat) for something written into rather than replaced: a device,
    a pipe, or a link into /proc (/dev/stdout is one, to whatever the stream is). A folder, or a
    name the system refuses (too long, in a folder that cannot be searched), is one error line."""
    try:
        existing = path.stat()  # follows links as opening would, /proc's magic ones too
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write {path}: {exc.strerror or exc}") from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):  # os.replace's errno would name no folder
        raise FmnistEdgeError(f"cannot write {path}: it is a folder; name a file")
    if existing is not None and (not stat.S_ISREG(existing.st_mode) or _through_proc(path)):
        return None, existing
    return (Path(os.path.realpath(path)) if path.is_symlink() else path), existing


def written_in_place(path: str | os.PathLike) -> bool:
    """Whether a write to `path` goes into what is there (a device, a pipe, a stream) rather than
    replacing a file; a folder, or a name the system refuses, is one error line."""
    return _target(Path(path))[0] is None


def _through_proc(path: Path) -> bool:
    """Whether `path`'s chain of links passes through /proc (/dev/stdout -> /proc/self/fd/1):
    what it reaches is a process's open stream, whichever file that is now."""
    hop = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on a chain of links
        if hop.startswith(("/proc/", "/dev/fd/")):
            return True
        if not os.path.islink(hop):
            return False
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    return False


def check_writable(path: str | os.PathLike) -> None:
    """Refuse now a file that a later write would fail on: make its folder, write a probe there."""
    import tempfile

    shown = Path(path)
    target, _ = _target(shown)
    if target is None:  # written into: it is enough that it opens for writing
        if not os.access(shown, os.W_OK):
            raise FmnistEdgeError(f"cannot write {shown}: permission denied")
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name[:NAME_KEPT]}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise FmnistEdgeError(f"cannot write {shown}: {exc.strerror or exc}") from None


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


NUMBER = (int, float)  # a JSON number, for json_typed


def json_typed(value, kind) -> bool:
    """Whether a JSON value is a `kind` (a type, or NUMBER): true and false are neither numbers
    nor counts, though Python takes them for ints."""
    return isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)


def read_json(path: str | os.PathLike, kind: type = dict, shown: str | None = None):
    """The JSON value in `path`, which must be a `kind` (an object by default); one error line
    naming the file (as `shown`, if given) when it cannot be read, is not JSON or is not that."""
    name = shown or str(path)
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise FmnistEdgeError(f"{name}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSON's own errors, and bytes that are not UTF-8
        raise FmnistEdgeError(f"{name}: not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, kind):
        expected = "an object" if kind is dict else "a list" if kind is list else kind.__name__
        raise FmnistEdgeError(f"{name}: holds a JSON {type(data).__name__}, not {expected}")
    return data


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
