"""`provider check|fix|revert` on a stand-in EchoPanel checkout (tests/echopanel_kit.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import Cli
from echopanel_kit import ASR_PROVIDERS, make_backend_python, make_checkout
from realtime_kit import ModelBehaviour, RealtimeModel

from echopanel_setup.provider import records, template_text
from echopanel_setup.smoke import audio

FILE = Path("server/services/provider_voxtral_official.py")


def run_main(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """`echopanel-setup ARGV` in this process (conftest's runner), as (exit code, stdout, stderr)."""
    run = Cli(monkeypatch, capsys)(*argv)
    return run.code, run.out, run.err


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "EchoPanel")


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_main(monkeypatch, capsys, "provider", *argv)


def fix(monkeypatch, capsys, checkout: Path, *extra: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return cli(monkeypatch, capsys, "fix", "--echopanel", str(checkout), "--echopanel-python", sys.executable, *extra)


@pytest.mark.slow
def test_check_says_the_published_provider_cannot_work(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli(monkeypatch, capsys, "check", "--echopanel", str(checkout), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    assert doc["variant"]["id"] == "voxtral_official_chat_pcm" and doc["variant"]["works"] is False
    assert "/v1/chat/completions" in doc["reason"]
    assert doc["facts"]["deps"] == ["aiohttp"]


@pytest.mark.slow
def test_fix_writes_ours_keeps_the_original_and_records_it(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    original = (checkout / FILE).read_bytes()
    code, out, err = fix(monkeypatch, capsys, checkout, "--yes")
    assert code == 0, out + err
    assert (checkout / FILE).read_text(encoding="utf-8") == template_text()
    assert (checkout / f"{FILE}.orig").read_bytes() == original
    assert out.index("--- a/server/services/provider_voxtral_official.py") < out.index(
        "replaced with echopanel-setup's realtime"
    )
    assert "git status" in out and "loads in EchoPanel's Python" in out
    record = records.find(checkout / FILE)
    assert record is not None
    assert record.sha256_before == records.sha256(original)
    assert record.sha256_after == records.sha256(template_text().encode())
    assert not Path(record.path).is_relative_to(Path(record.backup).parent), "backups live in our state dir"
    port = closed_port()
    (checkout / ".env").write_text(f"VOXTRAL_VLLM_URL=http://127.0.0.1:{port}\n", encoding="utf-8")
    code, out, _ = cli(monkeypatch, capsys, "check", "--echopanel", str(checkout), "--echopanel-python", sys.executable)
    assert code == 1 and "echopanel-setup's voxtral_official" in out, out
    assert f"cannot reach vLLM at http://127.0.0.1:{port}" in out, "no server yet: what EchoPanel would show"


@pytest.mark.slow
def test_check_runs_echopanel_against_its_server(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    clip = audio.bundled()
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0
    with RealtimeModel({}, ModelBehaviour(script=(clip.pcm, clip.reference or ""))) as model:
        (checkout / ".env").write_text(f"VOXTRAL_VLLM_URL={model.url}\n", encoding="utf-8")
        code, out, _ = cli(
            monkeypatch, capsys, "check", "--echopanel", str(checkout), "--echopanel-python", sys.executable, "--json"
        )
    doc = json.loads(out)
    assert code == 0, out
    assert doc["smoke"]["passed"] and doc["smoke"]["how"] == "run"
    assert doc["smoke"]["transcript"] == clip.reference


def test_dry_run_writes_nothing(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    before = (checkout / FILE).read_bytes()
    code, out, _ = fix(monkeypatch, capsys, checkout, "--dry-run")
    assert code == 0 and "+++ b/server/services/provider_voxtral_official.py" in out
    assert (checkout / FILE).read_bytes() == before
    assert not (checkout / f"{FILE}.orig").exists() and records.find(checkout / FILE) is None


def test_fix_asks_and_refuses_without_a_terminal(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    before = (checkout / FILE).read_bytes()
    code, _, err = fix(monkeypatch, capsys, checkout)
    assert code == 2 and "--yes" in err
    assert (checkout / FILE).read_bytes() == before


@pytest.mark.slow
def test_revert_restores_byte_identical(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    original = (checkout / FILE).read_bytes()
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0
    code, out, _ = cli(monkeypatch, capsys, "revert", "--echopanel", str(checkout), "--yes")
    assert code == 0, out
    assert (checkout / FILE).read_bytes() == original
    assert not (checkout / f"{FILE}.orig").exists() and records.find(checkout / FILE) is None


@pytest.mark.slow
def test_revert_warns_when_echopanel_still_selects_the_broken_original(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """EchoPanel's .env keeps selecting voxtral_official after a revert: the published variant cannot work, so
    EchoPanel shows no transcript; the revert says so and how to go on (and stays silent where it is not selected)."""
    monkeypatch.delenv("ECHOPANEL_ASR_PROVIDER", raising=False)
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0
    (checkout / ".env").write_text("ECHOPANEL_ASR_PROVIDER=voxtral_official\n", encoding="utf-8")
    code, out, _ = cli(monkeypatch, capsys, "revert", "--echopanel", str(checkout), "--yes")
    assert code == 0, out
    warning = next(line for line in out.splitlines() if line.startswith("! "))
    assert "no transcript" in warning and "provider fix" in warning and "configure --provider" in warning
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0
    (checkout / ".env").write_text("ECHOPANEL_ASR_PROVIDER=faster_whisper\n", encoding="utf-8")
    code, out, _ = cli(monkeypatch, capsys, "revert", "--echopanel", str(checkout), "--yes", "--json")
    assert code == 0 and json.loads(out)["warnings"] == []


@pytest.mark.slow
def test_revert_refuses_when_changed_since_fix(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    original = (checkout / FILE).read_bytes()
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0
    (checkout / FILE).write_text(template_text() + "# edited\n", encoding="utf-8")
    assert "changed since fix" in (records.drift(checkout / FILE) or "")
    code, out, _ = cli(monkeypatch, capsys, "revert", "--echopanel", str(checkout), "--yes")
    assert code == 1 and "changed since `provider fix`" in out
    assert (checkout / FILE).read_text(encoding="utf-8").endswith("# edited\n")
    code, _, _ = cli(monkeypatch, capsys, "revert", "--echopanel", str(checkout), "--yes", "--force")
    assert code == 0 and (checkout / FILE).read_bytes() == original


@pytest.mark.slow
def test_unknown_variant_is_refused_unless_forced(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    mine = '"""My own provider."""\nfrom .asr_providers import ASRProviderRegistry\n'
    checkout = make_checkout(tmp_path / "EchoPanel", providers={FILE.name: mine})
    code, out, _ = fix(monkeypatch, capsys, checkout, "--yes")
    assert code == 1 and "not a version echopanel-setup knows" in out
    assert (checkout / FILE).read_text(encoding="utf-8") == mine
    code, out, _ = fix(monkeypatch, capsys, checkout, "--yes", "--force")
    assert code == 0, out
    assert (checkout / f"{FILE}.orig").read_text(encoding="utf-8") == mine


@pytest.mark.slow
def test_a_second_fix_keeps_the_first_orig(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    original = (checkout / FILE).read_bytes()
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0
    (checkout / FILE).write_text("# EchoPanel update\n", encoding="utf-8")
    code, out, _ = fix(monkeypatch, capsys, checkout, "--yes", "--force")
    assert code == 0, out
    assert (checkout / f"{FILE}.orig").read_bytes() == original
    assert "already holds the original" in out
    record = records.find(checkout / FILE)
    assert record is not None and record.sha256_before == records.sha256(original)
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0  # ours already: nothing to do


@pytest.mark.slow
def test_a_failing_import_restores_the_original(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # An EchoPanel whose provider interface has no AudioSource: our module cannot import there.
    interface = ASR_PROVIDERS.format(default="faster_whisper") + "\ndel AudioSource\n"
    checkout = make_checkout(tmp_path / "EchoPanel")
    (checkout / "server/services/asr_providers.py").write_text(interface, encoding="utf-8")
    original = (checkout / FILE).read_bytes()
    code, out, _ = fix(monkeypatch, capsys, checkout, "--yes")
    assert code == 1
    assert "ImportError" in out and "AudioSource" in out
    assert (checkout / FILE).read_bytes() == original
    assert not (checkout / f"{FILE}.orig").exists() and records.find(checkout / FILE) is None


def test_bad_provider_name_is_a_usage_error(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli(monkeypatch, capsys, "fix", "--echopanel", str(checkout), "--provider", "whisper", "--yes")
    assert code == 2 and "voxtral_official" in err


@pytest.mark.slow
def test_check_warns_when_the_served_delay_differs(checkout: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from echopanel_setup.serve import launcher

    model = tmp_path / "Voxtral-delay720ms"
    model.mkdir()
    (model / "tekken.json").write_text('{"audio": {"transcription_delay_ms": 720}}', encoding="utf-8")
    port = closed_port()
    record = launcher.Record(
        4242, 0.0, f"http://127.0.0.1:{port}", "x", ["vllm", "serve", str(model)], "log", "now", True
    )
    record.write()  # a pid of 0 or 1 is not a record (serve: set aside as unusable)
    (checkout / ".env").write_text(f"VOXTRAL_VLLM_URL=http://127.0.0.1:{port}\n", encoding="utf-8")
    code, out, _ = cli(monkeypatch, capsys, "check", "--echopanel", str(checkout), "--json")
    notes = " ".join(json.loads(out)["notes"])
    assert "started with a 720 ms delay" in notes and "configure --delay-ms 720" in notes


@pytest.mark.slow
def test_fix_in_api_mode_names_the_sdk_install_and_where_audio_goes(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    checkout = make_checkout(tmp_path / "EchoPanel", env="VOXTRAL_MODE=api\nVOXTRAL_MISTRAL_API_KEY=k\n")
    python = make_backend_python(checkout)  # no mistralai in EchoPanel's Python
    code, out, _ = cli(
        monkeypatch, capsys, "fix", "--echopanel", str(checkout), "--echopanel-python", str(python), "--yes"
    )
    assert code == 1
    assert f"{python} -m pip install 'mistralai[realtime]'" in out and "audio then leaves this machine" in out
    assert (checkout / FILE).read_text(encoding="utf-8") == template_text(), "the fix itself stays"
    code, out, _ = fix(monkeypatch, capsys, checkout, "--yes", "--force")  # this Python has the SDK
    assert code == 0, out


@pytest.mark.slow
def test_doctor_says_the_provider_changed_since_fix(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    (checkout / ".env").write_text("ECHOPANEL_ASR_PROVIDER=voxtral_official\n", encoding="utf-8")
    assert fix(monkeypatch, capsys, checkout, "--yes")[0] == 0

    def provider_check() -> dict:  # type: ignore[type-arg]
        _, out, _ = run_main(monkeypatch, capsys, "doctor", "--echopanel", str(checkout), "--offline", "--json")
        return next(c for c in json.loads(out)["checks"] if c["id"] == "echopanel.provider")

    assert "changed since fix" not in json.dumps(provider_check())
    (checkout / FILE).write_text(template_text() + "# edited by an EchoPanel update\n", encoding="utf-8")
    check = provider_check()
    assert check["status"] == "warn" and "EchoPanel's provider changed since fix" in check["summary"]


@pytest.mark.slow
def test_check_against_no_server_says_nothing_answers(checkout: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`EchoPanel gets no transcript from this server` alone blames the server's answers: where nothing answers, the
    realtime client's own failure says so."""
    port = closed_port()
    (checkout / ".env").write_text(f"VOXTRAL_VLLM_URL=http://127.0.0.1:{port}\n", encoding="utf-8")
    code, out, _ = cli(monkeypatch, capsys, "check", "--echopanel", str(checkout), "--echopanel-python", sys.executable)
    assert code == 1 and f"a realtime client fails too: cannot reach http://127.0.0.1:{port}/health" in out, out
