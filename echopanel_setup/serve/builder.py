"""The `vllm serve` command for a plan, in the spelling this vLLM version accepts.

Every flag is checked against the version's own help (flags.FlagSet) before it is emitted, and every value
against the flag's choices; what the version lacks is left out and said so, never guessed. Full flag names
only (no -tp / -cc / prefix matching), so the command reads the same on every version.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup import knowledge
from echopanel_setup.facts.model import PyEnvFacts
from echopanel_setup.serve.flags import FlagSet
from echopanel_setup.serve.planner import Plan

REDACTED = "<redacted>"
# The key as printed: a reference to the variable vLLM reads in place of --api-key, which stops the command (in a
# script and typed alike) where the shell holds no key, instead of starting vLLM keyless.
KEY_FROM_SHELL = "${VLLM_API_KEY:?export VLLM_API_KEY first}"


@dataclass(frozen=True)
class ServeSettings:
    """Everything but memory: what to serve, where, and under which name."""

    model: str  # a local dir, or the Hub repo id when the model is not installed here
    model_is_local: bool
    served_model_name: str  # the first name: EchoPanel's, which vLLM echoes in its answers
    host: str
    port: int
    api_key: str | None = None
    revision: str | None = None
    visible_gpus: int = 0  # GPUs vLLM would see on this machine; more than planned pins the planned ones
    also_served: tuple[str, ...] = ()  # more names vLLM answers to (`--served-model-name` takes several: nargs +)


@dataclass
class ServeCommand:
    executable: list[str]  # ["/venv/bin/vllm"], or [python, "-m", "vllm.entrypoints.cli.main"]
    model: str
    args: list[str]
    env: dict[str, str]
    version: str | None
    flags_source: str
    skipped: list[str] = field(default_factory=list)  # "flag: why it was left out"

    def argv(self) -> list[str]:
        return [*self.executable, "serve", self.model, *self.args]

    def redacted_args(self) -> list[str]:
        """The args with the API key's value hidden (for logs, the state file and files people share)."""
        out, hide = [], False
        for arg in self.args:
            out.append(REDACTED if hide else arg)
            hide = arg == "--api-key"
        return out

    @property
    def keyed(self) -> bool:
        return "--api-key" in self.args

    def public_args(self) -> list[str]:
        """The args as printed and shared: never the key (vLLM reads it from VLLM_API_KEY instead)."""
        return self.without("--api-key")

    def without(self, *flags: str) -> list[str]:
        """The args minus these flags and their values."""
        out, skip = [], False
        for arg in self.args:
            if skip and not arg.startswith("--"):
                continue
            skip = arg in flags
            if not skip:
                out.append(arg)
        return out

    def shell(self) -> str:
        """Copy-pasteable: env assignments, then one flag per line with its value, shell-quoted; the key is the
        shell's VLLM_API_KEY, passed to vLLM in its environment (out of the text, the terminal and `ps`)."""
        lines = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        if self.keyed:
            lines.append(f'VLLM_API_KEY="{KEY_FROM_SHELL}"')
        lines.append(" ".join(shlex.quote(p) for p in [*self.executable, "serve", self.model]))
        lines.extend("  " + " ".join(shlex.quote(p) for p in group) for group in pairs(self.public_args()))
        return " \\\n".join(lines)


def pairs(args: list[str]) -> list[list[str]]:
    """Group `--flag value…` for display."""
    groups: list[list[str]] = []
    for arg in args:
        if arg.startswith("--") or not groups:
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


def resolve_executable(pyenv: PyEnvFacts) -> list[str] | None:
    """How to run this env's vLLM: its `bin/vllm` beside the interpreter, the `vllm` on PATH when that is the
    env doctor found, else the interpreter running vLLM's CLI module. None without an interpreter."""
    if not pyenv.python:
        return None
    python = Path(pyenv.python)
    beside = python.parent / "vllm"
    if beside.exists():
        return [str(beside)]
    if pyenv.source == "vllm-on-path" and (on_path := shutil.which("vllm")):
        return [on_path]
    return [str(python), "-m", "vllm.entrypoints.cli.main"]


def build(plan: Plan, settings: ServeSettings, flags: FlagSet, executable: list[str] | None) -> ServeCommand:
    cmd = ServeCommand(
        executable=executable or ["vllm"],
        model=settings.model,
        args=[],
        env={},
        version=flags.version,
        flags_source=flags.source,
    )

    def emit(name: str, value: str | None = None, required: bool = False, more: tuple[str, ...] = ()) -> None:
        problem = flags.check(name, value)
        if problem is None:
            cmd.args.extend([name] if value is None else [name, value, *more])
        else:
            cmd.skipped.append(problem + ("" if not required else " (vLLM's default is used; check the log)"))

    emit("--served-model-name", settings.served_model_name, required=True, more=settings.also_served)
    for name in knowledge.load().serve.flags.mistral_format_flags:
        emit(name, "mistral")
    emit("--max-model-len", str(plan.max_model_len), required=True)
    emit("--max-num-seqs", str(plan.max_num_seqs), required=True)
    emit("--max-num-batched-tokens", str(plan.max_num_batched_tokens), required=True)
    emit("--gpu-memory-utilization", f"{plan.gpu_memory_utilization:.2f}", required=True)
    if plan.tensor_parallel_size > 1:
        emit("--tensor-parallel-size", str(plan.tensor_parallel_size), required=True)
    if plan.cudagraph_mode == "eager":
        spelling = flags.boolean("enforce-eager", True)
        if spelling:
            emit(spelling)
        else:
            cmd.skipped.append(f"vLLM {flags.version} has no --enforce-eager switch")
    elif plan.cudagraph_mode == "PIECEWISE":
        emit("--compilation-config", json.dumps({"cudagraph_mode": "PIECEWISE"}), required=True)
    if plan.dtype:
        emit("--dtype", plan.dtype, required=True)
    if plan.attention_backend:
        emit("--attention-backend", plan.attention_backend, required=True)
    if settings.revision and not settings.model_is_local:
        emit("--revision", settings.revision)
    emit("--host", settings.host)
    emit("--port", str(settings.port))
    if settings.api_key:
        emit("--api-key", settings.api_key, required=True)

    cmd.env["VLLM_DISABLE_COMPILE_CACHE"] = "1"  # the model card's and the recipe's setting
    if settings.model_is_local:
        cmd.env["HF_HUB_OFFLINE"] = "1"  # start-up never waits on the Hub for a local dir
    indices = [g.index for g in plan.gpus if g.index is not None]
    if indices and settings.visible_gpus > len(indices):
        # Pin the planned GPUs; nvidia-smi numbers them in PCI order, CUDA's default order is fastest first.
        cmd.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        cmd.env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, sorted(indices)))
    return cmd
