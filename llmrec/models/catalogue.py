"""The model catalogue: every fact about a recommender that callers need before building it.

One :class:`ModelSpec` per model — its short name, the import target of its class, the paradigm
it stands for, how far it reaches into a deployment (:class:`PipelineLevel`) and a rough cost
for estimates — declared once, in :data:`BUILTIN` below or at run time with
:func:`register_model`. ``llmrec run``, ``llmrec compare``, ``llmrec serve`` and loading a saved
folder all read this one table; nothing here imports a model, so importing the catalogue is
cheap and never cycles back to :mod:`llmrec.models.base`.

Adding a model is one new file (the class) and one line in :data:`BUILTIN`; a test registers
its own::

    register_model(ModelSpec("toy", "my_pkg.toy:Toy", "embeddings", PipelineLevel.NEW_INDEX))

and an installed package declares its models in the ``llmrec.models`` entry-point group (read
on the first look-up; :func:`load_plugins`), each naming a :class:`ModelSpec` or a plain
mapping of its fields, so that the package needs no llmrec import to be found::

    # pyproject.toml of my-pkg
    [project.entry-points."llmrec.models"]
    toy = "my_pkg.llmrec_plugin:TOY"
    # my_pkg/llmrec_plugin.py
    TOY = {"target": "my_pkg.toy:Toy", "paradigm": "embeddings", "rough_s": 10}
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from llmrec.errors import ConfigError

__all__ = [
    "ENTRY_POINT_GROUP",
    "PARADIGMS",
    "ModelSpec",
    "Paradigm",
    "PipelineLevel",
    "check_saved_name",
    "find_spec",
    "import_target",
    "load_plugins",
    "model_names",
    "model_spec",
    "register_model",
    "registered_class",
    "unregister_model",
]

#: the three ways a language model enters a recommender, and the classic baselines
Paradigm = Literal["classic", "embeddings", "tokens", "direct"]
PARADIGMS: tuple[Paradigm, ...] = ("classic", "embeddings", "tokens", "direct")


class PipelineLevel(IntEnum):
    """How far a model reaches into an existing deployment, least first (what the report's
    ``pipeline`` constraint compares)."""

    NOTHING_NEW = 0
    OFFLINE_JOB = 1
    NEW_INDEX = 2
    SERVING_MODEL = 3

    @property
    def label(self) -> str:
        """The words the report and ``compare.json`` show."""
        return _LABELS[self]

    @property
    def short(self) -> str:
        """The word ``--pipeline`` takes (``none``, ``offline``, ``index``, ``serving``)."""
        return _SHORT[self]

    @classmethod
    def parse(cls, text: str) -> PipelineLevel | None:
        """The level a label or short word names; ``None`` when it names none."""
        for level in cls:
            if text in (level.label, level.short, level.name.lower()):
                return level
        return None

    @classmethod
    def of_paradigm(cls, paradigm: str) -> PipelineLevel:
        """The level a paradigm needs unless its model says otherwise."""
        return _PARADIGM_LEVEL.get(paradigm, cls.SERVING_MODEL)


_LABELS = {
    PipelineLevel.NOTHING_NEW: "nothing new (no LM)",
    PipelineLevel.OFFLINE_JOB: "offline job only",
    PipelineLevel.NEW_INDEX: "new index",
    PipelineLevel.SERVING_MODEL: "new serving model",
}
_SHORT = {
    PipelineLevel.NOTHING_NEW: "none",
    PipelineLevel.OFFLINE_JOB: "offline",
    PipelineLevel.NEW_INDEX: "index",
    PipelineLevel.SERVING_MODEL: "serving",
}
_PARADIGM_LEVEL = {
    "classic": PipelineLevel.NOTHING_NEW,
    "embeddings": PipelineLevel.NEW_INDEX,
    "tokens": PipelineLevel.OFFLINE_JOB,
    "direct": PipelineLevel.SERVING_MODEL,
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModelSpec:
    """What the catalogue knows of one model.

    Attributes:
        name: the short name configs and saved folders use (lower case, digits, ``-``, ``_``);
            the class's ``name`` must equal it.
        target: the class as ``package.module:ClassName``, imported only when the model is
            built or loaded.
        paradigm: classic / embeddings / tokens / direct (``llmrec serve`` and the report group
            by it).
        pipeline: what the model needs from a deployment (default: its paradigm's level).
        rough_s: rough seconds of one compare stage on ML-100K on 2 cores (estimates only).
    """

    name: str
    target: str
    paradigm: Paradigm
    pipeline: PipelineLevel | None = None
    rough_s: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"model name {self.name!r}: use lower case, digits, '-' and '_'")
        if not _TARGET.match(self.target):
            raise ConfigError(f"model {self.name!r}: target {self.target!r} is not module:Class")
        if self.paradigm not in PARADIGMS:
            raise ConfigError(
                f"model {self.name!r}: paradigm {self.paradigm!r} is not one of "
                f"{', '.join(PARADIGMS)}"
            )
        if self.pipeline is None:
            object.__setattr__(self, "pipeline", PipelineLevel.of_paradigm(self.paradigm))

    @property
    def level(self) -> PipelineLevel:
        """:attr:`pipeline`, never ``None`` (filled from the paradigm at construction)."""
        return self.pipeline if self.pipeline is not None else PipelineLevel.NOTHING_NEW


_EMB, _TOK = "llmrec.paradigms.embeddings", "llmrec.paradigms.tokens"
_L = PipelineLevel
#: the models llmrec ships, one line each
BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec("popularity", "llmrec.models.popularity:Popularity", "classic", rough_s=2),
    ModelSpec("itemknn", "llmrec.models.itemknn:ItemKNN", "classic", rough_s=5),
    ModelSpec("bpr", "llmrec.models.bpr:BPR", "classic", rough_s=60),
    ModelSpec("sasrec", "llmrec.models.sasrec:SASRec", "classic", rough_s=120),
    ModelSpec("transition", "llmrec.models.transition:Transition", "classic", rough_s=3),
    ModelSpec("textknn", f"{_EMB}.knn:TextKNN", "embeddings", _L.NEW_INDEX, 30),
    ModelSpec("lm-sasrec", f"{_EMB}.lm_sasrec:LMSASRec", "embeddings", _L.OFFLINE_JOB, 150),
    ModelSpec("user-tower", f"{_EMB}.user_tower:UserTower", "embeddings", _L.SERVING_MODEL, 40),
    ModelSpec(
        "two_stage", "llmrec.paradigms.direct.two_stage:TwoStage", "direct", _L.SERVING_MODEL, 180
    ),
    ModelSpec("tiger", f"{_TOK}.generative:GenerativeRetrieval", "tokens", _L.SERVING_MODEL, 240),
    ModelSpec("token-sasrec", f"{_TOK}.token_sasrec:TokenSASRec", "tokens", _L.OFFLINE_JOB, 150),
)

_CATALOGUE: dict[str, ModelSpec] = {spec.name: spec for spec in BUILTIN}
#: the entry-point group installed packages declare their models in
ENTRY_POINT_GROUP = "llmrec.models"
_plugins_read = False


def _catalogue() -> dict[str, ModelSpec]:
    """The catalogue, with the installed plugins' models once they have been read."""
    if not _plugins_read:
        load_plugins()
    return _CATALOGUE


def load_plugins() -> list[str]:
    """Register the models installed packages declare in the ``llmrec.models`` entry-point
    group; return the names added. Called on the first catalogue look-up; call it again after
    installing a package (or putting one on ``sys.path``) in a running process.

    A plugin that cannot be loaded, declares something other than a spec, or takes a name
    already registered is skipped with a one-line warning: a broken package must not break
    llmrec.
    """
    global _plugins_read
    _plugins_read = True
    from importlib.metadata import entry_points

    added = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = _plugin_spec(ep.name, ep.load())
            if ep.name in _CATALOGUE and _CATALOGUE[ep.name] != spec:
                raise ConfigError(f"the name is taken by {_CATALOGUE[ep.name].target}")
        except Exception as exc:  # anything a third-party import raises
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            warnings.warn(
                f"model plugin {ep.name!r} ({ep.value}) skipped: {why}", RuntimeWarning, 2
            )
            continue
        _CATALOGUE[spec.name] = spec
        added.append(spec.name)
    return added


def _plugin_spec(name: str, declared: object) -> ModelSpec:
    """The :class:`ModelSpec` an entry point ``name`` declares: a spec, or a mapping of its
    fields (``name`` defaults to the entry point's; ``pipeline`` may be a word)."""
    if isinstance(declared, ModelSpec):
        spec = declared
    elif isinstance(declared, Mapping):
        fields = {"name": name, **declared}
        if isinstance(fields.get("pipeline"), str):
            level = PipelineLevel.parse(fields["pipeline"])
            if level is None:
                raise ConfigError(f"pipeline {fields['pipeline']!r} is not a pipeline level")
            fields["pipeline"] = level
        try:
            spec = ModelSpec(**fields)
        except TypeError as exc:
            raise ConfigError(f"not a model spec: {exc}") from None
    else:
        raise ConfigError(f"declares a {type(declared).__name__}, not a ModelSpec or a mapping")
    if spec.name != name:
        raise ConfigError(f"the entry point {name!r} names the model {spec.name!r}")
    return spec


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the catalogue (for this process): ``llmrec run``, ``compare``, ``serve``
    and :meth:`Recommender.load <llmrec.models.base.Recommender.load>` then know its name.

    Nothing is imported until the model is built. A name already registered is a
    :class:`ConfigError` unless ``replace``.
    """
    catalogue = _catalogue()
    if spec.name in catalogue and not replace and catalogue[spec.name] != spec:
        raise ConfigError(f"model {spec.name!r} is already registered ({catalogue[spec.name]})")
    catalogue[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove ``name`` from the catalogue (tests undo a :func:`register_model` with it)."""
    _CATALOGUE.pop(name, None)


def find_spec(name: str) -> ModelSpec | None:
    """The spec registered as ``name``, else ``None``."""
    return _catalogue().get(name)


def model_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; a one-line :class:`ConfigError` naming the known ones
    otherwise."""
    spec = _catalogue().get(name)
    if spec is None:
        raise ConfigError(f"model {name!r} is not a registered model; known models: {_known()}")
    return spec


def model_names() -> list[str]:
    """Every registered short name, sorted."""
    return sorted(_catalogue())


def import_target(target: str) -> object:
    """The object a ``module:Name`` target names; a :class:`ConfigError` when it cannot be
    imported. Callers check that it is the class they expect."""
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import model {target!r}: {exc}") from None


def registered_class(name: str, base: type) -> type:
    """The class of the registered short name ``name``, checked to derive from ``base`` (the
    caller's protocol class: the catalogue imports no model); anything else — an import path
    included — is a one-line :class:`ConfigError`."""
    target = model_spec(name).target
    klass = import_target(target)
    if not (isinstance(klass, type) and issubclass(klass, base)):
        raise ConfigError(f"{target!r} is not a {base.__name__} subclass")
    return klass


def check_saved_name(name: str, where: str, *, hint: str = "") -> None:
    """Refuse a model name read from a saved folder unless it is a registered short name:
    never an import path (a file must not choose what gets imported). ``where`` (the folder's
    ``config.json``) starts the error; ``hint`` ends it."""
    known = model_names()
    if name not in known:
        raise ConfigError(
            f"{where}: model {name!r} is not a registered model (known: {', '.join(known)}){hint}"
        )


def _known() -> str:
    return ", ".join(model_names())
