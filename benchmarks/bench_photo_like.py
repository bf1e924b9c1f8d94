"""Accuracy on photo-like pictures: the test set rendered as users' pictures, through the runtime.

Every test image (or the first --count) is rendered as a product photo, an RGBA cut-out and a
noisy camera shot (`fmnist_edge/photo_like.py`), saved as a file, preprocessed from that file as
`fmnist-edge classify` does (once, for all four model variants) and classified; the same models'
accuracy on the original 28x28 images is the reference. Also how far the preprocessed picture lies from the
original image (mean absolute pixel difference, in [0, 1]).

    .venv/bin/python benchmarks/bench_photo_like.py --models exported --out benchmarks/photo_like
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fmnist_edge.idx import load_split
from fmnist_edge.photo_like import RENDERINGS, write_renderings
from fmnist_edge.runtime import preprocess
from fmnist_edge.runtime.api import FashionClassifier

from benchlib import command_line, publish, run_main


def accuracy(clf: FashionClassifier, inputs, labels: np.ndarray, tta: bool) -> float:
    return float((clf.probabilities(inputs, tta=tta).argmax(1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("exported"))
    parser.add_argument("--count", type=int, default=10_000, help="test images to render (the first N)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    test = load_split("test")
    images, labels = test.images[:args.count], test.labels[:args.count]
    models = {"fp32": FashionClassifier.load(args.models, threads=1),
              "int8": FashionClassifier.load(args.models, int8=True, threads=1)}
    rows = [{"input": "test images (28x28, as in training)", "fidelity": 0.0,
             **{f"{name} {mode}": accuracy(clf, images, labels, tta)
                for name, clf in models.items() for mode, tta in (("plain", False), ("tta", True))}}]
    with tempfile.TemporaryDirectory() as tmp:
        for i, rendering in enumerate(RENDERINGS):
            paths = write_renderings(images, Path(tmp) / str(i), rendering, seed=i)
            # A (N, 1, 28, 28) array is taken as framed: the models see exactly these inputs.
            batch = np.stack([preprocess.from_path(p) for p in paths])
            fidelity = float(np.abs(batch[:, 0] - images / 255.0).mean())
            rows.append({"input": rendering, "fidelity": fidelity,
                         **{f"{name} {mode}": accuracy(clf, batch, labels, tta)
                            for name, clf in models.items() for mode, tta in (("plain", False), ("tta", True))}})
    columns = [k for k in rows[0] if k not in ("input", "fidelity")]
    lines = [f"Accuracy on {len(labels):,} test images rendered as users' pictures, preprocessed from "
             "their files as `fmnist-edge classify` does, then classified.", "",
             f"Produced by: `{command_line()}`", "",
             "| input | preprocessed vs original (mean abs) | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.2%}" for c in columns]
        lines.append(f"| {row['input']} | {row['fidelity']:.4f} | " + " | ".join(cells) + " |")
    publish(args.out, {"command": command_line(), "count": len(labels), "models": str(args.models),
                       "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
