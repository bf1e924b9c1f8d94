"""PyTorch eager on the same weights as an exported classifier: the benchmark's baseline.

The weights come from a checkpoint, or, on a machine that has only the exported files, from
the ONNX file itself: the exporter keeps the PyTorch parameter names for its initializers.
"""

from __future__ import annotations

import json
from pathlib import Path

from fmnist_edge.errors import ModelError, with_article


def _initializers(path: Path) -> tuple[dict, dict]:
    """(state dict of the ONNX file's weights, its fmnist-edge metadata)."""
    import onnx
    import torch
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    weights = (i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)  # not the crop's int64s
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in weights}, meta


def model_from_onnx(*paths: Path, expect: str | None = None):
    """Rebuild the PyTorch model that fp32 exports are of: a classifier from classifier.onnx, an
    autoencoder from encoder.onnx and decoder.onnx (their weights are prefixed encoder./decoder.).
    `expect`: the one kind of model the file must be."""
    from fmnist_edge.train.config import ModelConfig, from_dict
    from fmnist_edge.train.models import build_model

    try:
        state, meta = {}, {}
        for path in paths:
            weights, meta = _initializers(path)
            kind = meta.get("fmnist_edge.kind")
            if expect is not None and kind not in (None, expect):
                raise ModelError(f"{path}: is {with_article(kind)} model; the PyTorch baseline is "
                                 f"{with_article(expect)} ({expect}.onnx or its .pt checkpoint)")
            prefix = f"{kind}." if kind in ("encoder", "decoder") else ""
            state.update({prefix + k: v for k, v in weights.items()})
        model = build_model(from_dict(ModelConfig, json.loads(meta["model_config"])))
        model.load_state_dict(state, strict=True)
    except ModelError:
        raise
    except Exception as exc:
        names = ", ".join(str(p) for p in paths)
        raise ModelError(f"{names}: cannot rebuild a PyTorch model from it ({type(exc).__name__})") from None
    return model.eval()


def load_classifier(source: Path):
    """The PyTorch classifier from a checkpoint (.pt) or an fp32 export (.onnx)."""
    if source.suffix == ".onnx":
        return model_from_onnx(source, expect="classifier")
    from fmnist_edge.train.checkpoint import load_model

    return load_model(source, expect_kind="classifier")[0]


def torch_runner(source: Path):
    """(loader, input shape, info) for fmnist_edge.runtime.bench; ImportError without torch."""
    import torch

    load_classifier(source)  # refuse a wrong source before timing anything

    def load(threads: int):  # timed as the start-up: rebuild the model from its file
        torch.set_num_threads(threads)
        model = load_classifier(source)

        def run(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x))

        return run

    return load, (1, 28, 28), {"precision": "fp32", "engine": f"pytorch {torch.__version__} eager",
                               "path": str(source), "size_bytes": source.stat().st_size}
