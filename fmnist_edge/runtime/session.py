"""Find the exported models, check each against its manifest and the spec, and load it once.

An `OnnxModel` holds one ONNX Runtime session, so one loaded model can serve many threads:
InferenceSession.run is thread-safe, and the only per-call state (the single-image buffers) is
kept per thread. A batch larger than one call runs its chunks side by side, one per thread,
each on a one-thread session that no other chunk uses at that moment (opened when first needed).
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fmnist_edge import manifest
from fmnist_edge.errors import ModelError, ModelUsageError, UsageError, with_article as _a
from fmnist_edge.spec import MAX_THREADS, META_QUANTIZATION, MODELS, ORT_SUFFIX, ModelSpec, TensorSpec

ENV_MODELS = "FMNIST_EDGE_MODELS"
ENV_REQUIRE_MANIFEST = "FMNIST_EDGE_REQUIRE_MANIFEST"
ENV_THREADS = "FMNIST_EDGE_THREADS"  # the default thread count, for several processes on one machine
REPOSITORY_MODELS = Path(__file__).resolve().parents[2] / "exported"  # an editable install's
INSTALLED_MODELS = Path(__file__).resolve().parents[1] / "shipped"  # a wheel's copy of exported/
OPTIMISATION = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def candidate_dirs() -> list[Path]:
    """Where the shipped models are looked for: $FMNIST_EDGE_MODELS alone when set, else the
    repository's exported/, ./exported, and last the copy a wheel installs with the package."""
    if os.environ.get(ENV_MODELS):
        folder = Path(os.environ[ENV_MODELS])
        if not folder.is_dir():  # said as what it is, not as a folder without models
            what = "a file; it names a folder of models (a file goes to --model)" if folder.exists() else "no such folder"
            raise ModelError(f"${ENV_MODELS} is {folder}: {what}")
        return [folder]
    return [REPOSITORY_MODELS, Path.cwd() / "exported", INSTALLED_MODELS]


def models_dir(path: str | os.PathLike | None = None, need: str | tuple[str, ...] = "classifier.onnx") -> Path:
    """The folder to load from: `path` when given, else the first candidate holding one of `need`."""
    if path is not None:
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: {'is a file, not a' if path.exists() else 'no such'} model folder")
        return path
    names = (need,) if isinstance(need, str) else need
    for folder in candidate_dirs():
        if any((folder / name).is_file() for name in names):
            return folder
    looked = ", ".join(str(d) for d in dict.fromkeys(candidate_dirs()))
    wanted = " or ".join(names) if len(names) <= 2 else "model files"  # every spec name: say so, not list 12
    raise ModelError(f"no exported {wanted} found (looked in {looked}); run `fmnist-edge export`, "
                     f"pass --model, or set {ENV_MODELS}")


def model_file(path: str | os.PathLike | None, kind: str, int8: bool = False) -> Path:
    """A model file: `path` itself when it is a file, else the spec's file name in its folder."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"a model path must be a str or a path, got {type(path).__name__}")
    given = Path(path) if path is not None else None
    # a folder may be called anything, x.ort too
    if given is not None and not given.is_dir() and (given.suffix in (".onnx", ORT_SUFFIX) or given.is_file()):
        if not given.is_file():
            raise ModelError(f"{path}: no such model file")
        if int8 and ".int8." not in given.name:  # the file would win silently over the flag
            raise ModelUsageError(f"{path}: int8 picks {MODELS[kind].int8_filename} in a model folder; "
                             "with a file, name the int8 file itself")
        return given  # any file the user names is tried, and refused if it is not our model
    names = MODELS[kind].file_names(int8)
    folder = models_dir(path, need=names)
    for name in names:  # the .onnx file, else its ORT-format twin (a device's folder may hold only those)
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"{folder / names[0]}: no such model file" + (" (export with --quantize for int8)" if int8 else ""))


def session_options(threads: int | None = None, optimisation: str = "all") -> ort.SessionOptions:
    """threads None: ONNX Runtime's default, one per core."""
    given = threads
    try:
        if isinstance(threads, bool):
            raise TypeError
        threads = None if threads is None else operator.index(threads)  # numpy integers too
    except TypeError:
        threads = -1
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"threads must be an integer from 1 to {MAX_THREADS} (or None: one per core), got {given!r}")
    if optimisation not in OPTIMISATION:
        raise UsageError(f"optimisation must be one of {', '.join(OPTIMISATION)}, got {optimisation!r}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = OPTIMISATION[optimisation]
    opts.log_severity_level = 3  # errors only: warnings would break the one-line output
    return opts


def default_threads() -> int | None:
    """FMNIST_EDGE_THREADS when set (for a machine shared by several processes, whose ONNX
    Runtime threads would otherwise each claim every core and spin against each other), else
    None: one per core."""
    value = os.environ.get(ENV_THREADS, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_THREADS:
        raise UsageError(f"{ENV_THREADS} must be an integer from 1 to {MAX_THREADS}, got {value!r}")
    return int(value)


def manifest_required() -> bool:
    """$FMNIST_EDGE_REQUIRE_MANIFEST=1: a model with no manifest.json beside it is refused, so that
    a device's deleted or missing manifest cannot turn the sha256 check off."""
    value = os.environ.get(ENV_REQUIRE_MANIFEST, "").strip()
    if value not in ("", "0", "1"):
        raise UsageError(f"{ENV_REQUIRE_MANIFEST} must be 1 or 0, got {value!r}")
    return value == "1"


def _cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _dims_ok(found: list, want: tuple) -> bool:
    if len(found) != len(want):
        return False
    for got, expected in zip(found, want):
        if expected == "batch":
            if isinstance(got, int):  # a fixed batch axis would break batching
                return False
        elif isinstance(expected, int) and got != expected:
            return False
        elif isinstance(expected, str) and not isinstance(got, int):
            return False  # a named size (the latent n) must be fixed in the file
    return True


def _show(shape) -> str:
    return "[" + ",".join(str(d) if d is not None else "?" for d in shape) + "]"


def check_against_spec(path: Path, spec: ModelSpec, session: ort.InferenceSession) -> None:
    """Refuse a model whose tensors differ from the spec: names first, then shapes."""
    meta = session.get_modelmeta().custom_metadata_map
    kind = meta.get("fmnist_edge.kind")
    if kind and kind != spec.kind:
        raise ModelError(f"{path}: is {_a(kind)} model, expected {_a(spec.kind)}")
    for role, found, wanted in (("input", session.get_inputs(), spec.inputs),
                                ("output", session.get_outputs(), spec.outputs)):
        if len(found) != len(wanted):
            raise ModelError(f"{path}: has {len(found)} {role}s, {_a(spec.kind)} has {len(wanted)}")
        for node, want in zip(found, wanted):
            _check_tensor(path, spec, role, node, want)


def _check_tensor(path: Path, spec: ModelSpec, role: str, node, want: TensorSpec) -> None:
    if node.name != want.name:
        raise ModelError(f"{path}: {role} is named '{node.name}', {_a(spec.kind)} takes '{want.name}'")
    if node.type != "tensor(float)":
        raise ModelError(f"{path}: {role} '{node.name}' is {node.type}, expected tensor(float)")
    if not _dims_ok(list(node.shape), want.shape):
        raise ModelError(f"{path}: {role} '{node.name}' has shape {_show(node.shape)}, "
                         f"{_a(spec.kind)} has {_show(want.shape)}")


def _direct_run(session: ort.InferenceSession):
    """The session's run, without the Python checks InferenceSession.run repeats on every call.

    Those checks (the feed's names, graph capture, OrtValue ownership) cost 0.4 to 0.8 us a
    call here (benchmarks/call_overhead); OnnxModel.run always feeds exactly the one
    input the spec names, as a numpy array, so they cannot fail. `_sess` is the compiled session
    that InferenceSession.run itself calls; an onnxruntime without it gets the public run."""
    compiled = getattr(session, "_sess", None)
    if compiled is not None and callable(getattr(compiled, "run", None)):
        return compiled.run
    return session.run


class OnnxModel:
    """One verified ONNX model of the spec's `kind`, loaded once; call `run(x)` from any thread."""

    def __init__(self, path: str | os.PathLike, kind: str, threads: int | None = None,
                 optimisation: str = "all", require_manifest: bool | None = None):
        self.path = Path(path)
        self.spec = MODELS[kind]
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        try:
            # Every session, the helpers' opened later too, is made from these bytes: the ones the
            # manifest check saw, not whatever the file holds by then (an export swapping the folder).
            self._bytes = self.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{self.path}: unreadable ({exc.strerror or exc})") from None
        # None: as $FMNIST_EDGE_REQUIRE_MANIFEST says (a bad value is said whether or not a manifest
        # is there); an export's own checks of its staging folder, which has none yet, pass False.
        required = manifest_required() if require_manifest is None else require_manifest
        self.manifest_entry = manifest.verify(self.path, self._bytes)  # before anything runs
        if self.manifest_entry is None and required:
            raise ModelError(f"{self.path}: no {manifest.MANIFEST_NAME} beside it to check it against "
                             f"(${ENV_REQUIRE_MANIFEST} is set)")
        self._optimisation, self._fold_int8_weights = optimisation, False
        threads = default_threads() if threads is None else threads
        self.session = self._open(threads)  # checks `threads` first
        self.threads = operator.index(threads) if threads else _cores()
        if (self.session.get_modelmeta().custom_metadata_map.get(META_QUANTIZATION) == "weights"
                and self.path.suffix != ORT_SUFFIX):  # an ORT-format file is not optimised at load
            # int8 weights, fp32 compute: let constant folding turn DequantizeLinear(weights) into
            # fp32 weights once at load, instead of dequantizing on every call (2x slower).
            self._fold_int8_weights = True
            self.session = self._open(threads)
        check_against_spec(self.path, self.spec, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape[1:])  # without the batch axis
        self.output_shape = tuple(self.session.get_outputs()[0].shape[1:])
        self._run = _direct_run(self.session)
        self._single = threading.local()  # each thread's pre-bound buffers for one image
        fixed = all(isinstance(d, int) for d in self.output_shape) and hasattr(self.session, "io_binding")
        self._single_shape = (1, *self.input_shape) if fixed else None  # None: every call feeds
        self._side_by_side_lock = threading.Lock()
        self._side_by_side: tuple[ThreadPoolExecutor, queue.LifoQueue] | None = None  # made by the first large batch

    def _bind_single(self):
        """This thread's (run, input, output): one image's buffers, bound to the session once."""
        x = np.empty(self._single_shape, dtype=np.float32)
        y = np.empty((1, *self.output_shape), dtype=np.float32)
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
        binding.bind_output(self.output_name, "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
        compiled = getattr(binding, "_iobinding", None)
        if compiled is not None and hasattr(getattr(self.session, "_sess", None), "run_with_iobinding"):
            run = functools.partial(self.session._sess.run_with_iobinding, compiled, ort.RunOptions())
        else:  # an onnxruntime without the compiled objects: the public call
            run = functools.partial(self.session.run_with_iobinding, binding)
        bound = self._single.bound = (run, x, y)
        return bound

    def _workers(self) -> tuple[ThreadPoolExecutor, queue.LifoQueue]:
        """(pool, slots) for a batch's chunks side by side: `threads - 1` workers beside the
        calling thread, and `threads` slots, each holding a one-thread session (None until the
        slot is first used). A 64-image chunk's nodes are too small to split well across cores:
        this way beats intra-op threads (benchmarks/data_parallel)."""
        with self._side_by_side_lock:
            if self._side_by_side is None:
                slots: queue.LifoQueue = queue.LifoQueue()
                for _ in range(self.threads):
                    slots.put(None)
                self._side_by_side = (ThreadPoolExecutor(self.threads - 1, thread_name_prefix="fmnist-edge"), slots)
            return self._side_by_side

    def _side_by_side_run(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """`x` in chunks of `batch_size`: the caller and up to `threads - 1` helpers each take the
        next chunk when they finish one, and run it on a free slot's session, so that at most
        `threads` chunks compute at once and no two on one session, however many callers share
        the model. One task per helper, not one per chunk: a future per chunk makes the threads
        queue for the GIL between chunks (benchmarks/data_parallel). The caller works too,
        rather than wait for a sleeping worker to wake up. The first error stops everyone after
        their current chunk, and is raised once no helper touches `x` any more."""
        pool, slots = self._workers()
        outputs, name = [self.output_name], self.input_name
        starts = range(0, len(x), batch_size)
        results: list = [None] * len(starts)
        taken = itertools.count()  # next() on it is one step under the GIL: no chunk is taken twice
        failed = threading.Event()

        def work() -> None:
            try:
                for j in taken:
                    if j >= len(starts) or failed.is_set():
                        return
                    run = slots.get()  # most recently used first: a session opened already
                    try:
                        if run is None:
                            run = _direct_run(self._open(1))
                        results[j] = run(outputs, {name: x[starts[j]:starts[j] + batch_size]}, None)[0]
                    finally:
                        slots.put(run)
            except BaseException:
                failed.set()
                raise

        helping = []
        for _ in range(min(self.threads, len(starts)) - 1):
            try:
                helping.append(pool.submit(work))
            except RuntimeError:  # the interpreter is shutting down (an atexit flush): work alone
                break
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:
            error = exc
        for done in helping:
            if done.cancel():  # still queued behind another caller's: it has taken nothing
                continue
            try:
                done.result()
            except BaseException as exc:  # waited for even after an error: it may be reading x
                error = error or exc
        if error is not None:
            raise error
        return np.concatenate(results)

    def _open(self, threads: int | None) -> ort.InferenceSession:
        options = session_options(threads, self._optimisation)
        if self._fold_int8_weights:
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            return ort.InferenceSession(self._bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind types: all mean "not a model we can run"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first[:200]})") from None

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def run(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Run on (B, *input_shape) float32, in chunks of `batch_size` when given."""
        if type(x) is not np.ndarray or x.dtype != np.float32:
            x = np.asarray(x, dtype=np.float32)
        if x.shape == self._single_shape:
            # One image through buffers bound once per thread: no feed dict, no output allocated
            # by the session, no checks repeated (benchmarks/call_overhead). Inline: a call costs.
            run, buffer_in, buffer_out = getattr(self._single, "bound", None) or self._bind_single()
            buffer_in[...] = x  # any memory layout will do
            run()
            return buffer_out.copy()  # the buffer is this thread's, overwritten by its next call
        if x.shape[1:] != self.input_shape:
            raise ModelError(f"{self.path}: got input {x.shape}, expects (batch, "
                             f"{', '.join(map(str, self.input_shape))})")
        x = np.ascontiguousarray(x)
        outputs, name = [self.output_name], self.input_name
        if batch_size is None or len(x) <= batch_size:
            return self._run(outputs, {name: x}, None)[0]  # one call: its nodes use every thread
        starts = range(0, len(x), batch_size)
        if self.threads == 1:
            return np.concatenate([self._run(outputs, {name: x[i:i + batch_size]}, None)[0] for i in starts])
        return self._side_by_side_run(x, batch_size)  # ONNX Runtime lets go of the GIL while it computes

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, kind={self.spec.kind!r})"
