"""The torch-free spec of the exported models, read by training, export, validation and runtime.

Every exported graph takes and gives exactly what is written here, so the runtime never
has to guess: names, shapes, value ranges, class names and tolerances live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 28

# Inputs are float32 in [0, 1], light garment on black, exactly as Fashion-MNIST's bytes / 255.
# Any normalisation the network wants happens inside the graph.
INPUT_LAYOUT = "NCHW float32 [batch,1,28,28] in [0,1], light garment on black background"

OPSET = 17


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # "batch" marks the dynamic axis; ints are fixed, a str names a size in metadata
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One exported model: its file stem, its input and output tensors."""

    kind: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def filename(self) -> str:
        return f"{self.kind}.onnx"

    @property
    def int8_filename(self) -> str:
        return f"{self.kind}.int8.onnx"

    def file_names(self, int8: bool = False) -> tuple[str, str]:
        """The names a folder may hold this model under, in order of preference: the ONNX file,
        then its ORT-format twin (`fmnist-edge to-ort`), which a device's minimal build reads."""
        onnx_name = self.int8_filename if int8 else self.filename
        return onnx_name, ort_name(onnx_name)


def ort_name(onnx_name: str) -> str:
    """classifier.int8.onnx -> classifier.int8.ort"""
    return onnx_name.removesuffix(".onnx") + ORT_SUFFIX


ORT_SUFFIX = ".ort"

IMAGE = TensorSpec("image", ("batch", 1, IMAGE_SIZE, IMAGE_SIZE), 0.0, 1.0)
LATENT = TensorSpec("latent", ("batch", "n"))
RECONSTRUCTION = TensorSpec("reconstruction", ("batch", 1, IMAGE_SIZE, IMAGE_SIZE), 0.0, 1.0)
LOGITS = TensorSpec("logits", ("batch", NUM_CLASSES))

ENCODER = ModelSpec("encoder", (IMAGE,), (LATENT,))
DECODER = ModelSpec("decoder", (LATENT,), (RECONSTRUCTION,))
CLASSIFIER = ModelSpec("classifier", (IMAGE,), (LOGITS,))
MODELS: dict[str, ModelSpec] = {m.kind: m for m in (ENCODER, DECODER, CLASSIFIER)}

MANIFEST_NAME = "manifest.json"
OPERATORS_CONFIG = "required_operators.config"  # the operators an ORT-format twin needs (`to-ort`)
SAMPLES_FOLDER = "samples"  # the demo pictures beside the shipped models


def export_owns(listed: Iterable[str] = ()) -> Callable[[str], bool]:
    """Whether a name in an export folder is the export's own: a model or its twin (any kind, fp32
    or int8), the manifest, the operators config, the samples, or a file its manifest lists
    (`listed`). Only these are carried into a new version; anything else there is the user's."""
    names = {MANIFEST_NAME, OPERATORS_CONFIG, SAMPLES_FOLDER, *listed}
    for spec in MODELS.values():
        for name in (spec.filename, spec.int8_filename):
            names |= {name, ort_name(name)}
    return names.__contains__

# Metadata keys written into every exported ONNX file (values are strings).
META_PRODUCER = "fmnist-edge"
# How an int8 file was made ("weights", "qdq", ...); the runtime reads it to pick session options.
META_QUANTIZATION = "fmnist_edge.quantization"
# The calibrated int8 methods, whose files run ONNX Runtime's uint8 x int8 kernels (export/quantize.py).
STATIC_QUANTIZATION_METHODS = ("qdq", "qoperator", "linear")

# ONNX Runtime intra-op threads a caller may ask for: each is a real thread, and a typo of
# 100000 would take the machine's memory.
MAX_THREADS = 256

# Validation bounds (issue: export).
FP32_MAX_ABS_DIFF = 1e-4
INT8_MAX_ACCURACY_DROP_PP = 0.3
INT8_MIN_TOP1_AGREEMENT = 0.995
