"""Runs side by side in worker processes: dependencies respected, outcomes back in the parent, and
a failing run stops the others the way Ctrl-C does (each saves its work) with one clear error."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmnist_edge.errors import FmnistEdgeError

pytestmark = pytest.mark.torch  # the workers set PyTorch's thread count


def times_ten(value: int, folder: str) -> int:
    """A worker's job: leaves a file behind, so the test can tell when it ran."""
    (Path(folder) / f"{value}.done").write_text(str(time.time()))
    return value * 10


def fail_or_wait(value: int, folder: str) -> int:
    """Item 2 fails once item 1 runs; item 1 runs until interrupted and then saves, as a Trainer
    does. Each file holds the time it was written."""
    (Path(folder) / f"{value}.started").write_text(str(time.time()))
    if value == 2:
        deadline = time.time() + 120
        while not (Path(folder) / "1.started").exists() and time.time() < deadline:
            time.sleep(0.05)
        raise FmnistEdgeError("item 2 is broken")
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        (Path(folder) / f"{value}.saved").write_text(str(time.time()))
        raise FmnistEdgeError("interrupted") from None
    return value


def _run(items, target, folder, needs=lambda i: None):
    from fmnist_edge.train.jobs import run_in_processes

    events = []
    run_in_processes(items, 2, key=lambda i: i, needs=needs, target=target, args=lambda i: (i, str(folder)),
                     on_start=lambda i: events.append(("start", i)),
                     on_finish=lambda i, outcome, seconds: events.append(("finish", i, outcome)))
    return events


def test_runs_every_item_and_waits_for_what_an_item_needs(tmp_path):
    # 3 needs 1, and 1 needs nothing; 2 and 4 are free.
    events = _run([3, 1, 2, 4], times_ten, tmp_path, needs=lambda i: 1 if i == 3 else None)
    finished = {e[1]: e[2] for e in events if e[0] == "finish"}
    assert finished == {1: 10, 2: 20, 3: 30, 4: 40}
    assert events.index(("start", 3)) > events.index(("finish", 1, 10))
    assert all((tmp_path / f"{i}.done").is_file() for i in (1, 2, 3, 4))
    # never more than two at once
    active = peak = 0
    for event in events:
        active += 1 if event[0] == "start" else -1
        peak = max(peak, active)
    assert peak == 2


def test_a_failing_run_interrupts_the_others_which_keep_their_work(tmp_path):
    with pytest.raises(FmnistEdgeError, match="^2: item 2 is broken$"):
        _run([1, 2], fail_or_wait, tmp_path)
    # item 1 saved on SIGINT, long before its 60 s were up: it was stopped, not waited for
    ran_for = float((tmp_path / "1.saved").read_text()) - float((tmp_path / "1.started").read_text())
    assert ran_for < 30


def test_a_sigterm_to_the_parent_stops_the_workers_which_save_and_it_says_how_to_go_on(tmp_path):
    import os
    import threading

    from fmnist_edge.cli import _terminate
    from fmnist_edge.errors import Terminated

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("a signal handler can be set in the main thread only")
    over = threading.Event()

    def sigterm_once_both_run():
        while not over.wait(0.05):  # never after the test: the default handler would end the process
            if all((tmp_path / f"{i}.started").exists() for i in (1, 3)):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    previous = signal.signal(signal.SIGTERM, _terminate)  # as the command line's entry point does
    sender = threading.Thread(target=sigterm_once_both_run, daemon=True)
    try:
        sender.start()
        with pytest.raises(Terminated, match="^terminated; the runs under way save their resume points as they "
                                             "stop: run the same command again to continue$"):
            _run([1, 3], fail_or_wait, tmp_path)  # both wait to be stopped (only item 2 fails)
    finally:
        over.set()
        sender.join()
        signal.signal(signal.SIGTERM, previous)
    assert (tmp_path / "1.saved").is_file() and (tmp_path / "3.saved").is_file()


def test_an_item_waiting_for_itself_is_a_planning_error(tmp_path):
    with pytest.raises(FmnistEdgeError, match="cycle"):
        _run([1], times_ten, tmp_path, needs=lambda i: 1)


def test_a_worker_whose_parent_is_killed_saves_and_stops(tmp_path):
    """SIGKILL leaves the parent no chance to stop its workers: the kernel tells them (Linux)."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              f"from test_jobs import _run, fail_or_wait\n_run([1], fail_or_wait, {str(tmp_path)!r})\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120  # the worker imports PyTorch first
        while not (tmp_path / "1.started").exists():
            assert parent.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 20
    while not (tmp_path / "1.saved").exists():
        assert time.monotonic() < deadline, "the orphaned worker was not interrupted"
        time.sleep(0.05)


def test_workers_stop_on_sigint_even_when_started_with_it_ignored(tmp_path):
    """A shell without job control starts `cmd &` with SIGINT ignored, and children inherit that:
    the workers must still stop and save when a run fails."""
    script = (f"import signal, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              f"from test_jobs import _run, fail_or_wait\n_run([1, 2], fail_or_wait, {str(tmp_path)!r})\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "item 2 is broken" in done.stderr
    ran_for = float((tmp_path / "1.saved").read_text()) - float((tmp_path / "1.started").read_text())
    assert ran_for < 30
