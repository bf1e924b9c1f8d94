"""`manifest.json` beside exported models: every file's size, sha256 and validation figures.

Torch-free: export writes it, the runtime checks each model file against it before loading.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fmnist_edge.errors import ModelError
from fmnist_edge.fileio import sha256_file, write_json
from fmnist_edge.spec import MANIFEST_NAME

FORMAT_VERSION = 1
# The entry fields that fmnist-edge reads, and their types: a hand-edited manifest is refused
# here in one line rather than failing later, deep in a command.
ENTRY_FIELDS = {"kind": str, "precision": str, "format": str, "source": str, "checkpoint": str, "size_bytes": int,
                "quantization": (dict, type(None)), "validation": dict, "models": list}
QUANTIZATION_FIELDS = {"method": str, "weight_bits": int}


def require_folder(folder: str | Path) -> None:
    """Refuse, in one line, a model folder that is not there or is a file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")


def read(folder: str | Path) -> dict | None:
    """The folder's manifest, None when there is none; a ModelError when it is unreadable."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ModelError(f"{path}: not an fmnist-edge manifest")
    if data.get("format") != FORMAT_VERSION:
        raise ModelError(f"{path}: manifest format {data.get('format')!r}, this fmnist-edge reads {FORMAT_VERSION}")
    for name, entry in data["files"].items():
        if Path(name).name != name or name in ("", ".", ".."):  # a path would point outside the folder
            raise ModelError(f"{path}: lists {name!r}, which is not a file name in its folder")
        if not (isinstance(entry, dict) and _is_sha256(entry.get("sha256"))):
            raise ModelError(f"{path}: the entry for {name} has no sha256")
        wrong = _wrong_field(entry)
        if wrong:
            raise ModelError(f"{path}: the entry for {name} has {wrong}")
    return data


def _wrong_field(entry: dict) -> str:
    """What is wrong with the types of an entry's fields, "" when nothing."""
    def typed(value, kind) -> bool:
        return isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))

    for field, kind in ENTRY_FIELDS.items():
        if field in entry and not typed(entry[field], kind):
            return f"a {field} of the wrong type ({type(entry[field]).__name__})"
    for field, kind in QUANTIZATION_FIELDS.items():
        if field in (entry.get("quantization") or {}) and not typed(entry["quantization"][field], kind):
            return f"a quantization {field} of the wrong type"
    for field, value in entry.get("validation", {}).items():
        if not typed(value, str if field == "precision" else (int, float)):
            return f"a validation {field} of the wrong type ({type(value).__name__})"
    return ""


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def write(folder: str | Path, files: dict, **info) -> Path:
    """Write the manifest atomically; `files` maps file name -> entry (kind, precision, ...)."""
    folder = Path(folder)
    entries = {}
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise ModelError(f"manifest would name a missing file: {path}")
        entries[name] = {**entry, "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}
    out = folder / MANIFEST_NAME
    write_json(out, {"format": FORMAT_VERSION, **info, "files": entries})
    return out


def verify(model_path: str | Path, content: bytes | None = None) -> dict | None:
    """Check a model file (or `content`, its bytes as read) against the manifest in its folder,
    if there is one.

    Returns its manifest entry (None without a manifest). Refuses a file that the manifest
    does not list or whose sha256 differs: it was altered or replaced after export.
    """
    model_path = Path(model_path)
    manifest = read(model_path.parent)
    if manifest is None:
        return None
    entry = manifest["files"].get(model_path.name)
    if entry is None:
        raise ModelError(f"{model_path}: not listed in {model_path.parent / MANIFEST_NAME}")
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such model file, though {MANIFEST_NAME} lists it")
    digest = sha256_file(model_path) if content is None else hashlib.sha256(content).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(f"{model_path}: sha256 {digest[:12]}... differs from its manifest "
                         f"({entry['sha256'][:12]}...): the file was altered after export, or an export into "
                         "its folder did not finish")
    return entry
