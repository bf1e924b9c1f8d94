"""The `fmnist-edge` command: assembles the commands that live beside their logic.

Only typer is imported up front; each command imports what it needs when it runs,
so `--help` and `classify` stay fast and the runtime never pulls in torch.
"""

from __future__ import annotations

import sys

import typer

from fmnist_edge.cli import export_cmds, reproduce_cmds, runtime_cmds, train_cmds

app = typer.Typer(
    name="fmnist-edge",
    help="Fashion-MNIST autoencoders and classifiers: train in PyTorch, export to ONNX, run anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
train_cmds.register(app)
export_cmds.register(app)
runtime_cmds.register(app)
reproduce_cmds.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line on stderr too (exit 2)."""
    try:
        code = app(args=argv, prog_name="fmnist-edge", standalone_mode=False)
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
    sys.exit(code if isinstance(code, int) else 0)
