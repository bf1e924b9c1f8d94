"""What every command shares: the error decorator and the common options."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist_edge.errors import FmnistEdgeError, printable


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr; return the Exit to raise."""
    sys.stderr.write(f"fmnist-edge: error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def command(func):
    """Turn the project's errors into one stderr line and exit 1; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FmnistEdgeError as exc:
            raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except OSError as exc:  # the system refused a path no check foresaw: still one line
            if exc.errno == errno.EPIPE:  # a reader that stopped early (`| head`): click's quiet exit
                raise
            where = f"{printable(os.fsdecode(exc.filename))}: " if exc.filename is not None else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Folder with the Fashion-MNIST IDX files (default: $FMNIST_EDGE_DATA, "
                       "then /usr/share/datasets/fashion-mnist, then the cache).", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
