"""What the HTTP service reads and writes: the response models, the request models (built per
app, their limits from the config) and the strict JSON body parser.

This module deliberately has no ``from __future__ import annotations``: FastAPI must see the
request models as real classes.
"""

import json
import math
from typing import Annotated, Any, NoReturn

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    model_validator,
)


def _no_bool_or_text(value: Any) -> Any:
    """JSON's integers are numbers without a fraction (``5``, ``5.0``): ``true`` and ``"5"`` are
    refused rather than read as ``1`` and ``5``."""
    if isinstance(value, bool | str):
        raise ValueError("an integer must be a JSON number, not a boolean or a string")
    return value


#: an integer of a request: ``5`` or ``5.0``, never ``true`` or ``"5"``
JsonInt = Annotated[int, BeforeValidator(_no_bool_or_text)]


def _id_kind(value: Any) -> str:
    return "string" if isinstance(value, str) else "integer"


#: JSON ids: integers within what every JSON reader keeps exactly, or short strings
JsonId = Annotated[
    Annotated[int, Field(ge=-(2**53), le=2**53), BeforeValidator(_no_bool_or_text), Tag("integer")]
    | Annotated[str, Field(max_length=128), Tag("string")],
    Discriminator(_id_kind),
]


class ErrorOut(BaseModel):
    detail: str


class ItemOut(BaseModel):
    id: JsonId
    title: str
    popularity: int
    score: float | None = None


class RecommendOut(BaseModel):
    entry: str = Field(description="the served model that answered")
    paradigm: str
    model: str
    user_id: JsonId | None
    items: list[ItemOut]
    degraded: bool = Field(description="true when the retriever answered instead of the LM")
    degraded_reason: str | None
    batch_size: int = Field(description="requests answered by the same model call")
    timings_ms: dict[str, float]


class ParadigmOut(BaseModel):
    name: str
    paradigm: str
    model: str
    serves_new_users: bool
    reads_profile: bool
    calls_lm: bool
    degrades_to: str | None


class UserOut(BaseModel):
    id: JsonId
    profile: dict[str, str]
    n_interactions: int
    history: list[ItemOut]


class ItemDetailsOut(ItemOut):
    fields: dict[str, Any]


class ShiftOut(BaseModel):
    offset: int
    slot: list[int] = Field(description="each candidate's slot in this order (0 = first)")
    rank: list[int] = Field(description="each candidate's LM rank in this order (0 = best)")


class PositionOut(BaseModel):
    entry: str
    candidates: list[ItemOut]
    shifts: list[ShiftOut]
    timings_ms: dict[str, float]


def request_models(max_k: int, max_history: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request bodies, with the config's limits in their schema."""

    class _Query(BaseModel):
        # "user_id or history" is in the schema too, so generated clients and fuzzers know it
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "anyOf": [
                    {"required": [key], "properties": {key: {"not": {"type": "null"}}}}
                    for key in ("user_id", "history")
                ]
            },
        )

        user_id: JsonId | None = Field(default=None, description="a known user's id")
        history: list[JsonId] | None = Field(
            default=None,
            max_length=max_history,
            description="item ids, oldest first; replaces the known user's history",
        )
        profile: dict[str, Annotated[str, Field(max_length=200)]] | None = Field(
            default=None, max_length=32, description="attributes for models that read profiles"
        )
        paradigm: str | None = Field(
            default=None, max_length=64, description="an entry name or a paradigm"
        )
        exclude_seen: StrictBool = True

        @model_validator(mode="after")
        def _someone(self) -> "_Query":
            if self.user_id is None and self.history is None:
                raise ValueError("give user_id or history")
            return self

    class RecommendRequest(_Query):
        k: JsonInt = Field(default=10, ge=1, le=max_k)

    class PositionRequest(_Query):
        shifts: JsonInt = Field(default=4, ge=1, le=26)

    return RecommendRequest, PositionRequest


def parse_body(body: bytes) -> Any:
    """The JSON value of a request body, read by RFC 8259 alone: UTF-8 text, finite numbers
    (no ``NaN``, ``Infinity`` or ``1e999``, which Python's reader would take), each key once per
    object, nesting Python can follow. Anything else is a :class:`json.JSONDecodeError`, which
    FastAPI answers with its 422 list (``json_invalid``)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not UTF-8 text", "", exc.start) from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_json_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # from a hook, or nesting too deep
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise json.JSONDecodeError(why, text, 0) from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number in JSON (RFC 8259)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a finite number")
    return value


def _json_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # over Python's digit limit for int(str)
        raise ValueError(f"an integer of {len(text)} digits is too long") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)
