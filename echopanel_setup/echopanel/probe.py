"""The `echopanel` section of the facts: the checkout, its contract, its `.env` as EchoPanel reads it, the backend's
Python and whether the provider's dependencies import there.

Discovery (`locate`) is cheap and runs first, so a `--echopanel` that names no checkout or several candidates is a
usage error before any probing. The rest (`probe`) runs in doctor's parallel probes: the backend's interpreter is
asked in a timed subprocess, never imported into our process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from echopanel_setup import knowledge, proc
from echopanel_setup.echopanel import discover
from echopanel_setup.echopanel.keys import DELAY, SELECTOR, URL
from echopanel_setup.envconfig import MASK, is_secret
from echopanel_setup.facts.model import Contract, EchoPanelEnvFacts, EchoPanelFacts
from echopanel_setup.url import redact

PYTHON_TIMEOUT_S = 8.0
_VOXTRAL_KEYS = (URL, DELAY)  # read without a checkout: today's variant's

# Run by the backend's Python: import each module, report its distribution version. Prints one JSON line.
_ASK = """
import importlib, json, sys
from importlib import metadata
found = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        found[name] = None
        continue
    try:
        found[name] = metadata.version(name)
    except Exception:
        found[name] = ""
print(json.dumps({"version": ".".join(map(str, sys.version_info[:3])), "modules": found}))
"""


def locate(explicit: str | None, environ: Mapping[str, str], cwd: Path, home: Path) -> discover.Checkout | None:
    """The checkout (see discover.find); UsageError for a bad flag/variable or several candidates."""
    return discover.find(explicit, environ, cwd, home)


def managed_keys(contract: Contract | None) -> list[str]:
    """The variables this tool reads and writes for EchoPanel: the selector plus what the Voxtral providers (and the
    selected one) read. Only these are ever recorded; other keys are counted."""
    keys = [SELECTOR]
    for provider in contract.providers if contract else []:
        keys.extend(e.key for e in provider.env if e.key not in keys)
    return [*keys, knowledge.load().echopanel.concurrency.env]  # how many streams serve plans for


def env_facts(path: Path, keys: list[str], environ: Mapping[str, str]) -> EchoPanelEnvFacts:
    """`path` read as EchoPanel reads it, reduced to `keys` (secrets masked) and a count of the others."""
    from echopanel_setup.echopanel import dotenv  # only with a file to read: doctor's start-up stays lean

    facts = EchoPanelEnvFacts(path=str(path), exists=path.is_file())
    try:
        env = dotenv.read(path)
    except OSError as exc:
        facts.error = f"cannot read it: {exc.strerror or exc}"
        env = dotenv.DotEnv()
    facts.values = {k: _shown(k, v) for k, v in env.values.items() if k in keys}
    facts.other_keys = sum(1 for k in env.values if k not in keys)
    facts.environment = {k: _shown(k, environ[k]) for k in keys if k in environ}
    facts.notes = dotenv.notes(env, keys)
    return facts


def _shown(key: str, value: str) -> str:
    """What a snapshot keeps of a managed key: secrets masked, a URL without its password or query."""
    if is_secret(key) and value:
        return MASK
    return redact(value) if "://" in value else value


def probe(
    checkout: discover.Checkout | None,
    *,
    python: str | None,
    env_file: str | None,
    environ: Mapping[str, str],
) -> EchoPanelFacts:
    """Everything about EchoPanel that doctor and configure need. Without a checkout only an explicit `env_file`
    (--config) is read."""
    facts = EchoPanelFacts()
    if checkout is None:
        if env_file:
            facts.env = env_facts(Path(env_file).expanduser(), [SELECTOR, *_VOXTRAL_KEYS], environ)
        return facts
    # The contract reader, the .env parser and the fix records load only when there is a checkout to read.
    from echopanel_setup.echopanel import contract as contract_mod
    from echopanel_setup.echopanel import dotenv, fixes

    facts.checkout, facts.how = str(checkout.path), checkout.how
    path = Path(env_file).expanduser() if env_file else checkout.env_file
    selected = environ.get(SELECTOR) or dotenv.read(path).values.get(SELECTOR)
    wanted = [*contract_mod.VOXTRAL_PROVIDERS, *([selected] if selected else [])]
    facts.contract = contract_mod.read(checkout.path, wanted)
    facts.provider_drift = fixes.drift(checkout.path / contract_mod.PROVIDERS_DIR / "provider_voxtral_official.py")
    facts.env = env_facts(path, managed_keys(facts.contract), environ)
    facts.git = contract_mod.git_state(checkout.path)
    interpreter, facts.python_source = discover.backend_python(checkout.path, python)
    facts.python = str(interpreter)
    deps = sorted({d for p in facts.contract.providers if p.name in wanted for d in p.deps})
    _ask_python(facts, interpreter, deps)
    return facts


def _ask_python(facts: EchoPanelFacts, interpreter: Path, modules: list[str]) -> None:
    """The backend Python's version and which of `modules` import there (in a subprocess, under a timeout)."""
    if not interpreter.exists():
        facts.python_error = "not found"
        return
    try:
        done = proc.run([str(interpreter), "-I", "-c", _ASK, *modules], timeout=PYTHON_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        facts.python_error = f"no answer within {PYTHON_TIMEOUT_S:.0f} s"
        return
    except OSError as exc:
        facts.python_error = f"cannot run it: {exc.strerror or exc}"
        return
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        facts.python_version = str(answer["version"])
        facts.modules = {str(k): (None if v is None else str(v)) for k, v in answer["modules"].items()}
    except (IndexError, ValueError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        facts.python_error = f"exit {done.returncode}: {last[:200]}"
