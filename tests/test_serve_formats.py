"""Every output format parses with the tool that will read it: a shell (shlex), JSON, YAML (PyYAML) for
Compose, `systemd-analyze verify` for the unit (where installed), and the official Kubernetes client's
models for the Deployment, Service and PVC."""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from serve_kit import install_vllm

from echopanel_setup.serve import builder, flags, formats, planner
from echopanel_setup.serve.builder import ServeSettings

yaml = pytest.importorskip("yaml")

ARCH = planner.builtin_arch()
MODELS = "/srv/echopanel/models"
DEP = formats.Deployment(
    image="vllm/vllm-openai:v0.20.0",
    models_root=MODELS,
    served_dir_name="Voxtral-Mini-4B-Realtime-2602-delay960ms",
    model_dir_name="Voxtral-Mini-4B-Realtime-2602",
)


def setup(
    executable: list[str] | None = None, api_key: str | None = None, gpus: int = 1
) -> tuple[builder.ServeCommand, planner.Plan, ServeSettings]:
    devices = tuple(planner.Gpu("NVIDIA A10", 23028, 22502, "8.6", i) for i in range(gpus))
    plan = planner.plan(
        planner.PlanRequest(gpus=devices, arch=ARCH, weights_mib=8450, vllm_version="0.20.0", tensor_parallel=gpus)
    )
    assert isinstance(plan, planner.Plan)
    settings = ServeSettings(
        model=f"{MODELS}/{DEP.served_dir_name}",
        model_is_local=True,
        served_model_name="mistralai/Voxtral-Mini-4B-Realtime-2602",
        host="127.0.0.1",
        port=8001,
        api_key=api_key,
    )
    return builder.build(plan, settings, flags.builtin("0.20.0"), executable), plan, settings


def render(fmt: str, **kw: object) -> str:
    cmd, plan, settings = setup(**kw)  # type: ignore[arg-type]
    return formats.render(fmt, cmd, plan, settings, DEP, {"argv": cmd.argv()})


def test_shell_and_json() -> None:
    cmd, _, _ = setup()
    assert shlex.split(render("shell").replace("\\\n", ""))[-len(cmd.argv()) :] == cmd.argv()
    assert json.loads(render("json")) == {"argv": cmd.argv()}


def test_docker_run_mounts_the_models_dir_and_takes_the_key_from_the_environment() -> None:
    words = shlex.split(render("docker", api_key="k-1").replace("\\\n", ""))
    assert words[:3] == [":", "${VLLM_API_KEY:?export VLLM_API_KEY first}", "&&"]
    words = words[3:]
    assert words[:3] == ["docker", "run", "--rm"] and "--ipc=host" in words
    assert words[words.index("--gpus") + 1] == '"device=0"'
    assert words[words.index("-p") + 1] == "127.0.0.1:8001:8000"
    assert words[words.index("-v") + 1] == f"{MODELS}:/models:ro"
    image = words.index("vllm/vllm-openai:v0.20.0")
    assert words[image - 2 : image] == ["-e", "VLLM_API_KEY"] and "k-1" not in words
    args = words[image + 1 :]
    assert args[0] == "/models/Voxtral-Mini-4B-Realtime-2602-delay960ms"
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "8000"
    assert "--api-key" not in args


def test_compose_is_yaml_with_a_gpu_reservation_and_a_healthcheck() -> None:
    text = render("compose", api_key="k-1", gpus=2)
    doc = yaml.safe_load(text)
    svc = doc["services"]["vllm"]
    assert svc["image"] == "vllm/vllm-openai:v0.20.0" and svc["ipc"] == "host"
    assert svc["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["0", "1"]}
    ]
    assert svc["command"][0] == "/models/Voxtral-Mini-4B-Realtime-2602-delay960ms"
    assert svc["command"][svc["command"].index("--tensor-parallel-size") + 1] == "2"
    assert svc["command"][svc["command"].index("--compilation-config") + 1] == '{"cudagraph_mode": "PIECEWISE"}'
    assert svc["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY:?") and "k-1" not in text
    assert svc["ports"] == ["127.0.0.1:8001:8000"] and svc["volumes"] == [f"{MODELS}:/models:ro"]
    assert "/health" in " ".join(svc["healthcheck"]["test"])


def _exec_start(unit: str) -> list[str]:
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line[len("ExecStart=") :])]


def test_systemd_unit_has_the_exact_argv(tmp_path: Path) -> None:
    exe = install_vllm(tmp_path / "bin")
    cmd, plan, settings = setup([str(exe)], api_key="k-1")
    unit = formats.render("systemd", cmd, plan, settings, DEP, {})
    assert _exec_start(unit) == [*cmd.executable, "serve", cmd.model, *cmd.without("--api-key")]
    assert "k-1" not in unit and re.search(r"(?m)^EnvironmentFile=%h/", unit)
    assert "KillSignal=SIGINT" in unit and "Environment=HF_HUB_OFFLINE=1" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    exe = install_vllm(tmp_path / "bin with space")
    cmd, plan, settings = setup([str(exe)])
    unit = tmp_path / "echopanel-vllm.service"
    unit.write_text(formats.render("systemd", cmd, plan, settings, DEP, {}), encoding="utf-8")
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "echopanel-vllm.service" not in out.stderr, out.stderr


def _deserialize(client, doc: dict, kind: str):  # type: ignore[no-untyped-def]
    """ApiClient.deserialize takes the body text since client 34, a response object before."""
    if "content_type" in inspect.signature(client.deserialize).parameters:
        return client.deserialize(json.dumps(doc), kind, "application/json")

    class Response:
        data = json.dumps(doc)

    return client.deserialize(Response(), kind)


@pytest.mark.slow
def test_kubernetes_objects_load_into_the_official_client_models() -> None:
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.client.ApiClient()
    docs = list(yaml.safe_load_all(render("kubernetes", api_key="k-1")))
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "Deployment", "Service"]

    models = {}
    for doc, kind in zip(docs, ("V1PersistentVolumeClaim", "V1Deployment", "V1Service"), strict=True):
        obj = _deserialize(client, doc, kind)
        assert client.sanitize_for_serialization(obj) == doc  # no field was misspelled or dropped
        models[doc["kind"]] = obj
    pod = models["Deployment"].spec.template.spec
    (vllm,) = pod.containers
    assert vllm.resources.limits == {"nvidia.com/gpu": "1"} and vllm.readiness_probe.http_get.path == "/health"
    assert vllm.liveness_probe.http_get.path == "/health" and vllm.startup_probe.failure_threshold == 90
    assert {m.mount_path for m in vllm.volume_mounts} == {"/models", "/dev/shm"}
    assert next(v for v in pod.volumes if v.name == "dshm").empty_dir.medium == "Memory"
    assert (
        next(e for e in vllm.env if e.name == "VLLM_API_KEY").value_from.secret_key_ref.name == formats.API_KEY_SECRET
    )
    (preflight,) = pod.init_containers
    assert "echopanel-setup doctor --mode local --json" in preflight.command[-1]
    assert "/models/Voxtral-Mini-4B-Realtime-2602 " in preflight.command[-1]
    assert models["Service"].spec.ports[0].target_port == "http"
    assert models["PersistentVolumeClaim"].spec.resources.requests["storage"].endswith("Gi")


@pytest.mark.parametrize(
    "value",
    [
        "0.92",
        "yes",
        "no",
        "null",
        "~",
        "a: b",
        "#x",
        "- item",
        "{x}",
        'it\'s "q"',
        "ünï",
        "multi\nline",
        "",
        "@x",
        "*x",
    ],
)
def test_yaml_strings_round_trip(value: str) -> None:
    doc = {"plain": value, "list": [value, {"k": value, "n": 3, "f": 0.5, "t": True}], "we:ird key": [], "e": {}}
    assert yaml.safe_load(formats.to_yaml(doc)) == doc


def test_systemd_names_an_absolute_vllm_when_vllm_is_not_installed_here(tmp_path: Path) -> None:
    """`ExecStart=vllm …` failed: systemd never searches a venv
    (`systemd-analyze verify`: 'Command vllm is not executable')."""
    from echopanel_setup import paths

    cmd, plan, settings = setup(None)  # no vLLM here: the builder writes plain `vllm`
    assert cmd.executable == ["vllm"]
    unit_text = formats.render("systemd", cmd, plan, settings, DEP, {})
    expected = paths.default_venv_dir() / "bin" / "vllm"
    assert _exec_start(unit_text)[0] == str(expected)
    assert "install vllm` creates" in unit_text
    if shutil.which("systemd-analyze"):
        install_vllm(expected.parent)  # what `install vllm` leaves there
        unit = tmp_path / "echopanel-vllm.service"
        unit.write_text(unit_text, encoding="utf-8")
        out = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], check=False, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("key", [None, "k-1"])
def test_the_docker_command_never_starts_a_keyless_server(tmp_path: Path, key: str | None) -> None:
    """Run as printed, with a `docker` that records its arguments: a shell with no VLLM_API_KEY stops before
    docker (vLLM would start with no key); with one, docker gets it from the environment, not its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\nprintf "%s" "$VLLM_API_KEY" >> {seen}\n')
    docker.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **({"VLLM_API_KEY": key} if key else {})}
    run = subprocess.run(["sh", "-c", render("docker", api_key="k-1")], env=env, capture_output=True, text=True)
    if key is None:
        assert run.returncode != 0 and "export VLLM_API_KEY first" in run.stderr and not seen.exists()
    else:
        assert run.returncode == 0, run.stderr
        argv = seen.read_text().splitlines()
        assert argv[-1] == "k-1" and "VLLM_API_KEY" in argv[:-1] and "k-1" not in argv[:-1]
