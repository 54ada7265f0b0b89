"""Doctor's output formats through the real command line: the --json document and its schema, the human
text (symbols with words, -q), the redacted --report and the --list matrix."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from conftest import run_cli
from facts_kit import FACTS_DIR, fixture_names, load, schema, write

from echopanel_setup import doctor
from echopanel_setup.checks import all_checks
from echopanel_setup.facts.collect import Options

MODES = ("local", "remote", "api")
VALIDATOR = jsonschema.Draft202012Validator(schema())


def facts_arg(name: str) -> str:
    return str(FACTS_DIR / name)


def test_schema_itself_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", fixture_names())
def test_json_is_one_schema_valid_document(name: str, mode: str) -> None:
    proc = run_cli("doctor", "--facts", facts_arg(name), "--mode", mode, "--json")
    doc = json.loads(proc.stdout)  # raises on a second document or any stray text
    VALIDATOR.validate(doc)
    assert proc.stdout.lstrip().startswith("{") and proc.stdout.rstrip().endswith("}")
    assert proc.stderr == ""
    assert proc.returncode == doc["exit_code"]
    assert doc["mode"] == mode and doc["replayed"] is True and doc["command"] == "doctor"
    expected = doctor.run(Options(), mode=mode, facts_file=facts_arg(name))
    assert doc["exit_code"] == expected.exit_code
    assert [(c["id"], c["status"]) for c in doc["checks"]] == [(r.id, r.status.value) for r in expected.results]
    assert doc["facts"] == load(name).to_dict()
    assert sum(doc["summary"].values()) == len(doc["checks"])


@pytest.mark.slow
def test_json_exit_code_follows_strict() -> None:
    plain = run_cli("doctor", "--facts", facts_arg("linux-t4.json"), "--json")
    strict = run_cli("doctor", "--facts", facts_arg("linux-t4.json"), "--json", "--strict")
    assert plain.returncode == json.loads(plain.stdout)["exit_code"] == 0
    doc = json.loads(strict.stdout)
    VALIDATOR.validate(doc)
    assert strict.returncode == doc["exit_code"] == 1 and doc["strict"] is True


def test_json_only_and_skip_select_checks() -> None:
    proc = run_cli(
        "doctor", "--facts", facts_arg("linux-3060-12gb.json"), "--json", "--only", "gpu,stack", "--skip", "gpu.memory"
    )
    doc = json.loads(proc.stdout)
    ids = [c["id"] for c in doc["checks"]]
    assert ids and all(i.startswith(("gpu.", "stack.")) for i in ids)
    assert "gpu.memory" not in ids
    assert proc.returncode == 0


def test_json_validates_with_a_crashed_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from echopanel_setup import checks
    from echopanel_setup.checks import REQUIRED, Check
    from echopanel_setup.report import to_document

    def boom(facts, mode):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    extra = Check("zz_report.boom", "Exploding", "config", {"local": REQUIRED}, (), boom)
    registry = checks.all_checks()
    registry.append(extra)
    try:
        run = doctor.run(Options(), mode="local", facts_file=facts_arg("linux-h100-vllm020.json"))
    finally:
        registry.remove(extra)
    doc = to_document(run)
    VALIDATOR.validate(doc)
    assert doc["summary"]["crashed"] == 1 and doc["exit_code"] == 1


# --- human output -------------------------------------------------------------------------------------


def test_human_output_has_words_and_symbols_without_colour() -> None:
    proc = run_cli("doctor", "--facts", facts_arg("linux-4090-vllm073-tf455.json"), env={"NO_COLOR": "1"})
    out = proc.stdout
    assert proc.returncode == 1
    assert "\x1b[" not in out
    for word, symbol in (("ok", "✓"), ("warn", "!"), ("fail", "✗")):
        assert re.search(rf"^\s+{re.escape(symbol)} {word}\b", out, re.M), (word, out)
    assert "Start with stack.tokenizer" in out
    assert "Kwargs ['max_loras', '_from_auto'] are not supported" in out
    assert "echopanel-setup install vllm" in out


def test_human_output_ready_machine() -> None:
    proc = run_cli("doctor", "--facts", facts_arg("linux-h100-vllm020.json"), env={"NO_COLOR": "1"})
    assert proc.returncode == 0
    assert "Ready for local mode" in proc.stdout
    assert "(advisory)" in proc.stdout  # the server warning is marked as such


def test_quiet_shows_only_problems() -> None:
    proc = run_cli("doctor", "--facts", facts_arg("linux-t4.json"), "-q", env={"NO_COLOR": "1"})
    out = proc.stdout
    assert proc.returncode == 0
    status_lines = [line for line in out.splitlines() if re.match(r"^\s+[✓!✗☠–] \w+\s", line)]
    assert status_lines, out
    assert all(re.match(r"^\s+[!✗☠] ", line) for line in status_lines), status_lines
    assert any("GPU compute capability" in line for line in status_lines)
    assert not re.search(r"^\s+✓ ok\b", out, re.M)
    assert "echopanel-setup doctor  ·" not in out  # no header
    assert "Ready for local mode" in out  # the verdict line stays


def test_verbose_shows_skipped_checks_and_probes() -> None:
    proc = run_cli("doctor", "--facts", facts_arg("linux-nogpu.json"), "-v", env={"NO_COLOR": "1"})
    assert re.search(r"^\s+– skip\s+GPU memory\s+moot until platform.verdict passes", proc.stdout, re.M)
    assert "Probes" in proc.stdout and "pyenv" in proc.stdout


def test_human_output_shows_titles_verbatim() -> None:
    proc = run_cli("doctor", "--facts", facts_arg("linux-h100-vllm020.json"), env={"NO_COLOR": "1"})
    assert "mistral_common[audio]" in proc.stdout


def test_human_output_survives_an_ascii_stdout() -> None:
    proc = run_cli(
        "doctor", "--facts", facts_arg("macos-arm64.json"), "--mode", "local", env={"PYTHONIOENCODING": "ascii"}
    )
    assert proc.returncode == 1, proc.stderr
    assert "internal error" not in proc.stderr
    assert re.search(r"^\s+x fail\b", proc.stdout, re.M)


def test_json_survives_an_ascii_stdout() -> None:
    proc = run_cli(
        "doctor",
        "--facts",
        facts_arg("macos-arm64.json"),
        "--mode",
        "local",
        "--json",
        env={"PYTHONIOENCODING": "ascii"},
    )
    assert proc.returncode == 1, proc.stderr
    VALIDATOR.validate(json.loads(proc.stdout))


# --- --report -----------------------------------------------------------------------------------------


def test_report_redacts_the_home_directory_of_a_replayed_snapshot() -> None:
    proc = run_cli(
        "doctor",
        "--facts",
        facts_arg("linux-4090-vllm073-tf455.json"),
        "--report",
        env={"HOME": "/home/alice", "USER": "alice"},
    )
    out = proc.stdout
    assert proc.returncode == 1
    assert "/home/alice" not in out
    assert "~/voxtral/.venv/bin/python" in out  # the path is kept, shortened
    assert "| stack.tokenizer | fail |" in out
    assert "vllm 0.7.3" in out and "transformers 4.55.4" in out
    assert "exit code 1" in out


@pytest.mark.slow
def test_report_of_a_live_run_contains_no_home_path(isolated_home) -> None:  # type: ignore[no-untyped-def]
    # The XDG dirs (config, data, state) live under this HOME, so paths to them show up in check summaries.
    home = str(isolated_home)
    live = run_cli("doctor", "--offline", "--skip", "platform", "--json", env={"HOME": home})
    assert home in live.stdout, "the test needs summaries that name paths under HOME"
    proc = run_cli("doctor", "--offline", "--skip", "platform", "--report", env={"HOME": home})
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout.startswith("### echopanel-setup")
    assert home not in proc.stdout
    assert "~/" in proc.stdout


# --- --list -------------------------------------------------------------------------------------------


def test_list_prints_the_mode_matrix() -> None:
    proc = run_cli("doctor", "--list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert re.search(r"\blocal\b.*\bremote\b.*\bapi\b", lines[0])
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.strip()}
    for c in all_checks():
        assert c.id in rows, c.id
        assert rows[c.id][-3:] == [c.modes.get(m, "-") for m in ("local", "remote", "api")], c.id
    assert rows["server"][-3:] == ["advisory", "required", "-"]
    assert rows["api.key"][-3:] == ["-", "-", "required"]


def test_list_shows_titles_verbatim() -> None:
    proc = run_cli("doctor", "--list")
    assert "mistral_common[audio]" in proc.stdout


def test_list_needs_no_facts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # --list returns before probing: a broken --python is not even looked at.
    proc = run_cli("doctor", "--list", "--python", str(tmp_path / "nope"))
    assert proc.returncode == 0 and "platform.verdict" in proc.stdout


def test_replayed_variant_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A variant written by the tests replays like a recorded snapshot."""
    facts = load("linux-4090-desktop.json")
    facts.gpu.devices[0].memory_free_mib = 5000
    path = write(facts, tmp_path / "busy.json")
    proc = run_cli("doctor", "--facts", str(path), "--json", "--only", "gpu.free")
    doc = json.loads(proc.stdout)
    VALIDATOR.validate(doc)
    assert doc["checks"][0]["status"] == "fail" and proc.returncode == 1
    assert "Xorg" in "\n".join(doc["checks"][0]["details"])
