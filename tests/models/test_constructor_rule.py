"""The one constructor rule (docs/development.md): ``Component(config, *, collaborators,
**overrides)`` with ``config`` a config instance, a mapping or ``None``, overrides winning."""

from __future__ import annotations

import inspect
from typing import Any, cast

import pytest

from llmrec.errors import ConfigError
from llmrec.lm.fake import FakeLM
from llmrec.models.catalogue import model_names
from llmrec.models.popularity import Popularity
from llmrec.models.registry import get_model_class
from llmrec.paradigms.direct import TwoStage, VerbaliserRanker
from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder
from llmrec.paradigms.tokens.quantize import RQVAE, RQKMeans, RQKMeansConfig


@pytest.mark.parametrize("name", model_names())
def test_every_model_takes_config_then_keyword_collaborators(name: str) -> None:
    klass = get_model_class(name)
    params = list(inspect.signature(klass).parameters.values())
    assert params[0].name == "config" and params[0].default is None
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD
    # only TwoStage keeps a second positional: its documented shorthand TwoStage(retriever, ranker)
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == (["config", "ranker"] if name == "two_stage" else ["config"])


@pytest.mark.parametrize("name", model_names())
def test_config_mapping_and_overrides_build_the_same_model(name: str) -> None:
    klass = get_model_class(name)
    seed = 7
    from_overrides = klass(seed=seed)
    from_mapping = klass({"seed": seed})
    from_instance = klass(klass.config_class(), seed=seed)
    assert from_overrides.config == from_mapping.config == from_instance.config
    assert klass({"seed": 1}, seed=seed).config.seed == seed  # overrides win


def test_a_bad_value_names_the_component_and_field() -> None:
    with pytest.raises(ConfigError, match=r"^itemknn: no_such_field: Extra inputs"):
        get_model_class("itemknn")(no_such_field=1)
    with pytest.raises(ConfigError, match="needs a RQKMeansConfig or a mapping"):
        RQKMeans(cast(Any, ["levels"]))


def test_helpers_follow_the_rule_too() -> None:
    assert RQKMeans(RQKMeansConfig(levels=2), codebook_size=4).config.codebook_size == 4
    assert RQKMeans({"levels": 2}).config.levels == 2
    assert RQVAE({"levels": 2}, runtime={"threads": 1}).runtime.threads == 1
    assert TextEncoder({"encoder": "fake:8"}, cache=False).settings == EncoderConfig(
        encoder="fake:8", cache=False
    )


def test_two_stage_takes_its_collaborators_by_keyword_or_by_the_shorthand() -> None:
    ranker = VerbaliserRanker(lm=FakeLM())
    keyword = TwoStage(retriever=Popularity(), ranker=ranker, n_candidates=5)
    shorthand = TwoStage(Popularity(), ranker, n_candidates=5)
    assert keyword.config == shorthand.config
    with pytest.raises(ConfigError, match="given twice"):
        TwoStage(Popularity(), retriever=Popularity())


def test_the_embeddings_models_take_their_lm_like_the_tokens_models() -> None:
    lm = FakeLM(dim=8)
    for name in ("textknn", "lm-sasrec", "user-tower", "tiger", "token-sasrec"):
        assert "lm_pool" in inspect.signature(get_model_class(name)).parameters
    model = get_model_class("textknn")(encoder="fake:8", lm=lm)
    from llmrec.testing import tiny_dataset

    model.fit(tiny_dataset())
    assert model.language_models() == [lm]
