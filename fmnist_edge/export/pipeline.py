"""`fmnist-edge export`: checkpoints -> a validated folder of ONNX models, swapped in atomically.

Everything is built in a hidden staging folder beside the target, validated there, then
swapped in whole (fmnist_edge.folders). A kill at any moment leaves either the previous folder
or the new one, each with a manifest naming only files that exist and match. A folder that also
holds files that are not an export's (spec.export_owns), or is the working folder or a mount
point, keeps them: only the export's own files are replaced there, one rename each, the manifest
last. That is not atomic: a kill between two renames leaves models the old manifest does not
match, which the runtime refuses until the next export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmnist_edge import manifest
from fmnist_edge.errors import FmnistEdgeError, UsageError, with_article
from fmnist_edge.export.ort_format import (OPERATORS_CONFIG, add_twins, check_platform, is_ort_entry,
                                          refuse_clashes, write_operators_config)
from fmnist_edge.folders import copy_as_is, put_in_place, same_bytes, staged, swapped_folder
from fmnist_edge.idx import load_split
from fmnist_edge.spec import MANIFEST_NAME, MODELS, ORT_SUFFIX, export_owns, ort_name
from fmnist_edge.train.config import LATEST_TRAIN_POINTER

LATEST_POINTER = Path(LATEST_TRAIN_POINTER)


def default_checkpoints() -> list[Path]:
    """The checkpoints of the latest plain `fmnist-edge train` run."""
    train_dir = Path("runs/train")
    if LATEST_POINTER.is_file():
        try:
            train_dir = Path(json.loads(LATEST_POINTER.read_text())["train_dir"])
        except (ValueError, KeyError, TypeError, OSError):
            raise FmnistEdgeError(f"{LATEST_POINTER} is unreadable; name the checkpoints to export") from None
    found = [p for p in (train_dir / "autoencoder" / "model.pt", train_dir / "classifier" / "model.pt") if p.is_file()]
    if not found:
        raise FmnistEdgeError(f"no trained models in {train_dir}: run `fmnist-edge train` first, "
                              "or name checkpoints: fmnist-edge export CKPT...")
    return found


def load_calibration(source: Path | None, size: int, data_dir=None) -> np.ndarray:
    """Calibration images as float32 (N, 1, 28, 28) in [0, 1]: from a .npy file, or the first
    `size` images of the Fashion-MNIST *training* split (never the test set)."""
    if source is not None:
        if not source.is_file():
            raise FmnistEdgeError(f"calibration set {source}: {'not a file' if source.exists() else 'no such file'}")
        try:
            with open(source, "rb") as f:
                npy = f.read(6) == b"\x93NUMPY"  # else numpy reads it as a pickle and says so
            if not npy:
                raise FmnistEdgeError(f"calibration set {source}: not a .npy file (numpy.save writes one)")
            arr = np.load(source, allow_pickle=False)
        except FmnistEdgeError:
            raise
        except Exception as exc:  # numpy's own messages run to advice on allow_pickle: the first clause
            reason = str(exc).split(";")[0].split(". ")[0][:120]
            raise FmnistEdgeError(f"calibration set {source}: not a numpy array file ({type(exc).__name__}: "
                                  f"{reason})") from None
        if arr.dtype.kind not in "uif":  # strings, booleans, complex, structured records
            raise FmnistEdgeError(f"calibration set {source}: holds {arr.dtype} values; expected pixel values "
                                  "(uint8, or floats in [0, 1])")
        if arr.ndim == 3:
            arr = arr[:, None]
        if arr.ndim != 4 or arr.shape[1:] != (1, 28, 28) or len(arr) == 0:
            raise FmnistEdgeError(f"calibration set {source}: expected images (N, 28, 28) or (N, 1, 28, 28), "
                                  f"got shape {arr.shape}")
        arr = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise FmnistEdgeError(f"calibration set {source}: values must lie in [0, 1] (or be uint8)")
        return arr[:size]

    images = load_split("train", data_dir).images[:size]
    return (images.astype(np.float32) / 255.0)[:, None]


def _carry_over(target: Path, staging: Path, fresh: dict, listed: dict, log=print) -> dict:
    """Copy the target's other own files (samples, models not re-exported) into staging; returns
    their manifest entries. An int8 file whose fp32 model was just exported anew, to other bytes,
    is left behind: it was made from the old one; so are the ORT-format twins of every model left
    behind or replaced by other bytes,
    and the operators config is written again for the twins that stay. What is not an export's
    own stays where it is, uncopied. `fresh`: the entries just exported; `listed`: the target's."""
    kept: dict = {}
    replaced = set(fresh)
    if not target.is_dir():
        return kept
    own = export_owns(listed)
    # A model exported again to the same bytes (the same checkpoint) leaves its int8 file and twins valid.
    changed = {name for name in replaced if not same_bytes(target / name, staging / name)}
    stale = {spec.int8_filename for spec in MODELS.values() if spec.filename in changed}
    stale |= {ort_name(name) for name in changed | stale if is_ort_entry(listed.get(ort_name(name), {}))}
    config_listed = is_ort_entry(listed.get(OPERATORS_CONFIG, {}))
    for item in target.iterdir():
        if item.name in replaced or item.name == MANIFEST_NAME or not own(item.name):
            continue
        if item.name == OPERATORS_CONFIG and config_listed:
            continue  # written again below, for the twins that stay
        if item.name in stale:
            again = "`fmnist-edge to-ort`" if item.name.endswith(ORT_SUFFIX) else "--quantize"
            log(f"dropping {item.name}: made from the {item.name.split('.')[0]} this export replaces "
                f"({again} makes a new one)")
            continue
        copy_as_is(item, staging / item.name)
        if item.name in listed:
            entry = {k: v for k, v in listed[item.name].items() if k not in ("size_bytes", "sha256")}
            spec = MODELS.get(entry.get("kind", ""))
            fp32 = fresh.get(spec.filename, {}) if spec else {}
            if fp32 and entry.get("checkpoint_sha256") and fp32.get("checkpoint_sha256") == entry["checkpoint_sha256"]:
                entry["checkpoint"] = fp32["checkpoint"]  # the same checkpoint, exported from where it lies now
            kept[item.name] = entry
    if config_listed:
        twins = sorted(n for n, e in kept.items() if is_ort_entry(e) and n.endswith(ORT_SUFFIX))
        if twins:
            write_operators_config([staging / n for n in twins], staging / OPERATORS_CONFIG)
            kept[OPERATORS_CONFIG] = {**listed[OPERATORS_CONFIG], "models": twins}
            if twins != listed[OPERATORS_CONFIG].get("models"):
                log(f"rewriting {OPERATORS_CONFIG} for the ORT-format files kept: {', '.join(twins)}")
        else:
            log(f"dropping {OPERATORS_CONFIG}: no ORT-format file is left")
    return kept


def _listed(folder: Path) -> dict:
    """The files an export folder's manifest lists (none when it has no manifest)."""
    data = manifest.read(folder) if folder.is_dir() else None
    return data["files"] if data else {}


def export(checkpoints: list[Path], out_dir: Path, quantize: bool = False, method: str | None = None,
           calibration: Path | None = None, calibration_size: int | None = None, data_dir=None,
           validate: bool = True, ort_platform: str | None = None, full_range: bool = False, log=print) -> dict:
    """Export, quantize, validate and install; returns the written manifest. With `ort_platform`,
    every model also gets its ORT-format twin (ort_format.add_twins), in the same swap."""
    from fmnist_edge.export.onnx_export import export_checkpoint
    from fmnist_edge.export.quantize import DEFAULT_METHOD, QuantizeConfig, quantize_model
    from fmnist_edge.runtime.session import OnnxModel

    qcfg = QuantizeConfig(method=DEFAULT_METHOD if method is None else method, full_range=full_range,
                          **({} if calibration_size is None else {"calibration_size": calibration_size}))
    qcfg.check()
    if ort_platform is not None:
        check_platform(ort_platform)
    quantize = quantize or method is not None
    named = "--calibration" if calibration is not None else "--calibration-size" if calibration_size is not None else None
    if named and not (quantize and qcfg.needs_calibration):
        # Said, not ignored: a user who names a calibration set expects it to be used.
        why = f"{qcfg.method} does not calibrate" if quantize else "nothing is quantized without --quantize"
        raise UsageError(f"{named} is used by the static methods (qdq, qoperator, linear) only; {why}")
    from fmnist_edge.train.checkpoint import load_model

    kinds: dict[str, str] = {}
    for ckpt in checkpoints:  # a missing, foreign or mismatched checkpoint is refused before anything is written
        kind = load_model(ckpt)[1]["model_config_obj"].kind
        if kind in kinds:  # the second would silently replace the first's models
            raise FmnistEdgeError(f"{ckpt} and {kinds[kind]} are both {with_article(kind)}; export one of them")
        kinds[kind] = str(ckpt)
    out_dir, shown = swapped_folder(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # it would be swapped out for a folder of models
        raise FmnistEdgeError(f"{shown}: exists and is not a folder; choose another --out")
    listed = _listed(out_dir)  # the previous export's files: what is carried over, what is its own
    calib = None  # loaded before anything is exported: a bad set is refused at once
    if quantize and qcfg.needs_calibration:
        calib = load_calibration(calibration, qcfg.calibration_size, data_dir)
    test = load_split("test", data_dir, expect_full=True) if validate else None  # as early: no data, no export
    with staged(out_dir, shown, "export to") as staging:
        entries: dict[str, dict] = {}
        for ckpt in checkpoints:
            log(f"exporting {ckpt}")
            entries.update(export_checkpoint(Path(ckpt), staging))
        if quantize:
            for name, entry in list(entries.items()):
                spec = MODELS[entry["kind"]]
                log(f"quantizing {name} ({qcfg.method})")
                model_calib = calib
                if calib is not None and spec.inputs[0].name == "latent":
                    # a decoder is calibrated on what the fp32 encoder (exported above) makes of the images
                    encoder = OnnxModel(staging / MODELS["encoder"].filename, "encoder", require_manifest=False)
                    model_calib = encoder.run(calib, batch_size=1000)
                details = quantize_model(staging / name, staging / spec.int8_filename, qcfg, model_calib)
                entries[spec.int8_filename] = {**entry, **details}
        entries = {**_carry_over(out_dir, staging, entries, listed, log), **entries}
        if ort_platform is not None:
            refuse_clashes(staging, entries, shown=shown)  # a file carried over but not ours
            add_twins(staging, entries, ort_platform, log)
        if validate:
            from fmnist_edge.export.validate import validate_folder

            log("validating against PyTorch on the test set")
            report = validate_folder(staging, data_dir=data_dir, entries=entries, raise_on_failure=True, test=test)
            for name, figures in report["models"].items():
                entries[name]["validation"] = figures
        written = manifest.write(staging, entries, producer="fmnist-edge")
        data = json.loads(written.read_text())
        put_in_place(staging, out_dir, export_owns(listed), last=(MANIFEST_NAME,))
        return data
