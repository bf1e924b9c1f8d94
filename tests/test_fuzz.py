"""Property tests of what comes from outside: picture files, PIL images, numpy arrays, IDX files.

Whatever comes in, the outcome is a valid model input (or the arrays of an IDX file), or the
project's own one-line error: never another exception, a hang, or memory that follows a lying
header. Derandomized, so CI sees the same few thousand examples on every run.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from fmnist_edge import idx
from fmnist_edge.errors import DataError, ImageError
from fmnist_edge.runtime import preprocess


def fuzz(max_examples: int):
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


MODES = ("L", "LA", "RGB", "RGBA", "P", "I;16", "CMYK", "1", "F", "I")
# Bytes per pixel for Image.frombytes ("1" packs 8 pixels a byte, rows padded to a byte).
BYTES_PER_PIXEL = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "I;16": 2, "CMYK": 4, "F": 4, "I": 4}
# A file format that stores each mode as it is (so the file path sees the same mode).
SAVE_AS = {"L": "PNG", "LA": "PNG", "RGB": "JPEG", "RGBA": "WEBP", "P": "GIF", "I;16": "PNG", "CMYK": "TIFF",
           "1": "BMP", "F": "TIFF", "I": "TIFF"}
ENCODINGS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "ICO")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def model_input_or_image_error(func, *args) -> np.ndarray | None:
    """The property: a float32 (1, 28, 28) array in [0, 1], or one clear ImageError line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's and numpy's warnings are not the contract
        try:
            out = func(*args)
        except ImageError as exc:
            message = str(exc)
            assert message and "\n" not in message and len(message) < 400, message
            event("refused with ImageError")
            return None
    event("model input")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, 28, 28)
    assert np.isfinite(out).all(), "NaN or infinity in the model input"
    assert out.min() >= 0.0 and out.max() <= 1.0
    return out


@st.composite
def sizes(draw) -> tuple[int, int]:
    """(width, height): tiny, ordinary, and extreme aspect ratios."""
    if draw(st.integers(0, 3)) == 0:
        long, short = draw(st.integers(200, 3000)), draw(st.integers(preprocess.MIN_SIDE - 2, 40))
        return (long, short) if draw(st.booleans()) else (short, long)
    side = st.one_of(st.integers(preprocess.MIN_SIDE, 160), st.integers(1, 160))
    return draw(side), draw(side)


@st.composite
def pictures(draw) -> Image.Image:
    """A PIL image of any listed mode: raw random bytes (for F: NaN, inf, 1e38 included),
    a blank canvas, or a rectangle 'garment' on a background, in either polarity."""
    mode = draw(st.sampled_from(MODES))
    width, height = draw(sizes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(("bytes", "blank", "garment")))
    if content == "bytes":
        row = (width + 7) // 8 if mode == "1" else width * BYTES_PER_PIXEL[mode]
        im = Image.frombytes(mode, (width, height), rng.bytes(row * height))
        if mode == "P":
            im.putpalette(rng.bytes(768))
            if draw(st.booleans()):
                im.info["transparency"] = int(rng.integers(0, 256))
        return im
    canvas = np.full((height, width), draw(st.integers(0, 255)), np.uint8)
    if content == "garment":
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        canvas[top:top + int(rng.integers(1, height + 1)), left:left + int(rng.integers(1, width + 1))] = \
            draw(st.integers(0, 255))
    gray = Image.fromarray(canvas)
    if mode == "I;16":
        return Image.fromarray(canvas.astype(np.uint16) * 257)
    return gray.convert(mode)


def encoded(im: Image.Image, fmt: str) -> bytes:
    """The picture in `fmt`, in its own mode where the format stores it, else as RGB."""
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # the format has no such mode
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


# -- picture files ---------------------------------------------------------------------------
@fuzz(600)
@given(data=st.binary(max_size=3000))
@example(data=b"")
@example(data=b"\x89PNG\r\n\x1a\n")
@example(data=b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 20)
def test_arbitrary_bytes_as_a_picture_file(scratch, data):
    path = scratch / "bytes.img"
    path.write_bytes(data)
    model_input_or_image_error(preprocess.from_path, path)


@fuzz(900)
@given(im=pictures(), fmt=st.sampled_from(ENCODINGS),
       mutations=st.lists(st.tuples(st.sampled_from(("flip", "truncate", "insert", "zero")),
                                    st.floats(0, 1), st.integers(0, 255)), max_size=4))
def test_damaged_picture_files(scratch, im, fmt, mutations):
    """Real encodings of every mode, then bytes flipped, zeroed, inserted, or the file cut short:
    what a bad disk, a broken download or a hostile upload delivers."""
    if fmt == "ICO":
        im = im.resize((min(im.width, 256), min(im.height, 256)))
    data = bytearray(encoded(im, fmt))
    for what, where, value in mutations:
        at = min(len(data) - 1, int(where * len(data))) if data else 0
        if what == "flip" and data:
            data[at] ^= value or 1
        elif what == "truncate":
            del data[at:]
        elif what == "insert":
            data[at:at] = bytes([value]) * 16
        elif what == "zero" and data:
            data[at:at + 8] = b"\x00" * len(data[at:at + 8])
    path = scratch / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(data))
    model_input_or_image_error(preprocess.from_path, path)


@fuzz(1000)
@given(im=pictures())
def test_every_mode_size_and_aspect_ratio(im):
    out = model_input_or_image_error(preprocess.from_pil, im)
    if out is not None and min(im.size) >= preprocess.MIN_SIDE:
        assert out.max() > 0.0  # whatever was found as a garment is in the frame


@fuzz(300)
@given(im=pictures())
def test_every_mode_through_a_file_of_its_own_format(scratch, im):
    fmt = SAVE_AS[im.mode]
    path = scratch / f"mode.{fmt.lower()}"
    path.write_bytes(encoded(im, fmt))
    model_input_or_image_error(preprocess.from_path, path)


def test_float_picture_with_nan_pixels_is_refused():
    """A float TIFF with NaN inside the garment once gave NaN model inputs."""
    pixels = np.zeros((40, 40), np.float32)
    pixels[5:30, 8:20] = 0.7
    pixels[12, 12] = np.nan
    with pytest.raises(ImageError, match="NaN or infinite"):
        preprocess.from_pil(Image.fromarray(pixels, mode="F"))


# -- numpy arrays ----------------------------------------------------------------------------
ARRAY_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32,
                                np.float64, np.bool_, np.complex64])
ARRAY_SHAPES = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=64),
    st.tuples(st.integers(0, 48), st.integers(0, 48), st.sampled_from([1, 2, 3, 4, 5])),
    st.tuples(st.just(1), st.integers(0, 48), st.integers(0, 48)),
    st.just((28, 28)), st.just((1, 28, 28)), st.just((28,)), st.just(()), st.just((2, 2, 28, 28)),
)


@fuzz(800)
@given(array=hnp.arrays(ARRAY_DTYPES, ARRAY_SHAPES))
def test_arbitrary_numpy_arrays(array):
    model_input_or_image_error(preprocess.from_array, array)


# -- IDX files -------------------------------------------------------------------------------
@st.composite
def idx_files(draw) -> tuple[str, bytes, bool]:
    """(kind, file bytes, gzipped name?): headers right, wrong and lying, bodies of any length,
    gzip streams whole, cut short, corrupted, or plain garbage under a .gz name."""
    kind = draw(st.sampled_from(("images", "labels")))
    good_magic = idx.IMAGES_MAGIC if kind == "images" else idx.LABELS_MAGIC
    other_magic = st.one_of(st.sampled_from((idx.IMAGES_MAGIC, idx.LABELS_MAGIC, 0x0800, 0x0C03)),
                            st.integers(0, 2**32 - 1))
    magic = draw(st.one_of(st.just(good_magic), other_magic))
    ndim = draw(st.one_of(st.just(3 if kind == "images" else 1), st.integers(0, 4)))
    dim = st.one_of(st.integers(0, 40), st.just(28), st.integers(0, 2**32 - 1))
    dims = draw(st.lists(dim, min_size=ndim, max_size=ndim))
    if ndim == 3 and draw(st.booleans()):
        dims[1:] = [28, 28]  # the shape of real images, so that whole files are generated too
    head = struct.pack(">I", magic) + struct.pack(f">{ndim}I", *dims)
    payload = math.prod(dims) if dims else 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    body_len = draw(st.one_of(st.just(payload), st.integers(0, 4000))) if payload <= 200_000 else \
        draw(st.integers(0, 4000))
    values = draw(st.sampled_from(("labels", "bytes")))
    body = (rng.integers(0, 10, body_len, dtype=np.uint8).tobytes() if values == "labels"
            else rng.bytes(body_len))
    data = head + body
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    packing = draw(st.sampled_from(("raw", "gzip", "gzip-cut", "gzip-flipped", "raw-as-gz")))
    if packing.startswith("gzip"):
        data = bytearray(gzip.compress(data, compresslevel=1))
        if packing == "gzip-cut":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif packing == "gzip-flipped":
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return kind, bytes(data), packing != "raw"


def idx_outcome(kind: str, path: Path) -> np.ndarray | None:
    """The property: the file's arrays, or one clear DataError line."""
    reader = idx.read_images if kind == "images" else idx.read_labels
    started = time.perf_counter()
    try:
        out = reader(path)
    except DataError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message, message
        out = None
    event("refused with DataError" if out is None else "arrays")
    assert time.perf_counter() - started < 5.0  # a loop on a lying header would show here
    if out is not None and kind == "images":
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[1:] == (28, 28)
    elif out is not None:
        assert out.dtype == np.int64 and out.ndim == 1 and (out.size == 0 or 0 <= out.min() <= out.max() <= 9)
    return out


@fuzz(1500)
@given(case=idx_files())
def test_idx_loader_on_arbitrary_files(scratch, case):
    kind, data, gz = case
    path = scratch / ("fuzz.idx.gz" if gz else "fuzz.idx")
    path.write_bytes(data)
    idx_outcome(kind, path)


@fuzz(150)
@given(claimed=st.tuples(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1)),
       body=st.integers(0, 50_000), gz=st.booleans())
@example(claimed=(342_000, 28 * 28), body=0, gz=False)  # just under the size cap
@example(claimed=(2**31, 2**31), body=100, gz=True)  # 2^31 x 76,695,844 x 28 pixels claimed: 2^62 bytes
# (the header that wraps int64 to 0 is test_idx.py::test_huge_header_fails_fast_without_allocating)
def test_idx_memory_does_not_follow_a_lying_header(scratch, claimed, body, gz):
    """A header may claim up to 4 GiB^2; only what the file really holds is ever allocated."""
    n, size = claimed
    data = struct.pack(">IIII", idx.IMAGES_MAGIC, n, size // 28 or 1, 28) + bytes(body)
    path = scratch / ("lying.gz" if gz else "lying")
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    tracemalloc.start()
    try:
        idx_outcome("images", path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Read blocks are 1 MiB; the file holds at most 50 kB. Far below any claimed size.
    assert peak < 3 * 2**20 + 4 * len(data), f"peak {peak} bytes for a {len(data)}-byte file"
