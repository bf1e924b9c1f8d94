"""Checkpoint -> ONNX: encoder, decoder and classifier graphs that follow fmnist_edge.spec."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from fmnist_edge import __version__
from fmnist_edge.errors import ModelError
from fmnist_edge.fileio import sha256_file
from fmnist_edge.spec import (CLASS_NAMES, CLASSIFIER, DECODER, ENCODER, IMAGE_SIZE, INPUT_LAYOUT, META_PRODUCER,
                              OPSET, ModelSpec)
from fmnist_edge.train.checkpoint import load_model


def _example_input(spec: ModelSpec, n: int) -> torch.Tensor:
    if spec.inputs[0].name == "latent":
        return torch.rand(2, n)
    return torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)


def _metadata(spec: ModelSpec, n: int, payload: dict, ckpt_sha: str) -> dict[str, str]:
    metrics = {k: v for k, v in (payload.get("metrics") or {}).items() if k not in ("confusion",)}
    return {
        "fmnist_edge.kind": spec.kind,
        "fmnist_edge.version": __version__,
        "class_names": json.dumps(list(CLASS_NAMES)),
        "input_layout": INPUT_LAYOUT if spec.inputs[0].name == "image" else f"float32 [batch,{n}] latent",
        "output_layout": {"latent": f"float32 [batch,{n}]", "logits": "float32 [batch,10] logits",
                          "reconstruction": INPUT_LAYOUT}[spec.outputs[0].name],
        "n": str(n),
        "metrics": json.dumps(metrics),
        "model_config": json.dumps(payload.get("model_config", {})),
        "checkpoint_sha256": ckpt_sha,
    }


def export_module(module: nn.Module, spec: ModelSpec, n: int, path: Path, metadata: dict[str, str]) -> None:
    """Export one module to `path` (weights inside, dynamic batch axis), check it, add metadata."""
    module = module.eval()
    example = _example_input(spec, n)
    in_name, out_name = spec.inputs[0].name, spec.outputs[0].name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: fast (0.1 s), exact for these layers, and checked below.
        torch.onnx.export(module, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(path))
    model.producer_name = META_PRODUCER
    model.producer_version = __version__
    model.doc_string = f"fmnist-edge {spec.kind}: {spec.inputs[0].name} -> {spec.outputs[0].name}"
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.save(model, str(path))


def export_checkpoint(ckpt: Path, out_dir: Path) -> dict[str, dict]:
    """Export one checkpoint into `out_dir`; returns manifest entries by file name."""
    model, payload = load_model(ckpt)
    cfg = payload["model_config_obj"]
    ckpt_sha = sha256_file(ckpt)
    entries = {}
    if cfg.kind == "autoencoder":
        parts = ((ENCODER, model.encoder), (DECODER, model.decoder))
    elif cfg.kind == "classifier":
        parts = ((CLASSIFIER, model),)
    else:  # pragma: no cover - load_model refuses other kinds
        raise ModelError(f"{ckpt}: cannot export a {cfg.kind}")
    for spec, module in parts:
        path = out_dir / spec.filename
        export_module(module, spec, cfg.n, path, _metadata(spec, cfg.n, payload, ckpt_sha))
        entries[spec.filename] = {"kind": spec.kind, "precision": "fp32", "n": cfg.n,
                                  "checkpoint": str(ckpt), "checkpoint_sha256": ckpt_sha,
                                  "metrics": {k: v for k, v in (payload.get("metrics") or {}).items()
                                              if k in ("test_accuracy", "test_mse", "epochs", "best_val_loss")},
                                  "train_config": payload.get("train_config", {})}
    return entries
