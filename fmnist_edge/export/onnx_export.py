"""Checkpoint -> ONNX: encoder, decoder and classifier graphs that follow fmnist_edge.spec."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
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


def used_input_extent(encoder: nn.Module, size: int = IMAGE_SIZE) -> int:
    """How many leading rows (and columns) of a size x size image the encoder can see.

    Floor-mode pooling drops the last row of an odd map, so the report's encoder never reads
    row and column 27 of the input: 26 x 26 pixels decide every output. Walking the layers
    backwards from the flattened map gives that extent for any stack of convs and pools.
    """
    layers = [m for m in encoder.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    extent = size
    for layer in layers:  # forward pass: the size of the last map
        if isinstance(layer.padding, str):
            return size
        k, s, p, d = (_pair(getattr(layer, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
        extent = (extent + 2 * p - d * (k - 1) - 1) // s + 1
    for layer in reversed(layers):  # backward pass: the input rows the last map depends on
        k, s, p, d = (_pair(getattr(layer, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
        if p:
            return size  # padded layers read the border: nothing to crop
        extent = (extent - 1) * s + d * (k - 1) + 1
    return extent


def _pair(value) -> int:
    value = value if isinstance(value, int) else value[0]
    return int(value)


class CroppedInput(nn.Module):
    """Runs `module` on the pixels it can see. Exact: the same outputs, 10% less work."""

    def __init__(self, module: nn.Module, extent: int):
        super().__init__()
        self.module, self.extent = module, extent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x[:, :, :self.extent, :self.extent])


def _strip_initializer_prefix(graph: onnx.GraphProto, prefix: str) -> None:
    """Name the weights as the checkpoint does ("encoder.net.0.weight", not "module.encoder...."):
    the exporter names initializers after the wrapper's state dict, and baseline.model_from_onnx
    rebuilds the PyTorch model from these names."""
    renamed = {}
    for init in graph.initializer:
        if init.name.startswith(prefix):
            renamed[init.name] = init.name[len(prefix):]
            init.name = renamed[init.name]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]


def _merge_crop_slices(graph: onnx.GraphProto, extent: int) -> None:
    """One Slice over rows and columns instead of the exporter's one per axis (one ONNX Runtime
    node fewer per call). Rewrites only the exact crop it expects: [0:extent] on axis 2, then on
    axis 3, step 1, with constant parameters; anything else is left as it is."""
    image = graph.input[0].name
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def crop_axis(node: onnx.NodeProto) -> int | None:
        """The axis `node` crops to [0:extent], or None if it is anything else."""
        try:
            values = [onnx.numpy_helper.to_array(constants[name].attribute[0].t).tolist() for name in node.input[1:]]
        except (KeyError, IndexError):
            return None
        starts, ends, axes, *steps = values
        ok = starts == [0] and ends == [extent] and len(axes) == 1 and steps in ([], [[1]])
        return axes[0] if ok else None

    first = next((n for n in graph.node if n.op_type == "Slice" and n.input[0] == image), None)
    second = first and next((n for n in graph.node if n.op_type == "Slice" and n.input[0] == first.output[0]), None)
    if second is None or sum(first.output[0] in n.input for n in graph.node) != 1:
        return
    if (crop_axis(first), crop_axis(second)) not in ((2, 3), (3, 2)):
        return
    names = [f"crop.{part}" for part in ("starts", "ends", "axes")]
    for name, values in zip(names, ([0, 0], [extent, extent], [2, 3])):
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    merged = onnx.helper.make_node("Slice", [image, *names], [second.output[0]], name="/crop/Slice")
    position = list(graph.node).index(first)
    own = set(first.input[1:]) | set(second.input[1:])
    graph.node.remove(first)
    graph.node.remove(second)
    graph.node.insert(position, merged)
    used = {name for node in graph.node for name in node.input}
    for name in own - used:  # the two slices' starts, ends and axes, unless something else reads them
        graph.node.remove(constants[name])


def export_module(module: nn.Module, spec: ModelSpec, n: int, path: Path, metadata: dict[str, str]) -> None:
    """Export one module to `path` (weights inside, dynamic batch axis), check it, add metadata."""
    module = module.eval()
    if spec.inputs[0].name == "image":
        encoder = module.encoder if hasattr(module, "encoder") else module
        extent = used_input_extent(encoder)
        if extent < IMAGE_SIZE:
            module = CroppedInput(module, extent)
    example = _example_input(spec, n)
    in_name, out_name = spec.inputs[0].name, spec.outputs[0].name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: fast (0.1 s), exact for these layers, and checked below.
        torch.onnx.export(module, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(path))
    if isinstance(module, CroppedInput):
        _strip_initializer_prefix(model.graph, "module.")
        _merge_crop_slices(model.graph, extent)
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
    else:  # a teacher's architecture is not in the spec: it only trains the classifier that ships
        raise ModelError(f"{ckpt}: is a {cfg.kind}, which is not exported; export the classifier it taught")
    for spec, module in parts:
        path = out_dir / spec.filename
        export_module(module, spec, cfg.n, path, _metadata(spec, cfg.n, payload, ckpt_sha))
        entries[spec.filename] = {"kind": spec.kind, "precision": "fp32", "n": cfg.n,
                                  "checkpoint": str(ckpt), "checkpoint_sha256": ckpt_sha,
                                  "metrics": {k: v for k, v in (payload.get("metrics") or {}).items()
                                              if k in ("test_accuracy", "test_mse", "epochs", "best_val_loss")},
                                  "train_config": payload.get("train_config", {})}
    return entries
