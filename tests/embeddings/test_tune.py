"""Contrastive tuning of the text encoder: pairs from the training split only (a planted marker
item proves it), cold items never targets, tuned weights saved, reloaded and cached apart from
the zero-shot encodings. A tiny BERT sentence encoder is built here (no download)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.compare.evidence import is_seeded
from llmrec.compare.measure import tuning_cost
from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.paradigms.embeddings import tune_train
from llmrec.paradigms.embeddings.knn import TextKNN
from llmrec.paradigms.embeddings.lm_sasrec import LMSASRec
from llmrec.paradigms.embeddings.tune import (
    ENCODER_DIR,
    TUNING_FILE,
    EncoderTuneConfig,
    training_pairs,
)
from llmrec.paradigms.embeddings.user_tower import UserTower
from llmrec.paradigms.tokens.token_sasrec import TokenSASRec
from llmrec.runtime import RuntimeOptions
from llmrec.testing import RecommenderConformance, tiny_dataset

MARKER = "zzmarker"
WORDS = ["movie", "drama", "comedy", "western", "lonely", "sunset", "zzmarker"]


def build_tiny_encoder(folder: Path) -> Path:
    """A 1-layer, 16-wide BERT sentence encoder with a word-piece vocabulary written here."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = folder / "hf"
    hf.mkdir(parents=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ";", ":", "(", ")", "-"]
    vocab = specials + WORDS + list("abcdefghijklmnopqrstuvwxyz0123456789")
    (hf / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    )
    bert.save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt")).save_pretrained(hf)
    modules = [Transformer(str(hf), max_seq_length=48), Pooling(16, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(
        str(folder / "st"), create_model_card=False
    )
    return folder / "st"


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"st:{build_tiny_encoder(tmp_path_factory.mktemp('tiny-encoder'))}"


TUNE = {"max_pairs": 64, "batch_size": 16, "lr": 1e-3}


def marked_dataset() -> tuple[Dataset, int, int]:
    """tiny_dataset plus a marker item that only users 0 and 1 take, as their last (test) and
    second-to-last (validation) items, and a catalogue item no one takes."""
    base = tiny_dataset(n_users=12, n_items=10, per_user=6)
    marker, cold = base.n_items, base.n_items + 1
    users = np.concatenate([base.users, [0, 1, 1]])
    items = np.concatenate([base.items, [marker, marker, 2]])
    t_end = int(base.timestamps.max())
    times = np.concatenate([base.timestamps, [t_end + 10, t_end + 10, t_end + 20]])
    text = pd.concat(
        [
            base.item_text,
            pd.DataFrame({"title": [MARKER, "lonely sunset"], "genres": ["Western", "Western"]}),
        ],
        ignore_index=True,
    )
    return (
        Dataset(
            user_ids=base.user_ids,
            item_ids=np.array([*base.item_ids, "marker", "cold"], dtype=object),
            users=users,
            items=items,
            timestamps=times,
            item_text=text,
            user_attrs=base.user_attrs,
            name="marked",
        ),
        marker,
        cold,
    )


# --- pairs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["co-interaction", "next-item"])
def test_no_validation_or_test_item_reaches_a_training_pair(kind):
    data, marker, _ = marked_dataset()
    split = leave_one_out(data)
    assert marker in split.test.items and marker in split.valid.items  # planted where it must
    texts = split.train.item_texts()
    cfg = EncoderTuneConfig(pairs=kind, max_pairs=None, window=3)
    pairs = training_pairs(split.train, texts, cfg, seed=0)
    assert len(pairs.anchors) == pairs.n_available > 0
    assert marker not in pairs.items
    assert not any(MARKER in t for t in pairs.anchors + pairs.positives)


def test_the_marker_never_reaches_the_trainer_through_fit(monkeypatch, tmp_path):
    seen = {}

    def spy(base, pairs, cfg, seed, runtime, out):
        seen["texts"] = pairs.anchors + pairs.positives
        raise RuntimeError("stop after the pairs")

    monkeypatch.setattr(tune_train, "_train", spy)
    data, _, _ = marked_dataset()
    split = leave_one_out(data)
    model = TextKNN(encoder=f"st:{tmp_path}", tune={"pairs": "next-item"}, cache=False)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(RuntimeError, match="stop after"):
        model.fit(split.train, split.valid)
    assert seen["texts"] and not any(MARKER in t for t in seen["texts"])


def test_items_without_training_interactions_are_never_targets():
    data, _, cold = marked_dataset()
    split = leave_one_out(data)
    assert split.train.item_popularity()[cold] == 0
    for kind in ("co-interaction", "next-item"):
        cfg = EncoderTuneConfig(pairs=kind, max_pairs=None)
        pairs = training_pairs(split.train, split.train.item_texts(), cfg, seed=0)
        assert cold not in pairs.items
        assert not any("lonely sunset" in t for t in pairs.anchors + pairs.positives)


def test_pairs_follow_the_histories_and_the_draw_is_seeded():
    # user 0 takes items 0, 1, 2 in that order; user 1 takes item 3 only
    data = Dataset(
        user_ids=np.array(["a", "b"], dtype=object),
        item_ids=np.arange(4),
        users=np.array([0, 0, 0, 1]),
        items=np.array([2, 0, 1, 3]),
        timestamps=np.array([3, 1, 2, 1]),
        item_text=pd.DataFrame({"title": ["t0", "t1", "t2", "t3"]}),
    )
    texts = ["t0", "t1", "t2", "t3"]
    co = training_pairs(data, texts, EncoderTuneConfig(max_pairs=None, window=2), seed=0)
    assert sorted(zip(co.anchors, co.positives, strict=True)) == [
        ("t0", "t1"),
        ("t0", "t2"),
        ("t1", "t2"),
    ]
    nxt = training_pairs(data, texts, EncoderTuneConfig(pairs="next-item", max_pairs=None), 0)
    assert list(zip(nxt.anchors, nxt.positives, strict=True)) == [("t0", "t1"), ("t1; t0", "t2")]
    many = tiny_dataset()
    names = many.item_texts()
    draw = EncoderTuneConfig(max_pairs=20)
    a, b = training_pairs(many, names, draw, 1), training_pairs(many, names, draw, 1)
    c = training_pairs(many, names, draw, 2)
    assert len(a.anchors) == 20 and a.n_available == 40 * 7
    assert a.anchors == b.anchors and a.positives == b.positives
    assert (a.anchors, a.positives) != (c.anchors, c.positives)


def test_a_tuned_entry_is_run_on_every_seed_of_a_compare():
    assert is_seeded("textknn", {"encoder": "minilm-l6", "tune": {}})
    assert not is_seeded("textknn", {"encoder": "minilm-l6"})
    assert not is_seeded("textknn", {"tune": {"seed": 3}})  # a fixed tuning seed


def test_tuning_needs_a_sentence_transformers_encoder():
    with pytest.raises(ConfigError, match="tune needs a sentence-transformers encoder"):
        TextKNN(encoder="fake:16", tune={})
    with pytest.raises(ConfigError, match="max_pairs"):
        TextKNN(encoder="minilm-l6", tune={"max_pairs": 0})


# --- tuning, saving, loading, caching (the tiny encoder) -----------------------------------------
@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset(n_users=24, n_items=12, per_user=8))


def test_tuned_text_knn_reports_cost_and_round_trips(tiny_encoder, split, tmp_path):
    zero = TextKNN(encoder=tiny_encoder, cache=False).fit(split.train)
    model = TextKNN(encoder=tiny_encoder, tune=TUNE, cache=False).fit(split.train)
    assert not np.allclose(model.item_vectors, zero.item_vectors, atol=1e-4)
    cost = model.diagnostics()["tuning"]
    assert cost["pairs"] == 64 and cost["steps"] == 4 and cost["examples_seen"] == 64
    assert cost["tokens_seen"] > 128 and cost["weights_bytes"] > 0 and cost["cached"] == 0
    assert cost["cpu_seconds"] > 0 and cost["device"] == "cpu"
    assert zero.diagnostics() == {}
    # what compare's report puts beside the gain
    spent = {"tune_cpu_s": cost["cpu_seconds"], "tune_tokens": float(cost["tokens_seen"])}
    assert tuning_cost(model) == spent and tuning_cost(zero) == {}
    folder = model.save(tmp_path / "knn")
    assert (folder / ENCODER_DIR / "model.safetensors").is_file()
    assert (folder / ENCODER_DIR / TUNING_FILE).is_file()
    loaded = Recommender.load(folder)
    assert isinstance(loaded, TextKNN) and loaded.tuned is not None
    assert loaded.diagnostics() == model.diagnostics()
    users = split.test.active_users()
    np.testing.assert_array_equal(loaded.recommend(users, 5).items, model.recommend(users, 5).items)


def test_the_loss_the_config_names_is_the_one_trained(tiny_encoder, split):
    both_ways = TextKNN(encoder=tiny_encoder, tune={**TUNE, "loss": "symmetric"}, cache=False)
    one_way = TextKNN(encoder=tiny_encoder, tune={**TUNE, "loss": "mnrl"}, cache=False)
    default = TextKNN(encoder=tiny_encoder, tune=TUNE, cache=False)
    vectors = [m.fit(split.train).item_vectors for m in (both_ways, one_way, default)]
    assert not np.allclose(vectors[0], vectors[1], atol=1e-5)
    np.testing.assert_allclose(vectors[2], vectors[1], atol=1e-6)  # one way by default
    with pytest.raises(ConfigError, match="loss"):
        TextKNN(encoder="minilm-l6", tune={"loss": "triplet"})


def test_loaded_user_tower_encodes_users_with_the_tuned_encoder(tiny_encoder, split, tmp_path):
    cfg = {"encoder": tiny_encoder, "cache": False, "item_template": "{title}. {genres}"}
    tuned = UserTower(cfg, tune={**TUNE, "pairs": "next-item"}).fit(split.train)
    zero = UserTower(cfg).fit(split.train)
    users = split.test.active_users()
    hist = split.known_at_test().history()
    before = tuned.score(users, hist)
    assert not np.allclose(before, zero.score(users, hist), atol=1e-4)
    loaded = Recommender.load(tuned.save(tmp_path / "tower"))
    np.testing.assert_allclose(loaded.score(users, hist), before, atol=1e-5)


def test_tuned_weights_and_vectors_are_cached_apart_from_zero_shot(tiny_encoder, split, tmp_path):
    runtime = RuntimeOptions(cache_dir=str(tmp_path / "cache"))
    zero_before = TextKNN(encoder=tiny_encoder, runtime=runtime).fit(split.train).item_vectors
    first = TextKNN(encoder=tiny_encoder, tune=TUNE, runtime=runtime).fit(split.train)
    again = TextKNN(encoder=tiny_encoder, tune=TUNE, runtime=runtime).fit(split.train)
    assert first.diagnostics()["tuning"]["cached"] == 0
    assert again.diagnostics()["tuning"]["cached"] == 1
    assert again.diagnostics()["tuning"]["steps"] == first.diagnostics()["tuning"]["steps"]
    np.testing.assert_array_equal(again.item_vectors, first.item_vectors)
    zero_after = TextKNN(encoder=tiny_encoder, runtime=runtime).fit(split.train).item_vectors
    np.testing.assert_array_equal(zero_after, zero_before)
    assert not np.allclose(zero_after, first.item_vectors, atol=1e-4)
    other_seed = TextKNN(encoder=tiny_encoder, tune=TUNE, seed=1, runtime=runtime)
    assert other_seed.fit(split.train).diagnostics()["tuning"]["cached"] == 0


def test_a_damaged_tuned_folder_is_a_one_line_error(tiny_encoder, split, tmp_path):
    model = TextKNN(encoder=tiny_encoder, tune=TUNE, cache=False).fit(split.train)
    folder = model.save(tmp_path / "knn")
    modules = folder / ENCODER_DIR / "modules.json"
    listed = json.loads(modules.read_text())
    modules.write_text(json.dumps([{**listed[0], "type": "os.system"}, *listed[1:]]))
    with pytest.raises(ConfigError, match="sentence-transformers modules only"):
        Recommender.load(folder)
    (folder / ENCODER_DIR / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"model\.safetensors is missing"):
        Recommender.load(folder)
    for path in sorted((folder / ENCODER_DIR).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (folder / ENCODER_DIR).rmdir()
    with pytest.raises(ConfigError, match="encoder/ is missing"):
        Recommender.load(folder)


def test_lm_sasrec_and_token_sasrec_train_on_tuned_vectors(tiny_encoder, split, tmp_path):
    common = {"encoder": tiny_encoder, "tune": TUNE, "epochs": 1, "max_len": 8, "dim": 16}
    for klass in (LMSASRec, TokenSASRec):
        extra = {"codebook_size": 4, "levels": 2} if klass is TokenSASRec else {}
        model = klass({**common, **extra}, runtime=RuntimeOptions(cache_dir=str(tmp_path)))
        model.fit(split.train, split.valid)
        assert model.diagnostics()["tuning"]["pairs"] == 64
        loaded = Recommender.load(model.save(tmp_path / klass.name))
        assert isinstance(loaded, LMSASRec | TokenSASRec) and loaded.tuned is not None
        users = split.test.active_users()
        np.testing.assert_array_equal(
            loaded.recommend(users, 5).items, model.recommend(users, 5).items
        )


class TestTunedTextKNN(RecommenderConformance):
    encoder = ""

    @pytest.fixture(autouse=True, scope="class")
    @staticmethod
    def _encoder(request: pytest.FixtureRequest, tiny_encoder: str) -> None:
        request.cls.encoder = tiny_encoder

    def make_model(self):
        return TextKNN(encoder=self.encoder or "minilm-l6", tune=TUNE, cache=False)


# --- the real encoder ----------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_tuned_on_co_interactions_round_trips(tmp_path):
    split = leave_one_out(tiny_dataset())
    tune = {"max_pairs": 128, "batch_size": 32, "lr": 1e-4}
    model = TextKNN(encoder="minilm-l6", tune=tune, cache=False).fit(split.train)
    zero = TextKNN(encoder="minilm-l6", cache=False).fit(split.train)
    cost = model.diagnostics()["tuning"]
    assert cost["steps"] == 4 and cost["weights_bytes"] > 50e6
    assert not np.allclose(model.item_vectors, zero.item_vectors, atol=1e-4)
    loaded = Recommender.load(model.save(tmp_path / "knn"))
    users = split.test.active_users()
    np.testing.assert_array_equal(
        loaded.recommend(users, 10).items, model.recommend(users, 10).items
    )
