"""The `--json` contract every command shares (schema/envelope.schema.json): one document on stdout for every
exit, results and errors alike — Click's usage errors, our own errors, internal errors and Ctrl-C included."""

from __future__ import annotations

import io
import json
import socket
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import FIXTURES, Cli, CliRun, run_cli

from echopanel_setup import doctor, output, paths

sys.path.insert(0, str(FIXTURES / "hub"))
from hub_server import HubStandIn  # noqa: E402

SCHEMA = json.loads((Path(output.__file__).parent / "schema" / "envelope.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FACTS = FIXTURES / "facts" / "linux-4090-desktop.json"
LOGS = FIXTURES / "logs"
ERROR_KEYS = {"schema_version", "tool", "command", "exit_code", "error"}


def envelope(run: CliRun, command: str) -> dict:  # type: ignore[type-arg]
    """The one schema-valid document `run` printed, whose exit code is the process's."""
    doc = json.loads(run.out)  # exactly one document: json.loads refuses trailing data
    VALIDATOR.validate(doc)
    assert doc["command"] == command and doc["exit_code"] == run.code, (doc, run.err)
    return doc


def error_of(run: CliRun, command: str, code: int, kind: str) -> dict:  # type: ignore[type-arg]
    """The error document: the envelope and nothing else, its message the line printed on stderr."""
    assert run.code == code, (run.out, run.err)
    doc = envelope(run, command)
    assert set(doc) == ERROR_KEYS and doc["error"]["kind"] == kind
    assert doc["error"]["message"] in run.err.strip().splitlines()[-1]
    return doc["error"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_schema_itself_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (("doctor", "--json", "--facts", str(FACTS)), "doctor"),
        (("explain", "--json", str(LOGS / "tokenizer-kwargs.log")), "explain"),
        (("explain", "--json", str(LOGS / "unrelated.log")), "explain"),
        (("serve", "--json", "--facts", str(FACTS)), "serve"),
        (("serve", "--json", "--facts", str(FIXTURES / "facts" / "linux-v100.json")), "serve"),  # a refusal: exit 1
        (("serve", "status", "--json"), "serve status"),
        (("serve", "stop", "--json"), "serve stop"),
        (("tunnel", "status", "--json"), "tunnel status"),  # no tunnel: exit 1
        (("tunnel", "stop", "--json"), "tunnel stop"),
    ],
)
def test_results_are_envelopes(cli: Cli, argv: tuple[str, ...], command: str) -> None:
    doc = envelope(cli(*argv), command)
    assert doc["error"] is None


@pytest.mark.parametrize(
    ("argv", "command", "needle"),
    [
        (("doctor", "--json", "--port", "0"), "doctor", "--port"),
        (("doctor", "--json", "--python", "/nonexistent/python"), "doctor", "no such file"),
        (("explain", "--json", "/nonexistent.log"), "explain", "no such file"),
        (("explain", "--json"), "explain", "Missing argument"),
        (("install", "voxtral", "--json", "--stall-timeout", "0"), "install voxtral", "--stall-timeout"),
        (("install", "vllm", "--json", "--bogus"), "install vllm", "No such option"),
        (("install", "voxtral-c", "--json", "--backend", "cuda"), "install voxtral-c", "--backend"),
        (("serve", "--json", "--gpus", "0"), "serve", "--gpus"),
        (("serve", "status", "--json", "--bogus"), "serve status", "No such option"),
        (("serve", "logs", "--json", "--lines", "-1"), "serve logs", "--lines"),
        (("smoke", "--json", "--max-wer", "-1"), "smoke", "--max-wer"),
        (("smoke", "--json"), "smoke", "nothing to test"),
        (("configure", "--json", "--facts", str(FACTS), "--delay-ms", "500"), "configure", "nearest: 480"),
        (("configure", "--json", "--shell"), "configure", "exclude each other"),
        (("setup", "--json", "--exec"), "setup", "use --detach with --json"),
        (("watch", "--json", "--interval", "-1", "--once"), "watch", "--interval"),
        (("setup", "--json", "--url", "gpu:8000"), "setup", "must look like http://HOST:PORT"),
        (("setup", "--json", "--bogus"), "setup", "No such option"),
        (("bogus", "--json"), "bogus", "No such command"),
        (("tunnel", "start", "--json", "--", "-oProxyCommand=x"), "tunnel start", "is not an ssh destination"),
        (("tunnel", "start", "gpu", "--json", "--local-port", "0"), "tunnel start", "--local-port"),
    ],
)
def test_usage_errors_are_error_documents(cli: Cli, argv: tuple[str, ...], command: str, needle: str) -> None:
    error = error_of(cli(*argv), command, 2, "usage")
    assert needle in error["message"] and error["traceback"] is None


def test_install_plans_are_envelopes(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from test_install_hub import point_at

    with HubStandIn() as hub:
        point_at(hub.endpoint, monkeypatch)
        doc = envelope(
            cli("install", "voxtral", "--json", "--dry-run", "--dir", str(tmp_path / "m")), "install voxtral"
        )
    assert doc["status"] == "planned" and doc["disk"]["fits"] and {f["action"] for f in doc["files"]} == {"download"}
    run = cli("install", "vllm", "--json", "--dry-run", "--facts", str(FACTS), "--venv", str(tmp_path / "venv"))
    doc = envelope(run, "install vllm")
    assert doc["status"] == "planned" and doc["commands"] and doc["checks"] == [] and not (tmp_path / "venv").exists()


def test_install_voxtral_c_plans_and_failures_are_envelopes(cli: Cli, tmp_path: Path) -> None:
    import voxtralc_kit

    repo = voxtralc_kit.make_repo(tmp_path / "voxtral.c")
    doc = envelope(cli("install", "voxtral-c", "--json", "--dry-run", "--repo", str(repo)), "install voxtral-c")
    assert doc["status"] == "planned" and doc["commands"] and all(c["ok"] for c in doc["preconditions"])
    failed = cli("install", "voxtral-c", "--json", "--repo", str(tmp_path / "none"))
    error_of(failed, "install voxtral-c", 3, "external")
    mac = json.loads((FIXTURES / "facts" / "macos-arm64.json").read_text())
    mac["platform"]["rosetta"] = True
    (tmp_path / "rosetta.json").write_text(json.dumps(mac))
    run = cli("install", "voxtral-c", "--json", "--facts", str(tmp_path / "rosetta.json"), "--repo", str(repo))
    assert "Rosetta" in error_of(run, "install voxtral-c", 1, "failed")["message"]


def test_configure_documents_mask_the_key(cli: Cli, tmp_path: Path) -> None:
    from echopanel_kit import make_checkout

    from echopanel_setup.provider import template_text

    ep = make_checkout(tmp_path / "ep", providers={"provider_voxtral_official.py": template_text()})  # has an API path
    env = tmp_path / "echopanel.env"
    args = ("configure", "--json", "--facts", str(FACTS), "--echopanel", str(ep), "--output", str(env))
    run = cli(*args, "--mode", "api", "--api-key", "sk-x1")
    doc = envelope(run, "configure")
    assert doc["action"] == "written" and doc["values"]["VOXTRAL_MISTRAL_API_KEY"] == "****" and doc["private"]
    assert doc["echopanel_sees"]["VOXTRAL_MISTRAL_API_KEY"]["value"] == "<set>"
    assert "sk-x1" not in run.out + run.err and "sk-x1" in env.read_text()
    doc = envelope(cli(*args, "--dry-run"), "configure")
    assert doc["action"] == "dry-run" and "sk-x1" not in json.dumps(doc)
    refused = cli("configure", "--json", "--facts", str(FACTS), "--output", str(env), "--mode", "api")
    assert "Mistral API path" in error_of(refused, "configure", 1, "failed")["message"]  # a document too


def test_setup_documents_list_every_step(cli: Cli) -> None:
    run = cli("setup", "--json", "--dry-run", "--facts", str(FACTS))
    doc = envelope(run, "setup")
    assert doc["status"] == "dry-run" and doc["mode"] == "local"
    assert [s["step"] for s in doc["steps"]] == [
        "doctor",
        "install vllm",
        "install voxtral",
        "serve",
        "smoke",
        "provider",
        "configure",
    ]
    assert "skip  install vllm" in run.err  # the live lines go to stderr


def test_smoke_results_are_envelopes(cli: Cli) -> None:
    from smoke_kit import VllmStandIn, exact

    from echopanel_setup.smoke import audio

    with VllmStandIn(exact(audio.bundled().pcm)) as server:
        doc = envelope(cli("smoke", "--json", "--fast", "--url", server.url), "smoke")
    assert doc["passed"] and doc["error"] is None


@pytest.mark.slow
def test_smoke_streams_results_and_errors_are_envelopes(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from realtime_kit import ModelBehaviour, RealtimeModel

    from echopanel_setup.smoke import audio, streams

    clip = audio.bundled()
    monkeypatch.setattr(streams, "run", functools.partial(streams.run, speed=4.0))
    with RealtimeModel({}, ModelBehaviour(script=(clip.pcm, clip.reference or ""), max_model_len=None)) as server:
        doc = envelope(cli("smoke", "--json", "--url", server.url, "--streams", "2", "--duration", "1"), "smoke")
    assert doc["passed"] and doc["streams"]["carried"] == 2
    unreachable = ("smoke", "--json", "--streams", "2", "--url", f"http://127.0.0.1:{closed_port()}")
    assert "127.0.0.1" in error_of(cli(*unreachable), "smoke", 3, "external")["message"]


def test_a_failure_raised_as_an_error_is_a_failed_document(cli: Cli, tmp_path: Path) -> None:
    error = error_of(
        cli("install", "voxtral", "--json", "--verify", "--dir", str(tmp_path)), "install voxtral", 1, "failed"
    )
    assert "nothing installed" in error["message"]


def test_an_unreachable_server_is_an_external_error_document(cli: Cli) -> None:
    error = error_of(cli("smoke", "--json", "--url", f"http://127.0.0.1:{closed_port()}"), "smoke", 3, "external")
    assert "127.0.0.1" in error["message"]


def test_an_unreachable_hub_is_an_external_error_document() -> None:
    # --retries 0: the Hub's backoff (1+2+4+8+8 s) is install's business (test_install_hub), not the envelope's.
    hub = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    proc = run_cli("install", "voxtral", "--json", "--yes", "--retries", "0", env=hub)
    run = CliRun(proc.returncode, proc.stdout, proc.stderr)
    error_of(run, "install voxtral", 3, "external")


def test_an_internal_error_document_says_where_the_traceback_is(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(doctor, "run", boom)
    error = error_of(cli("doctor", "--json", "--offline"), "doctor", 4, "internal")
    assert error["message"] == "RuntimeError: probe exploded"
    saved = Path(error["traceback"])
    assert saved.parent == paths.state_dir() / "crash" and "probe exploded" in saved.read_text()


def test_ctrl_c_is_an_interrupted_document(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor, "run", interrupted)
    error_of(cli("doctor", "--json", "--offline"), "doctor", 130, "interrupted")


def test_without_json_errors_print_nothing_on_stdout(cli: Cli) -> None:
    run = cli("doctor", "--port", "0")
    assert run.code == 2 and run.out == "" and run.err.startswith("echopanel-setup: error: ")


def test_a_json_after_double_dash_is_not_the_flag(cli: Cli) -> None:
    run = cli("explain", "--", "--json")
    assert run.code == 2 and run.out == ""


def test_documents_stay_ascii_on_a_non_utf8_stdout() -> None:
    latin1 = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    output.write_json(output.error_document("doctor", "GPU → none ✗", 2), latin1)
    latin1.seek(0)
    text = latin1.read()
    assert text.isascii() and json.loads(text)["error"]["message"] == "GPU → none ✗"


def test_an_error_after_ndjson_lines_is_a_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "_lines_written", False)
    out = io.StringIO()
    output.write_error(output.error_document("serve", "not yet", 3), out)
    assert out.getvalue().count("\n") > 1  # a document alone is indented for people
    out = io.StringIO()
    output.write_line({**output.header("serve", 1), "event": "log", "line": "INFO started"}, out)
    output.write_error(output.error_document("serve", "the server died", 3), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and [json.loads(line)["command"] for line in lines] == ["serve", "serve"]
    VALIDATOR.validate(json.loads(lines[1]))


@pytest.mark.parametrize("argv", [(), ("install",)])
def test_no_arguments_print_the_help_not_an_error_line(cli: Cli, argv: tuple[str, ...]) -> None:
    run = cli(*argv)
    assert run.code == 2 and run.out == ""  # Click's convention (8.2+): help on stderr, exit 2
    assert run.err.startswith("Usage: ") and "error:" not in run.err
    assert "Commands" in run.err and len(run.err.splitlines()) > 5


@pytest.mark.slow
@pytest.mark.parametrize("action", ["check", "fix", "revert"])
def test_provider_results_and_errors_are_envelopes(cli: Cli, tmp_path: Path, action: str) -> None:
    from echopanel_kit import make_checkout

    checkout = make_checkout(tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL=http://127.0.0.1:{closed_port()}\n")
    extra = ("--dry-run",) if action == "fix" else ()
    doc = envelope(cli("provider", action, "--json", "--echopanel", str(checkout), *extra), f"provider {action}")
    assert doc["error"] is None and doc["outcome"]
    error = error_of(
        cli("provider", action, "--json", "--echopanel", str(tmp_path / "nowhere")), f"provider {action}", 2, "usage"
    )
    assert "not an EchoPanel checkout" in error["message"]


@pytest.mark.slow
def test_smoke_client_echopanel_is_an_envelope(cli: Cli, tmp_path: Path) -> None:
    from echopanel_kit import make_checkout

    checkout = make_checkout(tmp_path / "EchoPanel", env=f"VOXTRAL_VLLM_URL=http://127.0.0.1:{closed_port()}\n")
    doc = envelope(cli("smoke", "--json", "--fast", "--echopanel", str(checkout)), "smoke")
    assert doc["client"] == "echopanel" and doc["exit_code"] == 3  # nothing answers at the URL: external
    assert doc["error"]["kind"] == "external" and "nothing answers" in doc["error"]["message"]


def test_smoke_client_voxtral_c_is_an_envelope_and_a_missing_binary_a_failed_document(cli: Cli, tmp_path: Path) -> None:
    import voxtralc_kit as kit

    model = kit.make_model(tmp_path / "model", "one two")
    argv = ("smoke", "--json", "--client", "voxtral-c", "--voxtral-model", str(model))
    error = error_of(cli(*argv, "--voxtral-bin", str(tmp_path / "nowhere")), "smoke", 1, "failed")
    assert "install voxtral-c" in error["message"]
    if kit.compiler_available():
        binary = kit.build(kit.make_repo(tmp_path / "voxtral.c"))
        doc = envelope(cli(*argv, "--voxtral-bin", str(binary), "--expect", "one two"), "smoke")
        assert doc["client"] == "voxtral-c" and doc["exit_code"] == 0 and doc["wer"] == 0.0
