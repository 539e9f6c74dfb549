"""The public packages' ``__all__`` (the httpx habit): every name listed resolves, and every
public name a package defines is listed, so the API is what ``__all__`` says."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "llmrec",
    "llmrec.data",
    "llmrec.eval",
    "llmrec.lm",
    "llmrec.engine",
    "llmrec.batch",
    "llmrec.models",
    "llmrec.paradigms.direct",
    "llmrec.paradigms.embeddings",
    "llmrec.paradigms.tokens",
    "llmrec.serve",
    "llmrec.compare",
    "llmrec.report",
]


#: Names a module binds for its own use that are not objects of the API.
NOT_API = {"TYPE_CHECKING"}


def _defined_in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_resolves(name: str) -> None:
    package = importlib.import_module(name)
    exported = package.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(package, n)]
    assert not missing, f"{name}.__all__ names what the package lacks: {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_is_in_all(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        n
        for n, value in vars(package).items()
        if not n.startswith("_")
        and n not in NOT_API
        and not isinstance(value, types.ModuleType)
        # defined in the package or one of its modules (constants have no __module__);
        # helpers imported from elsewhere, such as an error class, are not its API
        and _defined_in(getattr(value, "__module__", name), name)
    }
    unlisted = sorted(public - set(package.__all__))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"
