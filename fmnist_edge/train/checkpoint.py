"""Checkpoints: plain-data configs plus tensors, saved atomically, loaded with weights_only=True."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from fmnist_edge.errors import FmnistEdgeError, ModelError, with_article
from fmnist_edge.fileio import write_with
from fmnist_edge.train.config import REPORT_DECODER_DILATION, ModelConfig, TrainConfig, from_dict, to_dict
from fmnist_edge.train.models import build_model, fold_batch_norm

FORMAT_KEY = "fmnist_edge_checkpoint"
FORMAT_VERSION = 1
# Written instead of 1 for an autoencoder with --decoder-dilation 1: its weights have the report
# decoder's shapes, so a reader from before the option would load them, silently, into the
# dilated decoder. Those readers refuse version 2.
UNDILATED_FORMAT_VERSION = 2
READABLE_VERSIONS = (FORMAT_VERSION, UNDILATED_FORMAT_VERSION)
MODEL_FILE = "model.pt"  # the finished model (best weights), what evaluate and export read
RESUME_FILE = "last.pt"  # the training state after the last finished epoch, for --resume


def save(path: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig, model: nn.Module,
         **extra) -> None:
    undilated = model_cfg.decoder_dilation != REPORT_DECODER_DILATION
    payload = {
        FORMAT_KEY: UNDILATED_FORMAT_VERSION if undilated else FORMAT_VERSION,
        "model_config": to_dict(model_cfg),
        "train_config": to_dict(train_cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    write_with(path, lambda tmp: _torch_save(payload, tmp))


def _torch_save(payload: dict, tmp: Path) -> None:
    """torch.save through a Python file, so that a failed write (disk full, file too large)
    surfaces as the OSError it is, not as torch's RuntimeError wrapped around it."""
    with open(tmp, "wb") as f:
        try:
            torch.save(payload, f)
        except RuntimeError as exc:
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's archive; the zip-less legacy format


def _check_magic(path: Path) -> None:
    """Refuse a file that is neither format torch.load reads, before torch's message (advice
    about weights_only) can stand in for "this is a text file"."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror})") from None
    if not head:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint (empty file)")
    if head != ZIP_MAGIC and not head.startswith(PICKLE_MAGIC):
        raise ModelError(f"{path}: not a readable PyTorch checkpoint (neither a zip archive nor a pickle)")


def _unpickling_reason(exc: pickle.UnpicklingError) -> str:
    """What the weights-only unpickler met. torch's message opens with advice to load unsafely;
    the reason is the line naming a blocked global, else what follows "WeightsUnpickler error:"."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = next((line for line in lines if "global" in line.lower()), None)
    if named:
        return named
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            after = line.split("WeightsUnpickler error:", 1)[1].strip()
            return after or (lines[i + 1] if i + 1 < len(lines) else "unpickling refused")
    return lines[0] if lines else "unpickling refused"


def refuse_non_finite(model: torch.nn.Module, path: str | Path) -> None:
    """A model whose weights hold NaN or infinity (a diverged run's) answers nothing: refused."""
    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise ModelError(f"{path}: its weights hold NaN or infinite values ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); it cannot be used: train it again")


def load_raw(path: str | Path) -> dict:
    """The checkpoint's dict. Refuses anything that is not an fmnist-edge checkpoint, and
    never runs pickled code (weights_only=True)."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not a checkpoint; name the model.pt in it")
    if not path.exists():
        raise ModelError(f"{path}: no such checkpoint")
    if not path.is_file():  # /dev/null, a pipe: a checkpoint is a file
        raise ModelError(f"{path}: not a regular file, so not a checkpoint")
    _check_magic(path)
    try:
        with warnings.catch_warnings():  # torch warns of an odd pickle protocol: one error line is ours to give
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path}: refused, not a plain-data checkpoint ({_unpickling_reason(exc)[:160]})") from None
    except Exception as exc:  # zip errors, truncation, EOF: all mean "not a checkpoint we can read"
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get(FORMAT_KEY) not in READABLE_VERSIONS:
        raise ModelError(f"{path}: not an fmnist-edge checkpoint")
    return payload


def load_model(path: str | Path, expect_kind: str | None = None,
               training_form: bool = False) -> tuple[nn.Module, dict]:
    """Rebuild the model from the file alone; returns (model in eval mode, checkpoint dict).

    A resume point of a `--batch-norm` run holds the training form (NormReLUs); it is folded into
    the report's architecture, as model.pt is, unless `training_form` (what --resume needs)."""
    payload = load_raw(path)
    normed = bool(payload.get("batch_norm"))
    try:
        model_cfg = from_dict(ModelConfig, payload["model_config"])
        model = build_model(model_cfg, batch_norm=normed)
    except FmnistEdgeError as exc:  # a config out of range: say which
        raise ModelError(f"{path}: its model config is invalid ({exc})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: its model config is missing or malformed ({type(exc).__name__}: {exc})") from None
    if "state_dict" not in payload:
        raise ModelError(f"{path}: holds no weights (state_dict)")
    try:
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:  # names or shapes that differ from the architecture
        raise ModelError(f"{path}: its weights do not fit the architecture its config describes "
                         f"({type(exc).__name__})") from None
    if expect_kind is not None and model_cfg.kind != expect_kind:
        raise ModelError(f"{path}: is {with_article(model_cfg.kind)} checkpoint, expected {with_article(expect_kind)}")
    try:
        train_cfg = from_dict(TrainConfig, payload.get("train_config", {}))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: its training config is malformed ({type(exc).__name__}: {exc})") from None
    payload["model_config_obj"], payload["train_config_obj"] = model_cfg, train_cfg
    model.eval()
    if normed and not training_form:
        fold_batch_norm(model)
    return model, payload


def encoder_shape(path: str | Path) -> tuple[int, float]:
    """(n, p) of an autoencoder checkpoint: a classifier built on its encoder takes that shape."""
    saved = load_raw(path).get("model_config", {})
    if saved.get("kind") != "autoencoder":
        raise FmnistEdgeError(f"{path}: is not an autoencoder checkpoint")
    return saved["n"], saved["dropout"]
