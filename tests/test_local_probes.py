"""Local probes against real files and sockets: the port (held by a real child process), the model dir and
its manifest, tekken.json's delay, and EchoPanel's env config (parse, validate, merge with the environment)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from serve_kit import tekken

from echopanel_setup import envconfig
from echopanel_setup.facts import local

# --- the port ---------------------------------------------------------------------------------------------------

_HOLDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder() -> Iterator:
    """Start a child process that listens on a port; yields (process, port) via a factory."""
    started: list[subprocess.Popen[str]] = []

    def start(host: str = "127.0.0.1", *extra: str) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, host, *extra], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        return proc, port

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_free_port() -> None:
    facts = local.probe_port(_free_port())
    assert facts.free is True
    assert facts.holder_pid is None and facts.holder_name is None


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_port_held_by_a_child_process(holder, host: str) -> None:
    proc, port = holder(host)
    facts = local.probe_port(port)
    assert facts.port == port
    assert facts.free is False
    assert facts.holder_pid == proc.pid
    assert "python" in (facts.holder_name or "").lower()
    assert "socket" in (facts.holder_cmdline or "")


def test_port_holder_command_line_hides_the_api_key(holder) -> None:
    """A vLLM started with `--api-key KEY` must not put its key into --json / --save-facts."""
    _, port = holder("127.0.0.1", "serve", "--api-key", "sk-holder-secret-4711")
    facts = local.probe_port(port)
    assert facts.free is False
    assert "sk-holder-secret-4711" not in json.dumps(facts.__dict__)


def test_port_accepts(holder) -> None:
    _, port = holder()
    assert local.port_accepts("127.0.0.1", port) is True
    assert local.port_accepts("127.0.0.1", _free_port()) is False


@pytest.mark.slow
def test_doctor_port_check_names_the_holder(holder) -> None:
    proc, port = holder()
    res = run_cli("doctor", "--offline", "--json", "--only", "port", "--port", str(port), "--mode", "local", timeout=30)
    doc = json.loads(res.stdout)
    assert doc["facts"]["port"]["free"] is False
    assert doc["facts"]["port"]["holder_pid"] == proc.pid
    (check,) = doc["checks"]
    assert check["status"] == "fail" and f"pid {proc.pid}" in check["summary"]


# --- the model dir ------------------------------------------------------------------------------------------------

FILES = {
    "consolidated.safetensors": b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}' + bytes(4096),
    "params.json": json.dumps({"dim": 3072, "n_layers": 26, "multimodal": {"whisper_model_args": {}}}).encode(),
}


def _model_dir(root: Path, delay: int | None = None, manifest: bool = True) -> Path:
    """The three files (tiny stand-ins) and the manifest `install voxtral` writes. `delay=None` leaves the
    audio block out of tekken.json, so manifest tests do not depend on reading the delay."""
    root.mkdir(parents=True)
    files = {**FILES, "tekken.json": tekken(delay, vocab=2000).encode()}
    for name, data in files.items():
        (root / name).write_bytes(data)
    if manifest:
        (root / ".echopanel-manifest.json").write_text(
            json.dumps(
                {
                    "repo": "mistralai/Voxtral-Mini-4B-Realtime-2602",
                    "commit": "4c2c1cbe0b0bc8fde4bd3d26d2d5e7e0dba9d0e1",
                    "files": {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()},
                }
            )
        )
    return root


def test_model_verified(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "Voxtral-Mini-4B-Realtime-2602")
    facts = local.probe_model(model, None)
    assert facts.exists is True
    assert facts.manifest == "present"
    assert facts.verified is True
    assert facts.commit == "4c2c1cbe0b0bc8fde4bd3d26d2d5e7e0dba9d0e1"
    assert facts.files == {
        "consolidated.safetensors": len(FILES["consolidated.safetensors"]),
        "params.json": len(FILES["params.json"]),
        "tekken.json": len(tekken(None, vocab=2000).encode()),
    }
    assert facts.delay_ms is None  # no audio block in this tekken.json
    assert facts.serve_dir is None


def test_model_truncated_file_is_not_verified(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "m")
    weights = model / "consolidated.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted download
    facts = local.probe_model(model, None)
    assert facts.manifest == "present"
    assert facts.verified is False
    assert facts.files["consolidated.safetensors"] == 1000


def test_model_missing_file(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "m")
    (model / "params.json").unlink()
    facts = local.probe_model(model, None)
    assert facts.files["params.json"] is None
    assert facts.verified is False


def test_model_without_manifest(tmp_path: Path) -> None:
    facts = local.probe_model(_model_dir(tmp_path / "m", manifest=False), None)
    assert facts.manifest == "absent"
    assert facts.verified is None


@pytest.mark.parametrize("content", ["{not json", '{"repo": "x"}', '{"files": {"params.json": {"size": 3}}}', "[]"])
def test_model_unreadable_manifest(tmp_path: Path, content: str) -> None:
    model = _model_dir(tmp_path / "m")
    (model / ".echopanel-manifest.json").write_text(content)
    facts = local.probe_model(model, None)
    assert facts.manifest == "unreadable"
    assert facts.verified is False


def test_model_absent(tmp_path: Path) -> None:
    facts = local.probe_model(tmp_path / "nowhere", None)
    assert facts.exists is False
    assert set(facts.files.values()) == {None}
    assert facts.manifest == "absent"
    assert facts.delay_ms is None


def test_model_serve_dir_delay_wins(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "m", delay=480)
    variant = _model_dir(tmp_path / "variant-960", delay=960, manifest=False)
    facts = local.probe_model(model, str(variant))
    assert facts.serve_dir == str(variant)
    assert facts.delay_ms == 960
    assert facts.verified is True  # the verified files are the model dir's
    # a recorded serve dir that has gone away: back to the model dir
    facts = local.probe_model(model, str(tmp_path / "gone"))
    assert facts.serve_dir is None and facts.delay_ms == 480


def test_read_tekken_delay(tmp_path: Path) -> None:
    tekken_json = tmp_path / "tekken.json"
    tekken_json.write_bytes(tekken(960, vocab=2000).encode())
    assert local.read_tekken_delay(tekken_json) == 960
    tekken_json.write_text('{"vocab": [{"rank": 0}], "audio": {"sampling_rate": 16000, "transcription_delay_ms": 960}}')
    assert local.read_tekken_delay(tekken_json) == 960
    tekken_json.write_text(
        '{"vocab": [], "audio" :\n  {\n    "sampling_rate": 16000,\n    "transcription_delay_ms" :  2400\n  }\n}'
    )
    assert local.read_tekken_delay(tekken_json) == 2400


def test_doctor_model_probe_reads_the_delay(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "Voxtral-Mini-4B-Realtime-2602", delay=480)
    res = run_cli("doctor", "--offline", "--json", "--model-dir", str(model), "--mode", "local", timeout=30)
    doc = json.loads(res.stdout)
    assert {p["name"]: p for p in doc["facts"]["probes"]}["model"]["status"] == "ok"
    assert doc["facts"]["model"]["delay_ms"] == 480
    assert doc["facts"]["model"]["verified"] is True


@pytest.mark.slow
def test_doctor_model_probe_without_delay(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "Voxtral-Mini-4B-Realtime-2602")
    res = run_cli("doctor", "--offline", "--json", "--model-dir", str(model), "--mode", "local", timeout=30)
    doc = json.loads(res.stdout)
    assert {p["name"]: p for p in doc["facts"]["probes"]}["model"]["status"] == "ok"
    model_facts = doc["facts"]["model"]
    assert model_facts["verified"] is True and model_facts["manifest"] == "present" and model_facts["delay_ms"] is None


def test_read_tekken_delay_absent(tmp_path: Path) -> None:
    tekken_json = tmp_path / "tekken.json"
    tekken_json.write_bytes(tekken(None, vocab=2000).encode())
    assert local.read_tekken_delay(tekken_json) is None
    tekken_json.write_bytes(b"")
    assert local.read_tekken_delay(tekken_json) is None  # an empty file cannot be mapped
    assert local.read_tekken_delay(tmp_path / "missing.json") is None
    tekken_json.write_text('{"audio": {"sampling_rate": 16000, "transcription_delay_ms": null}}')
    assert local.read_tekken_delay(tekken_json) is None


def test_disk_probe_measures_the_nearest_existing_parent(tmp_path: Path) -> None:
    facts = local.probe_disk(tmp_path / "a" / "b" / "model")
    assert facts.checked_path == str(tmp_path)
    assert facts.free_mib is not None and facts.total_mib is not None and facts.total_mib >= facts.free_mib


def test_client_packages_read_from_our_environment() -> None:
    from importlib import metadata

    facts = local.probe_client()
    assert facts.packages["httpx"] == metadata.version("httpx")
    assert facts.packages["websockets"] == metadata.version("websockets")
    assert set(facts.packages) == set(local.CLIENT_PACKAGES)


def test_installed_versions_agree_with_importlib_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folders' own reading (doctor's start-up skips importlib.metadata) finds what importlib.metadata finds:
    the first on sys.path wins, names compare as PEP 503 says, .egg-info folders and files count."""
    from importlib import metadata

    first, later = tmp_path / "first", tmp_path / "later"
    (first / "Zope.Interface-7.1.dist-info").mkdir(parents=True)
    headers_then_body = "Metadata-Version: 2.1\nName: zope.interface\nVersion: 7.1\n\nVersion: 9\n"
    (first / "Zope.Interface-7.1.dist-info" / "METADATA").write_text(headers_then_body)
    (later / "zope_interface-6.0.dist-info").mkdir(parents=True)
    (later / "zope_interface-6.0.dist-info" / "METADATA").write_text("Name: zope-interface\nVersion: 6.0\n")
    (later / "legacy.egg-info").mkdir()
    (later / "legacy.egg-info" / "PKG-INFO").write_text("Name: legacy\nVersion: 0.3\n")
    (later / "flat-1.2-py3.11.egg-info").write_text("Name: flat\nVersion: 1.2\n")
    monkeypatch.setattr(sys, "path", [str(first), str(later), *sys.path])
    names = ["zope-interface", "legacy", "flat", "httpx", "Typer", "no-such-package-here"]
    expected = {}
    for name in names:
        try:
            expected[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected[name] = None
    assert local.installed_versions(names) == expected
    assert expected["zope-interface"] == "7.1" and expected["flat"] == "1.2"


# --- EchoPanel's env config: parse --------------------------------------------------------------------------------

ENV_TEXT = """\
# EchoPanel — written by hand
export ECHOPANEL_ASR_PROVIDER=voxtral_official

VOXTRAL_VLLM_URL = http://localhost:8000   # the GPU box
VOXTRAL_STREAMING_DELAY_MS="480"
export VOXTRAL_MISTRAL_API_KEY='sk a b'
HASH_INSIDE="a#b"
NO_SPACE=a#b
EMPTY=
this line is wrong
KEY_WITH_QUOTE="unbalanced
TWO="a" "b"
   # indented comment
"""


def test_delay_grid() -> None:
    valid = list(range(240, 1201, 80)) + [2400]
    for ms in valid:
        assert envconfig.validate_delay(str(ms)) is None, ms
    for ms in (80, 160, 200, 500, 1280, 2000, 2480, 0, -480):
        assert envconfig.validate_delay(str(ms)) is not None, ms


@pytest.mark.parametrize(
    ("value", "nearest"),
    [
        ("500", "nearest: 480"),
        ("520", "nearest: 480 or 560"),
        ("80", "nearest: 240"),
        ("2000", "nearest: 2400"),
        ("1250", "nearest: 1200"),
    ],
)
def test_delay_nearest(value: str, nearest: str) -> None:
    msg = envconfig.validate_delay(value)
    assert msg is not None and msg.endswith(nearest)
    assert msg.startswith(f"VOXTRAL_STREAMING_DELAY_MS={value} is not a delay the model was trained for")


@pytest.mark.parametrize("value", ["abc", "480ms", "480.0", ""])
def test_delay_not_a_number(value: str) -> None:
    assert "is not a whole number of milliseconds" in (envconfig.validate_delay(value) or "")


def test_validate_url() -> None:
    """The config check's sentence names the variable, whole (url.py's tests cover every form)."""
    assert envconfig.validate_url("http://localhost:8000") is None
    assert envconfig.validate_url("http://localhost:8000/") is None
    assert envconfig.validate_url("http://gpu-host:8000/v1/realtime") == (
        "VOXTRAL_VLLM_URL='http://gpu-host:8000/v1/realtime' must have no path "
        "(EchoPanel adds /health and /v1/… itself): use http://gpu-host:8000"
    )


def test_validate_values() -> None:
    assert (
        envconfig.validate(
            {
                "ECHOPANEL_ASR_PROVIDER": "voxtral_official",
                "VOXTRAL_VLLM_URL": "http://localhost:8000",
                "VOXTRAL_STREAMING_DELAY_MS": "480",
            }
        )
        == []
    )
    assert envconfig.validate({"VOXTRAL_MODE": "api"}) == [] and envconfig.validate({"VOXTRAL_MODE": ""}) == []
    problems = envconfig.validate(
        {
            "ECHOPANEL_ASR_PROVIDER": "voxtral",
            "VOXTRAL_VLLM_URL": "http://h:8000/v1",
            "VOXTRAL_STREAMING_DELAY_MS": "500",
            "VOXTRAL_MODE": "remote",
        }
    )
    assert len(problems) == 3  # the selection is judged against the checkout's registry (echopanel.provider)
    assert "must have no path" in problems[0]
    assert problems[1].endswith("nearest: 480")
    assert "the only value is 'api'" in problems[2]


# --- probe_config: the file merged with the environment ------------------------------------------------------------


def test_probe_config_environment_overrides_file_and_secret_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "echopanel.env"
    path.write_text(
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_VLLM_URL=http://localhost:8000\n"
        "VOXTRAL_MISTRAL_API_KEY=sk-file-secret-1234\nVOXTRAL_STREAMING_DELAY_MS=480\n"
    )
    monkeypatch.setenv("VOXTRAL_VLLM_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("VOXTRAL_STREAMING_DELAY_MS", "960")
    facts = local.probe_config(path)
    assert facts.exists is True and facts.errors == []
    assert facts.values["VOXTRAL_VLLM_URL"] == "http://127.0.0.1:9000"
    assert facts.values["VOXTRAL_STREAMING_DELAY_MS"] == "960"
    assert facts.values["ECHOPANEL_ASR_PROVIDER"] == "voxtral_official"
    assert facts.values["VOXTRAL_MISTRAL_API_KEY"] == "<set>"
    assert sorted(facts.from_environment) == ["VOXTRAL_STREAMING_DELAY_MS", "VOXTRAL_VLLM_URL"]
    assert "sk-file-secret-1234" not in json.dumps(facts.__dict__)


def test_probe_config_secret_from_environment_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXTRAL_MISTRAL_API_KEY", "sk-env-secret")
    facts = local.probe_config(tmp_path / "absent.env")
    assert facts.exists is False
    assert facts.values == {"VOXTRAL_MISTRAL_API_KEY": "<set>"}
    assert facts.from_environment == ["VOXTRAL_MISTRAL_API_KEY"]


def test_probe_config_empty_value_leaves_the_key_unset_as_echopanel_does(tmp_path: Path) -> None:
    path = tmp_path / "echopanel.env"
    path.write_text('VOXTRAL_MISTRAL_API_KEY=\nVOXTRAL_VLLM_URL=""\n')
    assert local.probe_config(path).values == {"VOXTRAL_VLLM_URL": ""}  # `K=""` sets the empty string


def test_probe_config_drops_undecodable_bytes_as_echopanel_does(tmp_path: Path) -> None:
    path = tmp_path / "echopanel.env"
    path.write_bytes(b"ECHOPANEL_ASR_PROVIDER=\xff\xfe\nVOXTRAL_STREAMING_DELAY_MS=4\xff80\n")
    facts = local.probe_config(path)
    assert facts.exists is True and facts.values == {"VOXTRAL_STREAMING_DELAY_MS": "480"}


@pytest.mark.slow
def test_doctor_json_never_contains_the_key(tmp_path: Path) -> None:
    path = tmp_path / "echopanel.env"
    path.write_text(
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_MODE=api\nVOXTRAL_MISTRAL_API_KEY=sk-doctor-secret-99\n"
    )
    res = run_cli("doctor", "--offline", "--json", "--config", str(path), timeout=30)
    assert "sk-doctor-secret-99" not in res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["mode"] == "api"
    assert doc["facts"]["network"]["mistral_api_key"] == "VOXTRAL_MISTRAL_API_KEY"
    assert {c["id"]: c for c in doc["checks"]}["api.key"]["status"] == "ok"


def test_malformed_secret_line_is_not_quoted(tmp_path: Path) -> None:
    """`VOXTRAL_MISTRAL_API_KEY: sk-…` (a typo) must not be echoed into --json or the paste-ready --report."""
    path = tmp_path / "echopanel.env"
    path.write_text("ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_MISTRAL_API_KEY: sk-malformed-secret-42\n")
    facts = local.probe_config(path)
    assert facts.errors and facts.errors[0].startswith("line 2:")
    assert not any("sk-malformed-secret-42" in e for e in facts.errors)
    res = run_cli("doctor", "--offline", "--report", "--config", str(path), "--mode", "api", timeout=30)
    assert "sk-malformed-secret-42" not in res.stdout


def test_other_secrets_in_the_env_file_are_not_copied(tmp_path: Path) -> None:
    """The seed guide exports HF_TOKEN beside EchoPanel's keys; kept in echopanel.env it stays out of --json."""
    path = tmp_path / "echopanel.env"
    path.write_text(
        "export HF_TOKEN=hf_live_token_0123456789\nexport MISTRAL_API_KEY=sk-other-secret-77\n"
        "export ECHOPANEL_ASR_PROVIDER=voxtral_official\nexport VOXTRAL_VLLM_URL=http://localhost:8000\n"
    )
    res = run_cli("doctor", "--offline", "--json", "--config", str(path), timeout=30)
    assert "hf_live_token_0123456789" not in res.stdout
    assert "sk-other-secret-77" not in res.stdout


def test_probe_config_missing_file(tmp_path: Path) -> None:
    facts = local.probe_config(tmp_path / "nope.env")
    assert facts.exists is False and facts.values == {} and facts.errors == []


def test_holder_fixture_cleans_up(holder) -> None:
    proc, port = holder()
    assert local.probe_port(port).free is False
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while local.probe_port(port).free is not True and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local.probe_port(port).free is True


def test_a_key_reference_is_a_literal_as_echopanel_expands_nothing(tmp_path, monkeypatch) -> None:
    env = tmp_path / "echopanel.env"
    env.write_text("VOXTRAL_MODE=api\nVOXTRAL_MISTRAL_API_KEY=${MY_KEY}\n")
    facts = local.probe_config(env)
    assert facts.values["VOXTRAL_MISTRAL_API_KEY"] == "<set>"
    assert any("does not expand" in e for e in facts.errors)
