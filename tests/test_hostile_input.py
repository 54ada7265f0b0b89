"""Hostile input that crashed commands (exit 4): unusable proxy settings, a --facts file nested too deeply or
holding a lone surrogate. Each must end with one line and its exit code, or a verdict, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, run_cli, without_socks_extra
from loopback_kit import HttpStandIn, QuietHandler

BAD_PROXIES = [
    pytest.param("http://proxy:abc", "not a usable proxy URL", id="port-not-a-number"),
    pytest.param("socks5://127.0.0.1:9", "needs SOCKS support", id="socks", marks=without_socks_extra),
]


@pytest.mark.parametrize(("proxy", "said"), BAD_PROXIES)
@pytest.mark.parametrize("command", [["smoke", "--client", "realtime"], ["watch", "--once"]])
def test_unusable_proxy_is_a_usage_error(cli: Cli, monkeypatch, command: list[str], proxy: str, said: str):
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, proxy)
    run = cli(*command, "--url", "http://gpu.invalid:8001")
    assert run.code == 2 and "internal error" not in run.err
    assert said in run.err and "ALL_PROXY" in run.err


@pytest.mark.parametrize(("proxy", "said"), BAD_PROXIES)
def test_doctor_reports_an_unusable_proxy_instead_of_crashing_its_checks(cli: Cli, monkeypatch, proxy, said):
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    doc = cli("doctor", "--json").json()
    assert [c["id"] for c in doc["checks"] if c["status"] == "crashed"] == []
    assert said in doc["facts"]["network"]["hf"]["error"] and "HTTPS_PROXY" in doc["facts"]["network"]["hf"]["error"]


def test_facts_nested_too_deeply_is_bad_input(cli: Cli, tmp_path: Path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    run = cli("doctor", "--facts", str(deep))
    expected = f"echopanel-setup: error: --facts {deep}: nested too deeply to be a facts snapshot"
    assert (run.code, run.err.strip()) == (2, expected)


@pytest.mark.parametrize("json_out", [False, True])
def test_a_lone_surrogate_in_replayed_facts_prints_as_a_question_mark(cli: Cli, fixtures: Path, tmp_path, json_out):
    """A snapshot may hold one (a non-UTF-8 path read by Python elsewhere); printing it must not crash."""
    facts = json.loads((fixtures / "facts" / "linux-4090-desktop.json").read_text())
    facts["platform"]["distro"] = "Ubuntu \ud800"
    replay = tmp_path / "facts.json"
    replay.write_text(json.dumps(facts))
    run = cli("doctor", "--facts", str(replay), *(["--json"] if json_out else []))
    assert run.code == 0, run.err
    assert "Ubuntu ?" in run.out


def test_an_hf_endpoint_with_a_port_that_is_not_a_number_is_named_not_blamed_on_the_proxy(cli: Cli, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://hub:pw@127.0.0.1:abc")
    doc = cli("doctor", "--json").json()
    error = doc["facts"]["network"]["hf"]["error"]
    assert "check HF_ENDPOINT" in error and "proxy" not in error and "pw" not in error
    assert [c["id"] for c in doc["checks"] if c["status"] == "crashed"] == []


def test_an_hf_endpoint_the_resolver_cannot_encode_is_a_usage_error(tmp_path: Path) -> None:
    """A host label over 63 characters in HF_ENDPOINT crashed install (exit 4) on the resolver's UnicodeError."""
    endpoint = f"http://{'a' * 64}.lan:8080"
    run = run_cli("install", "voxtral", "--dry-run", "--dir", str(tmp_path / "m"), env={"HF_ENDPOINT": endpoint})
    assert run.returncode == 2 and "internal error" not in run.stderr, run.stderr
    assert "HF_ENDPOINT=" in run.stderr and "is not an http(s) URL" in run.stderr


def test_doctor_names_an_hf_endpoint_the_resolver_cannot_encode_not_the_proxy(cli: Cli, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://{'a' * 64}.lan:8080")
    error = cli("doctor", "--json", "--mode", "local", "--only", "network").json()["facts"]["network"]["hf"]["error"]
    assert "check HF_ENDPOINT" in error and "proxy" not in error


@pytest.mark.parametrize("key", ["ключ", "ab\ncd"], ids=["not-ascii", "line-break"])
@pytest.mark.parametrize(
    "command",
    [["smoke", "--url", "http://127.0.0.1:9"], ["watch", "--once", "--url", "http://127.0.0.1:9"], ["serve", "status"]],
)
def test_a_key_no_http_header_can_carry_is_a_usage_error(cli: Cli, monkeypatch, command: list[str], key: str):
    """A VLLM_API_KEY with a line break or a non-ASCII letter crashed smoke, watch and serve status (exit 4) where the
    header was built; it is named (never shown) with exit 2, and so is such an --api-key."""
    monkeypatch.setenv("VLLM_API_KEY", key)
    run = cli(*command)
    assert run.code == 2 and "internal error" not in run.err, run.err
    assert "VLLM_API_KEY holds a character an HTTP header cannot carry" in run.err and key not in run.err
    monkeypatch.delenv("VLLM_API_KEY")
    if command[0] == "smoke":
        run = cli(*command, "--api-key", key)
        assert run.code == 2 and "--api-key holds a character an HTTP header cannot carry" in run.err


def test_an_hf_token_no_http_header_can_carry_is_a_usage_error(tmp_path: Path) -> None:
    run = run_cli("install", "voxtral", "--dry-run", "--dir", str(tmp_path / "m"), env={"HF_TOKEN": "hf_ключ"})
    assert run.returncode == 2 and "internal error" not in run.stderr, run.stderr
    assert (
        "HF_TOKEN (or the token `hf auth login` saved) holds a character an HTTP header cannot carry" in run.stderr
        and "ключ" not in run.stderr
    )


class _Garbage(QuietHandler):
    """A server whose every answer is a status line of terminal control sequences (http.client quotes it)."""

    def do_GET(self) -> None:
        self.wfile.write(b"\x1b[2J\x1b[31mEVIL\x07 status\r\n\r\n")
        self.close_connection = True


class _EvilModels(QuietHandler):
    """A vLLM that is healthy and lists a model id carrying an escape sequence and a bidirectional override."""

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            return self._send(
                200, {"object": "list", "data": [{"id": "\x1b]0;owned\x07voxtral\u202e", "object": "model"}]}
            )
        return self._send(200 if self.path == "/health" else 404, {})


@pytest.mark.parametrize(
    "command",
    [["smoke", "--client", "realtime"], ["configure", "--mode", "remote", "--shell"], ["smoke", "--streams", "2"]],
)
def test_a_servers_control_characters_never_reach_the_terminal(cli: Cli, command: list[str]) -> None:
    """Regression: the one-line error (and configure's notes) quoted a server's garbage status line as it came, so an
    ESC [2J in it cleared the user's screen. ui.py's rule: text from outside is cleaned before it is printed."""
    with HttpStandIn(_Garbage) as server:
        run = cli(*command, "--url", server.url)
    assert "EVIL status" in run.err, run.err
    assert not any(c in run.out + run.err for c in "\x1b\x07"), repr(run.err)


def test_serve_status_shows_a_servers_model_ids_without_control_characters(cli: Cli) -> None:
    import os

    import psutil

    from echopanel_setup.serve import launcher

    with HttpStandIn(_EvilModels) as server:
        launcher.Record(
            pid=os.getpid(),
            create_time=psutil.Process().create_time(),
            url=server.url,
            served_model_name="voxtral",
            argv=["vllm", "serve", "m"],
            log="/dev/null",
            started_at="2026-01-01T00:00:00+00:00",
            detached=True,
        ).write()
        run = cli("serve", "status")
    assert "models: voxtral" in run.out, run.out
    assert not any(c in run.out + run.err for c in "\x1b\x07\u202e"), repr(run.out)


def test_provider_check_prints_what_echopanels_python_said_without_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EchoPanel's import error and the server's words in `provider check`'s report are text from outside: cleaned
    before they are printed, as ui.py's rule says."""
    from echopanel_setup.provider import command, render

    result = command.ProviderResult(
        action="check",
        provider="voxtral_official",
        checkout=tmp_path,
        how_found="--echopanel",
        file=tmp_path / "provider_voxtral_official.py",
        outcome="checked",
        exit_code=1,
        load=command.LoadCheck(python="python3", ok=False, message="ImportError: \x1b[2Jno module \u202ex"),
        reason="the server said \x1b]0;owned\x07no",
    )
    render.render_human(result)
    out = capsys.readouterr().out
    assert "ImportError: no module x" in out and "the server said no" in out, out
    assert not any(c in out for c in "\x1b\x07\u202e"), repr(out)


def test_smoke_client_echopanel_report_is_clean_and_ascii_where_utf8_would_not_show(tmp_path: Path) -> None:
    """`smoke --client echopanel`'s report printed the server's error bodies as they came and its own ✓/✗/→ even
    where the terminal is not UTF-8 (LANG=C): ui.py's rules are clean() for outside text, ASCII symbols there."""
    import io

    from echopanel_setup.smoke import audio, echopanel_render
    from echopanel_setup.smoke.echopanel import EchoPanelSmoke, Step

    result = EchoPanelSmoke(
        checkout=tmp_path,
        how_found="--echopanel",
        provider="voxtral_official",
        variant="published",
        variant_title="the published voxtral_official",
        url="http://127.0.0.1:9",
        url_from="--url",
        python="python3",
        clip=audio.bundled(),
        mode="replay",
        fallback="no backend Python",
        steps=[Step("POST /v1/chat/completions", 400, "\x1b[2J\x1b]0;owned\x07bad audio", "nothing")],
    )

    class Ascii(io.StringIO):
        encoding = "ascii"

    out = Ascii()
    echopanel_render.render_human(result, out)
    text = out.getvalue()
    assert "400 bad audio: EchoPanel shows nothing" in text, text
    assert text.isascii() and "\x1b" not in text and "\x07" not in text, repr(text)
    assert "-> 400" in text and text.rstrip().splitlines()[-1].startswith("x ")


def test_smoke_client_voxtral_c_report_strips_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """voxtral.c's stdout (the transcript) and stderr are text from outside: Rich's markup=False stops markup, not
    an ESC sequence."""
    from echopanel_setup.smoke import audio, voxtralc_render
    from echopanel_setup.smoke.voxtralc import Target, VoxtralCSmoke

    target = Target(tmp_path / "voxtral", tmp_path / "model", 2.0, "--voxtral-bin", "--voxtral-model", "default")
    result = VoxtralCSmoke(
        target,
        audio.bundled(),
        0.3,
        transcript="\x1b[2JPlease call Stella.",
        error="exited 1",
        stderr_tail=["\x1b]0;owned\x07out of memory"],
    )
    voxtralc_render.render_human(result)
    out = capsys.readouterr().out
    assert "Transcript: Please call Stella." in out and "stderr: out of memory" in out, out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
