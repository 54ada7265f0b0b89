"""The target Python: the interpreter that runs (or will run) vLLM, inspected from outside.

Order: `--python PATH`, else the venv `install vllm` recorded, else the interpreter behind a `vllm` on
PATH, else the current one. Versions are read in that interpreter by a timed subprocess that reads
package metadata and never imports the packages themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from echopanel_setup import __version__, knowledge, paths, proc
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.model import PyEnvFacts

PROBE_TIMEOUT_S = 8.0
_SCRIPT = Path(__file__).with_name("_target_probe.py")


class BadPythonError(UsageError):
    """`--python` names something that is not a runnable interpreter."""


# Asked of an explicit --python before anything else runs in it: no file argument (a `--python /bin/rm` must not
# be handed our probe script), no site or environment (fast, and a broken site-packages still answers), and
# valid in every Python ever shipped, 2.7 included.
_VERSION_CODE = "import sys; sys.stdout.write('%d.%d.%d' % tuple(sys.version_info[:3]))"


def resolve_explicit(path: str) -> str:
    """Accept an interpreter or a venv directory; raise BadPythonError with what to do otherwise.

    What is named must answer as a Python (any version: an old one gets doctor's verdict on its version, not
    a usage error), so `--python /bin/ls` or a shell script is refused here, as usage, before any probe.
    """
    if not path.strip():
        raise BadPythonError("--python is empty; pass the python of the venv that runs vLLM, or leave --python out")
    python = _existing(path)
    if _interpreter_version(python, path) == "":
        raise BadPythonError(
            f"--python {path}: not a Python interpreter (it did not print its version when asked); "
            "pass the python of the venv that runs vLLM"
        )
    return python


def _interpreter_version(python: str, named: str) -> str | None:
    """ "X.Y.Z" as `python` reports it, "" when it answers as something else, None when it does not answer in
    time (the probe then reports the hang as a finding: a Python on a stalled network disk is still a Python)."""
    try:
        out = proc.run([python, "-E", "-S", "-c", _VERSION_CODE], timeout=PROBE_TIMEOUT_S, text=False)
    except subprocess.TimeoutExpired:
        return None
    except OSError as exc:
        message = f"--python {named}: cannot be run ({exc.strerror or exc}); pass a Python interpreter"
        raise BadPythonError(message) from None
    text = out.stdout.decode("ascii", "replace").strip()
    return text if out.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+", text) else ""


def _existing(path: str) -> str:
    """The interpreter `path` names (a venv root gives its bin/python), or BadPythonError."""
    p = Path(path).expanduser().absolute()  # recorded and written into unit files: never relative to a cwd
    if p.is_dir():
        for candidate in (p / "bin" / "python", p / "Scripts" / "python.exe"):
            if candidate.exists():
                return str(candidate)
        raise BadPythonError(f"--python {path}: a directory with no bin/python; pass the interpreter or the venv root")
    if not p.exists():
        raise BadPythonError(f"--python {path}: no such file; pass the python of the venv that runs vLLM")
    if not os.access(p, os.X_OK):
        raise BadPythonError(f"--python {path}: not executable")
    return str(p)


def discover(explicit: str | None) -> tuple[str, str]:
    """(interpreter, how it was chosen)."""
    if explicit is not None:  # `--python ""` is a mistake to report, not a request for our own interpreter
        return resolve_explicit(explicit), "--python"
    venv = paths.read_state().get("vllm_venv")
    if venv:
        py = paths.venv_python(Path(venv))
        if py.exists():
            return str(py), "recorded"
    vllm = shutil.which("vllm")
    if vllm:
        shebang = _shebang_python(Path(vllm))
        if shebang:
            return shebang, "vllm-on-path"
    return sys.executable, "current"


_TRAMPOLINE = re.compile(r"""^'''exec' (?:"([^"]+)"|'([^']+)'|(\S+)) "\$0" "\$@"$""")


def _shebang_python(script: Path) -> str | None:
    try:
        with script.open("rb") as fh:
            first = fh.readline(4096).decode("utf-8", "replace").strip()
            second = fh.readline(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if not parts:
        return None
    if Path(parts[0]).name == "sh":
        # pip writes `#!/bin/sh` plus an `exec` trampoline line when the interpreter's path is too long
        # for a shebang (over 127 bytes on Linux); the interpreter is the one that line execs.
        trampoline = _TRAMPOLINE.match(second)
        return next(g for g in trampoline.groups() if g) if trampoline else None
    if Path(parts[0]).name == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0] if Path(parts[0]).exists() else None


def _cache_file() -> Path:
    return paths.state_dir() / "pyenv-cache.json"


def _interpreter_stamp(python: str, markers: str) -> list[object]:
    st = Path(python).resolve().stat()
    return [python, st.st_mtime_ns, st.st_size, __version__, markers]


def _cached(python: str, markers: str) -> dict[str, object] | None:
    """The last probe of this interpreter, if no import directory changed since (no subprocess needed)."""
    try:
        entry = json.loads(_cache_file().read_text(encoding="utf-8")).get(python)
        if not entry or entry["stamp"] != _interpreter_stamp(python, markers):
            return None
        for directory, mtime_ns in entry["data"]["paths"]:
            if os.stat(directory).st_mtime_ns != mtime_ns:
                return None
        return entry["data"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _store(python: str, markers: str, data: dict[str, object]) -> None:
    """Remember this probe; a cache that cannot be written only costs speed."""
    path = _cache_file()
    try:
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        cache = cache if isinstance(cache, dict) else {}
        cache[python] = {"stamp": _interpreter_stamp(python, markers), "data": data}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def probe(python: str, source: str, use_cache: bool = True) -> PyEnvFacts:
    facts = PyEnvFacts(python=python, source=source)
    k = knowledge.load().tokenizer_kwargs
    markers = json.dumps(
        {
            "vllm_file": k.vllm_file_marker,
            "vllm_text": k.vllm_text_marker,
            "transformers_file": k.transformers_file_marker,
            "transformers_text": k.transformers_text_marker,
        }
    )
    data = _cached(python, markers) if use_cache else None
    if data is not None:
        facts.cached = True
        return _fill(facts, data)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        out = proc.run([python, str(_SCRIPT), markers], timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        facts.error = f"{python} did not answer within {PROBE_TIMEOUT_S:.0f} s"
        return facts
    except OSError as exc:
        facts.error = f"{python} could not be run: {exc.strerror or exc}"
        return facts
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        facts.error = f"{python} failed: {last}"
        return facts
    try:
        data = json.loads(out.stdout)
    except ValueError:
        facts.error = f"{python} printed something that is not the probe's JSON"
        return facts
    _store(python, markers, data)
    return _fill(facts, data)


def _fill(facts: PyEnvFacts, data: dict) -> PyEnvFacts:
    facts.ok = True
    facts.version = data.get("version")
    facts.prefix = data.get("prefix")
    facts.is_venv = data.get("is_venv")
    facts.packages = data.get("packages") or {}
    facts.torch_cuda = data.get("torch_cuda")
    facts.vllm_tokenizer_group_max_loras = data.get("vllm_tokenizer_group_max_loras")
    facts.transformers_mistral_rejects_kwargs = data.get("transformers_mistral_rejects_kwargs")
    return facts
