"""LM-generated tags: a few short descriptive tags per item, and interest tags per user.

A generative LM is asked, through the LM protocol (``generate``), for ``n_tags`` comma-separated
tags. The output is parsed (lists, numbering, bullets and quotes are tolerated), normalised
(lowercase, plain words, simple plural folding) and mapped into a *controlled vocabulary*: the
tags at least ``min_count`` items share, or a vocabulary you give. An output that yields no tag
is retried with sampling; after ``retries`` it is counted in ``failed`` and the item gets an
empty tag set — a bad answer or a failing backend call never stops the run.

Wrap the LM in :class:`~llmrec.lm.cache.CachedLM` (``load_lm(..., lm_cache_dir=...)``) and
answers persist: a second run costs nothing, an interrupted one resumes.

Prompts: instruction-tuned models (``lm.has_chat_template``) get an instruction; base models
(Gemma 3 270M) get a plain-text few-shot prompt ending in ``"Tags:"``.

Example::

    lm = load_lm("smollm2-135m", lm_cache_dir="cache/")
    result = generate_item_tags(lm, dataset.item_texts("{title} ({year}). Genres: {genres}"))
    result.tags[0]        # ['animation', 'family', 'toys', ...]
    result.failed, result.items_per_s
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from llmrec import progress
from llmrec.config import StrictConfig
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.engine import Engine, LocalEngine
from llmrec.errors import BackendError
from llmrec.lm.base import LanguageModel

_SPLIT = re.compile(r"[,;\n|/]+")
_LEADING = re.compile(r"^\s*(?:[-*•#]+|\d+[.)]|[a-z ]{1,20}:)\s*", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^a-z0-9' -]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "of",
        "in",
        "on",
        "to",
        "for",
        "with",
        "is",
        "are",
        "this",
        "that",
        "it",
        "its",
        "movie",
        "film",
        "tag",
        "tags",
        "none",
        "n/a",
        "item",
        "user",
    ]
)

FEW_SHOT = (
    "{noun_cap}: Star Wars (1977). Genres: Action|Adventure|Romance|Sci-Fi|War\n"
    "Tags: space opera, rebellion, epic, classic, adventure\n\n"
    "{noun_cap}: Fargo (1996). Genres: Crime|Drama|Thriller\n"
    "Tags: dark comedy, kidnapping, snow, crime, quirky\n\n"
    "{noun_cap}: {text}\nTags:"
)
INSTRUCTION = (
    "{noun_cap}: {text}\n"
    "Write {n} short descriptive tags (one to three words each) for this {noun}. "
    "Answer with the tags only, comma-separated, lowercase."
)
USER_INSTRUCTION = (
    "A user ({profile}) recently liked these {noun}s: {history}. "
    "Write {n} short tags (one to three words each) describing this user's interests. "
    "Answer with the tags only, comma-separated, lowercase."
)
USER_FEW_SHOT = (
    "User: age 30, likes Alien (1979); Terminator, The (1984); Blade Runner (1982)\n"
    "Interests: science fiction, dystopia, action, robots, classic\n\n"
    "User: {profile}, likes {history}\nInterests:"
)


class TagConfig(StrictConfig):
    """Settings of tag generation.

    Attributes:
        n_tags: tags asked for (and kept at most) per item.
        max_words: longest tag kept, in words.
        max_new_tokens: generation budget per answer.
        retries: extra sampled attempts for outputs that yield no tag.
        retry_temperature: sampling temperature of retries (the first attempt is greedy).
        batch_size: prompts per ``generate`` call.
        min_count: a tag enters the learned vocabulary when this many items have it.
        vocab_size: most tags in the learned vocabulary (most frequent first).
        noun: what the items are, in prompts ("movie", "book", "product").
        chat: instruction prompt (``True``), few-shot plain text (``False``), or by the
            model's chat template (``None``).
        history_items: most recent items shown in a user prompt.
    """

    n_tags: int = Field(5, ge=1, le=20)
    max_words: int = Field(3, ge=1)
    max_new_tokens: int = Field(40, ge=4)
    retries: int = Field(2, ge=0)
    retry_temperature: float = Field(0.8, gt=0)
    batch_size: int = Field(8, ge=1)
    min_count: int = Field(2, ge=1)
    vocab_size: int = Field(500, ge=1)
    noun: str = "movie"
    chat: bool | None = None
    history_items: int = Field(10, ge=1)


@dataclass
class TagResult:
    """Tags of a batch of items (or users).

    Attributes:
        tags: per input, tags in the controlled vocabulary (possibly empty).
        parsed: per input, normalised tags before the vocabulary filter.
        raw: per input, the LM's last answer.
        vocabulary: the controlled vocabulary, most frequent first.
        failed: inputs whose answers never parsed (or whose calls kept failing).
        retried: inputs that needed at least one retry.
        backend_errors: ``generate`` calls that raised :class:`BackendError`.
        seconds: wall time of the generation.
    """

    tags: list[list[str]]
    parsed: list[list[str]]
    raw: list[str]
    vocabulary: list[str]
    failed: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    backend_errors: int = 0
    seconds: float = 0.0

    @property
    def items_per_s(self) -> float:
        return len(self.tags) / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict[str, float]:
        n = max(len(self.tags), 1)
        return {
            "n": float(len(self.tags)),
            "items_per_s": self.items_per_s,
            "failed": float(len(self.failed)),
            "retried": float(len(self.retried)),
            "backend_errors": float(self.backend_errors),
            "vocabulary": float(len(self.vocabulary)),
            "mean_tags": sum(len(t) for t in self.tags) / n,
            "empty_share": sum(not t for t in self.tags) / n,
        }


# --- parsing ------------------------------------------------------------------------------------
def normalize_tag(text: str, max_words: int = 3) -> str | None:
    """One tag in canonical form (lowercase words, plurals folded), or ``None`` if unusable."""
    tag = _LEADING.sub("", text.strip().lower()).strip(" .\"'`*_()[]{}")
    tag = _NOT_WORD.sub(" ", tag)
    words = [_singular(w.removesuffix("'s").strip("'-")) for w in tag.split()]
    # years and counts echoed from the item text are not tags
    words = [w for w in words if w and not w.isdigit()]
    if not words or len(words) > max_words or all(w in _STOP for w in words):
        return None
    joined = " ".join(words)
    return joined if len(joined) >= 2 and not joined.isdigit() else None


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def parse_tags(answer: str, n_tags: int = 5, max_words: int = 3) -> list[str]:
    """Normalised, de-duplicated tags of an LM answer, at most ``n_tags``; ``[]`` if none."""
    head = answer.strip().split("\n\n")[0]  # later paragraphs are the model rambling on
    out: list[str] = []
    for part in _SPLIT.split(head):
        tag = normalize_tag(part, max_words)
        if tag is not None and tag not in out:
            out.append(tag)
        if len(out) == n_tags:
            break
    return out


def build_vocabulary(parsed: Sequence[Sequence[str]], min_count: int, size: int) -> list[str]:
    """Tags shared by at least ``min_count`` inputs, most frequent first (ties by name)."""
    counts = Counter(t for tags in parsed for t in set(tags))
    keep = [t for t, c in counts.items() if c >= min_count]
    return sorted(keep, key=lambda t: (-counts[t], t))[:size]


# --- generation ---------------------------------------------------------------------------------
def _use_chat(lm: LanguageModel, cfg: TagConfig) -> bool:
    return lm.has_chat_template if cfg.chat is None else cfg.chat


def item_prompt(text: str, cfg: TagConfig, chat: bool) -> str:
    """The prompt asking for one item's tags."""
    noun_cap = cfg.noun[:1].upper() + cfg.noun[1:]
    template = INSTRUCTION if chat else FEW_SHOT
    return template.format(n=cfg.n_tags, noun=cfg.noun, noun_cap=noun_cap, text=text)


def _generate_safely(
    lm: LanguageModel, prompts: list[str], cfg: TagConfig, chat: bool, attempt: int
) -> tuple[list[str | None], int]:
    """Answers (``None`` where the backend failed) and the number of failed calls.

    A failing batch is retried one prompt at a time, so one bad prompt costs only itself.
    The first attempt is greedy; retries sample (seeded by the attempt number).
    """
    # few-shot prompts end in "Tags:" and must stop at the end of that line
    stop = () if chat else ("\n",)
    temperature = 0.0 if attempt == 0 else cfg.retry_temperature
    try:
        answers = lm.generate(
            prompts,
            max_new_tokens=cfg.max_new_tokens,
            temperature=temperature,
            stop=stop,
            seed=attempt,
        )
        return list(answers), 0
    except BackendError:
        if len(prompts) == 1:
            return [None], 1
    out: list[str | None] = []
    errors = 1
    for prompt in prompts:
        got, err = _generate_safely(lm, [prompt], cfg, chat, attempt)
        out.extend(got)
        errors += err
    return out, errors


def _run_prompts(
    lm: LanguageModel,
    prompts: list[str],
    cfg: TagConfig,
    chat: bool,
    vocabulary: Sequence[str] | None,
    engine: Engine | None = None,
) -> TagResult:
    start = time.perf_counter()
    n = len(prompts)
    parsed: list[list[str]] = [[] for _ in range(n)]
    raw = [""] * n
    retried: set[int] = set()
    errors = 0
    todo = list(range(n))
    work = progress.LMWork.of("tagging", lm.model_id, "tags", unit="prompt")
    run = (engine if engine is not None and lm.answers_remotely else LocalEngine()).map
    for attempt in range(cfg.retries + 1):
        slices = progress.batches(len(todo), cfg.batch_size, desc="tags", work=work)

        def ask(rows: slice, todo: list[int] = todo, attempt: int = attempt) -> tuple[Any, ...]:
            batch = todo[rows]
            return batch, *_generate_safely(lm, [prompts[i] for i in batch], cfg, chat, attempt)

        # the LM calls may run concurrently; answers, retry rounds and the vocabulary are kept
        # here, in batch order, so every engine gives the same tags
        for batch, answers, err in run(ask, slices):
            errors += err
            for i, answer in zip(batch, answers, strict=True):
                raw[i] = answer if answer is not None else raw[i]
                parsed[i] = parse_tags(answer or "", cfg.n_tags, cfg.max_words)
        todo = [i for i in todo if not parsed[i]]
        if attempt < cfg.retries:
            retried.update(todo)
        if not todo:
            break
    vocab = (
        list(vocabulary)
        if vocabulary is not None
        else build_vocabulary(parsed, cfg.min_count, cfg.vocab_size)
    )
    allowed = set(vocab)
    tags = [[t for t in p if t in allowed] for p in parsed]
    return TagResult(
        tags=tags,
        parsed=parsed,
        raw=raw,
        vocabulary=vocab,
        failed=sorted(todo),
        retried=sorted(retried),
        backend_errors=errors,
        seconds=time.perf_counter() - start,
    )


def generate_item_tags(
    lm: LanguageModel,
    texts: Sequence[str],
    config: TagConfig | None = None,
    *,
    vocabulary: Sequence[str] | None = None,
    engine: Engine | None = None,
) -> TagResult:
    """Tags for each item text (``dataset.item_texts(...)``), in a controlled vocabulary.

    Args:
        lm: any backend that can ``generate`` (wrap it in ``CachedLM`` to persist answers).
        texts: one description per item.
        vocabulary: a fixed vocabulary; ``None`` learns one from the answers.
        engine: where the batches run (:func:`llmrec.engine.engine_for`; default this
            process); give ``lm`` from the same engine (``load_lm(..., runtime=...)``).
    """
    cfg = config or TagConfig.model_validate({})
    chat = _use_chat(lm, cfg)
    prompts = [item_prompt(t, cfg, chat) for t in texts]
    return _run_prompts(lm, prompts, cfg, chat, vocabulary, engine)


def user_prompt(profile: str, history_texts: Sequence[str], cfg: TagConfig, chat: bool) -> str:
    """The prompt asking for one user's interest tags."""
    history = "; ".join(history_texts) or "nothing yet"
    template = USER_INSTRUCTION if chat else USER_FEW_SHOT
    return template.format(profile=profile, history=history, n=cfg.n_tags, noun=cfg.noun)


def generate_user_tags(
    lm: LanguageModel,
    dataset: Dataset,
    users: Sequence[int] | np.ndarray,
    config: TagConfig | None = None,
    *,
    history: UserHistory | None = None,
    item_texts: Sequence[str] | None = None,
    vocabulary: Sequence[str] | None = None,
    engine: Engine | None = None,
) -> TagResult:
    """Interest tags for each user index, from their profile (``user_attrs``) and their most
    recent items (``history``, default the dataset's), described by ``item_texts`` (default
    the item titles); ``engine`` as for :func:`generate_item_tags`."""
    cfg = config or TagConfig.model_validate({})
    chat = _use_chat(lm, cfg)
    hist = history or dataset.history()
    if item_texts is None:
        fields = ["title"] if "title" in dataset.item_text.columns else None
        item_texts = dataset.item_texts(fields=fields)
    attrs = dataset.user_attrs
    prompts = []
    for user in np.asarray(users, dtype=np.int64).tolist():
        row = attrs.iloc[user] if len(attrs.columns) else None
        profile = (
            ", ".join(f"{k} {v}" for k, v in row.items() if str(v) not in ("", "nan"))
            if row is not None
            else ""
        ) or "no profile"
        recent = hist.of(user)[-cfg.history_items :][::-1]
        prompts.append(user_prompt(profile, [item_texts[i] for i in recent], cfg, chat))
    return _run_prompts(lm, prompts, cfg, chat, vocabulary, engine)
