"""What an LM ranker spent and how its answers parsed (:class:`RankerStats`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["RankerStats"]


@dataclass
class RankerStats:
    """What a ranker spent and how its answers parsed.

    Attributes:
        users: user rows ranked.
        candidates: candidate slots ranked (users x candidates).
        lm_calls, prompt_tokens, generated_tokens: LM cost (from the backend's counters).
        call_ms: wall milliseconds of each :meth:`Ranker.rank` batch (per user when
            ``batch_size=1``).
        unparseable: answers that named no candidate (generation).
        hallucinations: answer entries matching no catalogue item (generation).
        off_candidates: entries naming a catalogue item that was not a candidate (generation).
        duplicates: entries naming an already-ranked candidate (generation).
        partial: answers that ranked fewer candidates than asked (generation).
        fallback_slots: candidate slots ordered by the fallback (given order), not the LM.
        label_mass: summed probability of all labels, per prompt (verbaliser).
    """

    users: int = 0
    candidates: int = 0
    lm_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    call_ms: list[float] = field(default_factory=list)
    unparseable: int = 0
    hallucinations: int = 0
    off_candidates: int = 0
    duplicates: int = 0
    partial: int = 0
    fallback_slots: int = 0
    label_mass: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Counters plus p50/p95 of ``call_ms`` and mean ``label_mass`` (lists dropped)."""
        out: dict[str, float] = {
            k: float(v) for k, v in asdict(self).items() if not isinstance(v, list)
        }
        if self.call_ms:
            out["call_ms_p50"] = float(np.percentile(self.call_ms, 50))
            out["call_ms_p95"] = float(np.percentile(self.call_ms, 95))
        if self.label_mass:
            out["label_mass_mean"] = float(np.mean(self.label_mass))
        return out
