"""The torch-free edge runtime: numpy, onnxruntime and Pillow only.

`from fmnist_edge.runtime import FashionClassifier` loads lazily, so importing the package
itself costs nothing.
"""

from __future__ import annotations

__all__ = ["FashionClassifier", "FashionAutoencoder", "Prediction"]


def __getattr__(name: str):
    if name in __all__:
        from fmnist_edge.runtime import api

        return getattr(api, name)
    raise AttributeError(f"module 'fmnist_edge.runtime' has no attribute {name!r}")
