"""The reproduction's overview: a live Rich table of every run (done, running, waiting, diverged)
with times, or one plain line per event when the output is not a terminal."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

STATUS_STYLE = {"done": "green", "running": "bold yellow", "waiting": "dim", "resumable": "cyan",
                "diverged": "red"}
# reproduce's run states -> what the table says before anything runs
INITIAL = {"finished": "done", "diverged": "diverged", "partial": "resumable", "new": "waiting"}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Overview:
    """Passed to `reproduce(overview=...)`; use as a context manager so the live table closes."""

    def __init__(self, console: Console | None = None, live: bool | None = None, root: str | Path | None = None):
        self.console = console or Console(soft_wrap=True)
        self.root = Path(root) if root is not None else None  # RUNS: earlier runs' times from metrics.json
        self.live_mode = self.console.is_terminal if live is None else live
        self.rows: dict[tuple[int, str], dict] = {}  # (seed, name) -> {status, seconds, started}
        self.started = time.perf_counter()
        self._live: Live | None = None

    # -- the protocol reproduce() calls ------------------------------------------------------
    def start(self, runs, statuses: dict) -> None:
        self.started = time.perf_counter()
        for run in runs:
            status = INITIAL.get(statuses.get((run.seed, run.name)), "waiting")
            self.rows[(run.seed, run.name)] = {"status": status, "started": None,
                                               "seconds": self._earlier(run) if status == "done" else None}
        counts = {}
        for row in self.rows.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        if self.live_mode:
            self._live = Live(get_renderable=self.table, console=self.console, refresh_per_second=2,
                              transient=False)
            self._live.start()
        else:
            parts = ", ".join(f"{v} {k}" for k, v in counts.items())
            self._line(f"{len(self.rows)} runs: {parts}")

    def running(self, run) -> None:
        row = self.rows.setdefault((run.seed, run.name), {"seconds": None})
        row.update(status="running", started=time.perf_counter())
        if not self.live_mode:
            self._line(f"seed {run.seed} {run.name}: running")

    def finished(self, run, outcome: str, seconds: float) -> None:
        row = self.rows.setdefault((run.seed, run.name), {})
        row.update(status=outcome if outcome in ("diverged", "skipped") else "done", seconds=seconds, started=None)
        if not self.live_mode:
            done = sum(r["status"] in ("done", "diverged", "skipped") for r in self.rows.values())
            self._line(f"seed {run.seed} {run.name}: {row['status']} in {_clock(seconds)} "
                       f"({done}/{len(self.rows)} runs, {_clock(time.perf_counter() - self.started)} elapsed)")

    def _earlier(self, run) -> float | None:
        if self.root is None:
            return None
        try:
            return json.loads((run.folder(self.root) / "metrics.json").read_text())["wall_time_s"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- rendering ---------------------------------------------------------------------------
    def table(self) -> Table:
        now = time.perf_counter()
        done = sum(r["status"] in ("done", "diverged", "skipped") for r in self.rows.values())
        table = Table(title=f"reproduction: {done}/{len(self.rows)} runs, {_clock(now - self.started)} elapsed",
                      title_justify="left")
        for column, justify in (("seed", "right"), ("run", "left"), ("status", "left"), ("time", "right")):
            table.add_column(column, justify=justify)
        for (seed, name), row in self.rows.items():
            status = row["status"]
            seconds = now - row["started"] if status == "running" and row.get("started") else row.get("seconds")
            table.add_row(str(seed), name, f"[{STATUS_STYLE.get(status, '')}]{status}[/]", _clock(seconds))
        return table

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> Overview:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
