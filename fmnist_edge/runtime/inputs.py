"""Command-line picture arguments -> file list: files, folders (their pictures) and globs."""

from __future__ import annotations

import glob
import os
from pathlib import Path

PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm",
                              ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jfif", ".apng"})


def expand(args: list[str | os.PathLike]) -> list[Path]:
    """Keep files as given (a missing one too, so that it reports its own error, and "-", standard
    input), list a folder's pictures sorted, expand glob patterns that the shell left alone."""
    out: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        elif not path.exists() and glob.has_magic(str(arg)):
            matches = sorted(glob.glob(str(arg), recursive=True))
            out += [Path(m) for m in matches if Path(m).is_file()] or [path]
        else:
            out.append(path)
    return out
