"""The same server in six forms: a shell command, JSON, `docker run`, a Compose file, a systemd unit and
Kubernetes objects (Deployment + Service + PVC).

The container forms run the model from a read-only mount of the dir that holds the model dir (delay variants
link to their neighbour, so the pair must be mounted together), listen on 0.0.0.0:8000 inside, and take the
API key from the environment (vLLM reads VLLM_API_KEY), never from the file, which people commit and share.
YAML is written by a small emitter that quotes every string, so no extra runtime dependency is needed.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from echopanel_setup import __version__, knowledge, paths
from echopanel_setup.errors import UsageError
from echopanel_setup.serve.builder import KEY_FROM_SHELL, ServeCommand, ServeSettings, pairs
from echopanel_setup.serve.planner import Plan

FORMATS = ("shell", "json", "docker", "compose", "systemd", "kubernetes")
NAME = "echopanel-vllm"
CONTAINER_PORT = 8000
MOUNT = "/models"
API_KEY_SECRET = "echopanel-vllm-api-key"


@dataclass(frozen=True)
class Deployment:
    """Where the model lives on the host, and which image runs it."""

    image: str
    models_root: str  # host dir holding the served dir (and, for a variant, the model dir it links to)
    served_dir_name: str  # the served dir's name inside models_root
    model_dir_name: str  # the verified model dir's name (for the preflight)


def image_for(version: str | None) -> str:
    v = version or knowledge.load().vllm.recommended_version
    return f"{knowledge.load().serve.launch.docker_image}:v{v.split('+')[0]}"


def container_args(cmd: ServeCommand) -> list[str]:
    """The command's flags for inside a container: listen everywhere on 8000, key from the environment."""
    return [*cmd.without("--host", "--port", "--api-key"), "--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]


def _container_env(cmd: ServeCommand) -> dict[str, str]:
    return {k: v for k, v in cmd.env.items() if k not in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")}


def _published(settings: ServeSettings) -> str:
    host = "" if settings.host in ("0.0.0.0", "") else f"{settings.host}:"
    return f"{host}{settings.port}:{CONTAINER_PORT}"


def _gpu_indices(plan: Plan) -> list[str] | None:
    indices = [str(g.index) for g in plan.gpus if g.index is not None]
    return indices if len(indices) == len(plan.gpus) else None


def render(
    fmt: str, cmd: ServeCommand, plan: Plan, settings: ServeSettings, dep: Deployment, doc: dict[str, Any]
) -> str:
    if fmt == "shell":
        return cmd.shell()
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False)
    if fmt == "docker":
        return docker(cmd, plan, settings, dep)
    if fmt == "compose":
        return compose(cmd, plan, settings, dep)
    if fmt == "systemd":
        return systemd(cmd, settings)
    if fmt == "kubernetes":
        return kubernetes(cmd, plan, settings, dep)
    raise ValueError(f"unknown format {fmt}")


def _in_container(dep: Deployment) -> str:
    return str(PurePosixPath(MOUNT) / dep.served_dir_name)


def docker(cmd: ServeCommand, plan: Plan, settings: ServeSettings, dep: Deployment) -> str:
    indices = _gpu_indices(plan)
    gpus = (
        f'"device={",".join(indices)}"'
        if indices
        else ("all" if plan.tensor_parallel_size == 1 else str(plan.tensor_parallel_size))
    )
    head = [
        "docker",
        "run",
        "--rm",
        "--name",
        NAME,
        "--gpus",
        gpus,
        "--ipc=host",
        "-p",
        _published(settings),
        *_docker_mount(dep.models_root),
    ]
    # With a key, the command stops before docker when the shell that runs it has none (docker would start
    # vLLM keyless): `${VAR:?}` fails the `&&` list, in a script and typed alike.
    guard = [f': "{KEY_FROM_SHELL}" &&'] if settings.api_key else []
    lines = [*guard, " ".join(shlex.quote(p) for p in head)]
    lines += [f"  -e {shlex.quote(f'{k}={v}')}" for k, v in _container_env(cmd).items()]
    if settings.api_key:
        lines.append("  -e VLLM_API_KEY")  # copied from the shell, so never in docker's argv (`ps`)
    lines.append(f"  {shlex.quote(dep.image)} {shlex.quote(_in_container(dep))}")
    lines += ["  " + " ".join(shlex.quote(p) for p in group) for group in pairs(container_args(cmd))]
    return " \\\n".join(lines)


def _health_probe() -> list[str]:
    return [
        "CMD",
        "python3",
        "-c",
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/health', timeout=5)",
    ]


def compose(cmd: ServeCommand, plan: Plan, settings: ServeSettings, dep: Deployment) -> str:
    indices = _gpu_indices(plan)
    device: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
    if indices:
        device["device_ids"] = indices
    else:
        device["count"] = plan.tensor_parallel_size
    env = dict(_container_env(cmd))
    if settings.api_key:
        env["VLLM_API_KEY"] = KEY_FROM_SHELL
    timeout = knowledge.load().serve.launch.health_timeout_s
    service = {
        "image": dep.image,
        "container_name": NAME,
        "command": [_compose_escape(a) for a in [_in_container(dep), *container_args(cmd)]],
        "ports": [_published(settings)],
        "ipc": "host",
        "volumes": [_compose_volume(dep.models_root)],
        "environment": env,
        "deploy": {"resources": {"reservations": {"devices": [device]}}},
        "healthcheck": {
            "test": _health_probe(),
            "interval": "30s",
            "timeout": "10s",
            "retries": 3,
            "start_period": f"{timeout}s",
        },
        "restart": "unless-stopped",
    }
    header = [
        f"Voxtral Realtime for EchoPanel on vLLM, written by echopanel-setup {__version__} serve --format compose.",
        "Start: docker compose up -d    Logs: docker compose logs -f vllm",
    ]
    if settings.api_key:
        header.append("The API key comes from your shell: export VLLM_API_KEY=... before `docker compose up`.")
    return _comments(header) + to_yaml({"services": {"vllm": service}})


def _compose_escape(arg: str) -> str:
    return arg.replace("$", "$$")  # Compose interpolates $VAR in every string


def _docker_mount(root: str) -> list[str]:
    """`-v ROOT:/models:ro`, or `--mount` where a `:` in the path would split `-v`'s fields (a comma would split
    `--mount`'s, so a path with both cannot be written and is refused)."""
    _absolute(root)
    if ":" not in root:
        return ["-v", f"{root}:{MOUNT}:ro"]
    if "," in root or '"' in root:
        raise UsageError(
            f"--model-dir {root}: docker cannot mount a path holding both ':' and ',' or '\"'; move or link the "
            "model dir to a plainer path"
        )
    return ["--mount", f"type=bind,source={root},target={MOUNT},readonly"]


def _compose_volume(root: str) -> str | dict[str, Any]:
    """The short `ROOT:/models:ro` form, or the long form where a `:` would split it; `$` is escaped for Compose."""
    _absolute(root)
    if ":" not in root:
        return _compose_escape(f"{root}:{MOUNT}:ro")
    return {"type": "bind", "source": _compose_escape(root), "target": MOUNT, "read_only": True}


def _absolute(root: str) -> None:
    """A relative host path is a named volume to docker and Compose: serve passes absolute ones (this guards it)."""
    if not PurePosixPath(root).is_absolute() or "\n" in root:
        raise UsageError(f"--model-dir {root!r}: the container formats need an absolute path on one line")


_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: `%` and `$` escaped (specifiers, variables), quoted when it has spaces or quotes."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd(cmd: ServeCommand, settings: ServeSettings) -> str:
    stop = knowledge.load().serve.launch.stop_grace_s
    lines = [
        f"# {NAME}.service: Voxtral Realtime for EchoPanel on vLLM, written by echopanel-setup {__version__}.",
        f"# Install as a user service: save as ~/.config/systemd/user/{NAME}.service, then",
        f"#   systemctl --user daemon-reload && systemctl --user enable --now {NAME}",
        '#   loginctl enable-linger "$USER"    # keep it running after you log out',
        f"# Logs: journalctl --user -u {NAME} -f",
        "",
        "[Unit]",
        "Description=vLLM serving Voxtral Realtime for EchoPanel",
        "",
        "[Service]",
        "Type=exec",
        *(f"Environment={_systemd_quote(f'{k}={v}')}" for k, v in cmd.env.items()),
        "Environment=PYTHONUNBUFFERED=1",
    ]
    executable = cmd.executable
    if not PurePosixPath(executable[0]).is_absolute():
        # systemd looks a bare name up in /usr/bin and friends only, never in a venv: name the venv's vllm.
        executable = [str(paths.default_venv_dir() / "bin" / "vllm"), *executable[1:]]
        lines.append(
            "# vLLM is not installed here yet: ExecStart names the venv `echopanel-setup install vllm` creates; edit "
            "it if yours is elsewhere."
        )
    args = cmd.args
    if settings.api_key:
        args = cmd.without("--api-key")
        lines += [
            "# VLLM_API_KEY=... goes in this file (chmod 600), which vLLM reads instead of --api-key:",
            f"EnvironmentFile=%h/.config/echopanel-setup/{NAME}.env",
        ]
    lines += [
        "ExecStart=" + " ".join(_systemd_quote(a) for a in [*executable, "serve", cmd.model, *args]),
        "KillSignal=SIGINT",
        f"TimeoutStopSec={stop}",
        "Restart=on-failure",
        "RestartSec=10",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def kubernetes(cmd: ServeCommand, plan: Plan, settings: ServeSettings, dep: Deployment) -> str:
    """PVC for the model, a Deployment whose init container runs doctor as the preflight, and a Service."""
    gpus = plan.tensor_parallel_size
    launch = knowledge.load().serve.launch
    labels = {"app": NAME}
    pvc_gib = max(20, -(-knowledge.load().model.download_bytes * 2 // 2**30))
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in _container_env(cmd).items()]
    if settings.api_key:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET, "key": "api-key"}}})
    mounts = [{"name": "models", "mountPath": MOUNT, "readOnly": True}]
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    preflight = (
        f"pip install --quiet --no-cache-dir 'echopanel-setup=={__version__}' && echopanel-setup doctor --mode local "
        f"--json --offline --model-dir {shlex.quote(str(PurePosixPath(MOUNT) / dep.model_dir_name))} --skip config,port"
    )
    gpu_limits = {"nvidia.com/gpu": str(gpus)}  # a Kubernetes quantity is a string
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "initContainers": [
                        {
                            "name": "preflight",
                            "image": dep.image,
                            "command": ["sh", "-c", preflight],
                            "resources": {"limits": gpu_limits},
                            "volumeMounts": mounts,
                        }
                    ],
                    "containers": [
                        {
                            "name": "vllm",
                            "image": dep.image,
                            "args": [_in_container(dep), *container_args(cmd)],
                            "env": env,
                            "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
                            "resources": {"limits": gpu_limits, "requests": gpu_limits},
                            "startupProbe": {
                                **probe,
                                "periodSeconds": 10,
                                "failureThreshold": launch.health_timeout_s // 10,
                            },
                            "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                            "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 3},
                            "volumeMounts": [*mounts, {"name": "dshm", "mountPath": "/dev/shm"}],
                        }
                    ],
                    "terminationGracePeriodSeconds": launch.stop_grace_s,
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": f"{NAME}-models"}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                    ],
                },
            },
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{NAME}-models", "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{pvc_gib}Gi"}}},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http"}]},
    }
    header = [
        f"Voxtral Realtime for EchoPanel on vLLM, written by echopanel-setup {__version__} serve --format kubernetes.",
        f"1. Put the model on the volume {NAME}-models as {MOUNT}/{dep.model_dir_name}"
        + (
            f" (and the delay variant {MOUNT}/{dep.served_dir_name}, copied with its links: cp -a)"
            if dep.served_dir_name != dep.model_dir_name
            else ""
        )
        + f", e.g. from a pod mounting it: echopanel-setup install voxtral --dir {MOUNT}/{dep.model_dir_name}",
        "2. kubectl apply -f this file. The init container runs `echopanel-setup doctor` as the preflight; its",
        "   JSON report is in `kubectl logs deploy/" + NAME + " -c preflight`. Air-gapped clusters: use an image",
        "   with echopanel-setup preinstalled. GPUs need the NVIDIA device plugin (resource nvidia.com/gpu).",
        "3. EchoPanel: VOXTRAL_VLLM_URL=http://" + NAME + f".<namespace>.svc:{CONTAINER_PORT}",
        "Replicas on several nodes need a ReadOnlyMany / ReadWriteMany storage class for the model volume.",
    ]
    if settings.api_key:
        header.append(f"API key: kubectl create secret generic {API_KEY_SECRET} --from-literal=api-key=...")
    return _comments(header) + "\n---\n".join(to_yaml(obj) for obj in (pvc, deployment, service))


def _comments(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars; strings always double-quoted (JSON escapes are valid
    YAML), so no value is ever read back as a number, a boolean or null."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for key, item in value.items():
            k = key if _PLAIN_KEY.match(key) else json.dumps(key)
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{k}:\n{to_yaml(item, indent + 1)}")
            else:
                out.append(f"{pad}{k}: {_scalar(item)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                out.append(f"{pad}- {body[len(pad) + 2 :]}")
            else:
                out.append(f"{pad}- {_scalar(item)}\n")
        return "".join(out)
    return pad + _scalar(value) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(str(value), ensure_ascii=False)
