"""The Python API to embed: load the exported models once, then classify, encode, reconstruct.

    from fmnist_edge.runtime import FashionClassifier
    clf = FashionClassifier.load()              # exported/ (or $FMNIST_EDGE_MODELS, or a path)
    clf.predict("shirt.png").label              # 'Shirt'
    [p.label for p in clf.predict([img_a, img_b])]

Inputs are file paths, PIL images, numpy arrays, a picture file's bytes or a binary file object,
one or many; one loaded model may be shared between threads.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence, Union, overload

import numpy as np
from PIL import Image

from fmnist_edge.errors import ImageError, ModelError, UsageError, whole_number, with_article
from fmnist_edge.runtime import preprocess
from fmnist_edge.runtime.session import OnnxModel, model_file
from fmnist_edge.spec import CLASS_NAMES, IMAGE_SIZE, MODELS

DEFAULT_BATCH = 64  # images per ONNX call: the fastest per image here (benchmarks/runtime: 1.4x batch 1024)


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float
    top_k: tuple[tuple[str, float], ...]  # (label, probability), most likely first
    source: str | None = None  # the file it came from, when it came from one

    def to_dict(self) -> dict:
        out = {"file": self.source} if self.source is not None else {}
        return {**out, "label": self.label, "index": self.index, "probability": round(self.probability, 6),
                "top_k": [{"label": lab, "probability": round(p, 6)} for lab, p in self.top_k]}


ENCODED = (bytes, bytearray, memoryview)  # a picture file's content, as read from a socket or a database
Picture = Union[str, "os.PathLike[str]", Image.Image, bytes, bytearray, memoryview, IO[bytes]]  # one, never many
Inputs = Union[Picture, np.ndarray, Iterable[Union[Picture, np.ndarray]]]  # one picture or many


def check_batch_size(batch_size: object) -> int:
    """Images per model call."""
    return whole_number(batch_size, "batch_size")


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):  # "no" would be true
        raise UsageError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _is_file_object(item) -> bool:
    """An open file, a BytesIO, an upload's stream: anything with a read() but a path or PIL image."""
    return callable(getattr(item, "read", None)) and not isinstance(item, (str, os.PathLike, Image.Image))


def _is_single(inputs) -> bool:
    if isinstance(inputs, (str, os.PathLike, Image.Image, *ENCODED)) or _is_file_object(inputs):
        return True
    if isinstance(inputs, np.ndarray):
        # (H, W) and (H, W, 1|2|3|4) are one picture; (N, H, W) and (N, 1, H, W) / (N, H, W, C) are many
        # (a stack of pictures up to four pixels wide would show no garment).
        return inputs.ndim == 2 or (inputs.ndim == 3 and inputs.shape[-1] in (1, 2, 3, 4))
    return False


def describe(item, index: int | None = None) -> str:
    """How messages and results name an input: a path as itself, anything else by its kind (and
    its place in a list: 'bytes[2]')."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    filename = getattr(item, "filename", None) if isinstance(item, Image.Image) else None
    if filename:  # an image opened from a file
        return str(filename)
    if _is_file_object(item) and isinstance(getattr(item, "name", None), str):  # open("a.png", "rb")
        return item.name
    kind = ("bytes" if isinstance(item, ENCODED) else "array" if isinstance(item, np.ndarray)
            else "PIL image" if isinstance(item, Image.Image) else "file object" if _is_file_object(item) else None)
    if kind is None:
        return str(item)  # the command line's sources name themselves
    return kind if index is None else f"{kind}[{index}]"


def prepare_one(item, index: int | None = None) -> np.ndarray:
    """One path, PIL image, numpy picture or picture file's bytes -> float32 (1, 28, 28)."""
    if isinstance(item, (str, os.PathLike)):
        return preprocess.from_path(item)
    name = describe(item, index)
    if isinstance(item, Image.Image):
        return preprocess.from_pil(item, name)
    if isinstance(item, np.ndarray):
        return preprocess.from_array(item, name)
    if isinstance(item, ENCODED):
        return preprocess.from_bytes(bytes(item), name)
    if _is_file_object(item):  # read from where it stands, and left open: the caller's to close
        if isinstance(item, io.TextIOBase):  # open(path) without "rb": refused before it fails to decode
            raise ImageError(f"{name}: a text stream; open a picture with 'rb'")
        if inspect.iscoroutinefunction(item.read):  # an async upload (Starlette's UploadFile)
            raise ImageError(f"{name}: its read() is async; pass the bytes it gives (`await upload.read()`) "
                             "or its underlying binary file")
        try:
            data = preprocess.read_limited(item, name)
        except (OSError, ValueError) as exc:  # closed, or opened for writing only
            raise ImageError(f"{name}: unreadable file object ({exc})") from None
        if not isinstance(data, ENCODED):
            if inspect.isawaitable(data) and hasattr(data, "close"):
                data.close()  # no "never awaited" warning for what was never ours to await
            raise ImageError(f"{name}: its read() gave {with_article(type(data).__name__)}, not a picture's bytes; "
                             "open a picture with 'rb'")
        return preprocess.from_bytes(bytes(data), name)
    raise _not_a_picture(item, where="" if index is None else f"item {index}: ")


def _not_a_picture(item, many: str = "", where: str = "") -> ImageError:
    what = "None" if item is None else with_article(type(item).__name__)
    return ImageError(f"{where}{what} is not a picture: pass a path, a PIL image, a numpy array, a picture "
                      f"file's bytes or a binary file object{many}")


def prepare(inputs: Inputs) -> np.ndarray:
    """One or many inputs -> float32 (N, 1, 28, 28) model batch."""
    if _is_single(inputs):
        return prepare_one(inputs)[None]
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 4 and inputs.shape[1] == 1:
            inputs = inputs[:, 0]  # (N, 1, H, W) -> (N, H, W)
        if inputs.ndim not in (3, 4):
            raise ImageError(f"an array of shape {inputs.shape} is neither a picture nor a stack of pictures")
        if not len(inputs):
            return np.zeros((0, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        if inputs.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE):
            framed = preprocess.framed_stack(inputs)
            if framed is not None:
                return framed[:, None]
        return np.stack([preprocess.from_array(a, f"array[{i}]") for i, a in enumerate(inputs)])
    if not isinstance(inputs, Iterable) or isinstance(inputs, (Mapping, Set)):  # a dict's keys, a set's order: no
        raise _not_a_picture(inputs, ", or a list of them")
    items = list(inputs)
    if not items:
        return np.zeros((0, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return np.stack([prepare_one(item, i) for i, item in enumerate(items)])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def mirror_averaged(model: OnnxModel, batch: np.ndarray, batch_size: int | None = DEFAULT_BATCH) -> np.ndarray:
    """(N, 10) probabilities averaged over each picture and its mirror image: test-time
    augmentation for a classifier trained with flips (+0.13 points on the shipped model's test
    set, `fmnist-edge validate`; +0.1 to +0.4 on photo-like pictures), at twice the compute.
    Both views go in one call."""
    both = np.concatenate([batch, batch[..., ::-1]])
    probs = softmax(model.run(both, batch_size))
    return (probs[:len(batch)] + probs[len(batch):]) / 2


def check_top_k(top_k: object) -> int:
    """How many classes a Prediction lists (more than there are classes lists them all)."""
    return whole_number(top_k, "top_k")


def to_predictions(probs: np.ndarray, top_k: int = 3, sources: Sequence | None = None) -> list[Prediction]:
    """One Prediction per row of `probs` (`top_k` checked by the caller, with check_top_k);
    `sources[row]`, when given and not None, names its file."""
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(probs, order, axis=1)
    out = []
    # As Python ints and floats, the top k only: a batch's rows cost a fraction of its model call.
    for row, (idx, p) in enumerate(zip(order.tolist(), ranked.tolist())):
        top = tuple(zip([CLASS_NAMES[i] for i in idx], p))
        source = sources[row] if sources is not None else None
        out.append(Prediction(CLASS_NAMES[idx[0]], idx[0], p[0], top, str(source) if source is not None else None))
    return out


def _sources(inputs) -> list | None:
    """Per item of a list, its path (None for a picture that came from no file)."""
    if isinstance(inputs, (list, tuple)):
        return [item if isinstance(item, (str, os.PathLike)) else None for item in inputs]
    return None


class FashionClassifier:
    """The exported classifier: pictures in, Predictions out. Thread-safe once loaded."""

    def __init__(self, model: OnnxModel):
        self.model = model

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, int8: bool = False, threads: int | None = None,
             optimisation: str = "all") -> "FashionClassifier":
        """Load from a .onnx or .ort file or a folder (default: the shipped exported/ models)."""
        int8 = _check_flag(int8, "int8")
        return cls(OnnxModel(model_file(path, "classifier", int8), "classifier", threads, optimisation))

    @property
    def path(self) -> Path:
        return self.model.path

    def __repr__(self) -> str:
        return f"FashionClassifier({str(self.path)!r}, threads={self.model.threads})"

    def logits(self, inputs: Inputs, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, 10) raw logits for one or many inputs."""
        batch_size = check_batch_size(batch_size)
        batch = prepare(inputs)
        if len(batch) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        return self.model.run(batch, batch_size)

    def probabilities(self, inputs: Inputs, batch_size: int = DEFAULT_BATCH, tta: bool = False) -> np.ndarray:
        """(N, 10) class probabilities, in spec.CLASS_NAMES order; `tta` averages each picture's
        with its mirror image's (see `mirror_averaged`)."""
        batch_size, tta = check_batch_size(batch_size), _check_flag(tta, "tta")
        batch = prepare(inputs)
        if len(batch) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float64)
        return self._probabilities(batch, batch_size, tta)

    def _probabilities(self, batch: np.ndarray, batch_size: int, tta: bool) -> np.ndarray:
        probs = mirror_averaged(self.model, batch, batch_size) if tta else softmax(self.model.run(batch, batch_size))
        if not np.isfinite(probs).all():  # a broken model: no answer is better than a NaN one
            raise ModelError(f"{self.path}: the model's scores are NaN or infinite; re-export it")
        return probs

    # A str is an Iterable too, an array as well: the first overload that matches wins, as at run time.
    @overload
    def predict(self, inputs: Picture, top_k: int = ..., batch_size: int = ...,  # type: ignore[overload-overlap]
                tta: bool = ...) -> Prediction: ...

    @overload
    def predict(self, inputs: np.ndarray, top_k: int = ..., batch_size: int = ...,  # type: ignore[overload-overlap]
                tta: bool = ...) -> Prediction | list[Prediction]: ...

    @overload
    def predict(self, inputs: Iterable[Picture | np.ndarray], top_k: int = ..., batch_size: int = ...,
                tta: bool = ...) -> list[Prediction]: ...

    def predict(self, inputs: Inputs, top_k: int = 3, batch_size: int = DEFAULT_BATCH,
                tta: bool = False) -> Prediction | list[Prediction]:
        """A Prediction for one picture; a list of them for many (a list, or an (N, ...) array)."""
        top_k = check_top_k(top_k)
        preds = to_predictions(self.probabilities(inputs, batch_size, tta), top_k, _sources(inputs))
        if _is_single(inputs):
            return replace(preds[0], source=str(inputs)) if isinstance(inputs, (str, os.PathLike)) else preds[0]
        return preds

    def classify_files(self, paths: Iterable | str | os.PathLike, top_k: int = 3,
                       batch_size: int = DEFAULT_BATCH, tta: bool = False,
                       load: Callable[..., np.ndarray] | None = None,
                       ) -> Iterator[tuple[str, Prediction | ImageError]]:
        """(name, Prediction or the ImageError that item gave), in order, in batches; one bad item
        never stops the others. Items are paths (or any picture `predict` takes, named as in its
        errors: 'bytes[3]'); `load` turns each into a (1, 28, 28) model input (default: as
        `predict` does)."""
        top_k, batch_size, tta = check_top_k(top_k), check_batch_size(batch_size), _check_flag(tta, "tta")
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)  # not a string's letters
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            names = [describe(item, start + i) for i, item in enumerate(chunk)]
            arrays, good = [], []
            results: dict[int, Prediction | ImageError] = {}
            for i, item in enumerate(chunk):
                try:
                    arrays.append(load(item) if load is not None else prepare_one(item, start + i))
                    good.append(i)
                except ImageError as exc:
                    results[i] = exc
            if arrays:
                probs = self._probabilities(np.stack(arrays), batch_size, tta)
                for i, pred in zip(good, to_predictions(probs, top_k, [names[i] for i in good])):
                    results[i] = pred
            for i in range(len(chunk)):
                yield names[i], results[i]


class FashionAutoencoder:
    """The exported encoder and decoder: `encode` pictures to latents, `decode` latents to
    28x28 pictures, `reconstruct` both. Thread-safe once loaded."""

    def __init__(self, encoder: OnnxModel, decoder: OnnxModel | None = None):
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, threads: int | None = None,
             with_decoder: bool = True, int8: bool = False, optimisation: str = "all") -> "FashionAutoencoder":
        """Load from a folder (default: exported/; `int8` picks its int8 pair) or an encoder file
        with its decoder beside it: the decoder of the same form when the folder has it
        (encoder.int8.ort -> decoder.int8.ort), else of the same precision (decoder.int8.onnx),
        else the folder's fp32 decoder."""
        int8, with_decoder = _check_flag(int8, "int8"), _check_flag(with_decoder, "with_decoder")
        enc = OnnxModel(model_file(path, "encoder", int8), "encoder", threads, optimisation)
        if not with_decoder:
            return cls(enc, None)
        name, folder = enc.path.name, enc.path.parent
        candidates = [folder / ("decoder" + name.removeprefix("encoder"))] if name.startswith("encoder.") else []
        if ".int8." in name:
            candidates += [folder / n for n in MODELS["decoder"].file_names(int8=True)]
        found = next((c for c in candidates if c.is_file()), None)
        dec = OnnxModel(found or model_file(folder, "decoder"), "decoder", threads, optimisation)
        return cls(enc, dec)

    @property
    def n(self) -> int:
        return int(self.encoder.output_shape[0])

    def __repr__(self) -> str:
        decoder = str(self.decoder.path) if self.decoder is not None else None
        return f"FashionAutoencoder({str(self.encoder.path)!r}, decoder={decoder!r})"

    def encode(self, inputs: Inputs, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, n) latents for one or many inputs."""
        batch_size = check_batch_size(batch_size)
        batch = prepare(inputs)
        if len(batch) == 0:
            return np.zeros((0, self.n), np.float32)
        return self.encoder.run(batch, batch_size)

    def decode(self, latents: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, n) latents (or one (n,) latent) -> (N, 1, 28, 28) pictures in [0, 1], light on black."""
        batch_size = check_batch_size(batch_size)
        if self.decoder is None:
            raise UsageError("this autoencoder was loaded without its decoder (with_decoder=False)")
        n = int(self.decoder.input_shape[0])
        try:
            z = np.atleast_2d(np.asarray(latents, dtype=np.float32))
        except (TypeError, ValueError):
            raise UsageError(f"latents must be numbers, shaped (N, {n}); got {type(latents).__name__}") from None
        if z.ndim != 2 or z.shape[1] != n:
            raise UsageError(f"latents must be shaped (N, {n}) or ({n},), got {z.shape}")
        if not np.isfinite(z).all():  # a NaN latent would come back as a NaN picture
            raise UsageError("latents hold NaN or infinite values")
        if len(z) == 0:
            return np.zeros((0, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        return self.decoder.run(z, batch_size)

    def reconstruct(self, inputs: Inputs, batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
        """(model inputs, reconstructions), both (N, 1, 28, 28)."""
        batch_size = check_batch_size(batch_size)
        batch = prepare(inputs)
        if len(batch) == 0:
            empty = np.zeros((0, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
            return empty, empty.copy()
        latents = self.encoder.run(batch, batch_size)
        return batch, self.decode(latents, batch_size)
