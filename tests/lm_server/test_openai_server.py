"""OpenAILM against a real llama.cpp server, checked against the same GGUF in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec.errors import BackendError

pytestmark = [pytest.mark.slow, pytest.mark.server]

PROMPT = (
    "Which of these is a fruit?\nA) a car\nB) an apple\nC) a chair\nD) a river\n"
    "Answer with one letter. Answer:"
)
LABELS = [" A", " B", " C", " D"]


def test_server_lists_its_model(llama_server: Any) -> None:
    import httpx

    answer = httpx.get(f"{llama_server.base_url}/models", timeout=10).json()
    assert [m["id"] for m in answer["data"]] == ["smollm2"]
    assert llama_server.running


def test_generate_through_chat_and_completions(server_lm: Any, llama_server: Any) -> None:
    from llmrec.lm.openai import OpenAILM

    chat = server_lm.generate(["Name one fruit.", "Name one colour."], max_new_tokens=12)
    assert len(chat) == 2 and all(isinstance(t, str) and t.strip() for t in chat)
    with OpenAILM(llama_server.base_url, llama_server.model, use_chat=False) as plain:
        text = plain.generate(["The capital of France is"], max_new_tokens=6, stop=["\n"])[0]
    assert "Paris" in text and "\n" not in text


def test_chat_generation_matches_in_process_greedy(server_lm: Any, llama_lm: Any) -> None:
    prompt = ["Name one fruit."]
    assert server_lm.generate(prompt, max_new_tokens=12) == llama_lm.generate(
        prompt, max_new_tokens=12
    )


def test_score_next_agrees_with_in_process(server_lm: Any, llama_lm: Any) -> None:
    remote = server_lm.score_next_batch([PROMPT, "Pick a letter. Answer:"], LABELS)
    local = llama_lm.score_next_batch([PROMPT, "Pick a letter. Answer:"], LABELS)
    assert remote.shape == (2, 4) and remote.dtype == np.float32
    # labels in the server's top-20 carry exact log-probs; the others an upper bound
    np.testing.assert_array_less(local - 1e-3, remote)
    seen = np.isclose(remote, local, atol=1e-3)
    assert seen.sum() >= 4
    assert np.argmax(remote[0]) == np.argmax(local[0])


def test_label_outside_top_n_gets_bound_below_seen_labels(server_lm: Any) -> None:
    before = server_lm.stats.extra.get("labels_below_top_n", 0)
    scores = server_lm.score_next(PROMPT, [" A", " Zebra"])
    assert scores[1] < scores[0]
    assert server_lm.stats.extra["labels_below_top_n"] == before + 1


def test_loglikelihood_is_right_or_refused(server_lm: Any, llama_lm: Any) -> None:
    prompt, conts = "The capital of France is", [" Paris", " Rome and Milan"]
    try:
        remote = server_lm.loglikelihood(prompt, conts)
    except BackendError as exc:
        assert "prompt logprobs" in str(exc)
        assert server_lm.check_prompt_logprobs() is False
        return
    np.testing.assert_allclose(remote, llama_lm.loglikelihood(prompt, conts), atol=1e-2)


def test_encode_pools_like_in_process(server_lm: Any, smollm2_gguf: Path) -> None:
    from llmrec.lm.llamacpp import LlamaCppLM

    texts = ["Toy Story (1995) animation comedy", "Heat (1995) crime thriller"]
    one_by_one = server_lm.encode(texts, batch_size=1)
    batched = server_lm.encode(texts, batch_size=2)  # token-level answers: re-sent one by one
    assert batched.shape == (2, 576)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert server_lm.stats.extra["embedding_requests_split"] >= 1
    with LlamaCppLM(smollm2_gguf, embedding=True) as local:
        np.testing.assert_allclose(batched, local.encode(texts), atol=1e-3)


def test_server_scores_the_documented_prompt_as_in_process(server_lm: Any, llama_lm: Any) -> None:
    # the server reads the scored prompt as plain text on /completions, so it must get the
    # documented one ("...letter.\nAnswer:"), the same that a plain-text model scores
    from llmrec.paradigms.direct.prompts import PromptBuilder, PromptConfig

    titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Star Wars (1977)"]
    instruction = "Which candidate will the user choose next? Answer with its letter."
    args = (0, np.array([0]), np.array([1, 2, 3]))
    sent = PromptBuilder(PromptConfig(), titles, server_lm).build(*args, instruction=instruction)
    plain = PromptBuilder(PromptConfig(chat="never"), titles, llama_lm).build(
        *args, instruction=instruction
    )
    assert sent.score_text == plain.score_text
    assert sent.score_text.endswith(f"{instruction}\nAnswer:")
    remote = server_lm.score_next(sent.score_text, sent.labels)
    local = llama_lm.score_next(plain.score_text, plain.labels)
    np.testing.assert_array_less(local - 1e-3, remote)  # a label outside the top-20: a bound
    assert np.isclose(remote, local, atol=1e-3).sum() >= 2
