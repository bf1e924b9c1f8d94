"""The one project error class that every user-facing failure is raised as."""

import operator


class FmnistEdgeError(Exception):
    """A failure the user can act on; the CLI prints its message as one line and exits 1 (2 for a
    UsageError, 130 for Interrupted)."""


class UsageError(FmnistEdgeError):
    """What the command line (or, in the Python API, the call's arguments) alone shows to be
    wrong, whatever the files hold: options that cannot go together, or a value no option takes.
    The CLI exits 2, as for the errors its parser finds; a clash with what a file or folder holds
    (a run's settings, an encoder's shape) is exit 1."""


class DataError(FmnistEdgeError):
    """Fashion-MNIST files missing, unreadable or corrupt."""


class ModelError(FmnistEdgeError):
    """A checkpoint or ONNX model that is missing, foreign, altered or of the wrong shape."""


class ModelUsageError(ModelError, UsageError):
    """A model asked for in a way that contradicts itself (int8 with a named fp32 file): a
    ModelError to the API, a usage error (exit 2) to the CLI."""


class ImageError(FmnistEdgeError):
    """An input picture that cannot be turned into a 28x28 model input."""


class Interrupted(FmnistEdgeError):
    """Ctrl-C, caught where the work so far could be saved; the CLI exits 130 with its line."""


class Terminated(BaseException):
    """SIGTERM, raised where the program is (or, in training, after the step under way, with the
    state saved), so that what a command stages or writes is cleaned up on the way out; the CLI
    exits 143 with its line. A BaseException: no `except Exception` takes it for a failure of its own."""


class ValidationFailed(FmnistEdgeError):
    """An exported model missed one of its validation bounds."""


def whole_number(value: object, name: str) -> int:
    """`value` as an int of 1 or more (numpy integers too; not a bool, a float or a str), else a
    UsageError that names the argument."""
    try:
        number = 0 if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = 0
    if number < 1:
        raise UsageError(f"{name} must be a whole number of 1 or more, got {value!r}")
    return number


def with_article(kind: str) -> str:
    """'an encoder', 'a decoder': for messages that name a model kind."""
    return f"{'an' if kind[:1] in tuple('aeiou') else 'a'} {kind}"


def counted(count, noun: str) -> str:
    """'1 epoch', '20 epochs', '1 thread': a count and its noun, singular for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def printable(text: str) -> str:
    """`text` with its control characters escaped (a newline in a file name is shown as \\n), so
    that a message about it stays one line on a terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
