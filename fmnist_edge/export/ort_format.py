"""ORT format: an export folder's models as ONNX Runtime's own flatbuffer files, for its reduced builds.

ONNX Runtime's minimal builds (mobile, embedded, WebAssembly) read only ORT-format models and
carry only the operators a `required_operators.config` names (their build script's
`--include_ops_by_config`). `convert_folder` writes both beside an export's `.onnx` files, checks
each `.ort` file against the `.onnx` file it came from on the test set, and installs the folder
atomically, as export does. Torch-free: onnxruntime, numpy and the package's own modules.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fmnist_edge import manifest
from fmnist_edge.errors import FmnistEdgeError, ModelError, UsageError, ValidationFailed
from fmnist_edge.fileio import sha256_file
from fmnist_edge.spec import FP32_MAX_ABS_DIFF, MANIFEST_NAME, MODELS, OPERATORS_CONFIG, export_owns, ort_name

OPERATORS_KIND = "ort-operators"  # the manifest's kind for OPERATORS_CONFIG
# What each target platform gets baked into its files. "portable": constant folding and the
# fusions every CPU shares (Conv+ReLU, Gemm+ReLU): runs on any build, ARM included. "x86" adds
# the blocked NCHWc layout of ONNX Runtime's x86 kernels, which ONNX Runtime's own converter
# writes only for an amd64 target: an ORT-format model is not re-optimised when loaded, and
# without it the classifier ran about twice as slow on an x86 CPU (benchmarks/ort_format).
PLATFORMS = {"portable": ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
             "x86": ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)}
DEFAULT_PLATFORM = "portable"
BATCH = 1000


def is_ort_entry(entry: dict) -> bool:
    return entry.get("format") == "ort"


def check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise UsageError(f"--platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")


def convert_model(source: Path, target: Path, platform: str = DEFAULT_PLATFORM) -> None:
    """Write `source` (.onnx) as an ORT-format model at `target`, optimised for `platform`."""
    check_platform(platform)
    options = ort.SessionOptions()
    options.graph_optimization_level = PLATFORMS[platform][1]
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own pybind errors: the source is not a model it can convert
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{source}: cannot be converted to ORT format ({first[:200]})") from None
    if not target.is_file():
        raise ModelError(f"{source}: ONNX Runtime wrote no ORT-format file")


def write_operators_config(ort_files: list[Path], target: Path) -> None:
    """The operators (and opsets) the ORT files use, in the format ONNX Runtime's build reads."""
    import logging

    create_config_from_models = _ort_tools_module("ort_format_model").create_config_from_models
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # its INFO line names a temp folder
    create_config_from_models([Path(p) for p in ort_files], target, enable_type_reduction=False)
    # The tool writes each model's path into a comment: keep the names, not this machine's folders.
    lines = target.read_text().splitlines()
    target.write_text("".join((f"# - {Path(line[4:]).name}" if line.startswith("# - ") else line) + "\n"
                              for line in lines))


def _ort_tools_module(name: str):
    """onnxruntime.tools.<name>, without running onnxruntime/tools/__init__.py: that file imports
    torch whenever torch is installed (for helpers this module never calls), which would make a
    torch-free command pay for torch, or fail where torch is present but broken or blocked."""
    import importlib
    import sys
    import types

    package = "onnxruntime.tools"
    if package not in sys.modules:
        stub = types.ModuleType(package)
        stub.__path__ = [str(Path(ort.__file__).parent / "tools")]
        sys.modules[package] = stub
    return importlib.import_module(f"{package}.{name}")


def compare(ort_file: Path, onnx_file: Path, kind: str, inputs: np.ndarray,
            labels: np.ndarray | None) -> tuple[dict, list[str]]:
    """The ORT file against the ONNX file it came from, on the same inputs: (figures, failures)."""
    from fmnist_edge.runtime.session import OnnxModel

    # The staging folder of an export has no manifest yet: neither file is held to one here.
    converted = OnnxModel(ort_file, kind, require_manifest=False)
    original = OnnxModel(onnx_file, kind, require_manifest=False)
    got, want = converted.run(inputs, batch_size=BATCH), original.run(inputs, batch_size=BATCH)
    diff = float(np.abs(got - want).max()) if np.isfinite(got).all() else float("inf")
    figures: dict = {"images": len(inputs), "max_abs_diff_vs_onnx": diff}
    failures = []
    if not diff <= FP32_MAX_ABS_DIFF:
        failures.append(f"{ort_file.name}: max |ORT format - ONNX| = {diff:.2e} > {FP32_MAX_ABS_DIFF:.0e}")
    if kind == "classifier":
        figures["top1_agreement_vs_onnx"] = float((got.argmax(1) == want.argmax(1)).mean())
        if labels is not None:
            figures["accuracy"] = float((got.argmax(1) == labels).mean())
    return figures, failures


def _test_inputs(data_dir) -> tuple[np.ndarray, np.ndarray]:
    from fmnist_edge.idx import load_split

    test = load_split("test", data_dir, expect_full=True)  # as `validate`: the whole test set
    return (test.images.astype(np.float32) / 255.0)[:, None], test.labels


def validate_ort_entries(folder: Path, entries: dict, data_dir=None,
                         test: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[dict, list[str]]:
    """Every ORT-format model in `entries` against its source: ({file: figures}, failures)."""
    report, failures = {}, []
    names = [n for n, e in entries.items() if is_ort_entry(e) and e.get("kind") in MODELS]
    if not names:
        return report, failures
    images, labels = test if test is not None else _test_inputs(data_dir)
    latents: dict[str, np.ndarray] = {}
    for name in sorted(names, key=lambda n: entries[n]["kind"] == "decoder"):  # encoders first
        entry = entries[name]
        source = folder / entry.get("source", "")
        if not entry.get("source") or not source.is_file():
            failures.append(f"{name}: its source {entry.get('source')!r} is not in {folder}")
            continue
        inputs, truth = images, labels
        if entry["kind"] == "decoder":
            # latents from the encoder of the same precision, else the fp32 one, as `validate` does
            wanted = [MODELS["encoder"].int8_filename] if ".int8." in name else []
            encoder = next((e for e in wanted + [MODELS["encoder"].filename] if (folder / e).is_file()), None)
            if encoder is None:
                failures.append(f"{name}: no encoder in {folder} to give it latents, so it cannot be checked")
                continue
            if encoder not in latents:
                from fmnist_edge.runtime.session import OnnxModel

                encoder_model = OnnxModel(folder / encoder, "encoder", require_manifest=False)
                latents[encoder] = encoder_model.run(images, batch_size=BATCH)
            inputs, truth = latents[encoder], None
        try:
            report[name], missed = compare(folder / name, source, entry["kind"], inputs,
                                           truth if entry["kind"] == "classifier" else None)
        except ModelError as exc:
            failures.append(str(exc))
            continue
        failures.extend(missed)
    return report, failures


def model_sources(entries: dict) -> dict:
    """The ONNX models a manifest's entries list: the files that get twins."""
    return {n: e for n, e in entries.items() if n.endswith(".onnx") and e.get("kind") in MODELS}


def refuse_clashes(folder: Path, entries: dict, shown: Path | None = None) -> None:
    """Refuse when a file the manifest does not list as ORT format has a name a twin (or the
    operators config) would be written under: it is somebody's, and is not overwritten."""
    for name in [ort_name(n) for n in model_sources(entries)] + [OPERATORS_CONFIG]:
        if (folder / name).exists() and not is_ort_entry(entries.get(name, {})):
            raise FmnistEdgeError(f"{(shown or folder) / name}: not listed in {MANIFEST_NAME} as an ORT-format "
                                  "file; move it away first, so that it is not overwritten")


def add_twins(staging: Path, entries: dict, platform: str, log=print,
              previous: tuple[Path, dict] | None = None) -> None:
    """Write into `staging` the ORT-format twin of every ONNX model `entries` lists, and the
    operators config, and list them in `entries` (twins listed before are replaced).

    With `previous` (the folder being converted and its manifest's entries), a twin listed there
    with the same source sha256, platform and onnxruntime version is kept as it is: ONNX Runtime
    does not write the same bytes twice for one model, and an unchanged twin should not show as
    changed."""
    for name in [n for n, e in entries.items() if is_ort_entry(e)]:
        del entries[name]
        (staging / name).unlink(missing_ok=True)
    converted = []
    for name, entry in sorted(model_sources(entries).items()):
        twin = ort_name(name)
        made = {"kind": entry["kind"], "precision": entry.get("precision", "fp32"), "format": "ort",
                "platform": platform, "optimisation": PLATFORMS[platform][0], "source": name,
                "source_sha256": entry.get("sha256") or sha256_file(staging / name),
                "onnxruntime": ort.__version__}
        folder, listed = previous if previous else (None, {})
        old = listed.get(twin, {})
        if folder is not None and all(old.get(k) == v for k, v in made.items()) and _intact(folder / twin):
            log(f"keeping {twin}: made from this {name} for {platform}")
            shutil.copy2(folder / twin, staging / twin)
            # the same bytes from the same source: its figures hold (and are measured again when validated)
            made.update({k: old[k] for k in ("validation",) if k in old})
        else:
            log(f"converting {name} to {twin}")
            convert_model(staging / name, staging / twin, platform)
        converted.append(staging / twin)
        entries[twin] = made
    write_operators_config(converted, staging / OPERATORS_CONFIG)
    entries[OPERATORS_CONFIG] = {"kind": OPERATORS_KIND, "format": "ort", "models": [p.name for p in converted]}


def validate_twins(staging: Path, entries: dict, test, log=print) -> None:
    """Check every twin against its source on `test`; their figures go into `entries`."""
    log("validating the ORT-format models against their ONNX files on the test set")
    report, failures = validate_ort_entries(staging, entries, test=test)
    if failures:
        raise ValidationFailed(f"{len(failures)} validation bound(s) missed: " + "; ".join(failures))
    for name, figures in report.items():
        entries[name]["validation"] = figures


def convert_folder(folder: str | Path, data_dir=None, validate: bool = True, platform: str = DEFAULT_PLATFORM,
                   log=print) -> dict:
    """Add an ORT-format twin of every ONNX model in an export folder, and the operators config;
    validated, then installed in one swap. Returns the written manifest. Files the manifest does
    not list are kept (and left where they are when not an export's: spec.export_owns); one in
    the way of a file to be written is refused (`refuse_clashes`)."""
    import json

    from fmnist_edge.folders import copy_as_is, put_in_place, staged, swapped_folder

    check_platform(platform)
    where = Path(folder)
    manifest.require_folder(where)
    folder, _ = swapped_folder(where)
    data = manifest.read(folder)
    if data is None:
        raise FmnistEdgeError(f"{where}: no {MANIFEST_NAME}; convert a folder that `fmnist-edge export` wrote")
    listed = data["files"]
    sources = model_sources(listed)
    if not sources:
        raise FmnistEdgeError(f"{where}: its manifest lists no ONNX models to convert")
    for name in sources:
        manifest.verify(folder / name)  # an altered model is refused before anything is written
    refuse_clashes(folder, listed, shown=where)
    test = _test_inputs(data_dir) if validate else None  # no data: said before any work
    old_twins = {n for n, e in listed.items() if is_ort_entry(e)}
    own = export_owns(listed)
    with staged(folder, where, "write to") as staging:
        for item in folder.iterdir():
            if item.name == MANIFEST_NAME or not own(item.name):
                continue
            if item.name in old_twins:
                source = listed[item.name].get("source")
                if item.name != OPERATORS_CONFIG and source not in sources:
                    log(f"dropping {item.name}: its source {source} is no longer in {MANIFEST_NAME}")
                continue
            copy_as_is(item, staging / item.name)
        entries = {n: e for n, e in listed.items() if n not in old_twins}
        add_twins(staging, entries, platform, log, previous=(folder, listed))
        if validate:
            validate_twins(staging, entries, test, log)
        info = {k: v for k, v in data.items() if k not in ("files", "format")}
        written = manifest.write(staging, entries, **info)
        result = json.loads(written.read_text())
        put_in_place(staging, folder, own, last=(MANIFEST_NAME,))
        return result


def _intact(path: Path) -> bool:
    """The file is there and matches its manifest entry."""
    try:
        return manifest.verify(path) is not None
    except ModelError:
        return False
