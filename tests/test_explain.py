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


# --- big, gzipped and messy logs ------------------------------------------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and tail window of a few KiB, so the fixture logs cross every boundary the streaming scan has."""
    from echopanel_setup import explain as explain_mod

    monkeypatch.setattr(explain_mod, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(explain_mod, "TAIL_BYTES", 2048)


def _run(path: Path, full: bool = False):  # type: ignore[no-untyped-def]
    from echopanel_setup.explain import ExplainOptions, run

    return run(ExplainOptions(log=str(path), full=full))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_streaming_in_chunks_finds_what_the_whole_text_does(name: str, small_chunks: None, tmp_path: Path) -> None:
    padded = tmp_path / name
    filler = "".join(f"(APIServer pid=1) INFO 11-25 10:00:00 [loggers.py:123] line {i}\n" for i in range(200))
    padded.write_text(filler + _read(name) + filler, encoding="utf-8")
    whole = explain(padded.read_text(encoding="utf-8"))
    streamed = _run(padded, full=True)
    assert [(m.id, m.line_no, m.line) for m in streamed.matches] == [(m.id, m.line_no, m.line) for m in whole]
    assert streamed.matches and not streamed.tail_only


def test_a_line_longer_than_every_buffer_is_cut_not_held(small_chunks: None, tmp_path: Path) -> None:
    """A log that is one enormous line (a binary dump, a minified blob) must not grow the buffer without end."""
    log = tmp_path / "blob.log"
    log.write_bytes(b"x" * 50_000 + b" No available memory for the cache blocks" + b"y" * 50_000)
    (m,) = _run(log, full=True).matches
    assert m.id == "no-cache-memory" and m.line_no == 1
    import io

    from echopanel_setup import explain as explain_mod

    sizes = [len(chunk) for chunk, _ in explain_mod._chunks(io.BytesIO(log.read_bytes()))]
    assert max(sizes) <= 5 * explain_mod.CHUNK_BYTES and sum(sizes) < 3 * log.stat().st_size


def test_the_end_of_a_big_log_is_read_first_and_its_line_numbers_stay_right(small_chunks: None, tmp_path: Path) -> None:
    """A recovered OOM early on, a long healthy run, then the failure that ended the log."""
    log = tmp_path / "vllm.log"
    filler = "".join(f"(APIServer pid=1) INFO 11-25 10:00:00 [loggers.py:123] step {i}\n" for i in range(500))
    log.write_text(_read("cuda-oom.log") + filler + _read("free-memory-startup.log"), encoding="utf-8")
    lines = log.read_text(encoding="utf-8").split("\n")
    tail = _run(log)
    assert tail.tail_only and [m.id for m in tail.matches] == ["free-memory-startup"]
    (m,) = tail.matches
    assert "Free memory on device" in lines[m.line_no - 1] and m.line_no > 500
    assert tail.searched_bytes < tail.log_bytes  # type: ignore[operator]
    full = _run(log, full=True)
    assert not full.tail_only and [m.id for m in full.matches] == ["free-memory-startup", "cuda-oom"]
    assert full.matches[0].line_no == m.line_no


def test_cli_says_when_only_the_end_was_searched(cli: Cli, small_chunks: None, tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text("x\n" * 5000 + _read("port-in-use.log"), encoding="utf-8")
    res = cli("explain", str(log))
    assert res.code == 0 and "port-in-use" in res.out
    assert "where it ends; --full searches all of it." in res.out
    doc = cli("explain", "--json", str(log)).json()
    assert doc["searched"]["tail_only"] is True and doc["searched"]["log_bytes"] == log.stat().st_size


def test_a_gzipped_log_is_read_as_a_stream(cli: Cli, tmp_path: Path) -> None:
    import gzip

    log = tmp_path / "vllm.log.gz"
    log.write_bytes(gzip.compress((LOGS / "driver-too-old.log").read_bytes()))
    res = cli("explain", "--json", str(log))
    assert res.code == 0, res.err
    assert [m["id"] for m in res.json()["matches"]] == ["driver-too-old", "no-gpu"]
    truncated = tmp_path / "cut.log.gz"
    truncated.write_bytes(log.read_bytes()[:40])
    bad = cli("explain", str(truncated))
    assert bad.code == 2 and "cannot read" in bad.err and len(bad.err.strip().splitlines()) == 1


def test_colour_codes_and_progress_bars_stay_out_of_the_excerpt() -> None:
    text = (
        "\x1b[1;31mERROR\x1b[0m 11-25 10:00:12 [core.py:708] ValueError: No available memory for the cache blocks. "
        "Try increasing `gpu_memory_utilization`\rProcessed prompts:  10%|#  | 1/10\rProcessed prompts: 100%|##| "
        "10/10\n"
    )
    (m,) = explain(text)
    assert m.line == (
        "ERROR 11-25 10:00:12 [core.py:708] ValueError: No available memory for the cache blocks. Try increasing "
        "`gpu_memory_utilization`"
    )


@pytest.mark.slow
def test_explain_dash_on_a_terminal_says_it_reads_standard_input() -> None:
    """`explain -` on a terminal waited in silence."""
    import os
    import pty
    import select

    from conftest import start_cli

    master, slave = pty.openpty()
    proc = start_cli("explain", "-", stdin=slave)
    os.close(slave)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 20)
        assert ready, "nothing said while waiting for standard input"
        assert b"Reading the log from standard input" in os.read(proc.stderr.fileno(), 4096)  # type: ignore[union-attr]
        os.write(master, b"\x04")  # Ctrl-D: end of input
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 1 and b"Not recognised" in out
