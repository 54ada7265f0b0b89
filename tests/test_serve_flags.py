"""Reading what a vLLM version accepts from its real `vllm serve --help=all` (0.16.0, 0.20.0, 0.33.0)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from serve_kit import HELP_DIR, VERSIONS, install_vllm

from echopanel_setup import knowledge
from echopanel_setup.serve import flags


def helpset(version: str) -> flags.FlagSet:
    return flags.parse_help(
        (HELP_DIR / f"serve-help-all-{version}.txt").read_text(encoding="utf-8"), version, "fixture"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_every_option_line_is_parsed(version: str) -> None:
    text = (HELP_DIR / f"serve-help-all-{version}.txt").read_text(encoding="utf-8")
    fs = helpset(version)
    option_lines = [line for line in text.splitlines() if line.startswith("  -")]
    assert len(fs.flags) == len(option_lines)
    assert all(n.startswith("-") and " " not in n and "," not in n for f in fs.flags for n in f.names)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_flags_serve_emits_exist_with_their_choices(version: str) -> None:
    fs = helpset(version)
    assert "mistral" in fs.get("--tokenizer-mode").choices  # type: ignore[union-attr]
    assert fs.get("--config-format").choices == ("auto", "hf", "mistral")  # type: ignore[union-attr]
    assert "half" in fs.get("--dtype").choices  # type: ignore[union-attr]
    assert "mistral" in fs.get("--load-format").documented  # type: ignore[union-attr]
    assert fs.check("--load-format", "mistral") is None
    assert (
        fs.check("--dtype", "bf16")
        == f"--dtype bf16: vLLM {version} accepts auto, bfloat16, float, float16, float32, half"
    )
    assert fs.get("-tp") is fs.get("--tensor-parallel-size")
    assert fs.get("-cc") is fs.get("--compilation-config")
    assert fs.boolean("enforce-eager", True) == "--enforce-eager"


def test_removed_flags_are_absent_where_vllm_removed_them() -> None:
    assert helpset("0.16.0").has("--swap-space")
    assert not helpset("0.20.0").has("--swap-space") and not helpset("0.33.0").has("--swap-space")
    assert not any(helpset(v).has("--device") for v in VERSIONS)
    assert helpset("0.20.0").check("--swap-space", "4") == "vLLM 0.20.0 has no --swap-space"


def test_aliases_on_one_line_are_one_flag() -> None:
    new = helpset("0.33.0")
    assert new.get("--device-memory-utilization") is new.get("--gpu-memory-utilization")
    assert not helpset("0.20.0").has("--device-memory-utilization")


def test_boolean_spellings_follow_the_version() -> None:
    old, mid, new = (helpset(v) for v in VERSIONS)
    assert [fs.boolean("log-requests", True) for fs in (old, mid, new)] == ["--enable-log-requests"] * 3
    assert [fs.boolean("log-requests", False) for fs in (old, mid, new)] == [
        "--no-enable-log-requests",
        "--no-enable-log-requests",
        "--disable-log-requests",
    ]
    assert (new.boolean("fastapi-docs", True), new.boolean("fastapi-docs", False)) == (
        "--enable-fastapi-docs",
        "--disable-fastapi-docs",
    )
    assert old.boolean("fastapi-docs", True) is None  # 0.16 has no such switch
    assert old.boolean("max-model-len", True) is None  # takes a value: not a switch


def test_the_builtin_list_is_what_every_recorded_version_accepts() -> None:
    builtin = flags.builtin("0.20.0")
    for version in VERSIONS:
        fs = helpset(version)
        for name in builtin.names():
            assert fs.has(name), f"{name} missing from {version}"
    assert builtin.boolean("enforce-eager", True) == "--enforce-eager"
    assert set(knowledge.load().serve.flags.mistral_format_flags) <= builtin.names()


def test_help_is_read_from_the_target_env_once_per_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exe = install_vllm(tmp_path / "bin", "0.33.0")
    fs, why = flags.learn([str(exe)], "0.33.0", on_run=lambda t: None)
    assert why is None and fs.has("--device-memory-utilization") and "read now" in fs.source
    assert flags.cache_path("0.33.0").is_file()
    exe.unlink()  # a second reading needs no subprocess
    again, why = flags.learn([str(exe)], "0.33.0")
    assert why is None and "cached" in again.source and again.names() == fs.names()


def test_an_unreadable_help_falls_back_to_the_builtin_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "vllm"
    broken.write_text("#!/bin/sh\necho 'RuntimeError: Failed to infer device type' >&2\nexit 1\n")
    broken.chmod(0o755)
    fs, why = flags.learn([str(broken)], "0.21.0")
    assert "Failed to infer device type" in (why or "") and fs.source.startswith("built-in")
    assert not flags.cache_path("0.21.0").exists()
    fs, why = flags.learn(None, "0.22.0")  # a replayed machine: cache only
    assert "no cached help" in (why or "")
    fs, why = flags.learn([str(broken)], None)
    assert why == "vLLM is not installed in the target environment"


def test_a_hanging_help_times_out(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    slow = tmp_path / "vllm"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    k = knowledge.load()
    quick = replace(k, serve=replace(k.serve, flags=replace(k.serve.flags, help_timeout_s=0.3)))
    monkeypatch.setattr(knowledge, "load", lambda: quick)
    fs, why = flags.learn([str(slow)], "0.23.0")
    assert why == "`vllm serve --help=all` did not finish within 0 s"
    assert fs.source.startswith("built-in")
