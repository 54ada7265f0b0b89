"""`explain`: known vLLM failures named from real-looking logs (tests/fixtures/logs/*.log)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, run_cli

from echopanel_setup import knowledge
from echopanel_setup.explain import explain

LOGS = Path(__file__).parent / "fixtures" / "logs"

# log file -> (the cause named first, other signatures also expected in the log)
EXPECTED = {
    "tokenizer-kwargs.log": ("tokenizer-kwargs", []),
    "architecture-unsupported.log": ("architecture-unsupported", []),
    "mistral-common-audio.log": ("mistral-common-audio", []),
    "bfloat16-old-gpu.log": ("bfloat16-old-gpu", []),
    "encoder-attention-backend.log": ("encoder-attention-backend", []),
    "full-cudagraphs.log": ("full-cudagraphs", []),
    "free-memory-startup.log": ("free-memory-startup", []),
    "max-model-len-too-long.log": ("max-model-len-too-long", []),
    "no-cache-memory.log": ("no-cache-memory", []),
    "cuda-oom.log": ("cuda-oom", []),
    "port-in-use.log": ("port-in-use", []),
    "driver-too-old.log": ("driver-too-old", ["no-gpu"]),  # the root cause, then its consequence
    "no-kernel-image.log": ("no-kernel-image", []),
    "removed-flag.log": ("removed-flag", []),
}


def _read(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


def test_every_log_fixture_is_covered() -> None:
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted([*EXPECTED, "unrelated.log"])


def test_every_signature_has_a_log() -> None:
    ids = {sig.id for sig in knowledge.load().signature}
    covered = {first for first, _ in EXPECTED.values()} | {o for _, others in EXPECTED.values() for o in others}
    assert ids <= covered


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_explain_names_the_cause(name: str) -> None:
    text = _read(name)
    first, others = EXPECTED[name]
    matches = explain(text)
    assert [m.id for m in matches] == [first, *others]
    m = matches[0]
    # line_no/line point at the line that carries the error, as it is in the file (an excerpt of at most
    # 300 characters around the match, marked with … where it was cut)
    line = text.split("\n")[m.line_no - 1].strip()
    assert m.line.strip("…") in line
    assert len(m.line.strip("…")) <= 300
    assert m.title and m.cause and m.fix and m.source


def test_tokenizer_error_points_at_the_exception_not_the_source_line() -> None:
    text = _read("tokenizer-kwargs.log")
    (m,) = explain(text)
    assert (
        m.line == "ValueError: Kwargs ['max_loras', '_from_auto'] are not supported by "
        "`MistralCommonTokenizer.from_pretrained`."
    )
    assert m.line_no == len(text.splitlines())
    assert "echopanel-setup install vllm" in m.commands


def test_estimated_max_model_len_is_exposed() -> None:
    (m,) = explain(_read("max-model-len-too-long.log"))
    assert m.groups["estimated"] == "21328"


def test_older_max_seq_len_text_is_recognised() -> None:
    text = (
        "ValueError: The model's max seq len (131072) is larger than the maximum number of tokens that can be stored "
        "in KV cache (21328). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
        "the engine.\n"
    )
    assert [m.id for m in explain(text)] == ["max-model-len-too-long"]


def test_quoted_line_contains_the_matched_text() -> None:
    (m,) = explain(_read("max-model-len-too-long.log"))
    assert "estimated maximum model length is 21328" in m.line


def test_removed_flag_is_named() -> None:
    (m,) = explain(_read("removed-flag.log"))
    assert m.groups["flag"] == "--swap-space 4"
    (m,) = explain("vllm serve: error: unrecognized arguments: --device cuda\n")
    assert m.id == "removed-flag" and m.groups["flag"] == "--device cuda"


def test_unrelated_log_matches_nothing() -> None:
    # a healthy T4 start: its bfloat16 *fallback* warning is not the bfloat16 *error*
    assert explain(_read("unrelated.log")) == []
    assert explain("") == []


def test_root_cause_wins_over_its_consequence() -> None:
    """Signatures are tried in priority order, not in log order."""
    text = _read("cuda-oom.log") + _read("free-memory-startup.log")
    assert [m.id for m in explain(text)] == ["free-memory-startup", "cuda-oom"]


def test_seed_guides_own_error_text_is_recognised() -> None:
    assert [m.id for m in explain("ValueError: Kwargs ['max_loras', '_from_auto'] are not supported\n")] == [
        "tokenizer-kwargs"
    ]


def _with_progress_bars() -> bytes:
    """A log as `vllm serve ... 2>&1 | tee vllm.log` leaves it: tqdm redraws its bars with a bare \\r."""
    bars = "".join(
        f"\rLoading safetensors checkpoint shards: {p:3d}% Completed | {n}/1 [00:0{n}<00:00,  2.41s/it]"
        for n, p in ((0, 0), (1, 100))
    )
    head, tail = _read("free-memory-startup.log").split("(EngineCore_DP0 pid=30211) ERROR", 1)
    return (head + bars + "\n" + "(EngineCore_DP0 pid=30211) ERROR" + tail).encode("utf-8")


def test_quoted_line_is_right_with_progress_bars() -> None:
    (m,) = explain(_with_progress_bars().decode("utf-8"))
    assert "Free memory on device" in m.line


def test_cli_line_number_is_the_files_line_number(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    data = _with_progress_bars()
    log.write_bytes(data)
    res = cli("explain", "--json", str(log))
    (m,) = json.loads(res.out)["matches"]
    file_lines = data.decode().split("\n")
    assert "Free memory on device" in file_lines[m["line_no"] - 1]


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_explain_file() -> None:
    res = run_cli("explain", str(LOGS / "tokenizer-kwargs.log"))
    assert res.returncode == 0, res.stderr
    assert "Old vLLM passes max_loras to transformers' MistralCommonTokenizer" in res.stdout
    assert "tokenizer-kwargs" in res.stdout
    assert "Cause:" in res.stdout and "Fix:" in res.stdout
    assert "echopanel-setup install vllm" in res.stdout
    assert "Kwargs ['max_loras', '_from_auto']" in res.stdout  # the quoted line, markup-escaped
    assert res.stderr == ""


@pytest.mark.slow
def test_cli_explain_shows_found_values_and_other_matches(cli: Cli) -> None:
    res = cli("explain", str(LOGS / "max-model-len-too-long.log"))
    assert res.code == 0
    assert "--max-model-len 21328" in res.out
    res = cli("explain", str(LOGS / "driver-too-old.log"))
    assert res.code == 0
    assert "The NVIDIA driver is too old" in res.out.splitlines()[0]
    assert "Also in the log: vLLM found no GPU (no-gpu" in res.out


def test_cli_explain_stdin(cli: Cli) -> None:
    res = cli("explain", "-", stdin=_read("free-memory-startup.log"))
    assert res.code == 0
    assert "Less free GPU memory than --gpu-memory-utilization asks for" in res.out
    assert "free-memory-startup" in res.out


def test_cli_explain_json(cli: Cli) -> None:
    res = cli("explain", "--json", str(LOGS / "max-model-len-too-long.log"))
    assert res.code == 0
    doc = json.loads(res.out)
    assert doc["schema_version"] == 1 and doc["recognised"] is True
    (m,) = doc["matches"]
    assert m["id"] == "max-model-len-too-long"
    assert m["groups"] == {"estimated": "21328"}
    assert m["line_no"] == 4 and "estimated maximum model length is 21328" in m["line"]
    assert set(m) >= {"id", "title", "cause", "fix", "commands", "source", "line_no", "line", "groups"}


def test_cli_explain_json_stdin_unrecognised(cli: Cli) -> None:
    res = cli("explain", "--json", "-", stdin=_read("unrelated.log"))
    assert res.code == 1
    doc = json.loads(res.out)
    assert doc["recognised"] is False and doc["matches"] == [] and doc["exit_code"] == 1 and doc["error"] is None


def test_cli_explain_unknown_log(cli: Cli) -> None:
    res = cli("explain", str(LOGS / "unrelated.log"))
    assert res.code == 1
    assert "Not recognised" in res.out
    assert "Traceback" not in res.out + res.err


def test_cli_explain_missing_file(cli: Cli, tmp_path: Path) -> None:
    res = cli("explain", str(tmp_path / "nope.log"))
    assert res.code == 2
    assert res.out == ""
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "nope.log" in lines[0] and "no such file" in lines[0]
    assert "Traceback" not in res.err


def test_cli_explain_directory_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    res = cli("explain", str(tmp_path))
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and "cannot read" in res.err
    assert "Traceback" not in res.err


def test_cli_explain_binary_garbage_is_not_a_crash(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "core.bin"
    log.write_bytes(bytes(range(256)) * 4 + b"\nNo available memory for the cache blocks\n")
    res = cli("explain", str(log))
    assert res.code == 0
    assert "No memory left for the KV cache" in res.out


def test_free_memory_message_suggests_a_utilisation() -> None:
    (m, *_) = explain(
        "ValueError: Free memory on device (7.12/23.99 GiB) on startup is less than desired GPU memory utilization "
        "(0.92, 22.07 GiB).\n"
    )
    assert m.id == "free-memory-startup"
    assert m.groups == {"free_gib": "7.12", "total_gib": "23.99"}
    assert m.suggestion and m.suggestion.startswith("--gpu-memory-utilization 0.28")
