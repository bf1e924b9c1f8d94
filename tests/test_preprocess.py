"""fmnist_edge.runtime.preprocess: pictures of every kind -> the model's 28x28 input, bad ones refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_edge.errors import ImageError
from fmnist_edge.runtime import preprocess


def garment(h: int = 28, w: int = 11, value: int = 200) -> np.ndarray:
    """A light rectangle 'garment' on black, Fashion-MNIST polarity, already framed."""
    im = np.zeros((28, 28), np.uint8)
    top, left = (28 - h + 1) // 2, (28 - w + 1) // 2
    im[top:top + h, left:left + w] = value
    return im


def photo(h: int = 60, w: int = 30, size=(200, 150), at=(20, 90), garment_gray: int = 40) -> Image.Image:
    """A dark garment on a white canvas, off-centre: what a product photo looks like."""
    canvas = np.full(size, 255, np.uint8)
    canvas[at[0]:at[0] + h, at[1]:at[1] + w] = garment_gray
    return Image.fromarray(canvas)


def test_framed_fmnist_image_is_left_as_is():
    im = garment()
    out = preprocess.from_pil(Image.fromarray(im))
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], im / 255.0, atol=1e-6)


def test_polarity_dark_on_white_becomes_light_on_black():
    out = preprocess.from_pil(photo())[0]
    assert out[0, 0] == 0.0  # background black
    assert out[14, 14] > 0.7  # garment light


def test_crop_resize_keeps_aspect_and_centres():
    out = preprocess.from_pil(photo(h=60, w=30))[0]
    rows, cols = np.flatnonzero(out.max(1) > 0.5), np.flatnonzero(out.max(0) > 0.5)
    assert rows.size == 28  # the longest side fills 28 px
    assert 13 <= cols.size <= 15  # aspect 2:1 kept
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


def test_wide_garment_fills_the_width():
    out = preprocess.from_pil(photo(h=20, w=80, at=(100, 10)))[0]
    assert np.flatnonzero(out.max(0) > 0.5).size == 28
    assert 6 <= np.flatnonzero(out.max(1) > 0.5).size <= 8


def test_rgba_cutout_is_composited_on_white():
    rgba = np.zeros((100, 80, 4), np.uint8)
    rgba[20:80, 30:50] = (30, 30, 30, 255)  # an opaque dark garment, the rest transparent
    out = preprocess.from_pil(Image.fromarray(rgba, "RGBA"))[0]
    assert out[0, 0] == 0.0 and out[14, 14] > 0.8


def test_palette_image(tmp_path: Path):
    path = tmp_path / "p.gif"
    photo().convert("P").save(path)
    assert preprocess.from_path(path)[0, 14, 14] > 0.7


def test_palette_with_transparency(tmp_path: Path):
    im = Image.new("P", (50, 50), 0)
    im.putpalette([255, 0, 0] + [0, 0, 0] * 255)  # index 0 transparent red, 1 black
    im.paste(1, (15, 5, 35, 45))
    path = tmp_path / "pt.png"
    im.save(path, transparency=0)
    out = preprocess.from_path(path)[0]
    assert out[0, 0] == 0.0 and out[14, 14] > 0.9


def test_16_bit_png(tmp_path: Path):
    canvas = np.full((80, 60), 65535, np.uint16)
    canvas[10:70, 20:40] = 5000
    path = tmp_path / "deep.png"
    Image.fromarray(canvas).save(path)
    assert Image.open(path).mode.startswith("I")
    out = preprocess.from_path(path)[0]
    assert out[0, 0] == 0.0 and out[14, 14] > 0.8


def test_cmyk_jpeg(tmp_path: Path):
    path = tmp_path / "cmyk.jpg"
    photo().convert("RGB").convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = preprocess.from_path(path)[0]
    assert out[2, 2] < 0.1 and out[14, 14] > 0.7


def test_exif_rotation_is_applied(tmp_path: Path):
    im = photo(h=80, w=20).convert("RGB")  # tall garment as stored ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... shown rotated 90 degrees: wide
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    out = preprocess.from_path(path)[0]
    assert np.flatnonzero(out.max(0) > 0.5).size == 28  # wide now
    assert np.flatnonzero(out.max(1) > 0.5).size < 10


@pytest.mark.parametrize("kind", ["png", "jpg", "16-bit png"])
def test_a_big_photo_is_worked_on_small_and_framed_as_its_small_copy_is(tmp_path: Path, kind: str):
    """A 6000x6000 picture (36 MP, under the limit) never gets a float copy at full size: it is
    box-reduced (a JPEG decoded at a fraction of its size) to at most WORK_SIDE a side, and
    frames to what a copy saved at that size frames to."""
    import tracemalloc

    side = 6000
    pixels = np.full((side, side), 255, np.uint8)  # a dark garment on white
    pixels[1200:4800, 1800:4200] = 40
    pixels[600:1800, 2400:3600] = 70
    big = tmp_path / ("big.jpg" if kind == "jpg" else "big.png")
    Image.fromarray(pixels.astype(np.uint16) * 257 if kind == "16-bit png" else pixels).save(big)
    small = tmp_path / "small.png"
    Image.fromarray(pixels).resize((2000, 2000), Image.Resampling.BOX).save(small)
    del pixels
    tracemalloc.start()  # numpy's arrays are traced; a full-size float32 copy alone is 144 MB
    try:
        framed = preprocess.from_path(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MB of arrays for a 6000x6000 picture"
    assert np.abs(framed - preprocess.from_path(small)).max() < 0.1


def test_animated_gif_uses_first_frame(tmp_path: Path):
    first, second = photo(h=60, w=20), photo(h=20, w=60, at=(100, 40))
    path = tmp_path / "anim.gif"
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    out = preprocess.from_path(path)[0]
    assert np.flatnonzero(out.max(1) > 0.5).size == 28  # the tall first frame


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is not a picture\n", "not a picture"),
])
def test_not_pictures(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        preprocess.from_path(path)


def test_an_empty_file_is_said_to_be_empty_and_nothing_else(tmp_path: Path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        preprocess.from_path(path)
    assert str(caught.value) == f"{path}: empty file"


def test_truncated_png(tmp_path: Path):
    buf = io.BytesIO()
    photo().save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        preprocess.from_path(path)


def test_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(ImageError, match="no such file"):
        preprocess.from_path(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        preprocess.from_path(tmp_path)


def test_tiny_and_blank_pictures():
    with pytest.raises(ImageError, match="too small"):
        preprocess.from_pil(Image.new("L", (1, 1)))
    with pytest.raises(ImageError, match="blank"):
        preprocess.from_pil(Image.new("L", (40, 40), 255))


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height, with a few bytes of data: cheap to build."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [30000, 7000])  # above Pillow's own limit, and only above ours
def test_decompression_bomb_refused_from_header(tmp_path: Path, side: int, recwarn):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(side, side))
    with pytest.raises(ImageError, match="refused"):
        preprocess.from_path(path)


def test_arrays():
    im = garment()
    np.testing.assert_allclose(preprocess.from_array(im)[0], im / 255.0, atol=1e-6)
    np.testing.assert_allclose(preprocess.from_array(im / 255.0)[0], im / 255.0, atol=1e-6)
    big = np.asarray(photo().convert("RGB"))  # (200, 150, 3): framed like a file
    assert preprocess.from_array(big)[0, 14, 14] > 0.7
    with pytest.raises(ImageError, match="not a picture"):
        preprocess.from_array(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ImageError, match="NaN"):
        preprocess.from_array(np.full((28, 28), np.nan))


def test_array_scales_are_read_from_the_dtype_or_refused_never_guessed_wrong():
    im = garment()
    want = im / 255.0
    overshoot = want.astype(np.float32)
    overshoot[0, 0] = 1.0001  # a bicubic resize's ringing: still [0, 1], not 0-255
    np.testing.assert_allclose(preprocess.from_array(overshoot)[0, 1:], want[1:], atol=1e-6)
    np.testing.assert_allclose(preprocess.from_array(im.astype(np.float64))[0], want, atol=1e-6)  # 0-255 floats
    sixteen = (im.astype(np.uint16) * 257)
    for order in ("<u2", ">u2"):  # 16-bit in either byte order
        np.testing.assert_allclose(preprocess.from_array(sixteen.astype(order))[0], want, atol=1e-6)
    np.testing.assert_allclose(preprocess.from_array(im.astype(np.int32))[0], want, atol=1e-6)
    np.testing.assert_allclose(preprocess.from_array(im[..., None])[0], want, atol=1e-6)  # (28, 28, 1)
    standardised = (want - 0.286) / 0.353
    for bad, needle in ((standardised, "fit neither"), (want * 2 - 1, "fit neither"),
                        (sixteen.astype(np.int32), "integer pixels from 0 to 51400"),
                        (-im.astype(np.int16), "integer pixels from -200"), (want * 400, "fit neither")):
        with pytest.raises(ImageError, match=needle):
            preprocess.from_array(bad)


def test_a_blank_framed_array_is_refused_as_a_blank_file_is():
    for level in (0, 255, 0.5):
        with pytest.raises(ImageError, match="blank picture"):
            preprocess.from_array(np.full((28, 28), level, np.float32 if level == 0.5 else np.uint8))
    with pytest.raises(ImageError, match="blank picture"):
        preprocess.from_array(np.zeros((56, 56), np.uint8))


def test_a_huge_array_is_refused_before_any_copy_of_it(monkeypatch):
    huge = np.zeros((1, 1), np.uint8)
    huge = np.lib.stride_tricks.as_strided(huge, shape=(9000, 9000), strides=(0, 0))  # 81 MP, no memory
    copied = []
    monkeypatch.setattr(preprocess, "_scaled", lambda *a: copied.append(1))
    with pytest.raises(ImageError, match="81000000|9000x9000 pixels is more than the 40 MP limit$"):
        preprocess.from_array(huge)
    assert not copied


def test_a_failed_file_is_closed_so_a_batch_job_keeps_its_descriptors(tmp_path: Path):
    tiny, truncated = tmp_path / "tiny.png", tmp_path / "cut.png"
    Image.new("L", (2, 2)).save(tiny)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    truncated.write_bytes(buffer.getvalue()[:300])
    opened = []
    real_open = Image.open

    def tracking_open(*args, **kwargs):
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    kept = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "open", tracking_open)
        for path in (tiny, truncated):
            with pytest.raises(ImageError) as caught:
                preprocess.from_path(path)
            kept.append(caught.value)  # as classify_files keeps it, traceback and all
    assert len(opened) == 2 and all(getattr(im, "fp", None) is None for im in opened)


def test_a_callers_pil_image_keeps_its_frame_and_a_closed_one_is_an_image_error(tmp_path: Path):
    frames = [Image.fromarray(garment(w=w)) for w in (11, 25)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as im:
        im.seek(1)
        second = preprocess.from_pil(im)
        assert im.tell() == 1
        np.testing.assert_allclose(second, preprocess.from_pil(frames[1].convert("RGB")), atol=1e-6)
    with Image.open(path) as im:
        pass  # closed before its pixels were loaded
    with pytest.raises(ImageError, match="cannot read the image's pixels"):
        preprocess.from_pil(im)


def test_odd_file_names_are_image_errors():
    with pytest.raises(ImageError, match="empty path"):
        preprocess.from_path("")
    with pytest.raises(ImageError, match=r"a\\x00b.png: not a usable file name"):
        preprocess.from_path("a\x00b.png")
