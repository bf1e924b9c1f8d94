"""int8 quantization with ONNX Runtime's own tools, one config object and one function.

Methods:
- `weights`: int8 weights (symmetric, per output channel) stored with DequantizeLinear;
  the runtime folds them to float at load, so inference runs the fp32 kernels: ~3.5x smaller,
  as fast as fp32. The default, chosen by measurement (see the README).
- `qdq`, `qoperator`: full static quantization (weights and activations), calibrated on
  real training images; int8 kernels, QDQ or QOperator format.
- `linear`: static QDQ on the Gemm (Linear) layers only.
- `dynamic`: weights int8, activations quantized at run time (MatMulInteger / ConvInteger).

The static methods (qdq, qoperator, linear) store 7-bit weights by default (ONNX Runtime's
`reduce_range`): on x86 without VNNI (AVX2 alone, as on many AMD and older Intel CPUs) ONNX
Runtime's uint8 x int8 kernels add pairs of products in 16 bits (VPMADDUBSW), which saturates
with full 8-bit weights, and a file is exported once and run on whatever CPU a device has.
Measured on such a CPU (benchmarks/quantization): the shipped classifier in static QDQ lost 2.42
points of test accuracy with 8-bit weights and 0.31 with 7-bit ones. `full_range` is for files
that will run on VNNI (AVX-512 VNNI, AVX-VNNI) or ARM CPUs alone. `dynamic` keeps 8-bit weights,
with which it lost 0.09 points on the same CPU.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fmnist_edge.errors import FmnistEdgeError, UsageError
from fmnist_edge.spec import META_QUANTIZATION, STATIC_QUANTIZATION_METHODS

METHODS = ("weights", *STATIC_QUANTIZATION_METHODS, "dynamic")
DEFAULT_METHOD = "weights"


@dataclass(frozen=True)
class QuantizeConfig:
    method: str = DEFAULT_METHOD
    per_channel: bool = True
    calibration_size: int = 2000  # training images, never test images
    full_range: bool = False  # 8-bit weights for the static methods: right on VNNI CPUs alone

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--quantize-method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.calibration_size < 10:
            raise UsageError("--calibration-size must be at least 10")
        if self.full_range and not self.needs_calibration:
            raise UsageError(f"--full-range gives the static methods (qdq, qoperator, linear) 8-bit weights; "
                                  f"{self.method} always stores 8-bit weights")

    @property
    def needs_calibration(self) -> bool:
        return self.method in STATIC_QUANTIZATION_METHODS

    @property
    def reduce_range(self) -> bool:
        """7-bit weights: the static methods' default (see the module's docstring)."""
        return self.needs_calibration and not self.full_range

    @property
    def weight_bits(self) -> int:
        return 7 if self.reduce_range else 8


def _quantize_weights_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every Conv/ConvTranspose/Gemm/MatMul weight with int8 + DequantizeLinear."""
    inits = {init.name: init for init in model.graph.initializer}
    weight_axes: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose") and len(node.input) > 1:
            name = node.input[1]
            if name in inits and len(inits[name].dims) >= 2:
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                # Per output channel: axis 0 of Conv [out,in,kh,kw] and Gemm transB [out,in];
                # axis 1 of ConvTranspose [in,out,kh,kw] and of MatMul / Gemm without transB [in,out].
                weight_axes[name] = 0 if (node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b)) else 1
    new_inits, new_nodes = [], []
    for init in model.graph.initializer:
        if init.name not in weight_axes:
            new_inits.append(init)
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        axis = weight_axes[init.name]
        reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
        scale = np.abs(w).max(axis=reduce_axes) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        new_inits += [numpy_helper.from_array(q, init.name + "_int8"),
                      numpy_helper.from_array(scale, init.name + "_scale"),
                      numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), init.name + "_zero")]
        new_nodes.append(helper.make_node("DequantizeLinear", [init.name + "_int8", init.name + "_scale",
                                                               init.name + "_zero"], [init.name],
                                          name=init.name + "_dequantize", axis=axis))
    del model.graph.initializer[:]
    model.graph.initializer.extend(new_inits)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes + nodes)
    return model


class _Calibration:
    """ORT CalibrationDataReader over an array of images, in batches."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int = 100):
        self.input_name, self.images, self.batch, self.pos = input_name, images, batch, 0

    def get_next(self):
        if self.pos >= len(self.images):
            return None
        chunk = self.images[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return {self.input_name: chunk}

    def rewind(self):
        self.pos = 0


def quantize_model(fp32_path: Path, out_path: Path, cfg: QuantizeConfig,
                   calibration: np.ndarray | None = None) -> dict:
    """Write the int8 model of `fp32_path` to `out_path`; returns its manifest details."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg.check()
    model = onnx.load(str(fp32_path))
    input_name = model.graph.input[0].name
    if cfg.method == "weights":
        quantized = _quantize_weights_only(model)
    else:
        with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            raw_out = Path(tmp) / "quantized.onnx"
            if cfg.method == "dynamic":
                quantize_dynamic(str(prepared), str(raw_out), per_channel=cfg.per_channel,
                                 weight_type=QuantType.QInt8)
            else:
                if calibration is None:
                    raise FmnistEdgeError(f"{cfg.method} quantization needs calibration inputs "
                                          f"(the model's input is {input_name!r})")
                ops = ["Gemm", "MatMul"] if cfg.method == "linear" else None
                fmt = QuantFormat.QOperator if cfg.method == "qoperator" else QuantFormat.QDQ
                # uint8 activations, int8 weights: the documented choice for x86 with VNNI.
                quantize_static(str(prepared), str(raw_out), _Calibration(input_name, calibration),
                                quant_format=fmt, op_types_to_quantize=ops, per_channel=cfg.per_channel,
                                reduce_range=cfg.reduce_range,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
            quantized = onnx.load(str(raw_out))
    # Keep the fp32 model's metadata (the quantizer drops it), and say how this one was made.
    source = onnx.load(str(fp32_path))
    del quantized.metadata_props[:]
    for prop in source.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key=META_QUANTIZATION, value=cfg.method)
    quantized.producer_name = source.producer_name
    quantized.producer_version = source.producer_version
    onnx.checker.check_model(quantized)
    onnx.save(quantized, str(out_path))
    counts: dict[str, int] = {}
    for node in quantized.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {"precision": "int8", "quantization": {"method": cfg.method, "per_channel": cfg.per_channel,
                                                  "weight_bits": cfg.weight_bits,
                                                  "calibration_images": len(calibration) if (
                                                      calibration is not None and cfg.needs_calibration) else 0,
                                                  "op_counts": counts}}
