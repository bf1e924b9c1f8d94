"""Fashion-MNIST test images rendered as the pictures users bring: product photos and cut-outs.

A 28x28 test image (light garment on black) becomes a dark garment on a light background,
enlarged, placed off-centre on a bigger canvas, and saved as a file; the runtime's preprocessing
must turn it back into about the original. Tests and `benchmarks/bench_photo_like.py` use these
renderings to measure the classifier on pictures like its users', with labels known. numpy and
Pillow only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


def as_photo(image: np.ndarray, rng: np.random.Generator, scale: int = 4) -> Image.Image:
    """A clean product photo: dark garment on white, enlarged `scale` times, off-centre."""
    dark_on_white = Image.fromarray(255 - image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (28 * scale + 120, 28 * scale + 90), 255)
    canvas.paste(dark_on_white, (int(rng.integers(0, 120)), int(rng.integers(0, 90))))
    return canvas


def as_cutout(image: np.ndarray, scale: int = 3) -> Image.Image:
    """A cut-out: dark garment on a transparent background (RGBA)."""
    big = np.asarray(Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC))
    rgba = np.zeros((*big.shape, 4), np.uint8)
    rgba[..., :3] = (255 - big)[..., None]  # dark garment ...
    rgba[..., 3] = np.where(big > 8, 255, 0)  # ... on transparent
    canvas = Image.new("RGBA", (28 * scale + 50, 28 * scale + 30), (0, 0, 0, 0))
    canvas.paste(Image.fromarray(rgba, "RGBA"), (37, 5))
    return canvas


def as_camera_shot(image: np.ndarray, rng: np.random.Generator, scale: int = 4) -> Image.Image:
    """A camera shot: the photo on an off-white background with sensor noise (sigma 3 of 255)
    and a lighting gradient of up to 12 levels across the frame, in colour."""
    photo = np.asarray(as_photo(image, rng, scale), np.float32)
    h, w = photo.shape
    paper = float(rng.uniform(225, 245))
    gradient = np.linspace(0.0, float(rng.uniform(-12, 12)), w, dtype=np.float32)[None, :]
    # The garment keeps its own shades; only the background turns off-white.
    shot = photo * (paper / 255.0) + gradient + rng.normal(0.0, 3.0, photo.shape).astype(np.float32)
    tint = np.array([1.0, 0.98, 0.95], np.float32)  # warm light
    rgb = np.clip(shot[..., None] * tint, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


# name -> (file suffix, render(image, rng) -> PIL image, save options)
RENDERINGS: dict[str, tuple[str, Callable[[np.ndarray, np.random.Generator], Image.Image], dict]] = {
    "photo (JPEG)": (".jpg", lambda im, rng: as_photo(im, rng, int(rng.integers(2, 6))).convert("RGB"),
                     {"quality": 85}),
    "cut-out (RGBA PNG)": (".png", lambda im, rng: as_cutout(im, int(rng.integers(2, 5))), {}),
    "camera shot (JPEG)": (".jpg", lambda im, rng: as_camera_shot(im, rng, int(rng.integers(2, 6))),
                           {"quality": 80}),
}


def write_renderings(images: np.ndarray, folder: Path, rendering: str, seed: int = 0) -> list[Path]:
    """Save every image in `rendering` under `folder` as 00000.jpg, ...; returns the paths in order."""
    suffix, render, options = RENDERINGS[rendering]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i:05d}{suffix}")
        render(image, rng).save(paths[-1], **options)
    return paths
