"""Build the tiny ONNX test fixture in tests/fixtures/ (torch-free: numpy + onnx + ORT's quantizer).

The graphs honour fmnist_edge.spec (tensor names, dynamic batch axis, shapes) but are small
linear models fitted on the real training set, so their answers mean something:
- classifier.onnx: ridge regression on pixels, [batch,1,28,28] -> logits [batch,10] (~80% accuracy)
- encoder.onnx / decoder.onnx: PCA with n=8 components, a linear autoencoder
- classifier.int8.onnx: classifier.onnx after ORT dynamic int8 quantization
- wrong-shape/classifier.onnx: takes [batch,1,32,32], for the runtime's refusal test
Usage: python tools/make_fixture.py [--out tests/fixtures] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fmnist_edge import manifest  # noqa: E402
from fmnist_edge.idx import load_split  # noqa: E402
from fmnist_edge.spec import CLASS_NAMES, INPUT_LAYOUT, META_PRODUCER, NUM_CLASSES, OPSET  # noqa: E402

N_LATENT = 8
LOGIT_SCALE = 12.0  # ridge outputs are near one-hot; scaled, their softmax looks like a classifier's
IR_VERSION = 9  # old enough for any onnxruntime >= 1.17


def _model(name: str, kind: str, nodes, inputs, outputs, inits, n: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, producer_name=META_PRODUCER,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    meta = {"fmnist_edge.kind": kind, "class_names": json.dumps(list(CLASS_NAMES)), "input_layout": INPUT_LAYOUT,
            "n": str(n), "fixture": "linear test fixture, not the real model"}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def _image_input(size: int = 28):
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, size, size])


def _init(name: str, array: np.ndarray):
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def classifier(w: np.ndarray, b: np.ndarray, size: int = 28) -> onnx.ModelProto:
    # MatMul + Add (not Gemm) so that ORT's dynamic quantizer turns it into MatMulInteger.
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1),  # (B, 784)
             helper.make_node("MatMul", ["flat", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["logits"])]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])
    return _model("classifier", "classifier", nodes, [_image_input(size)], [out],
                  [_init("W", w), _init("b", b)], N_LATENT)


def encoder(components: np.ndarray, mean: np.ndarray) -> onnx.ModelProto:
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
             helper.make_node("Sub", ["flat", "mean"], ["centred"]),
             helper.make_node("MatMul", ["centred", "V"], ["latent"])]  # (B, n)
    out = helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", N_LATENT])
    return _model("encoder", "encoder", nodes, [_image_input()], [out],
                  [_init("mean", mean), _init("V", components)], N_LATENT)


def decoder(components: np.ndarray, mean: np.ndarray) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["latent", "Vt"], ["proj"]),
             helper.make_node("Add", ["proj", "mean"], ["flat"]),
             helper.make_node("Clip", ["flat", "zero", "one"], ["clipped"]),
             helper.make_node("Reshape", ["clipped", "shape"], ["reconstruction"])]  # (B, 1, 28, 28)
    inp = helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", N_LATENT])
    out = helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["batch", 1, 28, 28])
    inits = [_init("Vt", components.T), _init("mean", mean), _init("zero", np.array(0.0)),
             _init("one", np.array(1.0)), numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "shape")]
    return _model("decoder", "decoder", nodes, [inp], [out], inits, N_LATENT)


def fit(data_dir=None) -> dict:
    train = load_split("train", data_dir)
    x = train.images.reshape(len(train.images), -1).astype(np.float64) / 255.0  # (60000, 784)
    y = np.eye(NUM_CLASSES)[train.labels]
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(xb.T @ xb + 10.0 * np.eye(xb.shape[1]), xb.T @ y) * LOGIT_SCALE  # (785, 10)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x[::6] - mean, full_matrices=False)
    return {"w": w[:-1], "b": w[-1], "mean": mean, "components": vt[:N_LATENT].T}  # components (784, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    p = fit(args.data_dir)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(classifier(p["w"], p["b"]), out / "classifier.onnx")
    onnx.save(encoder(p["components"], p["mean"]), out / "encoder.onnx")
    onnx.save(decoder(p["components"], p["mean"]), out / "decoder.onnx")
    quantize_dynamic(out / "classifier.onnx", out / "classifier.int8.onnx", weight_type=QuantType.QInt8)
    files = {"classifier.onnx": {"kind": "classifier", "precision": "fp32", "n": N_LATENT},
             "classifier.int8.onnx": {"kind": "classifier", "precision": "int8", "n": N_LATENT},
             "encoder.onnx": {"kind": "encoder", "precision": "fp32", "n": N_LATENT},
             "decoder.onnx": {"kind": "decoder", "precision": "fp32", "n": N_LATENT}}
    manifest.write(out, files, producer="tools/make_fixture.py", n=N_LATENT, fixture=True)

    wrong = out / "wrong-shape"
    wrong.mkdir(exist_ok=True)
    w32 = np.zeros((32 * 32, NUM_CLASSES), np.float32)
    onnx.save(classifier(w32, np.zeros(NUM_CLASSES), size=32), wrong / "classifier.onnx")
    for path in sorted(out.rglob("*.onnx")):
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
