"""The `fmnist-edge` command: assembles the commands that live beside their logic.

Only typer is imported up front; each command imports what it needs when it runs, so
`--help` and `classify` stay fast and the runtime never pulls in torch. A runtime command
(classify, encode, reconstruct, bench) is run by an app holding that one command alone: typer
turns every registered command into a click command on each call. Skipping the training, export
and reproduction commands saved about a tenth of a one-picture classify; skipping the other
runtime commands too, a few milliseconds more.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Annotated

try:
    import typer
except KeyboardInterrupt:  # Ctrl-C while the command starts: the line main() says, not a traceback
    sys.stderr.write("fmnist-edge: error: interrupted\n")
    raise SystemExit(130) from None

RUNTIME_COMMANDS = frozenset({"classify", "encode", "reconstruct", "models", "bench"})
# Registration order is the order of `fmnist-edge --help`.
COMMAND_MODULES = ("train_cmds", "reproduce_cmds", "export_cmds", "runtime_cmds")


def versions() -> str:
    """fmnist-edge's version and those of the engines it runs on, read from the installed
    packages' metadata (nothing is imported)."""
    from importlib import metadata

    from fmnist_edge import __version__

    def installed(name: str) -> str:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            return f"{name} not installed"

    engines = ", ".join(installed(n) for n in ("onnxruntime", "numpy", "Pillow", "torch"))
    return f"fmnist-edge {__version__} ({engines}; Python {sys.version.split()[0]})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(versions())
        raise typer.Exit()


def _version_option(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the versions of fmnist-edge and its engines, then exit.")] = False) -> None:
    pass


@functools.cache
def build_app(runtime_command: str | None = None) -> typer.Typer:
    """The whole CLI, or with `runtime_command` an app holding that runtime command alone."""
    app = typer.Typer(
        name="fmnist-edge",
        help="Fashion-MNIST autoencoders and classifiers: train in PyTorch, export to ONNX, run anywhere.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )
    app.callback(invoke_without_command=True)(_version_option)
    for name in ("runtime_cmds",) if runtime_command else COMMAND_MODULES:
        importlib.import_module(f"fmnist_edge.cli.{name}").register(app)
    if runtime_command:
        app.registered_commands = [c for c in app.registered_commands if c.name == runtime_command]
    return app


def __getattr__(name: str):
    if name == "app":  # the full app, built on first use (tests drive it with CliRunner)
        return build_app()
    raise AttributeError(f"module 'fmnist_edge.cli' has no attribute {name!r}")


def _terminate(signum, frame) -> None:
    from fmnist_edge.errors import Terminated

    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line on stderr too (exit 2); SIGTERM unwinds
    like Ctrl-C, leaving no staging folder or temporary file behind (exit 143)."""
    import signal
    import threading

    from fmnist_edge.errors import Terminated

    if threading.current_thread() is threading.main_thread():  # only there can a handler be set
        signal.signal(signal.SIGTERM, _terminate)
    # ONNX Runtime's telemetry, when it cannot store its device ID (a read-only home), warns on
    # stderr as it is imported, before any session option could silence it: a second line on
    # every failure. The command line turns it off (a user's own setting wins); the Python API
    # leaves the host process's environment alone.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        args = sys.argv[1:] if argv is None else argv
        app = build_app(args[0] if args and args[0] in RUNTIME_COMMANDS else None)
        code = app(args=args, prog_name="fmnist-edge", standalone_mode=False)
    except typer.TyperException as exc:  # typer's vendored click errors: bad options, usage
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `fmnist-edge`: help, not an error
            sys.stdout.write(exc.ctx.get_help() + "\n")
            code = 0
        else:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            sys.stderr.write(f"fmnist-edge: error: {' '.join(message.split())}\n")
            code = getattr(exc, "exit_code", 2)
    except typer.Abort:
        sys.stderr.write("fmnist-edge: error: aborted\n")
        code = 130
    except KeyboardInterrupt:
        sys.stderr.write("fmnist-edge: error: interrupted\n")
        code = 130
    except Terminated as exc:
        from fmnist_edge.errors import printable

        sys.stderr.write(f"fmnist-edge: error: {printable(str(exc)) or 'terminated'}\n")  # one line, as every error
        code = 143
    sys.exit(code if isinstance(code, int) else 0)
