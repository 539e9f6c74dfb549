"""Parse an LM's written ranking and ground each entry to a candidate.

The answer is split into entries (lines; a line of bare labels such as ``B, A, C`` is split at
its commas), list markers (``1.``, ``-``, ``#2``) are stripped, and each entry is matched, in
order of trust, as: an index label (``B`` or ``B. Title``); a candidate title (normalised
exact match); an exact catalogue title that is not a candidate (``off_candidate``); a
candidate title by :mod:`difflib` similarity (only between titles with the same numbers, so
"Movie 29" never grounds to "Movie 2"); a fuzzy catalogue title (``off_candidate``); or
nothing (a hallucination: out of the catalogue). Repeats are counted as
duplicates. Nothing here raises on odd text: garbage grounds to an empty ranking.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Grounded", "Grounder", "normalize_title", "split_entries"]

_MARKER = re.compile(r"^\s*(?:[-*•>]+|#?\d{1,2}\s*[.):\]]|\(\d{1,2}\))\s*")
_LABEL_LIST = re.compile(r"^\s*[A-Z](?:\s*[,;]\s*[A-Z])+\s*[.]?\s*$")
_LABEL_HEAD = re.compile(r"^\(?([A-Z])(?:[.):\]]\s*|\s*$)")
_YEAR = re.compile(r"\(\s*\d{4}\s*\)")
_ARTICLE_TAIL = re.compile(r",\s*(the|a|an|la|le|les|il|das|der|die|el)$")
_NON_WORD = re.compile(r"[^\w\s]")


def normalize_title(text: str) -> str:
    """Lower-case, accents and punctuation removed, year dropped, ``"Usual Suspects, The"``
    read as ``"the usual suspects"``; whitespace collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _YEAR.sub(" ", text.strip().strip("\"'").lower()).strip()
    tail = _ARTICLE_TAIL.search(text)
    if tail:
        text = f"{tail.group(1)} {text[: tail.start()]}"
    return " ".join(_NON_WORD.sub(" ", text).split())


def split_entries(answer: str) -> list[str]:
    """Non-empty entries of an answer, list markers stripped."""
    entries: list[str] = []
    for line in answer.splitlines():
        if _LABEL_LIST.match(line):
            entries.extend(part.strip(" .") for part in re.split(r"[,;]", line))
            continue
        entry = _MARKER.sub("", line, count=1).strip()
        if entry:
            entries.append(entry)
    return entries


@dataclass
class Grounded:
    """One answer grounded to candidate slots.

    Attributes:
        slots: candidate positions (0-based, in the order shown) best first, no repeats.
        entries: entries parsed from the answer.
        duplicates: entries that named a candidate already ranked.
        off_candidates: entries that named a catalogue item outside the candidates.
        hallucinations: entries that matched nothing in the catalogue (chatter lines included).
    """

    slots: list[int] = field(default_factory=list)
    entries: int = 0
    duplicates: int = 0
    off_candidates: int = 0
    hallucinations: int = 0

    @property
    def unparseable(self) -> bool:
        """True when nothing in the answer named a candidate."""
        return not self.slots


class Grounder:
    """Matches answer entries against candidate titles and the whole catalogue.

    Args:
        catalogue: every item's title (the catalogue is what is *not* a hallucination).
        min_similarity: :class:`difflib.SequenceMatcher` ratio needed for a fuzzy match.
    """

    def __init__(self, catalogue: Sequence[str], min_similarity: float = 0.75) -> None:
        self.min_similarity = min_similarity
        self._catalogue = [normalize_title(t) for t in catalogue]
        self._catalogue_set = set(self._catalogue)

    def ground(
        self, answer: str, candidate_titles: Sequence[str], labels: Sequence[str] = ()
    ) -> Grounded:
        """Ground ``answer`` to positions in ``candidate_titles`` (``labels[j]`` names slot j)."""
        label_slot = {lab.strip(): j for j, lab in enumerate(labels)}
        norms = [normalize_title(t) for t in candidate_titles]
        out = Grounded()
        for entry in split_entries(answer):
            out.entries += 1
            slot = self._match(entry, norms, label_slot)
            if slot is None:
                if self._in_catalogue(normalize_title(entry), fuzzy=True):
                    out.off_candidates += 1
                else:
                    out.hallucinations += 1
            elif slot in out.slots:
                out.duplicates += 1
            else:
                out.slots.append(slot)
        return out

    def _match(self, entry: str, norms: list[str], label_slot: dict[str, int]) -> int | None:
        head = _LABEL_HEAD.match(entry)
        if head and head.group(1) in label_slot:
            return label_slot[head.group(1)]
        norm = normalize_title(entry)
        if not norm:
            return None
        if norm in norms:
            return norms.index(norm)
        if self._in_catalogue(norm, fuzzy=False):  # an exact other title beats a fuzzy one
            return None
        ratios = [
            difflib.SequenceMatcher(None, norm, c).ratio() if _digits(c) == _digits(norm) else 0.0
            for c in norms
        ]
        if ratios and max(ratios) >= self.min_similarity:
            return int(max(range(len(ratios)), key=ratios.__getitem__))
        return None

    def _in_catalogue(self, norm: str, *, fuzzy: bool) -> bool:
        if not norm:
            return False
        if norm in self._catalogue_set or not fuzzy:
            return norm in self._catalogue_set
        close = difflib.get_close_matches(norm, self._catalogue, n=3, cutoff=self.min_similarity)
        return any(_digits(c) == _digits(norm) for c in close)


def _digits(text: str) -> list[str]:
    """Numbers in a title: "Die Hard 2" and "Die Hard" differ in identity, not spelling."""
    return re.findall(r"\d+", text)
