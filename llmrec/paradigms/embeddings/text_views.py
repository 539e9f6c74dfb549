"""Item and user text views: what the language model reads about each item and user.

An item view renders each item's text fields through a template (``"{title} ({year}).
Genres: {genres}"``) or joins chosen fields. A user view renders the profile attributes and the
titles of the user's most recent items, newest first. Texts longer than a token budget are cut
by the encoder's own tokenizer (through ``LanguageModel.count_tokens``), keeping their start,
and the number of cut texts is reported.

Example::

    view = ItemView(template="{title}. Genres: {genres}")
    texts = view.render(dataset)                      # one string per item index
    cut = truncate_to_tokens(texts, lm.count_tokens, 128)
    cut.texts, cut.n_truncated
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import DataError

CountTokens = Callable[[Sequence[str]], list[int]]


class ItemView(StrictConfig):
    """How an item becomes text.

    Attributes:
        template: a ``str.format`` template over the item text fields; ``None`` joins ``fields``.
        fields: fields joined with ". " when there is no template (``None``: all fields).
    """

    template: str | None = None
    fields: list[str] | None = None

    def render(self, data: Dataset) -> list[str]:
        """One text per item index of ``data``."""
        return data.item_texts(self.template, self.fields)


class UserView(StrictConfig):
    """How a user becomes text: profile attributes, then recent item titles.

    Attributes:
        profile_template: a ``str.format`` template over the user attributes; ``None`` writes
            ``"name: value"`` pairs of every attribute.
        history_items: how many of the most recent items to name (newest first); 0 for none.
        history_prefix: the words before the list of titles.
    """

    profile_template: str | None = None
    history_items: int = Field(default=10, ge=0)
    history_prefix: str = "Recently liked: "

    def profiles(self, attrs: pd.DataFrame) -> list[str]:
        """One profile text per user row of ``attrs`` (empty strings when there are none)."""
        if attrs.shape[1] == 0:
            return [""] * len(attrs)
        records = attrs.fillna("").astype(str).to_dict("records")
        if self.profile_template is None:
            return [". ".join(f"{k}: {v}" for k, v in rec.items() if v) + "." for rec in records]
        try:
            return [
                self.profile_template.format(**{str(k): v for k, v in r.items()}) for r in records
            ]
        except KeyError as exc:
            raise DataError(
                f"user text template names attribute {exc.args[0]!r}; "
                f"attributes are {list(attrs.columns)}"
            ) from None

    def render(
        self,
        users: np.ndarray,
        profiles: Sequence[str] | Mapping[int, str],
        item_titles: Sequence[str],
        history: UserHistory,
    ) -> list[str]:
        """Texts of ``users`` from their profile (``profiles[u]``) and the titles of their latest
        items."""
        out = []
        for user in np.asarray(users, dtype=np.int64):
            parts = [profiles[user]] if profiles[user] else []
            if self.history_items:
                recent = history.of(int(user))[-self.history_items :][::-1]
                if len(recent):
                    titles = "; ".join(item_titles[i] for i in recent)
                    parts.append(f"{self.history_prefix}{titles}.")
            out.append(" ".join(parts))
        return out


@dataclass(frozen=True)
class TruncatedTexts:
    """Texts cut to a token budget.

    Attributes:
        texts: the texts, each at most ``max_tokens`` tokens.
        n_tokens: ``(n,)`` int64 token count of each original text.
        n_truncated: how many texts were cut.
    """

    texts: list[str]
    n_tokens: np.ndarray
    n_truncated: int


def truncate_to_tokens(
    texts: Sequence[str], count_tokens: CountTokens, max_tokens: int
) -> TruncatedTexts:
    """Cut each text over ``max_tokens`` tokens (as the encoder counts them) to its longest
    word prefix within the budget. Counting is batched; only long texts are searched."""
    texts = list(texts)
    counts = np.asarray(count_tokens(texts), dtype=np.int64) if texts else np.zeros(0, np.int64)
    long_rows = np.flatnonzero(counts > max_tokens)
    for row in long_rows:
        texts[row] = _longest_prefix(texts[row], count_tokens, max_tokens)
    return TruncatedTexts(texts, counts, len(long_rows))


def _longest_prefix(text: str, count_tokens: CountTokens, max_tokens: int) -> str:
    """Binary search over word boundaries: O(log words) tokenizer calls."""
    words = text.split(" ")
    lo, hi = 0, len(words)  # words[:lo] fits; words[:hi + 1] does not (or hi is the end)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens([" ".join(words[:mid])])[0] <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
