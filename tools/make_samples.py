"""Write exported/samples/<class>.png: one real Fashion-MNIST test image per class, for the demo.

Each sample is the first test image of its class that the pictures' own pipeline leaves
unchanged, saved as the 28x28 light-on-black PNG it is in the dataset.
Usage: python tools/make_samples.py [--out exported/samples] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fmnist_edge.fileio import write_with  # noqa: E402
from fmnist_edge.idx import load_split  # noqa: E402
from fmnist_edge.runtime import preprocess  # noqa: E402
from fmnist_edge.spec import CLASS_NAMES  # noqa: E402


def slug(name: str) -> str:
    """'T-shirt/top' -> 't-shirt', 'Ankle boot' -> 'ankle-boot'."""
    return re.sub(r"[^a-z0-9]+", "-", name.split("/")[0].lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "exported" / "samples")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    test = load_split("test", args.data_dir)
    for index, name in enumerate(CLASS_NAMES):
        for i in np.flatnonzero(test.labels == index):
            image = test.images[i]
            again = preprocess.from_pil(Image.fromarray(image))[0]
            if np.abs(again - image / 255.0).max() < 1e-6:  # what the CLI reads is what the model saw
                break
        path = args.out / f"{slug(name)}.png"
        write_with(path, lambda tmp, im=image: Image.fromarray(im, mode="L").save(tmp, format="PNG"))
        path.chmod(0o644)
        print(f"{path}  test image #{i} ({name})")


if __name__ == "__main__":
    main()
