"""PyTorch eager on the same weights as an exported classifier: the benchmark's baseline.

The weights come from a checkpoint, or, on a machine that has only the exported files, from
the ONNX file itself: the exporter keeps the PyTorch parameter names for its initializers.
"""

from __future__ import annotations

import json
from pathlib import Path

from fmnist_edge.errors import ModelError


def classifier_from_onnx(path: Path):
    """Rebuild the PyTorch classifier whose export `path` is (fp32 files only)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from fmnist_edge.train.config import ModelConfig, from_dict
    from fmnist_edge.train.models import build_model

    model_proto = onnx.load(str(path))
    meta = {p.key: p.value for p in model_proto.metadata_props}
    try:
        cfg = from_dict(ModelConfig, json.loads(meta["model_config"]))
        model = build_model(cfg)
        state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model_proto.graph.initializer}
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot rebuild a PyTorch classifier from it ({type(exc).__name__})") from None
    return model.eval()


def load_classifier(source: Path):
    """The PyTorch classifier from a checkpoint (.pt) or an fp32 export (.onnx)."""
    if source.suffix == ".onnx":
        return classifier_from_onnx(source)
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
