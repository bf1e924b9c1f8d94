"""A user's picture -> what the model saw in training: float32 (1, 28, 28) in [0, 1], light on black.

Follows Fashion-MNIST's own conversion of product photos: trim the background, resize so the
longest side fills 28 pixels, centre, negate (photos show a dark garment on white). A camera
shot's background, unevenly lit and noisy, is removed before the trim. Pure functions of their
input, so one process may preprocess from many threads at once.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from fmnist_edge.errors import ImageError, printable
from fmnist_edge.spec import IMAGE_SIZE

# 40 megapixels: any camera photo passes, a decompression bomb (e.g. 30000x30000) is refused
# from its header, before a single pixel is decoded.
MAX_PIXELS = 40_000_000
MAX_STREAM_BYTES = 256 * 1024 * 1024  # a picture read from a pipe is read whole; a stream this long is none
MIN_SIDE = 8  # smaller than this cannot show a garment
BORDER = 0.05  # the outer 5% of each side decides polarity and background level
TRIM = 0.05  # like Fashion-MNIST: pixels within 5% of the background colour are background
QUANTUM = 1 / 255  # one level of an 8-bit picture: less variation than this is no noise
NOISE_MAX = 0.05  # a camera's noise is a few levels; more variation than this on the border is garment
NOISE_GRID = 512  # noisy pictures are told from their garment on at most this many pixels a side
# A picture is worked on at most this many pixels a side (box-reduced, a JPEG decoded at a
# fraction of its size): the garment ends up 28 pixels tall, and each float copy of a phone
# photo at full size costs hundreds of megabytes (tests/test_preprocess.py, the big photo).
WORK_SIDE = 2048
ORIENTATION = 0x0112  # the EXIF tag


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open a picture file, decoded and checked; every failure is one ImageError line. A pipe or
    device (`/dev/stdin`, process substitution) is read whole first, up to MAX_STREAM_BYTES."""
    if not str(path):  # Path("") would be the working folder
        raise ImageError("an empty path names no picture")
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:  # a name too long, a folder on the way that cannot be searched
        raise ImageError(f"{path}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL in the name, say from a web request's field
        raise ImageError(f"{printable(str(path))}: not a usable file name ({exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{path}: is a folder, not a picture")
    if not stat.S_ISREG(info.st_mode):
        try:
            with open(path, "rb") as stream:
                return open_bytes(read_limited(stream, path), str(path))
        except OSError as exc:
            raise ImageError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if info.st_size == 0:
        raise ImageError(f"{path}: empty file")
    return _decode(path, path)


def read_limited(stream, name: str | os.PathLike, limit: int = MAX_STREAM_BYTES) -> bytes:
    """All of a binary stream, refused when it runs past `limit` bytes (no picture is that long).
    What a read() gives that is not a byte string (text, an awaitable) is the caller's to refuse."""
    data = stream.read(limit + 1)
    if isinstance(data, (bytes, bytearray, memoryview, str)) and len(data) > limit:
        raise ImageError(f"{name}: more than {limit:,} bytes; that is no picture")
    return data


def open_bytes(data: bytes, name: str) -> Image.Image:
    """A picture held in memory (piped in, say), decoded and checked like a file."""
    if not data:
        raise ImageError(f"{name}: empty")
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | io.BytesIO, name: str | os.PathLike) -> Image.Image:
    try:
        im = Image.open(source)  # reads the header only
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: refused, too many pixels for a picture (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a picture Pillow can read") from None
    except OSError as exc:
        raise ImageError(f"{name}: unreadable ({exc.strerror or exc})") from None
    except Exception as exc:  # Pillow's plugins raise ValueError, EOFError, ... on a damaged header
        raise ImageError(f"{name}: damaged picture header ({_first_line(exc)})") from None
    try:
        check_size(im, name)
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF/WebP/APNG: the first frame
            if im.format == "JPEG" and max(im.size) > WORK_SIDE:
                im.draft(im.mode, (WORK_SIDE // 2, WORK_SIDE // 2))  # 1/2 to 1/8 scale, both sides kept >= that
            im.load()
        except Exception as exc:  # decoders fail in many types (OSError, TypeError, ...): all mean a bad file
            raise ImageError(f"{name}: truncated or corrupt {im.format or 'image'} ({_first_line(exc)})") from None
    except ImageError:
        im.close()  # else the error's traceback holds the file open: a batch job would run out of them
        raise
    return im


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:120] if text else type(exc).__name__)


def check_size(im: Image.Image, name: str | os.PathLike = "image") -> None:
    check_dimensions(*im.size, name, " (decompression bomb?)")


def check_dimensions(width: int, height: int, name: str | os.PathLike, why: str = "") -> None:
    """Refuse a picture too big to decode safely (`why` says what that may mean) or too small to
    show a garment."""
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name}: refused, {width}x{height} pixels is more than the "
                         f"{MAX_PIXELS // 1_000_000} MP limit{why}")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{name}: {width}x{height} pixels is too small to show a garment "
                         f"(at least {MIN_SIDE}x{MIN_SIDE})")


def _reduced(im: Image.Image) -> Image.Image:
    """`im` box-reduced to at most WORK_SIDE pixels a side (a new image: a caller's is left alone)."""
    factor = -(-max(im.size) // WORK_SIDE)  # rounded up
    return im.reduce(factor) if factor > 1 else im


def to_gray(im: Image.Image, name: str | os.PathLike = "image") -> np.ndarray:
    """Any Pillow mode -> float32 (H, W) in [0, 1]; transparency composited on white."""
    try:
        if im.getexif().get(ORIENTATION, 1) != 1:  # else exif_transpose copies the whole picture for nothing
            im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not cost the picture; keep it as stored
        pass
    mode = im.mode
    try:
        if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            wide = im.convert("I") if mode.startswith("I;16") else im  # Pillow reduces I and F, not I;16
            gray = np.asarray(_reduced(wide), dtype=np.float64)
            if not np.isfinite(gray).all():  # float TIFFs may: NaN would reach the model
                raise ImageError(f"{name}: holds NaN or infinite values")
            top = 65535.0 if mode.startswith("I;16") or gray.max() > 255 else 255.0
            if mode == "F":
                top = max(1.0, float(gray.max()))
            return np.clip(gray / top, 0.0, 1.0).astype(np.float32)
        if mode in ("P", "PA") or (mode in ("L", "RGB") and "transparency" in im.info):
            im = im.convert("RGBA")
        elif mode == "CMYK":
            im = im.convert("RGB")
        elif mode in ("LAB", "HSV", "YCbCr"):
            im = im.convert("RGB")
        if im.mode in ("RGBA", "LA", "RGBa", "La"):
            rgba = im.convert("RGBA")
            # Transparent means background: composite on white, as a product photo would show it.
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        gray = np.asarray(_reduced(im.convert("L")), dtype=np.float32)
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: cannot convert {mode} pixels to grayscale ({exc})") from None
    return gray / np.float32(255.0)


def _border_pixels(shape: tuple[int, int], limit: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the outer BORDER of each side, on a grid thinned to about `limit` points:
    a sample of a big border is enough to tell its level, slope and noise."""
    h, w = shape
    bh, bw = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    strips = [(0, bh, 0, w), (h - bh, h, 0, w), (bh, h - bh, 0, bw), (bh, h - bh, w - bw, w)]
    area = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in strips)
    step = max(1, int((area / limit) ** 0.5))
    grids = [np.mgrid[r0:r1:step, c0:c1:step].reshape(2, -1) for r0, r1, c0, c1 in strips if r1 > r0]
    ys, xs = np.concatenate(grids, axis=1)
    return ys, xs


def _median(values: np.ndarray) -> float:
    return float(np.partition(values, values.size // 2)[values.size // 2])  # np.median would import numpy.ma


def _background(gray: np.ndarray, border: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray | float, float]:
    """The background level, in [0, 0.5], and the noise around it (a robust standard deviation;
    0 for none). Called after inversion, so the background is dark; the bound keeps any pixel's
    scale in `normalise` from dividing by less than one half.

    A flat border (Fashion-MNIST's black, a product photo's white) gives its median and no
    noise. A camera shot's background is neither flat nor clean: light falls off across the
    frame and the sensor adds noise, and either, left in, reaches past TRIM and stretches the
    crop over the whole picture. Its background is then a plane a + b*y + c*x fitted to the
    border's background pixels, and the noise is what the plane leaves."""
    ys, xs = border
    values = gray[ys, xs].astype(np.float64)
    centre = _median(values)
    flat = min(max(centre, 0.0), 0.5)
    spread = 1.4826 * _median(np.abs(values - centre))
    if spread < QUANTUM:
        return flat, 0.0
    keep = np.abs(values - centre) <= 3 * spread + 0.02  # garment pixels on the border stay out
    design = np.stack([np.ones(int(keep.sum())), ys[keep], xs[keep]], axis=1)
    coef = np.linalg.lstsq(design, values[keep], rcond=None)[0]
    noise = 1.4826 * _median(np.abs(values[keep] - design @ coef))
    if noise > NOISE_MAX:  # not a background but garment on the border: keep to its median
        return flat, 0.0
    h, w = gray.shape
    rows, cols = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    plane = np.clip(coef[0] + coef[1] * rows + coef[2] * cols, 0.0, 0.5).astype(np.float32)
    return plane, noise if noise >= QUANTUM else 0.0


def normalise(gray: np.ndarray) -> np.ndarray:
    """Light garment on black: invert a light background, subtract the background, and zero
    what lies within four noise deviations of it (`_background`)."""
    border = _border_pixels(gray.shape)
    if _median(gray[border]) > 0.5:  # a photo: dark garment on a light background
        gray = 1.0 - gray
    background, noise = _background(gray, border)
    lifted = gray - background
    if noise > 0:
        lifted[~_above_noise(lifted, 4 * noise)] = 0.0
    return np.clip(lifted / (1.0 - background), 0.0, 1.0)


def _above_noise(lifted: np.ndarray, floor: float) -> np.ndarray:
    """Where the garment is: pixels whose 3x3 neighbourhood's median lies above `floor`, which a
    lone bright speck of sensor noise or JPEG ringing never reaches. A big picture is judged on
    a box-averaged copy at most NOISE_GRID pixels a side (Pillow's median filter takes a second
    on 12 megapixels); the mask's coarser edge is finer than the 28x28 the garment ends up in."""
    h, w = lifted.shape
    factor = max(1, -(-max(h, w) // NOISE_GRID))  # rounded up
    levels = Image.fromarray((np.clip(lifted, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))  # bytes: 10x faster
    if factor > 1:
        levels = levels.reduce(factor)
    above = levels.filter(ImageFilter.MedianFilter(3)).point(lambda v: 255 if v > floor * 255.0 else 0)
    if factor > 1:
        above = above.resize((w, h), Image.Resampling.NEAREST)
    return np.asarray(above) > 0


def frame(garment: np.ndarray, name: str | os.PathLike = "image") -> np.ndarray:
    """Crop to the garment, resize keeping aspect so the longest side fills 28 px, centre.

    garment: (H, W) float in [0, 1], light on black. Returns float32 (28, 28).
    """
    rows = np.flatnonzero((garment > TRIM).any(axis=1))
    cols = np.flatnonzero((garment > TRIM).any(axis=0))
    if rows.size == 0:
        raise ImageError(f"{name}: blank picture, no garment found")
    crop = garment[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = IMAGE_SIZE / max(h, w)
    nh, nw = max(1, min(IMAGE_SIZE, round(h * scale))), max(1, min(IMAGE_SIZE, round(w * scale)))
    if scale < 1:
        # Shrink as Fashion-MNIST was made (its README: resize, then sharpen with a radius-1 Gaussian):
        # Lanczos, then an unsharp mask. On test images turned into photos a plain box filter lost
        # the shipped classifier 3-4 points; test_preprocess_photos.py holds this path within 3.
        small = Image.fromarray((crop * 255.0 + 0.5).astype(np.uint8)).resize((nw, nh), Image.Resampling.LANCZOS)
        small = small.filter(ImageFilter.UnsharpMask(radius=1, percent=50, threshold=0))
        crop = np.asarray(small, dtype=np.float32) / np.float32(255.0)
    elif (nh, nw) != (h, w):
        crop = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((nw, nh), Image.Resampling.BICUBIC))
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    # Fashion-MNIST puts an odd spare pixel before the garment, not after: round the offset up.
    top, left = (IMAGE_SIZE - nh + 1) // 2, (IMAGE_SIZE - nw + 1) // 2
    out[top:top + nh, left:left + nw] = np.clip(crop, 0.0, 1.0)
    return out


def from_pil(im: Image.Image, name: str | os.PathLike = "image") -> np.ndarray:
    """A PIL image -> float32 (1, 28, 28) model input: its current frame (a file's first, as
    opened by this module; a caller's image, the frame it was left at, and left there)."""
    check_size(im, name)
    try:
        im.load()
    except Exception as exc:  # a closed file's image, a truncated one opened lazily: Pillow's own types
        raise ImageError(f"{name}: cannot read the image's pixels ({_first_line(exc)}; was its file "
                         "closed before it was loaded?)") from None
    return frame(normalise(to_gray(im, name)), name)[None]


def from_path(path: str | os.PathLike) -> np.ndarray:
    """A picture file -> float32 (1, 28, 28) model input."""
    with open_image(path) as im:
        return from_pil(im, path)


def from_bytes(data: bytes, name: str = "bytes") -> np.ndarray:
    """A picture file's contents -> float32 (1, 28, 28) model input."""
    with open_bytes(data, name) as im:
        return from_pil(im, name)


def from_array(array: np.ndarray, name: str = "array") -> np.ndarray:
    """One numpy picture -> float32 (1, 28, 28).

    A 28x28 array is taken as already in Fashion-MNIST framing (a light garment on black) and
    only scaled; (H, W), (H, W, 1|2|3|4) arrays of other sizes are framed like files (2: gray and
    alpha, 4: RGBA; transparency composited on white). Pixels are
    uint8 (0-255), uint16 (0-65535), other integers from 0 to 255, or floats in [0, 1] or on
    the 0-255 scale; floats up to 5% outside either range (resampling's overshoot) are clipped,
    and anything else (standardised or [-1, 1] pixels, say) is refused rather than misread.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (2, 3, 4))):
        raise ImageError(f"{name}: an array of shape {array.shape} is not a picture (want HxW, HxWx1, HxWx2, "
                         "HxWx3 or HxWx4)")
    height, width = array.shape[:2]
    check_dimensions(width, height, name)  # before any copy of a huge array is made
    scaled = _scaled(array, name)
    if array.shape == (IMAGE_SIZE, IMAGE_SIZE):
        if float(scaled.max()) - float(scaled.min()) <= TRIM:  # as `frame` refuses a picture with no garment
            raise ImageError(f"{name}: blank picture, no garment found (every pixel within {TRIM:.0%} of "
                             f"{float(scaled.mean()):.3f})")
        return scaled[None]
    pixels = (scaled * 255.0 + 0.5).astype(np.uint8)
    return from_pil(Image.fromarray(pixels), name)


OVERSHOOT = 0.05  # how far outside its range a float picture may stray (bicubic resampling's ringing)


def framed_stack(stack: np.ndarray) -> np.ndarray | None:
    """(N, 28, 28) framed pictures scaled in one pass, to what `from_array` makes of each, bit for
    bit; None when any of them needs its own look: a float scale read from its values, or a
    refusal that names it. A per-picture loop costs more than the model at batch 64."""
    kind, size = stack.dtype.kind, stack.dtype.itemsize
    if kind == "u" and size in (1, 2):
        scaled = stack.astype(np.float32) / np.float32(255.0 if size == 1 else 65535.0)
    elif kind == "f":
        scaled = stack.astype(np.float32)
        if not np.isfinite(scaled).all() or float(scaled.min()) < -OVERSHOOT or float(scaled.max()) > 1.0 + OVERSHOOT:
            return None  # 0-255 floats, or values `_scaled` refuses
        scaled = np.clip(scaled, 0.0, 1.0)  # `_scaled` divides by 1.0 first: the same bits
    else:
        return None
    flat = scaled.reshape(len(scaled), -1)
    if (flat.max(1).astype(np.float64) - flat.min(1).astype(np.float64) <= TRIM).any():
        return None  # a blank picture: refused by name
    return scaled


def _scaled(array: np.ndarray, name: str) -> np.ndarray:
    """Pixels -> float32 in [0, 1], the scale read from the dtype, or from the values for floats."""
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "u" and size in (1, 2):  # any byte order: '>u2' is 16-bit too
        return array.astype(np.float32) / np.float32(255.0 if size == 1 else 65535.0)
    if kind == "b":
        return array.astype(np.float32)
    if kind not in "fiu":
        raise ImageError(f"{name}: {array.dtype} is not a pixel type")
    if kind in "iu":
        least, most = int(array.min()), int(array.max())  # never empty: check_dimensions came first
        if least < 0 or most > 255:
            raise ImageError(f"{name}: integer pixels from {least} to {most}; want 0-255 (or uint16 for 16-bit "
                             "pictures)")
        return array.astype(np.float32) / np.float32(255.0)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ImageError(f"{name}: holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    top = 1.0 if high <= 1.0 + OVERSHOOT else 255.0
    if low < -OVERSHOOT * top or high > (1.0 + OVERSHOOT) * top or (top == 255.0 and high <= TRIM * top):
        raise ImageError(f"{name}: float pixels from {low:.4g} to {high:.4g} fit neither [0, 1] nor 0-255 "
                         "(standardised or [-1, 1] pixels? undo that first)")
    return np.clip(array / np.float32(top), 0.0, 1.0)
