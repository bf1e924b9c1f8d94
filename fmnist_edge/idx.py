"""Fashion-MNIST's IDX files: find them, read them (raw or .gz), and refuse corrupt ones.

Torch-free on purpose: the runtime's tools and the tests read the same files.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist_edge.errors import DataError
from fmnist_edge.spec import IMAGE_SIZE, NUM_CLASSES

DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DATA_DIR = "FMNIST_EDGE_DATA"
CACHE_DATA_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fmnist-edge"

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000)}
# No real IDX file of this project is larger; a header claiming more is refused before reading.
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024

HOW_TO_GET = (
    "get the data with `apt-get install dataset-fashion-mnist` (Debian), or pass --data-dir / "
    f"set {ENV_DATA_DIR} to a folder holding the four Fashion-MNIST IDX files (.gz or raw)"
)


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64


def _read_limited(path: Path, limit: int) -> bytearray:
    """The file's (decompressed) bytes, never more than `limit` + 1 of them. Read in blocks:
    f.read(limit + 1) would allocate all `limit` bytes up front, whatever a lying header says."""
    opener = gzip.open if path.suffix == ".gz" else open
    data = bytearray()
    try:
        with opener(path, "rb") as f:
            while len(data) <= limit:
                block = f.read(min(1 << 20, limit + 1 - len(data)))
                if not block:
                    break
                data += block
        return data
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or truncated ({exc}); {HOW_TO_GET}") from None


def _parse(path: Path, magic: int) -> np.ndarray:
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    head = _read_limited(path, header_len - 1)
    if len(head) < header_len:
        raise DataError(f"{path}: too short for an IDX header; {HOW_TO_GET}")
    (found,) = struct.unpack(">I", head[:4])
    if found != magic:
        raise DataError(f"{path}: bad magic number 0x{found:08x} (expected 0x{magic:08x}); {HOW_TO_GET}")
    dims = struct.unpack(f">{ndim}I", head[4:header_len])
    payload = math.prod(dims)  # Python ints: np.prod in int64 wraps (2^31 * 2^31 * 4 == 0)
    if payload > MAX_PAYLOAD_BYTES:
        raise DataError(f"{path}: header claims {payload} bytes, more than any Fashion-MNIST file; {HOW_TO_GET}")
    data = _read_limited(path, header_len + payload)
    if len(data) != header_len + payload:
        kind = "truncated" if len(data) < header_len + payload else "longer than its header says"
        raise DataError(f"{path}: {kind} (header says {dims}); {HOW_TO_GET}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def read_images(path: str | os.PathLike) -> np.ndarray:
    images = _parse(Path(path), IMAGES_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: images are {images.shape[1:]}, expected 28x28; {HOW_TO_GET}")
    return images


def read_labels(path: str | os.PathLike) -> np.ndarray:
    labels = _parse(Path(path), LABELS_MAGIC)
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}; {HOW_TO_GET}")
    return labels.astype(np.int64)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _required_file(folder: Path, stem: str) -> Path:
    found = _find_file(folder, stem)
    if found is None:  # gone since find_data_dir saw it
        raise DataError(f"{folder}: no {stem} file any more; {HOW_TO_GET}")
    return found


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where to look, in order: the given folder, $FMNIST_EDGE_DATA, Debian's, the cache."""
    if data_dir is not None:
        return [Path(data_dir)]
    dirs = []
    if os.environ.get(ENV_DATA_DIR):
        return [Path(os.environ[ENV_DATA_DIR])]
    dirs += [DEBIAN_DATA_DIR, CACHE_DATA_DIR, CACHE_DATA_DIR / "FashionMNIST" / "raw"]
    return dirs


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The first folder that holds all four files; a DataError saying how to get them if none."""
    stems = [s for pair in SPLITS.values() for s in pair[:2]]
    for folder in candidate_dirs(data_dir):
        if all(_find_file(folder, s) for s in stems):
            return folder
    looked = ", ".join(str(d) for d in candidate_dirs(data_dir))
    raise DataError(f"Fashion-MNIST not found (looked in {looked}); {HOW_TO_GET}")


def _is_standard_dir(folder: Path) -> bool:
    """Debian's folder or the download cache: where only the real, complete files live."""
    standard = (DEBIAN_DATA_DIR, CACHE_DATA_DIR, CACHE_DATA_DIR / "FashionMNIST" / "raw")
    return folder.resolve() in {d.resolve() for d in standard}


def load_split(split: str, data_dir: str | os.PathLike | None = None,
               expect_full: bool | None = None) -> Split:
    """Read one split as numpy arrays. The real files (Debian's folder, the cache) must hold
    exactly 60k / 10k images; a folder the user names (--data-dir, $FMNIST_EDGE_DATA) may hold
    a smaller set, e.g. a subset or test fixtures. `expect_full` overrides that choice."""
    images_stem, labels_stem, count = SPLITS[split]
    folder = find_data_dir(data_dir)
    if expect_full is None:
        expect_full = _is_standard_dir(folder)
    images = read_images(_required_file(folder, images_stem))
    labels = read_labels(_required_file(folder, labels_stem))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels; {HOW_TO_GET}")
    if len(images) == 0:
        raise DataError(f"{folder}: {split} holds no images; {HOW_TO_GET}")
    if expect_full and len(images) != count:
        raise DataError(f"{folder}: {split} has {len(images)} images, expected {count}; {HOW_TO_GET}")
    return Split(images, labels)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz); for tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
