"""What every command shares: the error decorator and the common options."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist_edge.errors import FmnistEdgeError, Interrupted, UsageError, printable


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr; return the Exit to raise."""
    sys.stderr.write(f"fmnist-edge: error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def one_line(exc: BaseException, most: int = 600) -> str:
    """An exception's message as one line: control characters (a newline in a file name, the
    breaks of a wrapped message) escaped, and cut at `most` characters."""
    text = printable(str(exc).strip()) or type(exc).__name__
    return text if len(text) <= most else text[:most] + "..."


# What the train extra adds (pyproject.toml): a command that needs one of them says so on a base install.
TRAIN_EXTRA_MODULES = frozenset({"torch", "torchvision", "onnx", "onnxscript", "matplotlib"})


def require_train_extra(*modules: str) -> None:
    """The train extra's `modules` a command needs, imported at once, so that a base install hears
    it (from `command`) before anything is read."""
    import importlib

    for module in modules:
        importlib.import_module(module)


def command(func):
    """Turn the project's errors into one stderr line and exit 1 (2 for a usage error, 130 for Ctrl-C); an OSError no
    check foresaw, and any other exception, into one line too ($FMNIST_EDGE_DEBUG=1 lets the
    traceback through)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FmnistEdgeError as exc:
            raise fail(one_line(exc), 130 if isinstance(exc, Interrupted) else 2 if isinstance(exc, UsageError)
                       else 1) from None
        except OSError as exc:  # the system refused a path no check foresaw: still one line
            if exc.errno == errno.EPIPE:  # a reader that stopped early (`| head`): click's quiet exit
                raise
            where = f"{printable(os.fsdecode(exc.filename))}: " if exc.filename is not None else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:  # input no check foresaw, or a bug: a line that says which
            if os.environ.get("FMNIST_EDGE_DEBUG"):
                raise
            # The package itself missing, not a module inside it (a broken install, a bad MPLBACKEND)
            if isinstance(exc, ModuleNotFoundError) and exc.name in TRAIN_EXTRA_MODULES:
                raise fail(f"this command needs the train extra ({exc.name} is not installed): "
                           "pip install 'fmnist-edge[train]'") from None
            raise fail(f"unexpected {type(exc).__name__}: {one_line(exc)} (please report it; "
                       "FMNIST_EDGE_DEBUG=1 shows where)") from None

    return wrapper


def nonempty_path(value: str | os.PathLike) -> Path:
    """The parser of every path option and argument: an empty one (an unset `"$OUT"`, often) is
    refused, where Path("") would quietly mean the working folder."""
    if isinstance(value, Path):  # a default
        return value
    if not os.fspath(value):
        raise typer.BadParameter("an empty path names nothing (an unset shell variable?)")
    return Path(value)


# typer shows a parser's name as the metavar: <path>, as for a plain Path (typer 0.28 vendors click, so a
# click.ParamType subclass would lean on its private typer._click)
nonempty_path.__name__ = "path"


DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Folder with the Fashion-MNIST IDX files (default: $FMNIST_EDGE_DATA, "
                       "then /usr/share/datasets/fashion-mnist, then the cache).", show_default=False,
    parser=nonempty_path)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
