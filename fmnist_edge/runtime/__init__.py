"""The torch-free edge runtime: numpy, onnxruntime and Pillow only.

`from fmnist_edge.runtime import FashionClassifier` loads lazily, so importing the package
itself costs nothing. The errors and the class names an embedding program needs are here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmnist_edge.errors import FmnistEdgeError, ImageError, ModelError, UsageError

if TYPE_CHECKING:  # what a type checker sees; at run time these are imported on first use
    from fmnist_edge.runtime.api import FashionAutoencoder, FashionClassifier, Prediction  # noqa: F401
    from fmnist_edge.spec import CLASS_NAMES  # noqa: F401

LAZY = ("FashionClassifier", "FashionAutoencoder", "Prediction")
__all__ = [*LAZY, "FmnistEdgeError", "ImageError", "ModelError", "UsageError", "CLASS_NAMES"]


def __getattr__(name: str):
    if name in LAZY:
        from fmnist_edge.runtime import api

        return getattr(api, name)
    if name == "CLASS_NAMES":
        from fmnist_edge.spec import CLASS_NAMES

        return CLASS_NAMES
    raise AttributeError(f"module 'fmnist_edge.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY, "CLASS_NAMES"})
