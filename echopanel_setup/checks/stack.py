"""Checks of the Python environment that runs vLLM (the target interpreter), read from outside.

Signals: package versions from importlib.metadata in the target interpreter, and source markers read
from the installed files (TokenizerGroup forwarding `max_loras`; MistralCommonTokenizer rejecting
kwargs). Confidence: high when the markers were read, medium when only version ranges were available.
"""

from __future__ import annotations

from echopanel_setup import knowledge
from echopanel_setup.checks import REQUIRED, Fix, Outcome, Status, check
from echopanel_setup.checks.common import target_python
from echopanel_setup.facts.model import Facts
from echopanel_setup.versions import in_range, older, parse

INSTALL = Fix(
    "Install vLLM in its own venv (kept away from other transformers versions); doctor finds it afterwards:",
    ["echopanel-setup install vllm"],
)
NO_PYTHON = Outcome(Status.SKIP, "the target Python could not be inspected")


def _vllm_missing(facts: Facts) -> Outcome | None:
    if not facts.pyenv.ok:
        return NO_PYTHON
    if facts.pyenv.packages.get("vllm") is None:
        return Outcome(Status.SKIP, "vLLM is not installed (installed together with it)")
    return None


@check("stack.tokenizer", "Tokenizer kwargs error", "stack", ("pyenv",), local=REQUIRED, after=("platform.verdict",))
def tokenizer(facts: Facts, mode: str) -> Outcome:
    """Detect `Kwargs ['max_loras', '_from_auto'] are not supported by MistralCommonTokenizer.from_pretrained`.

    It needs an old vLLM whose TokenizerGroup forwards `max_loras` to AutoTokenizer, a transformers whose
    MistralCommonTokenizer rejects unknown kwargs, and mistral_common installed (so AutoTokenizer picks it).
    """
    if skipped := _vllm_missing(facts):
        return skipped
    k = knowledge.load().tokenizer_kwargs
    pk = facts.pyenv.packages
    vllm_v, tf_v, mc_v = pk.get("vllm"), pk.get("transformers"), pk.get("mistral_common")
    evidence = []
    vllm_hit = facts.pyenv.vllm_tokenizer_group_max_loras
    if vllm_hit is None:
        vllm_hit = bool(in_range(vllm_v, k.vllm_affected))
        evidence.append(
            f"vLLM {vllm_v}: {'in' if vllm_hit else 'outside'} the affected range {k.vllm_affected} (version rule)"
        )
    else:
        evidence.append(
            f"vLLM {vllm_v}: TokenizerGroup {'forwards' if vllm_hit else 'does not forward'} max_loras (read from its "
            "files)"
        )
    tf_hit = facts.pyenv.transformers_mistral_rejects_kwargs
    if tf_v is None:
        tf_hit = False
    elif tf_hit is None:
        tf_hit = bool(in_range(tf_v, k.transformers_affected))
        evidence.append(
            f"transformers {tf_v}: {'in' if tf_hit else 'outside'} the affected range {k.transformers_affected} "
            "(version rule)"
        )
    else:
        evidence.append(
            f"transformers {tf_v}: MistralCommonTokenizer {'rejects' if tf_hit else 'accepts'} unknown kwargs (read "
            "from its files)"
        )
    evidence.append(f"Source: {k.source}")
    if vllm_hit and tf_hit:
        fix = Fix(
            "Upgrade vLLM (≥ 0.20, in its own venv) and serve with --tokenizer-mode mistral, which bypasses "
            "AutoTokenizer; pinning an older transformers is not the fix (current vLLM needs a modern one):",
            ["echopanel-setup install vllm", "echopanel-setup serve"],
        )
        if mc_v is None:
            return Outcome(
                Status.WARN,
                f"vLLM {vllm_v} + transformers {tf_v} will raise the tokenizer kwargs error once mistral_common is "
                "installed",
                [f"The error: {k.error_text}", *evidence],
                fix,
            )
        return Outcome(
            Status.FAIL,
            f"vLLM {vllm_v} + transformers {tf_v} + mistral_common {mc_v} raise the known tokenizer error",
            [
                f"The error: {k.error_text}",
                "Cause: this vLLM's TokenizerGroup passes max_loras on to AutoTokenizer, which adds _from_auto and "
                "routes Voxtral to transformers' MistralCommonTokenizer, whose from_pretrained rejects both. This vLLM "
                "is also older than 0.16, the first with Voxtral Realtime.",
                *evidence,
            ],
            fix,
        )
    return Outcome(
        Status.OK, f"vLLM {vllm_v} with transformers {tf_v or 'absent'}: no tokenizer kwargs conflict", evidence
    )


@check("stack.python", "Target Python", "stack", ("pyenv",), local=REQUIRED, after=("platform.verdict",))
def python(facts: Facts, mode: str) -> Outcome:
    """The interpreter that runs vLLM: found, runnable, and how it was chosen."""
    e = facts.pyenv
    origin = {
        "--python": "given with --python",
        "recorded": "the venv `install vllm` recorded",
        "vllm-on-path": "behind the `vllm` on PATH",
        "current": "this interpreter (no vLLM venv recorded, no vllm on PATH)",
    }.get(e.source, e.source)
    if not e.ok:
        return Outcome(
            Status.FAIL,
            f"{e.python}: {e.error}",
            [f"Chosen as {origin}."],
            Fix(
                "Pass a working interpreter, or let echopanel-setup create a venv:",
                ["echopanel-setup doctor --python /path/to/venv/bin/python", "echopanel-setup install vllm"],
            ),
        )
    venv = "venv" if e.is_venv else "not a venv"
    v = knowledge.load().vllm
    if older(e.version, v.min_python):
        return Outcome(
            Status.FAIL,
            f"Python {e.version} at {e.python}: vLLM with Voxtral Realtime needs Python {v.min_python} or newer",
            [f"Chosen as {origin}.", f"Source: {v.min_python_source}"],
            INSTALL,
        )
    return Outcome(Status.OK, f"Python {e.version} at {e.python} ({venv})", [f"Chosen as {origin}."])


@check("stack.vllm", "vLLM", "stack", ("pyenv",), local=REQUIRED, after=("platform.verdict",))
def vllm(facts: Facts, mode: str) -> Outcome:
    """Absent → install; < 0.16.0 → fail (no Voxtral Realtime); < 0.20.0 → warn (recipe minimum)."""
    if not facts.pyenv.ok:
        return NO_PYTHON
    v = knowledge.load().vllm
    installed = facts.pyenv.packages.get("vllm")
    where = target_python(facts)
    if installed is None:
        return Outcome(Status.FAIL, f"vLLM is not installed for {where}", [], INSTALL)
    if parse(installed) is None:
        return Outcome(Status.WARN, f"vLLM {installed}: version not understood")
    if older(installed, v.min_version):
        return Outcome(
            Status.FAIL,
            f"vLLM {installed} is older than {v.min_version}: it has no Voxtral Realtime",
            [f"Source: {v.min_source}"],
            INSTALL,
        )
    if older(installed, v.recommended_version):
        return Outcome(
            Status.WARN,
            f"vLLM {installed} serves Voxtral Realtime, but {v.recommended_version} is the first release the recipe "
            "supports",
            [f"Source: {v.recommended_source}"],
            INSTALL,
        )
    return Outcome(Status.OK, f"vLLM {installed}")


@check("stack.torch", "PyTorch", "stack", ("pyenv",), local=REQUIRED, after=("platform.verdict",))
def torch(facts: Facts, mode: str) -> Outcome:
    """vLLM needs a CUDA build of torch; read `torch/version.py` rather than importing torch."""
    if skipped := _vllm_missing(facts):
        return skipped
    installed = facts.pyenv.packages.get("torch")
    if installed is None:
        return Outcome(Status.FAIL, "torch is not installed (vLLM depends on it: a broken install?)", [], INSTALL)
    if facts.pyenv.torch_cuda is None:
        return Outcome(
            Status.FAIL,
            f"torch {installed} is a CPU-only build; vLLM needs the CUDA build",
            [],
            Fix(
                "Reinstall vLLM in its own venv, which pulls the matching CUDA torch:", ["echopanel-setup install vllm"]
            ),
        )
    return Outcome(Status.OK, f"torch {installed} (CUDA {facts.pyenv.torch_cuda})")


@check(
    "stack.mistral_common", "mistral_common[audio]", "stack", ("pyenv",), local=REQUIRED, after=("platform.verdict",)
)
def mistral_common(facts: Facts, mode: str) -> Outcome:
    """mistral_common ≥ 1.9 with the audio extra (soxr, soundfile) for Voxtral's audio processing."""
    if skipped := _vllm_missing(facts):
        return skipped
    m = knowledge.load().mistral_common
    pk = facts.pyenv.packages
    installed = pk.get("mistral_common")
    cmd = f"{target_python(facts)} -m pip install '{m.install_spec}'"
    fix = Fix("Install it into the Python that runs vLLM:", [cmd])
    if installed is None:
        return Outcome(Status.FAIL, "mistral_common is not installed", [f"Source: {m.source}"], fix)
    if older(installed, m.min_version):
        return Outcome(
            Status.FAIL, f"mistral_common {installed} is older than {m.min_version}", [f"Source: {m.source}"], fix
        )
    missing = [mod for mod in m.audio_modules if pk.get(mod) is None]
    if missing:
        return Outcome(
            Status.FAIL, f"mistral_common {installed} lacks its audio extra: {', '.join(missing)} missing", [], fix
        )
    return Outcome(
        Status.OK, f"mistral_common {installed} with " + ", ".join(f"{mod} {pk[mod]}" for mod in m.audio_modules)
    )
