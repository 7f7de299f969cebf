"""Atomic file writes and content hashes: a run directory never holds a half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import DataFormatError, ModelSetupError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Swap a fully written folder into place; the old one is removed only after the new one exists."""
    old = final_dir.with_name(final_dir.name + ".old")
    if final_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)


def read_json(path: str | Path) -> Any:
    """A JSON file; one that does not parse (cut short, or edited by hand) is a DataFormatError that names it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, None, f"malformed JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, None, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def content_hash(obj: Any) -> str:
    """A stable sha256 of any JSON-serialisable value (keys sorted), used for data and config hashes."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def file_hash(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks (model weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_safetensors(model_dir: Path) -> None:
    """Models are read from safetensors only: a folder of pickled weights is refused by name, before anything loads."""
    if not any(model_dir.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in model_dir.iterdir())) or "nothing"
        raise ModelSetupError(f"{model_dir}: no safetensors weights (it holds {found}); models are loaded from "
                              "safetensors only")
