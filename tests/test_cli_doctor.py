"""The command line as a user meets it: help and version, commands not built yet, bad input (exit 2 with
one line), --save-facts round trips, secrets never written, and a live offline run against a loopback
server that answers like vLLM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from facts_kit import FACTS_DIR, schema

from echopanel_setup import __version__
from echopanel_setup.facts.model import Facts

H100 = str(FACTS_DIR / "linux-h100-vllm020.json")
COMMANDS = ("doctor", "install", "serve", "smoke", "configure", "explain", "setup")


def assert_usage_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, exactly one line on stderr, no traceback, and on stdout nothing (under --json: only the error
    document with that line's message); returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    if "--json" in proc.args:
        assert lines[0].endswith(json.loads(proc.stdout)["error"]["message"])
    else:
        assert proc.stdout == ""
    return lines[0]


# --- help, version, commands not available yet --------------------------------------------------------


def test_help_lists_every_command() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout, name


def test_install_help_lists_its_targets() -> None:
    proc = run_cli("install", "--help")
    assert proc.returncode == 0
    assert "voxtral" in proc.stdout and "vllm" in proc.stdout


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"echopanel-setup {__version__}"


# --- bad input ----------------------------------------------------------------------------------------


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("python-missing", "/nonexistent"),
        ("python-dir", "bin/python"),
        ("facts-missing", "missing.json"),
        ("facts-malformed", "not JSON"),
        ("facts-list", "not a facts snapshot"),
        ("facts-wrong-section", "not a facts snapshot"),
        ("facts-wrong-device", "not a facts snapshot"),
        ("facts-wrong-type", "not a facts snapshot"),
        ("facts-newer", "newer"),
        ("facts-directory", "--facts"),
        ("facts-endless", "larger than 16 MiB"),
        ("only-unknown", "nosuchcheck"),
        ("skip-unknown", "nosuchcheck"),
        ("only-empty", "--only names no check"),
        ("only-commas", "--only names no check"),
        ("skip-empty", "--skip names no check"),
        ("config-fifo", "a named pipe (FIFO), not a regular file"),
        ("config-device", "a character device, not a regular file"),
        ("url-ftp", "--url"),
        ("url-path", "--url"),
        ("save-facts-unwritable", "--save-facts"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(case: str, fragment: str, tmp_path: Path) -> None:
    args = {
        "python-missing": ["--python", "/nonexistent"],
        "python-dir": ["--python", str(tmp_path)],
        "facts-missing": ["--facts", "missing.json"],
        "facts-malformed": ["--facts", _write(tmp_path / "bad.json", '{"platform": {"system": "Linux",')],
        "facts-list": ["--facts", _write(tmp_path / "list.json", "[1, 2, 3]")],
        "facts-wrong-section": ["--facts", _write(tmp_path / "w.json", '{"schema_version": 1, "platform": "Linux"}')],
        "facts-wrong-device": [
            "--facts",
            _write(tmp_path / "d.json", '{"gpu": {"source": "nvml", "devices": [{"index": 0}]}}'),
        ],
        "facts-wrong-type": [
            "--facts",
            _write(
                tmp_path / "t.json", '{"gpu": {"devices": [{"index": 0, "name": "x", "memory_total_mib": "24 GB"}]}}'
            ),
        ],
        "facts-newer": ["--facts", _write(tmp_path / "n.json", '{"schema_version": 99}')],
        "facts-directory": ["--facts", str(tmp_path)],
        "facts-endless": ["--facts", "/dev/zero"],  # was read whole: killed for memory
        "only-unknown": ["--facts", H100, "--only", "nosuchcheck"],
        "skip-unknown": ["--facts", H100, "--skip", "gpu,nosuchcheck"],
        # An empty filter selected every check (`--only ""` from an unset variable in a CI script ran them all).
        "only-empty": ["--facts", H100, "--only", ""],
        "only-commas": ["--facts", H100, "--only", " , "],
        "skip-empty": ["--facts", H100, "--skip", ""],
        # A --config that is not a regular file was read: /dev/zero until memory ran out (11 GB in 9 s), a FIFO
        # until the probe timed out (6 checks "timeout").
        "config-fifo": ["--config", _fifo(tmp_path / "fifo")],
        "config-device": ["--config", "/dev/zero"],
        "url-ftp": ["--url", "ftp://x"],
        "url-path": ["--url", "http://localhost:8000/v1/realtime"],
        "save-facts-unwritable": [
            "--facts",
            H100,
            "--json",
            "--save-facts",
            str(tmp_path / "no" / "such" / "dir" / "f.json"),
        ],
    }[case]
    line = assert_usage_error(run_cli("doctor", *args))
    assert line.startswith("echopanel-setup: error:")
    assert fragment in line


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "0"),
        ("--port", "70000"),
        ("--mode", "bogus"),
    ],
)
def test_bad_option_values_are_one_line(args: tuple[str, ...]) -> None:
    assert_usage_error(run_cli("doctor", *args))


@pytest.mark.parametrize("args", [("--port", "0"), ("--port", "70000"), ("--mode", "bogus"), ("--no-such-flag",)])
def test_bad_option_values_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    proc = run_cli("doctor", *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("echopanel-setup: error: ") and "--help" in line


def test_facts_with_no_snapshot_section_is_a_usage_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "explain.json", json.dumps({"schema_version": 1, "recognised": False, "matches": []}))
    assert_usage_error(run_cli("doctor", "--facts", path))


# --- --save-facts and secrets -------------------------------------------------------------------------

SECRETS = ("sk-secret-123", "sk-secret-456", "pr0xy-pass")


def _secret_config(tmp_path: Path) -> str:
    return _write(
        tmp_path / "echopanel.env",
        "# EchoPanel\n"
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\n"
        "export VOXTRAL_MODE=api\n"
        'VOXTRAL_MISTRAL_API_KEY="sk-secret-456"\n',
    )


def test_save_facts_round_trips_and_holds_no_secret(tmp_path: Path) -> None:
    config = _secret_config(tmp_path)
    saved = tmp_path / "facts.json"
    env = {"VOXTRAL_MISTRAL_API_KEY": "sk-secret-123", "HTTPS_PROXY": "http://bob:pr0xy-pass@proxy.corp:3128"}
    proc = run_cli("doctor", "--offline", "--config", config, "--json", "--save-facts", str(saved), env=env)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    import jsonschema

    jsonschema.Draft202012Validator(schema()).validate(doc)
    text = saved.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in proc.stdout, secret
        assert secret not in proc.stderr, secret
        assert secret not in text, secret

    data = json.loads(text)
    assert Facts.from_dict(data).to_dict() == data
    assert data == doc["facts"]
    assert data["config"]["values"]["VOXTRAL_MISTRAL_API_KEY"] == "<set>"
    assert data["network"]["mistral_api_key"] == "VOXTRAL_MISTRAL_API_KEY"
    assert data["network"]["proxies"]["HTTPS_PROXY"] == "http://***@proxy.corp:3128"
    assert data["network"]["offline"] is True
    assert doc["mode"] == "api" and "VOXTRAL_MODE=api" in doc["mode_reason"]
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["api.key"]["status"] == "ok"

    # The snapshot replays to the same verdicts.
    replay = run_cli("doctor", "--facts", str(saved), "--json")
    again = json.loads(replay.stdout)
    assert [(c["id"], c["status"], c["summary"]) for c in again["checks"]] == [
        (c["id"], c["status"], c["summary"]) for c in doc["checks"]
    ]
    assert replay.returncode == proc.returncode
    assert again["replayed"] is True and doc["replayed"] is False


def test_report_and_human_output_hold_no_secret(tmp_path: Path) -> None:
    config = _secret_config(tmp_path)
    env = {"VOXTRAL_MISTRAL_API_KEY": "sk-secret-123", "HTTPS_PROXY": "http://bob:pr0xy-pass@proxy.corp:3128"}
    for extra in (["--report"], ["-v"]):
        proc = run_cli("doctor", "--offline", "--config", config, *extra, env=env)
        assert proc.returncode in (0, 1), proc.stderr
        for secret in SECRETS:
            assert secret not in proc.stdout + proc.stderr, (extra, secret)


def test_other_secrets_in_the_config_file_are_not_saved(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "echopanel.env",
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\nMISTRAL_API_KEY=sk-secret-789\nHF_TOKEN=hf_secretToken000\nVLLM_API_KEY=sk-vllm-secret\n",
    )
    saved = tmp_path / "facts.json"
    proc = run_cli("doctor", "--offline", "--config", config, "--json", "--save-facts", str(saved))
    for secret in ("sk-secret-789", "hf_secretToken000", "sk-vllm-secret"):
        assert secret not in saved.read_text(encoding="utf-8"), secret
        assert secret not in proc.stdout, secret


def test_a_malformed_secret_line_is_not_echoed(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "echopanel.env", "ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_MISTRAL_API_KEY: sk-secret-yaml\n"
    )
    saved = tmp_path / "facts.json"
    proc = run_cli("doctor", "--offline", "--mode", "api", "--config", config, "--json", "--save-facts", str(saved))
    doc = json.loads(proc.stdout)
    assert any(c["id"] == "config.values" and c["status"] == "fail" for c in doc["checks"])  # still reported
    assert "sk-secret-yaml" not in proc.stdout
    assert "sk-secret-yaml" not in saved.read_text(encoding="utf-8")


# --- a live run against a loopback server that answers like vLLM --------------------------------------

FAKE_VLLM = r"""
import http.server, json, sys
argv = sys.argv
port = int(argv[argv.index("--port") + 1])
key = argv[argv.index("--api-key") + 1]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.send(200, b"")
        elif self.path == "/version":
            self.send(200, json.dumps({"version": "0.20.0"}).encode())
        elif self.path == "/v1/models":
            if self.headers.get("Authorization") != "Bearer " + key:
                self.send(401, b'{"error": "Unauthorized"}')
            else:
                model = {"id": "mistralai/Voxtral-Mini-4B-Realtime-2602", "object": "model", "owned_by": "vllm"}
                self.send(200, json.dumps({"object": "list", "data": [model]}).encode())
        else:
            self.send(404, b"")

    def send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""
SERVER_KEY = "sk-vllm-cmdline-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_vllm(tmp_path: Path):  # type: ignore[no-untyped-def]
    """`vllm serve … --api-key KEY` as `ps` shows it, listening on loopback."""
    script = tmp_path / "fake_vllm_server.py"
    script.write_text(FAKE_VLLM, encoding="utf-8")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "serve",
            "mistralai/Voxtral-Mini-4B-Realtime-2602",
            "--port",
            str(port),
            "--api-key",
            SERVER_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the fake vLLM server did not start")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.mark.slow
def test_live_offline_run_finds_the_loopback_vllm_server(fake_vllm: int) -> None:
    port = fake_vllm
    proc = run_cli(
        "doctor",
        "--offline",
        "--port",
        str(port),
        "--url",
        f"http://127.0.0.1:{port}",
        "--mode",
        "local",
        "--only",
        "port,server",
        "--json",
        env={"VLLM_API_KEY": SERVER_KEY},
    )
    doc = json.loads(proc.stdout)
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["port"]["status"] == "ok", checks["port"]
    if doc["facts"]["port"]["free"] is False:  # Linux: the wildcard bind collides with the loopback listener
        assert "vLLM" in checks["port"]["summary"]
    assert checks["server"]["status"] == "ok", checks["server"]
    assert "0.20.0" in checks["server"]["summary"] and "Voxtral-Mini-4B-Realtime-2602" in checks["server"]["summary"]
    assert doc["facts"]["network"]["vllm_api_key"] is True
    assert proc.returncode == 0


@pytest.mark.slow
def test_live_server_without_the_key_is_reported(fake_vllm: int) -> None:
    proc = run_cli(
        "doctor",
        "--offline",
        "--url",
        f"http://127.0.0.1:{fake_vllm}",
        "--mode",
        "remote",
        "--only",
        "server",
        "--json",
    )
    doc = json.loads(proc.stdout)
    server = doc["checks"][0]
    assert server["status"] == "fail" and "API key" in server["summary"]
    assert proc.returncode == 1


@pytest.mark.slow
def test_the_port_holder_command_line_does_not_leak_its_api_key(fake_vllm: int, tmp_path: Path) -> None:
    saved = tmp_path / "facts.json"
    proc = run_cli(
        "doctor", "--offline", "--port", str(fake_vllm), "--only", "port", "--json", "--save-facts", str(saved)
    )
    facts = json.loads(proc.stdout)["facts"]
    if facts["port"]["holder_cmdline"] is None:
        pytest.skip("psutil cannot read the listening process here")  # pragma: no cover
    assert SERVER_KEY not in proc.stdout
    assert SERVER_KEY not in saved.read_text(encoding="utf-8")
