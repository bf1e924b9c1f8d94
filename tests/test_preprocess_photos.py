"""Photo-like pictures made from real test images come back close to the originals.

Each test image is inverted to a dark garment on white, enlarged, pasted off-centre on a big
canvas and saved as JPEG and as an RGBA cut-out; preprocessing must give back about the
original 28x28. With the real classifier this is the accuracy check on photo-like inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_edge.errors import DataError
from fmnist_edge.runtime import preprocess

COUNT = 40


@pytest.fixture(scope="module")
def test_images():
    from fmnist_edge.idx import load_split

    try:
        split = load_split("test")
    except DataError as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(split.images), COUNT, replace=False)
    return split.images[pick], split.labels[pick]


def as_photo(image: np.ndarray, rng: np.random.Generator, scale: int = 4) -> Image.Image:
    dark_on_white = Image.fromarray(255 - image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (28 * scale + 120, 28 * scale + 90), 255)
    canvas.paste(dark_on_white, (int(rng.integers(0, 120)), int(rng.integers(0, 90))))
    return canvas


def as_cutout(image: np.ndarray, scale: int = 3) -> Image.Image:
    big = np.asarray(Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC))
    rgba = np.zeros((*big.shape, 4), np.uint8)
    rgba[..., :3] = (255 - big)[..., None]  # dark garment ...
    rgba[..., 3] = np.where(big > 8, 255, 0)  # ... on transparent
    canvas = Image.new("RGBA", (28 * scale + 50, 28 * scale + 30), (0, 0, 0, 0))
    canvas.paste(Image.fromarray(rgba, "RGBA"), (37, 5))
    return canvas


def mean_abs_diff(paths, images) -> np.ndarray:
    return np.array([np.abs(preprocess.from_path(p)[0] - im / 255.0).mean() for p, im in zip(paths, images)])


def test_jpeg_photos_come_back_close(test_images, tmp_path: Path):
    images, _ = test_images
    rng = np.random.default_rng(1)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.jpg")
        as_photo(image, rng).convert("RGB").save(paths[-1], quality=90)
    diff = mean_abs_diff(paths, images)
    assert np.median(diff) < 0.05, diff
    assert diff.max() < 0.12, diff


def test_rgba_cutouts_come_back_close(test_images, tmp_path: Path):
    images, _ = test_images
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        as_cutout(image).save(paths[-1])
    diff = mean_abs_diff(paths, images)
    assert np.median(diff) < 0.05, diff
    assert diff.max() < 0.12, diff


def test_photo_accuracy_stays_close_with_fixture_classifier(test_images, tmp_path: Path):
    from fmnist_edge.runtime.api import FashionClassifier

    images, labels = test_images
    clf = FashionClassifier.load(Path(__file__).parent / "fixtures")
    rng = np.random.default_rng(2)
    photos = [as_photo(im, rng) for im in images]
    on_test = (clf.probabilities(images).argmax(1) == labels).mean()
    on_photos = (np.array([p.index for p in clf.predict(photos)]) == labels).mean()
    assert on_photos >= on_test - 0.1, (on_test, on_photos)


@pytest.mark.slow
def test_shipped_classifier_keeps_its_accuracy_on_photo_like_pictures(tmp_path: Path):
    """The shipped classifier on 1,000 test images as JPEG photos and as RGBA cut-outs."""
    from fmnist_edge.idx import load_split
    from fmnist_edge.runtime.api import FashionClassifier

    exported = Path(__file__).parents[1] / "exported"
    try:
        split = load_split("test")
    except DataError as exc:
        pytest.skip(str(exc))
    pick = np.random.default_rng(3).choice(len(split.images), 1000, replace=False)
    images, labels = split.images[pick], split.labels[pick]
    clf = FashionClassifier.load(exported)
    on_test = (clf.probabilities(images).argmax(1) == labels).mean()
    rng = np.random.default_rng(4)
    jpegs, cutouts = [], []
    for i, image in enumerate(images):
        jpegs.append(tmp_path / f"{i}.jpg")
        as_photo(image, rng, scale=int(rng.integers(2, 6))).convert("RGB").save(jpegs[-1], quality=85)
        cutouts.append(tmp_path / f"{i}.png")
        as_cutout(image).save(cutouts[-1])
    for paths in (jpegs, cutouts):
        on_photos = (np.array([p.index for p in clf.predict(paths)]) == labels).mean()
        # A photo loses some detail (JPEG, resampling twice); the classifier must not lose more than 3 points.
        assert on_photos >= on_test - 0.03, (paths[0].suffix, on_test, on_photos)
