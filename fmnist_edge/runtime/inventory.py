"""What `fmnist-edge models` shows: the model folder the runtime would use and why, and every
model file in it, loaded and checked exactly as `classify` would load it."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from fmnist_edge import manifest
from fmnist_edge.errors import FmnistEdgeError, ModelError
from fmnist_edge.machine import cpu_model
from fmnist_edge.runtime.session import (ENV_MODELS, INSTALLED_MODELS, REPOSITORY_MODELS, OnnxModel, model_file,
                                         models_dir)
from fmnist_edge.spec import MODELS, ORT_SUFFIX, STATIC_QUANTIZATION_METHODS

ALL_NAMES = tuple(name for spec in MODELS.values() for int8 in (False, True) for name in spec.file_names(int8))
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class ModelEntry:
    file: str
    kind: str
    precision: str  # fp32 | int8
    format: str  # onnx | ort
    size_bytes: int
    loaded_as: str  # "default" or "int8" when the runtime picks this file; else why it does not
    status: str  # "ok", or the one line the runtime would refuse it with
    figure: str  # the export's test-set figure from the manifest, "" without one
    note: str = ""  # a warning that does not stop the file from loading


def origin(folder: Path, given: bool) -> str:
    """Why the runtime looks in `folder`."""
    if given:
        return "given"
    if os.environ.get(ENV_MODELS):
        return f"${ENV_MODELS}"
    resolved = folder.resolve()
    if resolved == REPOSITORY_MODELS:
        return "the repository's exported/"
    if resolved == INSTALLED_MODELS:
        return "installed with the package"
    return "./exported"


def _figure(entry: dict | None) -> str:
    validation = (entry or {}).get("validation") or {}
    if "accuracy" in validation:
        return f"test accuracy {validation['accuracy']:.2%}"
    if "reconstruction_mse" in validation:
        return f"test MSE {validation['reconstruction_mse']:.4f}"
    for key, against in (("max_abs_diff_vs_onnx", "its .onnx"), ("max_abs_diff_vs_torch", "PyTorch"),
                         ("max_abs_diff_vs_fp32", "fp32")):  # an encoder, or a twin of one
        if key in validation:
            gap = validation[key]
            return f"the outputs of {against}" if gap == 0 else f"within {gap:.1e} of {against}"
    return ""


def saturates_here() -> bool:
    """True on an x86 CPU without VNNI, where ONNX Runtime's uint8 x int8 kernels sum pairs of
    products in 16 bits (export/quantize.py)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not set(VNNI_FLAGS) & set(cpu_model()["cpu_flags"])


def _note(name: str, entries: dict) -> str:
    entry = entries.get(name) or {}
    if "source" in entry:  # an ORT-format twin runs its source's weights
        entry = entries.get(entry["source"]) or {}
    quantization = entry.get("quantization") or {}
    # exports made before weight_bits was recorded stored 8-bit weights
    if quantization.get("method") in STATIC_QUANTIZATION_METHODS and quantization.get("weight_bits", 8) == 8 and saturates_here():
        return ("8-bit weights in int8 kernels saturate on this CPU (x86 without VNNI): export without --full-range "
                "for 7-bit ones")
    return ""


def _entry(folder: Path, name: str, entries: dict) -> ModelEntry:
    path = folder / name
    kind = name.split(".")[0]
    int8 = ".int8." in name
    try:
        chosen = model_file(folder, kind, int8).name
    except FmnistEdgeError:
        chosen = ""
    loaded_as = ("int8" if int8 else "default") if chosen == name else f"{chosen} is preferred"
    try:
        OnnxModel(path, kind, threads=1)
        status = "ok"
    except FmnistEdgeError as exc:
        status = str(exc).splitlines()[0].removeprefix(f"{path}: ")
    return ModelEntry(name, kind, "int8" if int8 else "fp32", "ort" if name.endswith(ORT_SUFFIX) else "onnx",
                      path.stat().st_size, loaded_as, status, _figure(entries.get(name)), _note(name, entries))


def inventory(path: str | os.PathLike | None = None) -> dict:
    """The model folder (`path`, else the runtime's lookup) and its models, each checked."""
    folder = models_dir(path, need=ALL_NAMES)
    # A broken manifest refuses every model in the folder: one line for it, not one per model.
    entries = (manifest.read(folder) or {}).get("files", {})
    models = [_entry(folder, name, entries) for name in ALL_NAMES if (folder / name).is_file()]
    if not models:  # only a named folder can get here: the lookup needs one of ALL_NAMES
        raise ModelError(f"{folder}: no model files ({', '.join(MODELS)}: .onnx or .ort, fp32 or .int8)")
    samples = folder / "samples"
    return {
        "folder": str(folder),
        "origin": origin(folder, path is not None),
        "manifest": (folder / manifest.MANIFEST_NAME).is_file(),
        "samples": str(samples) if any(samples.glob("*.png")) else None,
        "models": [asdict(m) for m in models],
    }
