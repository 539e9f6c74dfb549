"""The listwise scores a ranker is tuned on: one ``(batch, candidates)`` logit matrix per batch
of training prompts, whose softmax cross-entropy against the true slot is the loss.

* verbaliser (LlamaRec): the next-token logits of the candidates' one-letter labels at the
  answer position — one forward per prompt;
* likelihood: each candidate's text scored as a continuation of the prompt (summed token
  log-probabilities, divided by the token count when the ranker normalises) — the prompt runs
  once and its KV cache is repeated for the candidates' continuations, so gradients reach the
  prompt's keys and values through the cache. The matching listwise loss: a softmax over the
  candidates' sequence log-likelihoods.

Both score exactly what the ranker scores at inference (the same prompt text, the same
continuations), through the model the tuning loop trains (a ``peft`` model or the full one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmrec.paradigms.direct.tune_data import Example

if TYPE_CHECKING:
    import torch

    from llmrec.lm.hf import HFCausalLM
    from llmrec.paradigms.direct.rankers import Ranker

__all__ = ["Encoded", "Scorer", "encode_examples", "scorer_for"]


@dataclass(frozen=True)
class Encoded:
    """One training prompt, tokenised.

    Attributes:
        ids: prompt tokens (special tokens included), cut to leave room in the context.
        answer: the true candidate's slot.
        labels: verbaliser: the candidates' label token ids, in slot order.
        conts: likelihood: each candidate's continuation tokens, in slot order.
        normalize: likelihood: divide each continuation's log-likelihood by its token count.
    """

    ids: list[int]
    answer: int
    labels: tuple[int, ...] = ()
    conts: tuple[tuple[int, ...], ...] = ()
    normalize: bool = True

    @property
    def n_tokens(self) -> int:
        """Tokens the model reads for this prompt (prompt plus continuations)."""
        return len(self.ids) + sum(len(c) for c in self.conts)


#: ``(model, lm, batch) -> ((b, c) float32 logits, (b,) int64 answers)``
Scorer = Callable[[Any, "HFCausalLM", list[Encoded]], "tuple[torch.Tensor, torch.Tensor]"]


def encode_examples(lm: HFCausalLM, ranker: Ranker, examples: list[Example]) -> list[Encoded]:
    """The prompts ``ranker`` writes for ``examples``, tokenised for its kind's scorer."""
    if ranker.kind == "likelihood":
        return [_encode_likelihood(lm, ranker, ex) for ex in examples]
    out = []
    for ex in examples:
        prompt = ranker.prompt(ex.user, ex.history, ex.candidates)
        ids = lm._ids(prompt.score_text)[-lm.context_length :]
        labels = tuple(lm.label_token_ids(prompt.score_text, prompt.labels))
        out.append(Encoded(ids, ex.answer, labels=labels))
    return out


def _encode_likelihood(lm: HFCausalLM, ranker: Ranker, ex: Example) -> Encoded:
    """The prompt and each candidate's ``" {text}"`` continuation (what
    :class:`~llmrec.paradigms.direct.rankers.LikelihoodRanker` scores); a continuation whose
    tokens do not extend the prompt's is tokenised on its own."""
    prompt = ranker.prompt(ex.user, ex.history, ex.candidates)
    text = prompt.score_text
    p_ids = lm._ids(text)
    items = ranker.builder.items
    conts = []
    for item in ex.candidates:
        cont = f" {items[int(item)]}"
        full = lm._ids(text + cont)
        split = full[len(p_ids) :] if full[: len(p_ids)] == p_ids else []
        conts.append(tuple(split or lm._ids(cont, special=False)) or (lm._pad_id,))
    longest = max(len(c) for c in conts)
    ids = p_ids[-max(1, lm.context_length - longest) :]
    normalize = bool(getattr(ranker.config, "normalize", True))
    return Encoded(ids, ex.answer, conts=tuple(conts), normalize=normalize)


def scorer_for(kind: str) -> Scorer:
    """The scorer a ranker of ``kind`` is tuned through."""
    return candidate_logits if kind == "likelihood" else label_logits


def label_logits(model: Any, lm: HFCausalLM, batch: list[Encoded]) -> tuple[Any, Any]:
    """``(b, c)`` float32 logits of each prompt's labels at its last position (padded label
    slots at ``-inf``) and ``(b,)`` int64 answers: one left-padded forward."""
    import torch

    device = next(model.parameters()).device
    width = max(len(e.ids) for e in batch)
    n_labels = max(len(e.labels) for e in batch)
    ids = torch.full((len(batch), width), lm._pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.zeros((len(batch), n_labels), dtype=torch.long)
    present = torch.zeros((len(batch), n_labels), dtype=torch.bool)
    for row, e in enumerate(batch):
        ids[row, width - len(e.ids) :] = torch.tensor(e.ids, dtype=torch.long)
        mask[row, width - len(e.ids) :] = 1
        labels[row, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
        present[row, : len(e.labels)] = True
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=1,
        use_cache=False,
    )
    last = out.logits[:, -1, :].float()
    picked = last.gather(1, labels.to(device))
    picked = picked.masked_fill(~present.to(device), float("-inf"))
    return picked, _answers(batch, device)


def candidate_logits(model: Any, lm: HFCausalLM, batch: list[Encoded]) -> tuple[Any, Any]:
    """``(b, c)`` float32 (length-normalised) log-likelihoods of each prompt's candidate
    continuations (padded slots at ``-inf``) and ``(b,)`` int64 answers."""
    import torch

    device = next(model.parameters()).device
    n_cands = max(len(e.conts) for e in batch)
    rows = []
    for e in batch:
        scores = _continuations(model, lm, e, device)
        pad = torch.full((n_cands - len(e.conts),), float("-inf"), device=device)
        rows.append(torch.cat([scores, pad]))
    return torch.stack(rows), _answers(batch, device)


def _continuations(model: Any, lm: HFCausalLM, e: Encoded, device: Any) -> torch.Tensor:
    """``(c,)`` log-likelihoods of ``e``'s continuations: the prompt runs once with a KV cache,
    repeated for the continuations' one right-padded forward."""
    import torch

    prompt = torch.tensor([e.ids], dtype=torch.long, device=device)
    res = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(res.logits[0, -1, :].float(), dim=-1)
    cache = res.cache if lm._cache_kw == "cache" else res.past_key_values
    n, width = len(e.conts), max(len(c) for c in e.conts)
    ids = torch.full((n, width), lm._pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, c in enumerate(e.conts):
        ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask[row, : len(c)] = 1
    ids, mask = ids.to(device), mask.to(device)
    total = first[ids[:, 0]]
    if width > 1:
        cache.batch_repeat_interleave(n)
        attention = torch.cat(
            [torch.ones((n, len(e.ids)), dtype=torch.long, device=device), mask], 1
        )
        positions = len(e.ids) + torch.arange(width, device=device).unsqueeze(0).expand(n, -1)
        logits = model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{lm._cache_kw: cache},
        ).logits[:, :-1, :]
        token_lp = torch.log_softmax(logits.float(), dim=-1).gather(2, ids[:, 1:, None])[..., 0]
        total = total + (token_lp * mask[:, 1:]).sum(1)
    if e.normalize:
        total = total / mask.sum(1).clamp(min=1)
    return total


def _answers(batch: list[Encoded], device: Any) -> Any:
    import torch

    return torch.tensor([e.answer for e in batch], dtype=torch.long, device=device)
