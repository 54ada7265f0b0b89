"""The command builder against the real help of vLLM 0.16.0, 0.20.0 and 0.33.0: every flag it emits is on
an option line of that version's help, and every value is one of that flag's choices."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import replace

import pytest
from serve_kit import HELP_DIR, VERSIONS

from echopanel_setup.serve import builder, flags, planner
from echopanel_setup.serve.builder import ServeSettings

ARCH = planner.builtin_arch()
SETTINGS = ServeSettings(
    model="/data/models/Voxtral-Mini-4B-Realtime-2602",
    model_is_local=True,
    served_model_name="mistralai/Voxtral-Mini-4B-Realtime-2602",
    host="127.0.0.1",
    port=8000,
)
GPUS = {  # GPUs of their own (no display, no other process), as on a server
    "4080": (planner.Gpu("NVIDIA GeForce RTX 4080", 16376, 15780, "8.9", 0, display=False),),
    "t4": (planner.Gpu("Tesla T4", 15360, 14923, "7.5", 0, display=False),),
    # busy: no room for graphs beside the budget
    "tight-eager": (planner.Gpu("tight", 16376, 12500, "8.9", 0, display=False),),
    "2xa10-tp": (
        planner.Gpu("NVIDIA A10", 23028, 22502, "8.6", 0, display=False),
        planner.Gpu("NVIDIA A10", 23028, 22502, "8.6", 1, display=False),
    ),
}


def make_plan(name: str, version: str) -> planner.Plan:
    gpus = GPUS[name]
    p = planner.plan(
        planner.PlanRequest(
            gpus=gpus,
            arch=ARCH,
            weights_mib=8450,
            vllm_version=version,
            tensor_parallel=len(gpus) if len(gpus) > 1 else None,
        )
    )
    assert isinstance(p, planner.Plan)
    return p


def help_text(version: str) -> str:
    return (HELP_DIR / f"serve-help-all-{version}.txt").read_text(encoding="utf-8")


def option_line(text: str, flag: str) -> str | None:
    """The invocation part of `flag`'s option line in a help text, read independently of the builder."""
    for line in text.splitlines():
        if not line.startswith("  -"):
            continue
        invocation = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if flag in [part.split(" ")[0] for part in re.split(r",\s+(?=-)", invocation)]:
            return invocation
    return None


def allowed(text: str, invocation: str, flag: str, value: str) -> bool:
    braces = re.search(r"\{([^}]*)\}", invocation)
    if braces:
        return value in braces.group(1).split(",")
    listed = re.search(r"(\[.*\])", invocation)
    if listed and not listed.group(1).startswith("[" + invocation.split()[-1].strip("[]")):
        try:
            return value in ast.literal_eval(listed.group(1))
        except (ValueError, SyntaxError):
            pass
    if flag == "--load-format":  # its values are listed in the description, one per bullet
        return f'- "{value}"' in text
    return True


def pairs_of(args: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for arg in args:
        if arg.startswith("--"):
            out.append((arg, None))
        else:
            out[-1] = (out[-1][0], arg)
    return out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("plan_name", sorted(GPUS))
def test_every_emitted_flag_and_value_exists_in_that_versions_help(version: str, plan_name: str) -> None:
    text = help_text(version)
    fs = flags.parse_help(text, version, "fixture")
    settings = ServeSettings(**{**SETTINGS.__dict__, "api_key": "k-123"})
    cmd = builder.build(make_plan(plan_name, version), settings, fs, ["/venv/bin/vllm"])
    assert cmd.skipped == []
    for flag, value in pairs_of(cmd.args):
        invocation = option_line(text, flag)
        assert invocation is not None, f"{flag} is not in vLLM {version}'s help"
        first = re.split(r"[ ,]", invocation)[0]
        assert first == flag, f"{flag} is an alias; the full first name is {first}"
        if value is not None:
            assert allowed(text, invocation, flag, value), f"{flag} {value} is not one of vLLM {version}'s choices"
    assert "--swap-space" not in cmd.args and "--device" not in cmd.args


def test_the_command_carries_the_plan_and_the_mistral_formats() -> None:
    cmd = builder.build(make_plan("4080", "0.20.0"), SETTINGS, flags.builtin("0.20.0"), ["/venv/bin/vllm"])
    args = dict(pairs_of(cmd.args))
    assert args["--max-model-len"] == "49500" and args["--gpu-memory-utilization"] == "0.91"  # 0.20: graphs beside
    # one stream planned; its full share holds two, which vLLM may run on a GPU of its own
    assert args["--max-num-seqs"] == "2" and args["--max-num-batched-tokens"] == "512"
    assert args["--tokenizer-mode"] == args["--config-format"] == args["--load-format"] == "mistral"
    assert args["--compilation-config"] == '{"cudagraph_mode": "PIECEWISE"}'
    assert args["--served-model-name"] == "mistralai/Voxtral-Mini-4B-Realtime-2602"
    assert "--tensor-parallel-size" not in args and "--enforce-eager" not in args
    assert cmd.env == {"VLLM_DISABLE_COMPILE_CACHE": "1", "HF_HUB_OFFLINE": "1"}


def test_t4_eager_and_tensor_parallel_flags() -> None:
    t4 = dict(pairs_of(builder.build(make_plan("t4", "0.20.0"), SETTINGS, flags.builtin("0.20.0"), None).args))
    assert (t4["--dtype"], t4["--attention-backend"]) == ("half", "TRITON_ATTN")
    eager = builder.build(make_plan("tight-eager", "0.20.0"), SETTINGS, flags.builtin("0.20.0"), None)
    assert "--enforce-eager" in eager.args and "--compilation-config" not in eager.args
    tp = dict(pairs_of(builder.build(make_plan("2xa10-tp", "0.20.0"), SETTINGS, flags.builtin("0.20.0"), None).args))
    assert tp["--tensor-parallel-size"] == "2"


def test_enable_disable_style_switches_are_spelled_as_the_version_does() -> None:
    """A version whose eager switch were `--enable-enforce-eager, --disable-enforce-eager` gets that spelling."""
    text = help_text("0.33.0").replace(
        "  --enforce-eager, --no-enforce-eager", "  --enable-enforce-eager, --disable-enforce-eager"
    )
    fs = flags.parse_help(text, "0.99.0", "edited")
    cmd = builder.build(make_plan("tight-eager", "0.99.0"), SETTINGS, fs, None)
    assert "--enable-enforce-eager" in cmd.args and "--enforce-eager" not in cmd.args


def test_a_flag_the_version_lacks_is_left_out_and_said_so() -> None:
    text = re.sub(r"(?m)^  --config-format .*$", "  --config-fmt CONFIG_FMT", help_text("0.20.0"))
    fs = flags.parse_help(text, "0.20.0", "edited")
    cmd = builder.build(make_plan("4080", "0.20.0"), SETTINGS, fs, None)
    assert "--config-format" not in cmd.args
    assert cmd.skipped == ["vLLM 0.20.0 has no --config-format"]


def test_gpus_are_pinned_in_pci_order_when_the_machine_has_more() -> None:
    busy, idle = planner.Gpu("NVIDIA A10", 23028, 1646, "8.6", 0), planner.Gpu("NVIDIA A10", 23028, 22502, "8.6", 1)
    p = planner.plan(planner.PlanRequest(gpus=(busy, idle), arch=ARCH, weights_mib=8450, vllm_version="0.20.0"))
    assert isinstance(p, planner.Plan)
    cmd = builder.build(p, ServeSettings(**{**SETTINGS.__dict__, "visible_gpus": 2}), flags.builtin("0.20.0"), None)
    assert cmd.env["CUDA_VISIBLE_DEVICES"] == "1" and cmd.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_shell_text_runs_in_a_real_shell_with_exactly_the_argv_and_env() -> None:
    """The key is never in the text: vLLM gets the shell's VLLM_API_KEY in its environment (never in argv, `ps`),
    and the command stops before vLLM where the shell holds none."""
    settings = ServeSettings(**{**SETTINGS.__dict__, "model": "/data/my models/Voxtral", "api_key": "s3cr$t 'x'"})
    show = [
        sys.executable,
        "-c",
        "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('HF_HUB_OFFLINE'), "
        "os.environ.get('VLLM_API_KEY')]))",
    ]
    cmd = builder.build(make_plan("4080", "0.20.0"), settings, flags.builtin("0.20.0"), show)
    assert "s3cr$t" not in cmd.shell()
    keyed = {**os.environ, "VLLM_API_KEY": "s3cr$t 'x'"}
    out = subprocess.run(["bash", "-c", cmd.shell()], capture_output=True, text=True, check=True, env=keyed).stdout
    argv, offline, key = json.loads(out)
    assert argv == ["serve", cmd.model, *cmd.public_args()] and offline == "1" and key == "s3cr$t 'x'"
    assert "--api-key" not in cmd.public_args() and len(cmd.public_args()) == len(cmd.args) - 2
    keyless = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    stopped = subprocess.run(["bash", "-c", cmd.shell()], capture_output=True, text=True, env=keyless)
    assert stopped.returncode != 0 and stopped.stdout == "" and "export VLLM_API_KEY first" in stopped.stderr
    assert "s3cr$t 'x'" in cmd.argv() and "s3cr$t 'x'" not in cmd.redacted_args()
    assert builder.REDACTED in cmd.redacted_args()
    assert "--api-key" not in cmd.without("--api-key") and len(cmd.without("--api-key")) == len(cmd.args) - 2


def test_a_keyless_command_runs_with_exactly_the_argv_and_env() -> None:
    show = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    cmd = builder.build(make_plan("4080", "0.20.0"), SETTINGS, flags.builtin("0.20.0"), show)
    out = subprocess.run(["bash", "-c", cmd.shell()], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == cmd.argv()[3:]
    assert shlex.split(cmd.shell().replace("\\\n", "")) == [*(f"{k}={v}" for k, v in cmd.env.items()), *cmd.argv()]


def test_a_model_not_installed_here_is_served_from_the_hub_at_its_revision() -> None:
    settings = replace(
        SETTINGS, model="mistralai/Voxtral-Mini-4B-Realtime-2602", model_is_local=False, revision="a" * 40
    )
    cmd = builder.build(make_plan("4080", "0.20.0"), settings, flags.builtin("0.20.0"), None)
    assert dict(pairs_of(cmd.args))["--revision"] == "a" * 40
    assert "HF_HUB_OFFLINE" not in cmd.env and cmd.executable == ["vllm"]
