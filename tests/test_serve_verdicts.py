"""serve's planner on the machines where its verdict used to be wrong: mixed or busy cards, and vLLM versions that
capture CUDA graphs beyond their memory budget (issue 18, "Wrong verdicts")."""

from __future__ import annotations

import copy
import shlex
import sys
from pathlib import Path

import pytest
from conftest import Cli, run_cli
from facts_kit import FACTS_DIR, load, write
from serve_kit import Machine, machine_fixture, venv_fixture  # noqa: F401 - fixtures

from echopanel_setup import knowledge
from echopanel_setup.facts.model import GpuProcess
from echopanel_setup.serve import launcher
from echopanel_setup.serve.planner import Gpu, Plan, PlanRequest, builtin_arch, plan

yaml = pytest.importorskip("yaml")

DESKTOP = str(FACTS_DIR / "linux-4090-desktop.json")
MARGIN = knowledge.load().serve.planner.margin_mib
IDLE_4080 = Gpu("NVIDIA GeForce RTX 4080", 16376, 15780, "8.9", 0)
BUSY_4090 = Gpu("NVIDIA GeForce RTX 4090", 24564, 24564 - 14000, "8.9", 1)  # 14000 MiB held by another process


def request(*gpus: Gpu, version: str | None = "0.21.0", **kw: object) -> PlanRequest:
    return PlanRequest(gpus=gpus, arch=builtin_arch(), weights_mib=8450, vllm_version=version, **kw)  # type: ignore[arg-type]


def no_gpu_asked_for_more_than_it_has(p: Plan) -> None:
    """vLLM checks utilisation x its own total against each GPU's free memory."""
    for g in p.gpus:
        assert p.gpu_memory_utilization * g.total_mib + p.breakdown.graphs_outside <= (g.free_mib or 0) - MARGIN, g


def test_an_idle_card_that_fits_alone_beats_splitting_over_a_busy_one() -> None:
    """Regression: idle 4080 + a 4090 with 14000 MiB used gave `--gpu-memory-utilization 0.61 -tp 2`, which asks the
    4090 for 0.61 x 24564 = 14984 MiB while it has 10564 free."""
    p = plan(request(BUSY_4090, IDLE_4080))
    assert isinstance(p, Plan)
    assert p.tensor_parallel_size == 1 and [g.index for g in p.gpus] == [0]
    no_gpu_asked_for_more_than_it_has(p)


def test_a_split_over_mixed_cards_takes_the_tightest_share() -> None:
    """Both cards busy, neither fits alone: the utilisation is min over GPUs of (free_i - margin) / total_i."""
    a = Gpu("NVIDIA GeForce RTX 4090", 24564, 11500, "8.9", 0)
    b = Gpu("NVIDIA GeForce RTX 4080", 16376, 9000, "8.9", 1)
    p = plan(request(a, b))
    assert isinstance(p, Plan) and p.tensor_parallel_size == 2
    # 0.44 = (11500 - 512) / 24564; the smallest total with the busiest card's free memory gave 0.51 (12528 MiB asked
    # of the 4090, which has 11500 free)
    assert p.gpu_memory_utilization == 0.44
    no_gpu_asked_for_more_than_it_has(p)


@pytest.mark.parametrize("free", [15780, 13500, 12600])
def test_vllm_before_021_keeps_cuda_graphs_beside_the_budget(free: int) -> None:
    """Regression: on vLLM < 0.21 graphs are captured beyond --gpu-memory-utilization, but were booked inside it,
    so on a card another process shares only 23-225 MiB stayed free for ~304 MiB of graphs."""
    card = Gpu("NVIDIA GeForce RTX 4080", 16376, free, "8.9", 0)
    old, new = plan(request(card, version="0.20.0")), plan(request(card, version="0.21.0"))
    assert isinstance(old, Plan) and isinstance(new, Plan)
    if old.cudagraph_mode != "eager":
        assert old.breakdown.graphs == 0 and old.breakdown.graphs_outside > 0
        assert any("beyond --gpu-memory-utilization" in n for n in old.notes)
    assert new.breakdown.graphs_outside == 0
    for p in (old, new):
        no_gpu_asked_for_more_than_it_has(p)


def test_an_unknown_version_books_graphs_on_both_sides() -> None:
    p = plan(request(IDLE_4080, version=None))
    assert isinstance(p, Plan) and p.breakdown.graphs > 0 and p.breakdown.graphs_outside == p.breakdown.graphs
    no_gpu_asked_for_more_than_it_has(p)


@pytest.mark.parametrize("fmt", ["shell", "docker", "compose", "systemd", "kubernetes"])
def test_every_format_carries_the_graphs_beside_the_budget(cli: Cli, fmt: str, tmp_path: Path) -> None:
    """The recorded desktop as a card of its own (vLLM 0.20.0, 6144 MiB in use, no process listed, no display):
    every format gets the utilisation that leaves room for the graphs, 0.71 (0.72 booked them inside)."""
    facts = load("linux-4090-desktop.json")
    facts.gpu.devices[0].processes = []
    facts.gpu.devices[0].display_active = False
    facts.gpu.devices[0].memory_used_mib = 529  # the driver's own, as on an idle card: nobody else holds it
    run = cli("serve", "--facts", str(write(facts, tmp_path / "desktop.json")), "--format", fmt)
    assert run.code == 0, run.err
    assert "0.71" in run.out and "0.72" not in run.out


def _flag(out: str, name: str) -> str:
    words = _words(out)
    return words[words.index(name) + 1]


def test_a_desktop_gpu_keeps_what_the_plan_does_not_need(cli: Cli) -> None:
    """Regression: with one stream, most of a desktop card became KV cache --max-num-seqs never touches, leaving the
    display little. A GPU with other users gets only what the planned streams need, and says so."""
    shared = cli("serve", "--facts", DESKTOP)
    assert shared.code == 0, shared.err
    assert float(_flag(shared.out, "--gpu-memory-utilization")) < 0.71 and _flag(shared.out, "--max-num-seqs") == "2"
    assert "GPU shared with Xorg, firefox, gnome-shell: --gpu-memory-utilization sized to the 2 planned" in shared.err
    assert "2 streams planned, room for 2" in shared.err
    memory = cli("serve", "--facts", DESKTOP, "--json").json()["plan"]["memory"]
    assert (memory["choice"], memory["why"], memory["allowed_streams"]) == ("sized", "shared", 2)


def test_an_idle_datacenter_card_allows_the_streams_its_cache_holds(cli: Cli) -> None:
    """Regression: on a GPU of its own vLLM took its full share, but --max-num-seqs stayed at the planned streams, so
    most of an 80 GB cache was never used. Now --max-num-seqs is what the share holds (graphs and batch recomputed),
    while the plan (and the serve record `watch` reads) keeps EchoPanel's 2."""
    run = cli("serve", "--facts", str(FACTS_DIR / "linux-h100-vllm020.json"))
    assert run.code == 0, run.err
    assert _flag(run.out, "--gpu-memory-utilization") == "0.92" and _flag(run.out, "--max-num-seqs") == "23"
    assert "2 streams planned, up to 23 allowed (--max-num-seqs)" in run.err
    assert (
        "This GPU has no display and no other users: vLLM takes its full share (--gpu-memory-utilization 0.92) and "
        "may run up to 23 streams at once (--max-num-seqs 23; 2 planned)"
    ) in run.err
    doc = cli("serve", "--facts", str(FACTS_DIR / "linux-h100-vllm020.json"), "--json").json()
    assert (doc["plan"]["streams"], doc["plan"]["max_num_seqs"], doc["plan"]["memory"]["choice"]) == (
        2,
        23,
        "all-streams",
    )
    assert doc["plan"]["memory"]["note"] in doc["plan"]["notes"]


def test_streams_given_are_respected_exactly_and_reserve_only_what_they_need(cli: Cli) -> None:
    run = cli("serve", "--facts", str(FACTS_DIR / "linux-h100-vllm020.json"), "--streams", "3")
    assert run.code == 0, run.err
    assert _flag(run.out, "--max-num-seqs") == "3" and float(_flag(run.out, "--gpu-memory-utilization")) < 0.3
    assert "--streams 3 given: --gpu-memory-utilization sized to the 3 planned streams" in run.err


def test_a_gpu_whose_display_state_is_unknown_is_sized_to_the_plan(cli: Cli, tmp_path: Path) -> None:
    """A snapshot from before the display was recorded (or a driver that does not say): the safe choice, said."""
    facts = load("linux-h100-vllm020.json")
    facts.gpu.devices[0].display_active = None
    run = cli("serve", "--facts", str(write(facts, tmp_path / "old.json")))
    assert run.code == 0, run.err
    assert _flag(run.out, "--max-num-seqs") == "2" and float(_flag(run.out, "--gpu-memory-utilization")) < 0.92
    assert "Whether this GPU drives a display is unknown" in run.err


def test_a_gpu_driving_a_display_is_shared_even_when_no_process_is_listed(cli: Cli, tmp_path: Path) -> None:
    """Inside a container the desktop's Xorg is not listed, but nvidia-smi still says the GPU drives a display: its
    memory is sized to the plan as on the desktop itself, not handed to vLLM's KV cache."""
    facts = load("linux-4090-desktop.json")
    facts.gpu.devices[0].processes = []
    run = cli("serve", "--facts", str(write(facts, tmp_path / "container.json")))
    assert run.code == 0, run.err
    assert float(_flag(run.out, "--gpu-memory-utilization")) < 0.71 and _flag(run.out, "--max-num-seqs") == "2"
    assert "This GPU drives a display (its desktop is not listed, as in a container)" in run.err


def test_memory_held_by_processes_nvidia_smi_does_not_list_is_another_user(cli: Cli, tmp_path: Path) -> None:
    """Inside a container nvidia-smi lists only the processes it can see: an H100 with 40000 MiB in use and no
    process listed is shared (another container's job), not "a GPU of its own" whose whole share vLLM may take."""
    facts = load("linux-h100-vllm020.json")
    device = facts.gpu.devices[0]
    device.memory_used_mib, device.memory_free_mib = 40000, device.memory_total_mib - 40000
    run = cli("serve", "--facts", str(write(facts, tmp_path / "neighbour.json")))
    assert run.code == 0, run.err
    assert _flag(run.out, "--max-num-seqs") == "2" and float(_flag(run.out, "--gpu-memory-utilization")) < 0.3
    assert "GPU shared with processes not listed here (40000 MiB)" in run.err
    assert "no other users" not in run.err
    memory = cli("serve", "--facts", str(tmp_path / "neighbour.json"), "--json").json()["plan"]["memory"]
    assert (memory["choice"], memory["why"]) == ("sized", "shared")


def test_the_drivers_own_reservation_is_no_other_user(cli: Cli, tmp_path: Path) -> None:
    """An idle H100 reports ~0.5 GiB in use with no process (the driver's): still a GPU of its own; so is memory a
    listed vLLM holds."""
    facts = load("linux-h100-vllm020.json")
    assert facts.gpu.devices[0].memory_used_mib == 529 and not facts.gpu.devices[0].processes
    run = cli("serve", "--facts", str(FACTS_DIR / "linux-h100-vllm020.json"))
    assert _flag(run.out, "--max-num-seqs") == "23" and "no other users" in run.err
    device = facts.gpu.devices[0]
    device.processes = [GpuProcess(4242, "VLLM::EngineCore", 20000)]
    device.memory_used_mib, device.memory_free_mib = 20529, device.memory_total_mib - 20529
    run = cli("serve", "--facts", str(write(facts, tmp_path / "ours.json")))
    assert run.code == 0 and "no other users" in run.err and "not listed" not in run.err


def test_with_tensor_parallelism_the_note_names_the_gpus(cli: Cli, tmp_path: Path) -> None:
    """Two idle H100s split with --gpus 2 are "these 2 GPUs", and a display on one of them names that one."""
    facts = load("linux-h100-vllm020.json")
    second = copy.deepcopy(facts.gpu.devices[0])
    second.index = 1
    facts.gpu.devices.append(second)
    run = cli("serve", "--facts", str(write(facts, tmp_path / "two.json")), "--gpus", "2")
    assert run.code == 0 and "These 2 GPUs have no display and no other users" in run.err, run.err
    second.display_active = True
    run = cli("serve", "--facts", str(write(facts, tmp_path / "display.json")), "--gpus", "2")
    assert run.code == 0 and "GPU 1 drives a display" in run.err and "This GPU" not in run.err, run.err


@pytest.mark.slow
def test_detach_on_ipv6_loopback_reaches_the_server(machine: Machine) -> None:
    """Regression: `--host ::1` crashed (exit 4) after vLLM started: the URL to wait on was http://::1:PORT."""
    out = run_cli(*machine.args("--detach", "--host", "::1"))
    assert out.returncode == 0, out.stderr
    record = launcher.Record.read()
    assert record is not None and record.url == f"http://[::1]:{machine.port}"
    assert "] ready" in out.stderr
    stopped = run_cli("serve", "stop")
    assert stopped.returncode == 0, stopped.stderr


# --- paths in the generated files -----------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return shlex.split(text.replace("\\\n", " "))


def test_a_relative_model_dir_becomes_absolute_in_every_format(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: `--model-dir models/x` gave docker `-v models:/models:ro`, a named volume, not the dir."""
    monkeypatch.chdir(tmp_path)
    models = str(tmp_path / "models")
    docker = cli("serve", "--facts", DESKTOP, "--model-dir", "models/Voxtral", "--format", "docker")
    assert docker.code == 0, docker.err
    assert _words(docker.out)[_words(docker.out).index("-v") + 1] == f"{models}:/models:ro"
    compose = yaml.safe_load(
        cli("serve", "--facts", DESKTOP, "--model-dir", "models/Voxtral", "--format", "compose").out
    )
    assert compose["services"]["vllm"]["volumes"] == [f"{models}:/models:ro"]
    unit = cli("serve", "--facts", DESKTOP, "--model-dir", "models/Voxtral", "--format", "systemd").out
    assert f"{models}/Voxtral" in unit and " models/Voxtral" not in unit


def test_colon_and_dollar_in_the_model_path_survive_docker_compose_and_systemd(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a `:` split docker's `-v` (an invalid mount) and a `$` was expanded by Compose."""
    root = tmp_path / "a:b$HOME"
    model = str(root / "Voxtral")
    docker = _words(cli("serve", "--facts", DESKTOP, "--model-dir", model, "--format", "docker").out)
    assert "-v" not in docker
    assert docker[docker.index("--mount") + 1] == f"type=bind,source={root},target=/models,readonly"
    compose = yaml.safe_load(cli("serve", "--facts", DESKTOP, "--model-dir", model, "--format", "compose").out)
    (volume,) = compose["services"]["vllm"]["volumes"]
    assert volume["source"].replace("$$", "$") == str(root) and "$$HOME" in volume["source"]
    unit = cli("serve", "--facts", DESKTOP, "--model-dir", model, "--format", "systemd").out
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    words = [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line[len("ExecStart=") :])]
    assert model in words


def test_a_path_docker_cannot_mount_is_refused(cli: Cli, tmp_path: Path) -> None:
    run = cli("serve", "--facts", DESKTOP, "--model-dir", str(tmp_path / "a:b,c" / "Voxtral"), "--format", "docker")
    assert run.code == 2 and "docker cannot mount" in run.err


def test_a_relative_python_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `--python .venv/bin/python` went verbatim into systemd's ExecStart, which needs absolute paths."""
    from echopanel_setup.facts import pyenv

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    assert pyenv.resolve_explicit("bin/python") == str(tmp_path / "bin" / "python")
