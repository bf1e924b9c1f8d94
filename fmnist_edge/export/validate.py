"""`fmnist-edge validate DIR`: every exported model in ONNX Runtime against PyTorch, on the test set.

Checks names, then shapes, then values; collects every failure and raises one
ValidationFailed naming them all. PyTorch is used when it is importable and the source
checkpoint is still on disk; without it the ONNX-only figures (accuracy, agreement of int8
with fp32, reconstruction MSE) are still checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_edge import manifest
from fmnist_edge.errors import FmnistEdgeError, ModelError, ValidationFailed
from fmnist_edge.spec import FP32_MAX_ABS_DIFF, INT8_MAX_ACCURACY_DROP_PP, INT8_MIN_TOP1_AGREEMENT, MODELS

BATCH = 1000
# An int8 encoder/decoder may lose a little reconstruction quality, not more than this (relative).
INT8_MAX_MSE_INCREASE = 0.05


def _run(model, x: np.ndarray) -> np.ndarray:
    return model.run(x, batch_size=BATCH)


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _why_not_compared(entry: dict) -> str | None:
    """Why an fp32 model's checkpoint cannot give PyTorch's outputs here, or None when it can."""
    ckpt = entry.get("checkpoint")
    if not ckpt:
        return "its manifest entry names no source checkpoint"
    if not Path(ckpt).is_file():
        where = "" if Path(ckpt).is_absolute() else ", looked for from the working folder"
        return f"its checkpoint {ckpt} is not on disk{where}"
    return None


def _torch_outputs(entry: dict, x: np.ndarray, kind: str):
    """PyTorch's outputs for the same input, from the checkpoint `_why_not_compared` found."""
    import torch

    from fmnist_edge.fileio import sha256_file
    from fmnist_edge.train.checkpoint import load_model

    ckpt = Path(entry["checkpoint"])
    if entry.get("checkpoint_sha256") not in (None, sha256_file(ckpt)):  # retrained since: another model
        raise FmnistEdgeError(f"{ckpt}: changed since the model was exported from it (its sha256 differs from "
                              "the manifest's); export again, or move it away to validate without PyTorch")

    model, _ = load_model(ckpt)
    module = {"encoder": getattr(model, "encoder", None), "decoder": getattr(model, "decoder", None),
              "classifier": model}[kind]
    with torch.no_grad():
        t = torch.from_numpy(x)
        return torch.cat([module(t[i:i + BATCH]) for i in range(0, len(t), BATCH)]).numpy()


def validate_folder(folder: str | Path, data_dir=None, entries: dict | None = None,
                    raise_on_failure: bool = True, test=None) -> dict:
    """Validate every model in `folder`; returns {"models": {file: figures}, "failures": [...]}.
    `test`: the test split, when the caller has read it already."""
    from fmnist_edge.idx import load_split

    folder = Path(folder)
    if entries is None:
        manifest.require_folder(folder)
        data = manifest.read(folder)
        if data is None:
            raise FmnistEdgeError(f"{folder}: no manifest.json; is this an fmnist-edge export folder?")
        entries = data["files"]
        for name in entries:
            manifest.verify(folder / name)
    if not any(entry.get("kind") in MODELS and name.endswith(".onnx") for name, entry in entries.items()):
        # "all bounds met" would say nothing of nothing
        raise FmnistEdgeError(f"{folder}: its manifest.json lists no ONNX models; nothing to validate")
    if test is None:
        test = load_split("test", data_dir, expect_full=True)  # validation figures are on the whole test set
    n_images = len(test.labels)
    x = (test.images.astype(np.float32) / 255.0)[:, None]
    labels = test.labels
    failures: list[str] = []
    with_torch = _torch_importable()
    notes = [] if with_torch else ["not compared with PyTorch: PyTorch is not installed (the train extra)"]
    report: dict[str, dict] = {}
    outputs: dict[str, np.ndarray] = {}
    latents: dict[str, np.ndarray] = {}

    # fp32 before int8, encoders before the decoders that read their latents.
    rank = {"encoder": 0, "decoder": 1, "classifier": 2}
    order = sorted(entries, key=lambda k: (entries[k].get("precision") != "fp32", rank.get(entries[k].get("kind"), 3)))
    for name in order:
        entry = entries[name]
        kind = entry.get("kind")
        if kind not in MODELS or not name.endswith(".onnx"):
            continue
        from fmnist_edge.runtime.api import mirror_averaged
        from fmnist_edge.runtime.session import OnnxModel

        try:  # the runtime's own loader: names, shapes and the manifest checked as users get them
            session = OnnxModel(folder / name, kind, require_manifest=False)
        except ModelError as exc:
            failures.append(str(exc))
            continue
        figures: dict = {"precision": entry.get("precision", "fp32"), "images": n_images}
        if kind == "decoder":
            # The decoder's input comes from the encoder of the same precision (fp32 encoder otherwise).
            source = latents.get(entry.get("precision"), latents.get("fp32"))
            if source is None:
                notes.append(f"{name}: not run: the folder holds no encoder to give it latents")
                continue
            model_in = source
        else:
            model_in = x
        out = _run(session, model_in)
        if not np.isfinite(out).all():  # NaN would pass every bound below: comparisons with it are false
            failures.append(f"{name}: gives NaN or infinite outputs on the test images")
        outputs[name] = out
        if kind == "encoder":
            latents[entry.get("precision", "fp32")] = out
        reference = None
        if figures["precision"] == "fp32" and with_torch:
            why_not = _why_not_compared(entry)
            if why_not is None:
                reference = _torch_outputs(entry, model_in, kind)
            else:
                notes.append(f"{name}: not compared with PyTorch: {why_not}")
        if reference is not None:
            diff = float(np.abs(out - reference).max())
            figures["max_abs_diff_vs_torch"] = diff
            if not diff <= FP32_MAX_ABS_DIFF:
                failures.append(f"{name}: max |ONNX - PyTorch| = {diff:.2e} > {FP32_MAX_ABS_DIFF:.0e}")
            if kind == "classifier":
                agree = float((out.argmax(1) == reference.argmax(1)).mean())
                figures["top1_agreement_vs_torch"] = agree
                if agree < 1.0:
                    failures.append(f"{name}: top-1 agrees with PyTorch on only {agree:.4%}")
        if kind == "classifier":
            figures["accuracy"] = float((out.argmax(1) == labels).mean())
            averaged = mirror_averaged(session, model_in, BATCH)  # what `classify --tta` gives
            figures["accuracy_mirror_averaged"] = float((averaged.argmax(1) == labels).mean())
        if kind == "decoder":
            figures["reconstruction_mse"] = float(((out - x) ** 2).mean())
            if not (out.min() >= 0.0 and out.max() <= 1.0):
                failures.append(f"{name}: reconstruction leaves [0, 1]")
        report[name] = figures

    # int8 against its fp32 twin
    for name, figures in report.items():
        if figures["precision"] != "int8":
            continue
        kind = entries[name]["kind"]
        twin = MODELS[kind].filename
        if twin not in report:
            continue
        if kind == "classifier":
            agree = float((outputs[name].argmax(1) == outputs[twin].argmax(1)).mean())
            drop_pp = 100 * (report[twin]["accuracy"] - figures["accuracy"])
            figures.update(top1_agreement_vs_fp32=agree, accuracy_drop_pp=drop_pp)
            if drop_pp > INT8_MAX_ACCURACY_DROP_PP:
                failures.append(f"{name}: accuracy {drop_pp:.2f} pp below fp32 (bound {INT8_MAX_ACCURACY_DROP_PP})")
            if agree < INT8_MIN_TOP1_AGREEMENT:
                failures.append(f"{name}: top-1 agrees with fp32 on {agree:.2%} (bound "
                                f"{INT8_MIN_TOP1_AGREEMENT:.1%})")
        elif kind == "decoder":
            base = report[twin]["reconstruction_mse"]
            rise = figures["reconstruction_mse"] / base - 1 if base > 0 else 0.0
            figures["reconstruction_mse_rise_vs_fp32"] = rise
            if rise > INT8_MAX_MSE_INCREASE:
                failures.append(f"{name}: reconstruction MSE {rise:.1%} above fp32 (bound "
                                f"{INT8_MAX_MSE_INCREASE:.0%})")
        elif kind == "encoder":
            figures["max_abs_diff_vs_fp32"] = float(np.abs(outputs[name] - outputs[twin]).max())

    # ORT-format twins (`fmnist-edge to-ort`) against the ONNX files they came from
    from fmnist_edge.export.ort_format import validate_ort_entries

    ort_report, ort_failures = validate_ort_entries(folder, entries, test=(x, labels))
    report.update(ort_report)
    failures.extend(ort_failures)
    result = {"models": report, "failures": failures, "notes": notes}
    if failures and raise_on_failure:
        raise ValidationFailed(f"{len(failures)} validation bound(s) missed: " + "; ".join(failures))
    return result
