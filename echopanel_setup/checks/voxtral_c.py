"""The "voxtral.c" category: EchoPanel's `voxtral_realtime` provider runs antirez/voxtral.c on this machine, so the
questions are not vLLM's: is this machine fast enough (Metal on Apple Silicon is real time, BLAS is not), does the
f16 copy of the weights fit in unified memory, does the binary EchoPanel will start run, and are the weights it will
hand it there and verified.

The provider is a second axis beside the modes: where EchoPanel selects `voxtral_realtime` (and no --mode was
given), doctor skips the vLLM-only checks (`moot_for_voxtral_c`) and these decide. Without that selection, and
without a build by `install voxtral-c`, every check here is skipped with the reason. Whether the provider variant
itself can work is `echopanel.provider`'s verdict (the published one cannot).

Thresholds and speeds come from [voxtral_c] in the knowledge file (voxtral.c README at the pinned commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echopanel_setup import knowledge
from echopanel_setup.checks import REQUIRED, Check, CheckFn, Fix, Outcome, Status, check
from echopanel_setup.facts import voxtral_c as probe
from echopanel_setup.facts.model import Facts

CATEGORY = "voxtral_c"
INSTALL = "echopanel-setup install voxtral-c"
CONFIGURE = "echopanel-setup configure --provider voxtral_realtime"
# Checks of the vLLM path (exact ids or id prefixes): moot while EchoPanel runs voxtral.c instead.
VLLM_ONLY = ("platform", "gpu", "stack", "config", "server", "client", "api", "network.mistral", "port")


@dataclass(frozen=True)
class Precondition:
    """One thing the build needs: met or not, and what to do when it is not."""

    name: str
    ok: bool
    detail: str
    fix: tuple[str, ...] = ()


def build_needs(facts: Facts, backend: str) -> list[Precondition]:
    """What building voxtral.c with `backend` needs here, each met or not with its fix (pure: facts in). `install
    voxtral-c` refuses on any unmet one (and adds the disk); doctor names them beside a missing binary."""
    k = knowledge.load().voxtral_c
    p, vc = facts.platform, facts.voxtral_c
    mac, linux = p.system == "Darwin", p.system == "Linux"
    out: list[Precondition] = []
    if not (mac or linux):
        out.append(
            Precondition(
                "platform",
                False,
                f"voxtral.c builds on macOS and Linux, not {p.system or 'this system'}",
                ("Run it in WSL2 (Ubuntu) on Windows: wsl --install -d Ubuntu",),
            )
        )
    if backend == "mps":
        if not (mac and p.apple_silicon):
            out.append(
                Precondition(
                    "apple-silicon",
                    False,
                    f"`make mps` needs Apple Silicon (Metal); this is {p.system} {p.arch}",
                    ("Build the BLAS backend instead (slower than real time): --backend blas",),
                )
            )
        elif p.rosetta:
            out.append(
                Precondition(
                    "rosetta",
                    False,
                    "this shell runs under Rosetta (x86_64 on Apple Silicon): the build would be x86_64, without Metal",
                    (
                        "Open a native terminal (Get Info > untick 'Open using Rosetta'), or run: arch -arm64 /bin/zsh",
                        "then run `echopanel-setup install voxtral-c` again",
                    ),
                )
            )
        else:
            out.append(Precondition("apple-silicon", True, f"Apple Silicon, native arm64 ({p.cpu or p.arch})"))
    if mac and vc.xcode_clt is False:
        out.append(
            Precondition(
                "compiler",
                False,
                "Xcode's command-line tools are not installed (no compiler)",
                ("xcode-select --install",),
            )
        )
    else:
        linux_fix = ("sudo apt install build-essential", "sudo dnf install gcc make")
        missing = f"{k.compiler} (the compiler voxtral.c's Makefile uses) not found"
        out.append(_tool("compiler", vc.compiler, missing, mac, linux_fix))
    out.append(_tool("make", vc.make, "make not found", mac, ("sudo apt install make",)))
    if backend == "blas" and linux and vc.compiler is not None:
        if vc.blas:
            out.append(Precondition("blas", True, "OpenBLAS: cblas.h compiles and -lopenblas links"))
        else:
            out.append(
                Precondition(
                    "blas",
                    False,
                    f"OpenBLAS not found ({vc.blas_error or 'cblas.h / -lopenblas'}): the Debian package "
                    f"{k.blas_package} provides it",
                    (f"sudo apt install {k.blas_package}", "sudo dnf install openblas-devel"),
                )
            )
    out.append(_tool("git", vc.git, "git not found", mac, ("sudo apt install git",)))
    return out


def _tool(name: str, path: str | None, missing: str, mac: bool, linux_fix: tuple[str, ...]) -> Precondition:
    """A build tool: met where found (its path), else missing with the way to install it (on a Mac, Xcode's
    command-line tools bring the compiler, make and git alike)."""
    if path is not None:
        return Precondition(name, True, path)
    return Precondition(name, False, missing, ("xcode-select --install",) if mac else linux_fix)


def _check(id: str, title: str, probes: tuple[str, ...], after: tuple[str, ...] = ()) -> Callable[[CheckFn], CheckFn]:
    """Required in every mode: the provider, not the mode, decides whether these apply (`_skip`)."""
    return check(id, title, CATEGORY, probes, local=REQUIRED, remote=REQUIRED, api=REQUIRED, after=after)


def default_backend(facts: Facts) -> str:
    """What `install voxtral-c` builds here by default: mps on Apple Silicon (even under Rosetta: `build_needs`
    then says why not), blas elsewhere."""
    p = facts.platform
    return "mps" if p.system == "Darwin" and p.apple_silicon else "blas"


def in_use(facts: Facts) -> bool:
    """EchoPanel selects voxtral_realtime (as its backend will see the setting)."""
    return probe.selected_provider(facts.echopanel) == probe.PROVIDER


def moot_for_voxtral_c(facts: Facts) -> str | None:
    """Why the vLLM path's checks do not apply here, or None: EchoPanel runs voxtral.c, not vLLM."""
    if not in_use(facts):
        return None
    return "EchoPanel runs voxtral.c (ECHOPANEL_ASR_PROVIDER=voxtral_realtime), not vLLM: --mode checks the vLLM path"


def is_vllm_only(c: Check) -> bool:
    return any(c.id == p or c.id.startswith(p + ".") for p in VLLM_ONLY)


#: the checks of downloading the weights into `install voxtral`'s dir: moot where voxtral.c already has them elsewhere
DOWNLOAD = ("model.files", "disk.space", "network.hf")


def weights_elsewhere(facts: Facts) -> str | None:
    """Why the download checks do not apply, or None: EchoPanel hands voxtral.c weights present in another dir
    (e.g. voxtral.c's own download), which "voxtral.c weights" judges; failing the empty default dir would send
    the user to download 8.9 GB again."""
    vc = facts.voxtral_c
    if not in_use(facts) or not vc.model or not vc.model_files or not all(vc.model_files.values()):
        return None
    if Path(vc.model).expanduser().resolve() == Path(facts.model.path).expanduser().resolve():
        return None
    return f"voxtral.c reads its weights from {vc.model} (ECHOPANEL_VOXTRAL_MODEL): judged under voxtral.c weights"


def _skip(facts: Facts) -> Outcome | None:
    if facts.voxtral_c.probed:
        return None
    return Outcome(Status.SKIP, "EchoPanel is not set to voxtral_realtime and `install voxtral-c` has not run")


def metal_native(facts: Facts) -> bool:
    """Apple Silicon, outside Rosetta: where `make mps` builds and runs on the GPU."""
    p = facts.platform
    return p.system == "Darwin" and bool(p.apple_silicon) and not p.rosetta


@_check("voxtral_c.speed", "voxtral.c speed here", ("platform",))
def speed(facts: Facts, mode: str) -> Outcome:
    """Metal on Apple Silicon keeps up with speech; BLAS (Linux, Intel Macs) decodes ~4x slower than speech."""
    if (skipped := _skip(facts)) is not None:
        return skipped
    k = knowledge.load().voxtral_c
    p = facts.platform
    cite = f"voxtral.c README at {k.commit[:7]}, 'How Fast Is It?'"
    if p.system == "Darwin" and p.apple_silicon and p.rosetta:
        return Outcome(
            Status.FAIL,
            "this shell runs under Rosetta (x86_64): voxtral.c would build for x86_64, without Metal",
            [],
            Fix("Use a native arm64 terminal, then build:", ["arch -arm64 /bin/zsh", INSTALL]),
        )
    if metal_native(facts):
        built = facts.voxtral_c.build
        if built is not None and built.backend != "mps":
            return Outcome(
                Status.WARN,
                f"Apple Silicon, but voxtral.c was built with {built.backend}: not real time",
                [f"The Metal build decodes at ~{k.mps_ms_per_token} ms per token ({cite})."],
                Fix("Rebuild it for Metal:", [f"{INSTALL} --backend mps"]),
            )
        return Outcome(
            Status.OK,
            f"Apple Silicon + Metal ({p.cpu or 'arm64'}): real time, ~{k.mps_ms_per_token} ms per token against the "
            f"model's {k.token_budget_ms} ms",
            [f"Source: {cite} (M3 Max)."],
        )
    if p.system not in ("Darwin", "Linux"):
        return Outcome(
            Status.FAIL,
            f"voxtral.c builds on macOS and Linux, not {p.system or 'this system'}",
            [],
            Fix("Use a vLLM server elsewhere or Mistral's API:", ["echopanel-setup configure --mode remote"]),
        )
    where = "an Intel Mac" if p.system == "Darwin" else "Linux"
    return Outcome(
        Status.WARN,
        f"runs, but not in real time on {where}: the BLAS decoder takes ~{k.blas_ms_per_token} ms per token against "
        f"an {k.token_budget_ms} ms budget",
        [
            f"Source: {cite}, line 324 ('BLAS | ~8s | ~1.2s | 335 ms/step') and line 328 (one token per ~80 ms of "
            "audio). Live transcripts fall further behind every second.",
            "Better here, in this order: Voxtral on a vLLM server elsewhere (remote), Mistral's API (api), then "
            "voxtral.c on BLAS for offline use.",
        ],
        Fix(
            "Point EchoPanel at a vLLM server or the API instead:",
            [
                "echopanel-setup configure --mode remote --url http://GPU-HOST:8001",
                "echopanel-setup configure --mode api",
            ],
        ),
    )


@_check("voxtral_c.memory", "voxtral.c memory (Metal)", ("platform",), after=("voxtral_c.speed",))
def memory(facts: Facts, mode: str) -> Outcome:
    """Under MPS the weights are converted to f16 on the GPU at load: ~8.9 GB resident in unified memory."""
    if (skipped := _skip(facts)) is not None:
        return skipped
    if not metal_native(facts):
        return Outcome(Status.SKIP, "BLAS reads the weights through mmap: no GPU copy to fit")
    k = knowledge.load().voxtral_c
    ram = facts.platform.ram_total_mib
    basis = (
        f"voxtral.c README at {k.commit[:7]} line 326: 'All weights are pre-converted to f16 on GPU at load time' "
        f"(~{k.mps_resident_mib / 1024:.1f} GiB for the 8.9 GB file, line 311, on top of its mmap)."
    )
    if ram is None:
        return Outcome(Status.WARN, "unified memory unknown", [basis])
    gib = ram / 1024
    if ram < k.min_ram_mib:
        return Outcome(
            Status.FAIL,
            f"{gib:.0f} GiB unified memory: too little for the f16 copy of the weights beside macOS",
            [basis, f"Needs at least {k.min_ram_mib // 1024} GiB (our margin)."],
            Fix("Use a vLLM server elsewhere or Mistral's API:", ["echopanel-setup configure --mode remote"]),
        )
    if ram < k.comfortable_ram_mib:
        return Outcome(
            Status.WARN,
            f"{gib:.0f} GiB unified memory: it fits with other large apps closed",
            [basis, f"{k.comfortable_ram_mib // 1024} GiB or more leaves room for the rest (our margin)."],
        )
    return Outcome(Status.OK, f"{gib:.0f} GiB unified memory: room for ~{k.mps_resident_mib / 1024:.1f} GiB of weights")


@_check("voxtral_c.binary", "voxtral.c binary", ("voxtral_c",))
def binary(facts: Facts, mode: str) -> Outcome:
    """The binary EchoPanel will start (ECHOPANEL_VOXTRAL_BIN as it sees it) exists and `--help` runs."""
    if (skipped := _skip(facts)) is not None:
        return skipped
    vc = facts.voxtral_c
    details = []
    if vc.build is not None:
        details.append(f"install voxtral-c built {vc.build.binary} ({vc.build.backend}, commit {vc.build.commit[:12]})")
    if vc.user_clone:
        details.append(f"A clone not made by echopanel-setup is at {vc.user_clone} (left alone)")
    unmet = [n for n in build_needs(facts, default_backend(facts)) if not n.ok]
    details.extend(f"To build it: {n.detail}" for n in unmet)
    fix = Fix("Build it and point EchoPanel at it:", [*(n.fix[0] for n in unmet if n.fix), INSTALL, CONFIGURE])
    found = vc.binary
    if found is None:
        summary = "no voxtral.c binary: ECHOPANEL_VOXTRAL_BIN is unset and nothing built"
        return Outcome(Status.FAIL, summary, details, fix)
    where = f"{found.path} (from {found.source})"
    if not found.exists:
        summary = f"{where} does not exist: EchoPanel's voxtral_realtime is 'not available'"
        return Outcome(Status.FAIL, summary, details, fix)
    if not found.runs:
        return Outcome(Status.FAIL, f"{where} does not run: {found.error}", details, Fix("Rebuild it:", [INSTALL]))
    if vc.build is not None and found.path != vc.build.binary:
        fix = Fix("Point EchoPanel at the one install voxtral-c built:", [CONFIGURE])
        return Outcome(Status.WARN, f"{where} runs, but it is not the one install voxtral-c built", details, fix)
    return Outcome(Status.OK, f"{where} runs (--help: exit 0, usage)", details)


@_check("voxtral_c.weights", "voxtral.c weights", ("voxtral_c",))
def weights(facts: Facts, mode: str) -> Outcome:
    """The dir EchoPanel hands voxtral.c (`-d`, ECHOPANEL_VOXTRAL_MODEL) holds its files, verified by install
    voxtral."""
    if (skipped := _skip(facts)) is not None:
        return skipped
    vc = facts.voxtral_c
    install = Fix(
        "Download them once (voxtral.c reads install voxtral's dir in place):",
        ["echopanel-setup install voxtral", CONFIGURE],
    )
    if vc.model is None:
        summary = "no model dir: ECHOPANEL_VOXTRAL_MODEL is unset and install voxtral has not run"
        return Outcome(Status.FAIL, summary, [], install)
    where = f"{vc.model} (from {vc.model_source})"
    missing = [n for n, size in vc.model_files.items() if size is None]
    if missing:
        return Outcome(Status.FAIL, f"{where} lacks {', '.join(missing)}", [], install)
    if vc.model_verified is False:
        return Outcome(
            Status.FAIL,
            f"{where}: a file differs from what install voxtral verified",
            [],
            Fix("Find and repair it:", ["echopanel-setup install voxtral --verify", "echopanel-setup install voxtral"]),
        )
    if vc.model_verified is None:
        return Outcome(
            Status.WARN,
            f"{where}: present, not verified (no install voxtral manifest)",
            [],
            Fix(
                "Check them against the Hub (nothing is downloaded when they match):",
                [f"echopanel-setup install voxtral --dir {vc.model}"],
            ),
        )
    return Outcome(Status.OK, f"{where}: verified by install voxtral")
