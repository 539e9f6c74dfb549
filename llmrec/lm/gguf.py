"""GGUF files to safetensors folders, once: what :class:`~llmrec.lm.hf.HFCausalLM` loads.

Transformers dequantises a GGUF to float32 (slow: docs/benchmarks.md); the result is
saved once as a safetensors folder (tokenizer included) under the model cache, named by the
file's stem and a fingerprint, and every later load reads that folder. The folder is written
under a temporary name and renamed into place, so an interrupted conversion never leaves a
half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmrec.errors import BackendError, ConfigError, require

__all__ = ["convert_gguf", "converted_dir"]

log = logging.getLogger(__name__)

#: marker written last into a converted folder; its presence means the conversion completed
_MARKER = "llmrec-conversion.json"


def _fingerprint(path: Path) -> str:
    """16 hex digits identifying a large file by size and its first and last MiB (fast)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def converted_dir(gguf_path: Path, cache_dir: Path) -> Path:
    """Folder where the safetensors conversion of ``gguf_path`` lives (it may not exist yet)."""
    return cache_dir / "hf" / f"{gguf_path.stem}-{_fingerprint(gguf_path)}"


def convert_gguf(gguf_path: str | Path, cache_dir: str | Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder under ``cache_dir``; return it.

    Returns at once when a complete conversion is already there. The folder is written under a
    temporary name and renamed, so readers only ever see complete conversions.
    """
    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise ConfigError(f"GGUF file not found: {gguf_path}")
    target = converted_dir(gguf_path, Path(cache_dir))
    if (target / _MARKER).is_file():
        return target
    transformers: Any = require("transformers", "lm")
    require("gguf", "lm")
    require("accelerate", "lm")
    import torch

    log.info("converting %s to safetensors (once; later loads use %s)", gguf_path.name, target)
    kwargs = {"gguf_file": gguf_path.name}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), dtype=torch.float32, **kwargs
        )
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(f"cannot load GGUF {gguf_path}: {exc}") from exc
    # save_pretrained refuses a GGUF-loaded model while it still looks quantised
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"gguf": str(gguf_path), "transformers": transformers.__version__}
        (tmp / _MARKER).write_text(json.dumps(source))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
