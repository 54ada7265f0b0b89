"""`echopanel-setup serve` as a user runs it: replayed doctor snapshots, planning for another machine, the
delay variant doctor then sees, refusals with alternatives, and bad input."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import run_cli
from facts_kit import FACTS_DIR, raw, write
from serve_kit import Machine, machine_fixture, venv_fixture  # noqa: F401 - fixtures

from echopanel_setup import paths


def replay(name: str, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("serve", "--facts", str(FACTS_DIR / name), *args)


@pytest.mark.slow
def test_a_replayed_4080_prints_only_the_command_on_stdout() -> None:
    out = replay("linux-4080.json")
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout.replace("\\\n", ""))
    assert words[:2] == ["VLLM_DISABLE_COMPILE_CACHE=1", "HF_HUB_OFFLINE=1"]
    assert words[2] == "/home/alice/.local/share/echopanel-setup/vllm-venv/bin/vllm" and words[3] == "serve"
    assert words[words.index("--max-model-len") + 1] == "49500"
    # Xorg and gnome-shell use the card: sized to the plan (0.91 would be its full share with graphs beside it)
    assert words[words.index("--gpu-memory-utilization") + 1] == "0.88"
    assert "Plan for NVIDIA GeForce RTX 4080 (16376 MiB, 15780 free) (replayed facts)" in out.stderr
    assert "room for 2" in out.stderr


@pytest.mark.slow
def test_a_replayed_t4_gets_float16_and_triton_attention_with_a_warning() -> None:
    out = replay("linux-t4.json")
    assert out.returncode == 0
    assert "--dtype half" in out.stdout and "--attention-backend TRITON_ATTN" in out.stdout
    assert "float16 is not validated" in out.stderr and "confidence low" in out.stderr


def test_a_target_python_that_could_not_be_read_is_not_called_vllm_not_installed(tmp_path: Path) -> None:
    """`serve --python X` where X hung (or crashed) said "vLLM not installed" and "vLLM is not installed in the target
    environment": the version is unknown, and the plan says why."""
    data = raw("linux-4080.json")
    data["pyenv"] = {
        **data["pyenv"],
        "ok": False,
        "packages": {},
        "error": "/opt/py/bin/python did not answer within 8 s",
    }
    out = run_cli("serve", "--facts", str(write(data, tmp_path / "hung.json")))
    assert out.returncode == 0, out.stderr
    assert "· vLLM unknown ·" in out.stderr and "not installed" not in out.stderr
    assert "the target Python could not be read (/opt/py/bin/python did not answer within 8 s)" in out.stderr


@pytest.mark.parametrize(
    ("snapshot", "reason", "alternative"),
    [
        ("linux-v100.json", "compute capability 7.0, below 7.5", "VOXTRAL_MODE=api"),
        ("linux-3060-12gb.json", "1254 MiB are left for the KV cache", "VOXTRAL_VLLM_URL=http://GPU-HOST:8001"),
        ("linux-nogpu.json", "no NVIDIA GPU is visible", "ECHOPANEL_ASR_PROVIDER=whisper_cpp"),
        ("macos-arm64.json", "no Metal (Apple GPU) path", "ECHOPANEL_ASR_PROVIDER=mlx_whisper"),
    ],
)
@pytest.mark.slow
def test_refusals_print_no_command_but_numbers_and_alternatives(snapshot: str, reason: str, alternative: str) -> None:
    out = replay(snapshot)
    assert out.returncode == 1
    assert out.stdout == ""
    assert reason in out.stderr and alternative in out.stderr
    doc = json.loads(replay(snapshot, "--json").stdout)
    assert doc["refused"] and reason in doc["reason"] and any(alternative in a for a in doc["alternatives"])


def test_a_vllm_too_old_is_refused_with_the_upgrade() -> None:
    out = replay("linux-4090-vllm073-tf455.json")
    assert (
        out.returncode == 1 and "vLLM 0.7.3 is too old" in out.stderr and "echopanel-setup install vllm" in out.stderr
    )


@pytest.mark.slow
def test_planning_for_another_machine_by_name_or_memory() -> None:
    h100 = json.loads(run_cli("serve", "--gpu", "H100", "--json").stdout)
    assert h100["hypothetical_gpu"] and h100["plan"]["max_num_batched_tokens"] == 1024
    assert h100["plan"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    two = json.loads(run_cli("serve", "--gpu-memory", "24", "--gpus", "2", "--json").stdout)
    assert two["plan"]["tensor_parallel_size"] == 2 and "--tensor-parallel-size" in two["argv"]
    assert two["plan"]["breakdown_mib"]["total"] == 24576
    twelve = run_cli("serve", "--gpu-memory", "12")
    assert twelve.returncode == 1 and "too small" in twelve.stderr


def test_a_docker_file_can_be_planned_from_a_mac() -> None:
    out = replay("macos-arm64.json", "--gpu", "L4", "--format", "docker")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("docker run --rm --name echopanel-vllm --gpus all --ipc=host")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delay-ms", "1000"], "nearest: 960 or 1040"),
        (["--gpu", "A100"], "matches several GPUs: a100 40gb, a100 80gb"),
        (["--gpu", "Voodoo5"], "is not a GPU I know"),
        (["--gpu", "H100", "--gpus", "3"], "--gpus 3: tensor parallelism must divide"),
        (["--format", "docker", "--exec"], "--exec/--detach run the shell command here"),
        (["--gpu", "H100", "--detach"], "--exec/--detach run on this machine"),
        (["--status", "--stop"], "do not go together"),
        (["--format", "yaml"], "'yaml' is not one of"),
        (["--json", "--format", "systemd"], "--json and --format systemd do not go together"),
        (["--gpu-memory", "nan"], "--gpu-memory nan: give the GPU's memory in GiB"),  # was an internal error (exit 4)
        (["--gpu-memory", "inf"], "--gpu-memory inf: give the GPU's memory in GiB"),
        (["--gpu", "4090", "--session-minutes", "nan"], "--session-minutes nan: give a number of minutes"),
        (["--gpu", "4090", "--session-minutes", "inf"], "--session-minutes inf: give a number of minutes"),
        (["--timeout", "inf", "--exec"], "--timeout inf: give the seconds"),
        (["--gpu", "4090", "--served-model-name", " "], "--served-model-name is empty"),
        (["--gpu", "4090", "--api-key", ""], "--api-key is empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = run_cli("serve", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_printed_delay_variant_is_not_recorded_as_served(machine: Machine) -> None:
    """Issue 18: a print-only `serve --delay-ms N` must not change what doctor judges or configure writes later:
    only a server really started (--exec/--detach) records its variant."""
    out = run_cli(*machine.args("--delay-ms", "960"))
    assert out.returncode == 0, out.stderr
    variant = machine.model.parent / "Voxtral-Mini-4B-Realtime-2602-delay960ms"
    assert f"serve {variant} " in out.stdout.replace("\\\n", "")
    assert "serve_dir" not in paths.read_state()
    assert (
        "with no VOXTRAL_STREAMING_DELAY_MS it uses 480 ms: `echopanel-setup configure --delay-ms 960` sets it"
        in out.stderr
    )
    doctor = json.loads(
        run_cli(
            "doctor",
            "--json",
            "--offline",
            "--python",
            str(machine.python),
            "--model-dir",
            str(machine.model),
            "--only",
            "config.delay",
            env={"VOXTRAL_STREAMING_DELAY_MS": "960"},
        ).stdout
    )
    (check,) = doctor["checks"]
    assert check["id"] == "config.delay" and check["status"] == "fail", check  # the model dir still serves 480


def test_the_echopanel_config_sets_the_delay_and_the_port(machine: Machine, tmp_path: Path) -> None:
    config = tmp_path / "echopanel.env"
    config.write_text(
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_VLLM_URL=http://localhost:8011\nVOXTRAL_STREAMING_DELAY_MS=720\n"
    )
    out = run_cli(
        "serve", "--python", str(machine.python), "--model-dir", str(machine.model), "--config", str(config), "--json"
    )
    doc = json.loads(out.stdout)
    assert (
        doc["delay_ms"] == 720 and doc["served_dir"].endswith("-delay720ms") and doc["url"] == "http://127.0.0.1:8011"
    )
    assert doc["flags_source"] == "`vllm serve --help=all` of vLLM 0.20.0 (read now)"
    assert doc["plan"]["confidence"] == "medium" and doc["plan"]["gpus"][0]["index"] == 0


def test_a_facts_snapshot_with_a_variant_is_replayed_without_touching_this_machine(tmp_path: Path) -> None:
    snapshot = raw("linux-4080.json")
    snapshot["config"]["values"]["VOXTRAL_STREAMING_DELAY_MS"] = "960"
    out = run_cli("serve", "--facts", str(write(snapshot, tmp_path / "facts.json")), "--format", "json")
    doc = json.loads(out.stdout)
    assert doc["served_dir"].endswith("Voxtral-Mini-4B-Realtime-2602-delay960ms")
    assert any("run `echopanel-setup serve --delay-ms 960` on that machine" in n for n in doc["notes"])
    assert "serve_dir" not in paths.read_state()


@pytest.mark.slow
def test_a_busy_gpu_is_refused_naming_what_holds_it(tmp_path: Path) -> None:
    """A 4090 whose memory another app holds is not 'too small': say how much must be free and who holds it."""
    snapshot = raw("linux-4090-desktop.json")
    device = snapshot["gpu"]["devices"][0]
    device["memory_free_mib"], device["memory_used_mib"] = 7291, 16885
    device["processes"].append({"pid": 48213, "name": "/home/ana/miniconda3/envs/sd/bin/python", "used_mib": 15332})
    facts = write(snapshot, tmp_path / "busy.json")
    out = run_cli("serve", "--facts", str(facts))
    assert out.returncode == 1 and out.stdout == ""
    assert "too small" not in out.stderr and "only 7291 of NVIDIA GeForce RTX 4090's 24564 MiB are free" in out.stderr
    assert "pid 48213 /home/ana/miniconda3/envs/sd/bin/python: 15332 MiB" in out.stderr
    assert "VOXTRAL_MODE=api" in out.stderr  # the alternatives still come
    doc = json.loads(run_cli("serve", "--facts", str(facts), "--json").stdout)
    assert doc["kind"] == "busy" and any("pid 48213" in d for d in doc["details"])


@pytest.mark.slow
def test_the_json_document_names_where_the_model_shape_came_from(machine: Machine) -> None:
    doc = json.loads(run_cli(*machine.args("--json")).stdout)
    assert doc["model_arch_source"] == str(machine.model / "params.json")
    assert json.loads(replay("linux-4080.json", "--json").stdout)["model_arch_source"].startswith(
        "built-in: vLLM model_executor/models/voxtral_realtime.py"
    )


def test_every_serve_document_starts_with_the_shared_header() -> None:
    """The plan, a refusal, status and stop: one JSON document each, with report.header()'s fields."""
    for args, command in (
        (["--gpu", "H100", "--json"], "serve"),
        (["--facts", str(FACTS_DIR / "linux-v100.json"), "--json"], "serve"),
        (["--status", "--json"], "serve status"),
        (["--stop", "--json"], "serve stop"),
    ):
        doc = json.loads(run_cli("serve", *args).stdout)
        assert doc["schema_version"] == 1 and doc["command"] == command, args
        assert doc["tool"]["name"] == "echopanel-setup", args


def test_the_models_own_delay_needs_no_variant_before_the_model_is_downloaded(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """No model dir yet: vLLM loads the Hub's files, whose delay is the model's 480 ms, so asking for 480 (what
    configure writes) must not send the user to make a variant; another delay still does."""
    from conftest import Cli

    own = Cli(monkeypatch, capsys)("serve", "--gpu", "H100", "--delay-ms", "480")
    assert own.code == 0 and "needs the variant" not in own.err, own.err
    other = Cli(monkeypatch, capsys)("serve", "--gpu", "H100", "--delay-ms", "960")
    assert other.code == 0 and "Delay 960 ms needs the variant" in other.err, other.err
