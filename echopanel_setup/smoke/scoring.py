"""Word error rate between a reference text and a transcript, after the usual ASR normalisation.

Case, punctuation and whitespace do not count: "Please call Stella." and "please call stella" are the
same words. Apostrophes are dropped inside words (don't → dont) and dashes split them, so a model that
writes "e-mail" is not charged for "email" twice. Numbers are compared as written.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

_SPLITTERS = dict.fromkeys(map(ord, "-‐‑‒–—―/"), " ")


@dataclass(frozen=True)
class WerResult:
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    hypothesis_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def normalize(text: str) -> list[str]:
    """The words that count: NFKC, case-folded, punctuation and symbols removed."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_SPLITTERS)
    kept = "".join(ch for ch in text if ch.isspace() or not unicodedata.category(ch).startswith(("P", "S")))
    return kept.split()


def wer(reference: str, hypothesis: str) -> WerResult:
    """(substitutions + deletions + insertions) / reference words, by word-level Levenshtein alignment.

    An empty reference scores 0.0 against an empty transcript and 1.0 against anything else.
    """
    ref, hyp = normalize(reference), normalize(hypothesis)
    # Each cell holds (cost, substitutions, deletions, insertions); ties prefer substitutions.
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, start=1):
        row = [(i, 0, i, 0)]
        for j, h in enumerate(hyp, start=1):
            diag = prev[j - 1]
            if r == h:
                best = diag
            else:
                up, left = prev[j], row[j - 1]
                best = min(
                    (diag[0] + 1, diag[1] + 1, diag[2], diag[3]),
                    (up[0] + 1, up[1], up[2] + 1, up[3]),
                    (left[0] + 1, left[1], left[2], left[3] + 1),
                )
            row.append(best)
        prev = row
    cost, subs, dels, ins = prev[-1]
    rate = cost / len(ref) if ref else (0.0 if not hyp else 1.0)
    return WerResult(rate, subs, dels, ins, len(ref), len(hyp))
