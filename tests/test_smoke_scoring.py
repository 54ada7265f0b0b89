"""smoke.scoring: word error rate after case, punctuation and whitespace normalisation."""

from __future__ import annotations

import pytest

from echopanel_setup.smoke.scoring import normalize, wer


def test_normalisation_ignores_case_punctuation_and_spacing() -> None:
    assert normalize('  Please CALL Stella.\n Ask her—to bring: "these" things!  ') == [
        "please",
        "call",
        "stella",
        "ask",
        "her",
        "to",
        "bring",
        "these",
        "things",
    ]
    assert normalize("Don't e-mail") == ["dont", "e", "mail"]
    assert normalize("Ｆｕｌｌｗｉｄｔｈ ÉTÉ") == ["fullwidth", "été"]


def test_identical_text_scores_zero() -> None:
    ref = "Please call Stella. Ask her to bring these things with her from the store."
    assert wer(ref, "please call stella ask her to bring these things with her from the store").wer == 0.0


@pytest.mark.parametrize(
    ("hyp", "subs", "dels", "ins"),
    [
        ("the cat sat on a mat", 1, 0, 0),
        ("the cat on the mat", 0, 1, 0),
        ("the big cat sat on the mat", 0, 0, 1),
        ("cat sat on the mat today", 0, 1, 1),
        ("", 0, 6, 0),
    ],
)
def test_substitutions_deletions_insertions(hyp: str, subs: int, dels: int, ins: int) -> None:
    result = wer("The cat sat on the mat.", hyp)
    assert (result.substitutions, result.deletions, result.insertions) == (subs, dels, ins)
    assert result.wer == pytest.approx((subs + dels + ins) / 6)
    assert result.reference_words == 6


def test_empty_reference() -> None:
    assert wer("", "").wer == 0.0
    assert wer("...", "something").wer == 1.0


def test_wer_can_exceed_one() -> None:
    assert wer("yes", "no no no").wer == 3.0
