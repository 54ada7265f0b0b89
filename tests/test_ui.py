"""ui: symbols with their ASCII fallback, text from outside made safe for the terminal, the outcome layouts, and
`doctor --list` ids that survive a narrow terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO
from facts_kit import FACTS_DIR
from test_smoke_render import result as smoke_result

from echopanel_setup import report, ui
from echopanel_setup.checks import CheckResult, Fix, Status, all_checks
from echopanel_setup.doctor import DoctorRun
from echopanel_setup.explain import explain
from echopanel_setup.facts.model import Facts
from echopanel_setup.serve import launcher, render

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m[bold]x[/]\u202eevil\rover\x08"  # clear screen, set title, C1 CSI, markup…
SAFE = "[bold]x[/]evilover"  # …what is left of it, shown literally
SAFE_LOG_LINE = "[bold]x[/]evil"  # in a log, a `\r` after the match starts a later redraw: not part of the excerpt


def run_locale(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI under exactly these locale variables (none inherited): Python reacts to them at start-up."""
    base = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING")}
    return subprocess.run(
        [sys.executable, "-m", "echopanel_setup", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env={**base, "NO_COLOR": "1", **env},
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize(
    "env",
    [{"LANG": "C"}, {"LC_ALL": "C"}, {"LANG": "en_US.UTF-8", "LC_ALL": "POSIX"}, {"PYTHONIOENCODING": "ascii"}],
    ids=["LANG=C", "LC_ALL=C", "LC_ALL=POSIX", "ascii-stdout"],
)
def test_a_c_locale_or_an_ascii_stdout_gets_ascii_symbols(env: dict[str, str]) -> None:
    proc = run_locale(env, "doctor", "--facts", str(FACTS_DIR / "linux-4090-vllm073-tf455.json"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.isascii(), [line for line in proc.stdout.splitlines() if not line.isascii()]
    for line in ("+ ok      Platform", "x fail    Tokenizer kwargs error", "x Not ready for local mode"):
        assert line in proc.stdout
    assert re.search(r"^ +-> ", proc.stdout, re.M)  # the fix arrow
    assert "echopanel-setup doctor  -  mode local" in proc.stdout


@pytest.mark.parametrize("env", [{"LANG": "C.UTF-8"}, {"LANG": "C", "LC_ALL": "C.UTF-8"}, {}])
def test_a_utf8_locale_keeps_the_symbols(env: dict[str, str]) -> None:
    proc = run_locale(env, "doctor", "--facts", str(FACTS_DIR / "linux-4090-vllm073-tf455.json"))
    assert "✓ ok      Platform" in proc.stdout and "✗ fail" in proc.stdout and "→ " in proc.stdout


def test_explain_on_an_ascii_stdout_neither_crashes_nor_passes_escapes(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text(f"INFO café\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB {HOSTILE}\n")
    proc = run_locale({"PYTHONIOENCODING": "ascii"}, "explain", str(log))
    assert proc.returncode == 0, proc.stderr
    assert "x fail CUDA out of memory (cuda-oom, log line 2)" in proc.stdout
    assert "\x1b" not in proc.stdout and "\x9b" not in proc.stdout and SAFE_LOG_LINE in proc.stdout


# --- text from outside ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, [brackets] and tabs\tand\nlines", "plain text, [brackets] and tabs\tand\nlines"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, ESC \ terminated
        ("\x1b]0;title\x07after", "after"),  # OSC, BEL terminated
        ("a\x1bcb", "ab"),  # a two-byte escape (RIS: reset the terminal)
        ("a\x9b2Jb\x85c", "abc"),  # C1 controls
        ("bell\x07 back\x08space del\x7f cr\r", "bell backspace del cr"),
        ("\u202eevil\u2066x\u2069", "evilx"),  # bidirectional overrides and isolates
        ("Grüße, 日本語 ✓", "Grüße, 日本語 ✓"),
    ],
)
def test_clean_strips_terminal_controls_and_keeps_text(raw: str, shown: str) -> None:
    assert ui.clean(raw) == shown


def test_esc_makes_markup_literal() -> None:
    out = io.StringIO()
    ui.console(out).print(f"[bold]{ui.esc(HOSTILE)}[/]")
    assert out.getvalue() == SAFE + "\n"


def test_doctor_output_cleans_what_checks_quote() -> None:
    hostile = CheckResult(
        "server", "Server", "network", Status.FAIL, True, f"answered {HOSTILE}", [HOSTILE], Fix(HOSTILE, [HOSTILE])
    )
    run = DoctorRun(Facts(), "remote", f"--url {HOSTILE}", [hostile], 1, False, 1.0)
    out = io.StringIO()
    report.render_human(run, stream=out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    assert text.count(SAFE) == 5  # mode reason, summary, detail, fix text, command


def test_smoke_output_cleans_the_transcript_and_the_model_id() -> None:
    r = replace(smoke_result(f"hello {HOSTILE}", None), model=f"voxtral{HOSTILE}")
    out = io.StringIO()
    from echopanel_setup.smoke import render as smoke_render

    smoke_render.render_human(r, out)
    assert "\x1b" not in out.getvalue() and out.getvalue().count(SAFE) == 2


def test_serve_start_failure_is_an_explained_failure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    [match] = explain(f"RuntimeError: CUDA out of memory. Tried to allocate 2 GiB {HOSTILE}\n")
    record = launcher.Record(1, 0.0, "http://127.0.0.1:8001", "m", [], str(tmp_path / "v.log"), "now", False)
    render.start_failed(launcher.Outcome(ok=False, record=record, reason="exited", failure=match))
    err = capsys.readouterr().err
    assert "✗ fail CUDA out of memory (cuda-oom, log line 1)" in err
    assert "\x1b" not in err and SAFE_LOG_LINE in err and "  Cause: " in err and "  Log:   " in err


# --- layouts ---------------------------------------------------------------------------------------------------------


def test_outcome_layout() -> None:
    out = io.StringIO()
    con = ui.console(out)
    ui.outcome(
        con,
        "warn",
        "summary",
        label="Title",
        label_width=8,
        word_width=7,
        indent=2,
        details=["d"],
        fix="f",
        commands=["c"],
    )
    ui.outcome(con, "run", "next", word="run", word_width=5, label="serve", label_width=6)
    assert out.getvalue().splitlines() == [
        "  ! warn    Title    summary",
        "      d",
        "      → f",
        "        c",
        "→ run   serve  next",
    ]


@pytest.mark.parametrize("columns", [40, 64, 100])
def test_doctor_list_never_cuts_a_check_id(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    report.render_matrix(all_checks(), out)
    lines = ui.clean(out.getvalue()).splitlines()  # without the bold of the headings
    assert all(len(line.rstrip()) <= columns for line in lines)
    starts = {line.split()[0] for line in lines if line and not line[0].isspace()}
    assert {c.id for c in all_checks()} <= starts
    assert "…" not in out.getvalue()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LANG": "C"}, False),
        ({"LANG": "C", "LC_CTYPE": "C.UTF-8"}, False),  # Python's own coercion of LANG=C (PEP 538)
        ({"LC_CTYPE": "C.UTF-8"}, True),  # coerced from an unset locale: the stream decides
        ({"LANG": "POSIX"}, False),
        ({"LANG": "C", "LC_ALL": "en_GB.UTF-8"}, True),
        ({"LANG": "de_DE.UTF-8"}, True),
        ({}, True),
    ],
)
def test_unicode_ok_reads_the_locale_first(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name in ("LANG", "LC_ALL", "LC_CTYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert ui.unicode_ok(utf8) is expected
    assert ui.unicode_ok(io.TextIOWrapper(io.BytesIO(), encoding="latin-1")) is False
