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
MAX_STDIN_BYTES = 256 * 1024 * 1024  # a picture piped in is read whole; a stream this long is no picture


class Piped:
    """The picture on standard input, read when it is first needed. Only the command line makes
    one: the Python API never reads the process's standard input."""

    def __str__(self) -> str:
        return STDIN

    def to_input(self) -> np.ndarray:
        return preprocess.from_bytes(read_stdin(), STDIN)


def read_stdin(limit: int = MAX_STDIN_BYTES) -> bytes:
    """All of standard input; refused when it is closed, a terminal (nothing was piped) or too long."""
    stream = sys.stdin
    if stream is None:
        raise ImageError(f"{STDIN}: standard input is closed")
    try:
        if stream.isatty():
            raise ImageError(f"{STDIN}: standard input is a terminal; pipe a picture into it")
        data = getattr(stream, "buffer", stream).read(limit + 1)
    except (OSError, ValueError) as exc:  # closed, or not readable
        raise ImageError(f"{STDIN}: standard input is unreadable ({exc})") from None
    if isinstance(data, str):  # a text stream standing in for stdin (an embedding host's)
        raise ImageError(f"{STDIN}: standard input is text, not a picture's bytes")
    if len(data) > limit:
        raise ImageError(f"{STDIN}: more than {limit:,} bytes on standard input; that is no picture")
    return data


def to_input(source: Path | Piped) -> np.ndarray:
    """A source from `expand` -> float32 (1, 28, 28) model input."""
    return source.to_input() if isinstance(source, Piped) else preprocess.from_path(source)


def _file(path: Path) -> Path:
    # A file named "-" (given as ./-, or matched by a glob) is shown by its full path, never as "-".
    return path.absolute() if str(path) == STDIN else path


def expand(args: list[str | os.PathLike]) -> list[Path | Piped]:
    """Keep files as given (a missing one too, so that it reports its own error), list a
    folder's pictures sorted, expand glob patterns that the shell left alone; "-" is standard
    input (the caller refuses it twice: it holds one picture)."""
    out: list[Path | Piped] = []
    for arg in args:
        path = Path(arg)
        if isinstance(arg, str) and arg == STDIN:
            out.append(Piped())
        elif path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        elif not path.exists() and glob.has_magic(str(arg)):
            matches = sorted(glob.glob(str(arg), recursive=True))
            out += [_file(Path(m)) for m in matches if Path(m).is_file()] or [path]
        else:
            out.append(_file(path))
    return out
