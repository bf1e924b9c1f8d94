"""Command-line picture arguments -> sources: files, folders (their pictures), globs, and "-" for
the one picture piped into standard input."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import numpy as np

from fmnist_edge.errors import ImageError
from fmnist_edge.runtime import preprocess

PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm",
                              ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jfif", ".apng"})
STDIN = "-"  # the argument, exactly: `./-` is a file named "-"


class Piped:
    """The picture on standard input, read when it is first needed. Only the command line makes
    one: the Python API never reads the process's standard input."""

    def __str__(self) -> str:
        return STDIN

    def to_input(self) -> np.ndarray:
        return preprocess.from_bytes(read_stdin(), STDIN)


def read_stdin(limit: int = preprocess.MAX_STREAM_BYTES) -> bytes:
    """All of standard input; refused when it is closed, a terminal (nothing was piped) or too long."""
    stream = sys.stdin
    if stream is None:
        raise ImageError(f"{STDIN}: standard input is closed")
    try:
        if stream.isatty():
            raise ImageError(f"{STDIN}: standard input is a terminal; pipe a picture into it")
        data = preprocess.read_limited(getattr(stream, "buffer", stream), f"{STDIN}: standard input", limit)
    except (OSError, ValueError) as exc:  # closed, or not readable
        raise ImageError(f"{STDIN}: standard input is unreadable ({exc})") from None
    if isinstance(data, str):  # a text stream standing in for stdin (an embedding host's)
        raise ImageError(f"{STDIN}: standard input is text, not a picture's bytes")
    return data


class Unusable:
    """An argument that names no picture; it fails with its own line when its turn comes, so that
    the other pictures of the call are still classified."""

    def __init__(self, shown: str, reason: str):
        self.shown, self.reason = shown, reason

    def __str__(self) -> str:
        return self.shown

    def to_input(self) -> np.ndarray:
        raise ImageError(f"{self.shown}: {self.reason}")


def to_input(source: Path | Piped | Unusable) -> np.ndarray:
    """A source from `expand` -> float32 (1, 28, 28) model input."""
    return source.to_input() if isinstance(source, (Piped, Unusable)) else preprocess.from_path(source)


def _file(path: Path) -> Path:
    # A file named "-" (given as ./-, or matched by a glob) is shown by its full path, never as "-".
    return path.absolute() if str(path) == STDIN else path


def source(arg: str | os.PathLike) -> Path | Piped | Unusable:
    """One argument as it names a single picture: "-" is standard input, and an empty one (an
    unset shell variable, often: Path("") would be the working folder) names none."""
    if isinstance(arg, str) and arg == STDIN:
        return Piped()
    if not str(arg):
        return Unusable("''", "an empty argument names no picture")
    return Path(arg)


def expand(args: list[str | os.PathLike]) -> list[Path | Piped | Unusable]:
    """Keep files as given (a missing one too, so that it reports its own error), list a
    folder's pictures sorted, expand glob patterns that the shell left alone; "-" is standard
    input (the caller refuses it twice: it holds one picture). An empty argument or a name the
    system refuses stays as one source that reports its own error."""
    out: list[Path | Piped | Unusable] = []
    for arg in args:
        path = source(arg)
        if not isinstance(path, Path):
            out.append(path)
            continue
        try:
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
                out += found or [Unusable(str(path), "no pictures in this folder (.png, .jpg, .webp, ...; "
                                                     "its subfolders are not searched)")]
            elif not path.exists() and glob.has_magic(str(arg)):
                matches = sorted(glob.glob(str(arg), recursive=True))
                out += [_file(Path(m)) for m in matches if Path(m).is_file()] or [path]
            else:
                out.append(_file(path))
        except OSError as exc:  # too long a name, a folder that cannot be listed or searched
            out.append(Unusable(str(path), f"unreadable ({exc.strerror or exc})"))
    return out
