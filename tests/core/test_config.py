"""The one strict config base and the one way a validation error becomes a line."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydantic import BaseModel, Field, ValidationError

import llmrec
from llmrec.config import StrictConfig, one_line, validated
from llmrec.errors import ConfigError


class _Size(StrictConfig):
    dim: int = Field(default=8, ge=1)
    name: str = "x"


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValidationError):
        _Size.model_validate({"dimm": 3})


def test_one_line_names_every_failing_field_on_one_line() -> None:
    with pytest.raises(ValidationError) as info:
        _Size.model_validate({"dim": 0, "name": "a\nb", "extra": 1})
    line = one_line(info.value, "invalid size config")
    assert "\n" not in line
    assert line.startswith("invalid size config: dim: ")
    assert "extra: " in line


def test_validator_messages_lose_pydantics_prefix() -> None:
    with pytest.raises(ConfigError, match=r"^runtime: device: must be auto"):
        from llmrec.runtime import runtime_options

        runtime_options({"device": "tpu"})


def test_validated_raises_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^where: top level: Input should be"):
        validated(_Size, [1, 2], "where")


def _config_classes() -> list[type[BaseModel]]:
    found = []
    for info in pkgutil.walk_packages(llmrec.__path__, "llmrec."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed here
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == info.name
                and value.__name__.endswith(("Config", "Settings", "Options"))
            ):
                found.append(value)
    return found


def test_every_component_config_inherits_the_strict_base() -> None:
    classes = _config_classes()
    assert len(classes) > 20
    loose = [c.__qualname__ for c in classes if not issubclass(c, StrictConfig)]
    assert loose == []
