"""A Rich progress bar with live loss, and one summary line per epoch (also when not a terminal)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

UPDATE_EVERY = 10  # steps between bar refreshes: a refresh costs more than a step's bookkeeping


class EpochProgress:
    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.5f}"), TimeElapsedColumn(),
                            console=self.console, transient=True,
                            disable=quiet or not self.console.is_terminal)
        self.task = None
        self._pending = 0

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def start_epoch(self, epoch: int, max_epochs: int, steps: int, done: int = 0) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"epoch {epoch}/{max_epochs}", total=steps, completed=done, loss=0.0)
        self._pending = 0

    def advance(self, loss: float) -> None:
        self._pending += 1
        if self._pending >= UPDATE_EVERY:
            self.bar.update(self.task, advance=self._pending, loss=loss)
            self._pending = 0

    def end_epoch(self, record: dict, best: bool) -> None:
        if self.quiet:
            return
        acc = ""
        if "val_accuracy" in record:
            acc = f"  train acc {record['train_accuracy']:.4f}  val acc {record['val_accuracy']:.4f}"
        mark = "  *" if best else ""
        self.console.print(f"epoch {record['epoch']:3d}  train {record['train_loss']:.5f}  "
                           f"val {record['val_loss']:.5f}{acc}  {record['seconds']:.1f}s{mark}",
                           highlight=False)
        sys.stderr.flush()
