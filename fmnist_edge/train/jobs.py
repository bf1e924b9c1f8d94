"""Run independent training runs side by side, each in its own process with its share of the cores.

On a small CPU two single-threaded runs get more out of two cores than one run with two threads:
these networks are too small for PyTorch's intra-op threads to keep both cores busy. Processes
are started with `spawn` (forking a process that has used PyTorch's thread pools can hang), and a
run waits until the runs it needs are finished.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from typing import Callable, Hashable, Sequence

from fmnist_edge.errors import FmnistEdgeError, Terminated

GRACE_S = 120.0  # how long an interrupted run may take to save its resume point
MAX_DEFAULT_JOBS = 4  # beyond this, more threads per run serve better than more runs at once


def default_jobs(device: str) -> int:
    """One run per core, up to MAX_DEFAULT_JOBS, on a CPU; on a GPU one run at a time."""
    if device == "cuda":
        return 1
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_JOBS))


def threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _worker(conn, threads: int, parent: int) -> None:
    """A worker process: runs `(target, args)` jobs from `conn` until it gets None, and sends back
    each one's outcome, or its error's first line. PyTorch is imported once per worker."""
    # SIGINT is how the parent, and the kernel when the parent dies, stop a worker: honour it even
    # when the worker inherited it ignored, as a shell without job control leaves it for `cmd &`
    # (`nohup fmnist-edge reproduce ... &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_when_orphaned(parent)
        import torch

        torch.set_num_threads(threads)
    except KeyboardInterrupt:  # stopped while starting: nothing to save yet
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        target, args = job
        try:
            reply = ("ok", target(*args))
        except KeyboardInterrupt:
            reply = ("error", "interrupted")
        except Terminated as exc:  # SIGTERM to the whole group (a service manager's stop): saved, and said
            reply = ("error", str(exc) or "terminated")
        except FmnistEdgeError as exc:
            reply = ("error", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, not lost in a worker
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return


def _interrupt_when_orphaned(parent: int) -> None:
    """Linux: SIGINT this worker when its parent dies (even by SIGKILL), so that its run saves a
    resume point and stops, instead of training on beside the reproduction that resumes it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own shutdown has to do
        return
    if os.getppid() != parent:  # it died before the request
        raise SystemExit(1)


class _Worker:
    def __init__(self, context, threads: int):
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_worker, args=(child_end, threads, os.getpid()), daemon=True)
        self.process.start()
        child_end.close()  # the worker holds the only other end: EOF when it dies
        self.item, self.started = None, 0.0


def run_in_processes(items: Sequence, jobs: int, key: Callable[[object], Hashable],
                     needs: Callable[[object], Hashable | None], target: Callable, args: Callable[[object], tuple],
                     on_start: Callable[[object], None], on_finish: Callable[[object, object, float], None],
                     label: Callable[[object], str] = str) -> None:
    """Run `target(*args(item))` for every item in `jobs` worker processes, an item only after the
    item it `needs` (by key; None or an item not in `items` means nothing to wait for) finished.
    `on_start(item)` and `on_finish(item, outcome, seconds)` are called in this process. A run
    that fails stops the others (they save their resume point, as on Ctrl-C) and raises its
    error, prefixed with `label(item)`."""
    context = multiprocessing.get_context("spawn")
    waiting = list(items)
    unfinished = {key(item) for item in items}
    workers: list[_Worker] = []
    try:
        while waiting or any(w.item is not None for w in workers):
            for item in [i for i in waiting if needs(i) not in unfinished]:
                idle = next((w for w in workers if w.item is None), None)
                if idle is None and len(workers) < jobs:
                    idle = _Worker(context, threads_per_job(jobs))
                    workers.append(idle)
                if idle is None:
                    break
                waiting.remove(item)
                on_start(item)
                idle.conn.send((target, args(item)))
                idle.item, idle.started = item, time.perf_counter()
            busy = [w for w in workers if w.item is not None]
            if not busy:
                raise FmnistEdgeError("runs wait for each other in a cycle; nothing can start")  # a planning bug
            multiprocessing.connection.wait([w.conn for w in busy])
            for worker in busy:
                if not worker.conn.poll():
                    continue
                try:
                    status, value = worker.conn.recv()
                except EOFError:  # killed, or died in PyTorch's C++ without a Python exception
                    worker.process.join()
                    status, value = "error", f"a training process died (exit status {worker.process.exitcode})"
                item, worker.item = worker.item, None
                if status == "error":
                    raise FmnistEdgeError(f"{label(item)}: {value}")
                unfinished.discard(key(item))
                on_finish(item, value, time.perf_counter() - worker.started)
    except Terminated as exc:  # SIGTERM here: said once the workers below have saved and stopped
        if str(exc) or not any(w.item is not None for w in workers):
            raise
        raise Terminated("terminated; the runs under way save their resume points as they stop: run the same "
                         "command again to continue") from None
    finally:
        _stop(workers)


def _stop(workers: list[_Worker]) -> None:
    """Every worker is told to quit after its current job. Busy ones are asked to stop that job
    (SIGINT: a run saves its resume point between two steps) and waited for; a Ctrl-C at a
    terminal reached them already, so they get a moment first."""
    for worker in workers:
        try:
            worker.conn.send(None)
        except (BrokenPipeError, OSError):  # it is gone already
            pass
    busy = [w.process for w in workers if w.item is not None]
    deadline = time.monotonic() + 2.0
    for process in busy:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in busy:
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.terminate()
