"""Target-Python inspection against real venvs whose site-packages hold real `*.dist-info` metadata.

The probe runs `_target_probe.py` inside each venv's interpreter, which reads importlib.metadata and the
installed files listed in RECORD; nothing is imported, so stand-in package files are enough.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from probe_kit import (
    healthy_stack,
    install_dist,
    install_smi,
    install_transformers,
    make_venv,
    path_with,
    seed_stack,
    site_packages,
)

from echopanel_setup import doctor, paths
from echopanel_setup.facts import pyenv
from echopanel_setup.facts.collect import Options

ERROR_TEXT = (
    "ValueError: Kwargs ['max_loras', '_from_auto'] are not supported by `MistralCommonTokenizer.from_pretrained`."
)
PYENV_ROOT = Path("/root/.pyenv/versions")


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three venvs built once: the seed's broken stack, a healthy one, and one with a CPU-only torch."""
    root = tmp_path_factory.mktemp("venvs")
    built = {}
    for name, fill in (
        ("seed", seed_stack),
        ("healthy", healthy_stack),
        ("cpu", lambda v: healthy_stack(v, torch_cuda=None)),
    ):
        venv = root / name
        make_venv(venv)
        fill(venv)
        built[name] = venv
    return built


@pytest.fixture
def gpu_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A scripted H100 nvidia-smi first on PATH, so doctor's platform verdict passes and stack checks run."""
    bin_dir = tmp_path / "smi-bin"
    install_smi(bin_dir, "h100")
    value = path_with(bin_dir)
    monkeypatch.setenv("PATH", value)
    return value


def _doctor(python: str, path: str, *extra: str) -> dict:
    res = run_cli(
        "doctor", "--python", python, "--offline", "--json", "--mode", "local", *extra, env={"PATH": path}, timeout=30
    )
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def _checks(doc: dict) -> dict[str, dict]:
    return {c["id"]: c for c in doc["checks"]}


# --- facts read in the target interpreter -----------------------------------------------------------------------


def test_seed_stack_facts(venvs: dict[str, Path]) -> None:
    python = str(venvs["seed"] / "bin" / "python")
    facts = pyenv.probe(python, "--python")
    assert facts.ok and facts.error is None
    assert facts.python == python and facts.source == "--python"
    assert facts.is_venv is True
    assert facts.prefix == str(venvs["seed"])
    assert facts.version == ".".join(map(str, sys.version_info[:3]))  # the venv is built from this Python
    pk = facts.packages
    assert (pk["vllm"], pk["transformers"], pk["mistral_common"], pk["torch"]) == ("0.7.3", "4.55.4", "1.9.1", "2.5.1")
    assert pk["soxr"] is None and pk["soundfile"] is None and pk["flashinfer-python"] is None
    assert facts.torch_cuda == "12.4"
    assert facts.vllm_tokenizer_group_max_loras is True
    assert facts.transformers_mistral_rejects_kwargs is True
    assert facts.cached is False


def test_healthy_stack_facts(venvs: dict[str, Path]) -> None:
    facts = pyenv.probe(str(venvs["healthy"] / "bin" / "python"), "--python")
    assert facts.ok
    pk = facts.packages
    assert (pk["vllm"], pk["transformers"], pk["torch"], pk["mistral_common"]) == ("0.20.0", "4.57.1", "2.9.0", "1.9.1")
    assert (pk["soxr"], pk["soundfile"]) == ("1.0.0", "0.13.1")
    assert facts.torch_cuda == "12.8"
    # vLLM 0.20 has no TokenizerGroup file at all: nothing to read, so not True (the check falls back to versions).
    assert facts.vllm_tokenizer_group_max_loras is not True
    assert facts.transformers_mistral_rejects_kwargs is False


def test_cpu_torch_facts(venvs: dict[str, Path]) -> None:
    facts = pyenv.probe(str(venvs["cpu"] / "bin" / "python"), "--python")
    assert facts.packages["torch"] == "2.9.0+cpu"
    assert facts.torch_cuda is None


def test_empty_venv_has_no_packages(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "empty")
    facts = pyenv.probe(str(python), "--python")
    assert facts.ok and facts.is_venv
    assert facts.packages and all(v is None for v in facts.packages.values())
    assert facts.torch_cuda is None
    assert facts.vllm_tokenizer_group_max_loras is None and facts.transformers_mistral_rejects_kwargs is None


@pytest.mark.skipif(not (PYENV_ROOT / "3.8.18" / "bin" / "python3.8").exists(), reason="no Python 3.8 here")
def test_probe_script_runs_on_python_38(tmp_path: Path) -> None:
    """The in-target script claims Python 3.8 compatibility: an old vLLM venv may well be on 3.8."""
    venv = tmp_path / "py38"
    make_venv(venv, python=str(PYENV_ROOT / "3.8.18" / "bin" / "python3.8"))
    seed_stack(venv)
    facts = pyenv.probe(str(venv / "bin" / "python"), "--python")
    assert facts.ok, facts.error
    assert facts.version == "3.8.18"
    assert facts.packages["vllm"] == "0.7.3" and facts.packages["mistral_common"] == "1.9.1"
    assert facts.vllm_tokenizer_group_max_loras is True and facts.transformers_mistral_rejects_kwargs is True
    assert facts.torch_cuda == "12.4"


# --- doctor on each stack ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_doctor_seed_stack_fails_tokenizer_with_the_error_text(venvs: dict[str, Path], gpu_path: str) -> None:
    doc = _doctor(str(venvs["seed"] / "bin" / "python"), gpu_path)
    checks = _checks(doc)
    tok = checks["stack.tokenizer"]
    assert tok["status"] == "fail" and tok["required"] is True
    assert any(ERROR_TEXT in line for line in tok["details"])
    assert "0.7.3" in tok["summary"] and "4.55.4" in tok["summary"]
    assert checks["stack.vllm"]["status"] == "fail"  # 0.7.3 predates Voxtral Realtime
    assert checks["stack.python"]["status"] == "ok"
    assert checks["stack.torch"]["status"] == "ok"
    assert checks["stack.mistral_common"]["status"] == "fail"  # no soxr / soundfile
    assert doc["exit_code"] == 1
    assert doc["facts"]["pyenv"]["source"] == "--python"


@pytest.mark.slow
def test_doctor_healthy_stack(venvs: dict[str, Path], gpu_path: str) -> None:
    checks = _checks(_doctor(str(venvs["healthy"] / "bin" / "python"), gpu_path))
    for cid in ("stack.tokenizer", "stack.python", "stack.vllm", "stack.torch", "stack.mistral_common"):
        assert checks[cid]["status"] == "ok", (cid, checks[cid]["summary"])
    assert "CUDA 12.8" in checks["stack.torch"]["summary"]


def test_doctor_cpu_torch_fails(venvs: dict[str, Path], gpu_path: str) -> None:
    checks = _checks(_doctor(str(venvs["cpu"] / "bin" / "python"), gpu_path))
    assert checks["stack.torch"]["status"] == "fail"
    assert "CPU-only" in checks["stack.torch"]["summary"]
    assert checks["stack.tokenizer"]["status"] == "ok"


def test_doctor_accepts_a_venv_directory(venvs: dict[str, Path], gpu_path: str) -> None:
    doc = _doctor(str(venvs["seed"]), gpu_path)
    assert doc["facts"]["pyenv"]["python"] == str(venvs["seed"] / "bin" / "python")
    assert _checks(doc)["stack.tokenizer"]["status"] == "fail"


def test_resolve_explicit(venvs: dict[str, Path], tmp_path: Path) -> None:
    assert pyenv.resolve_explicit(str(venvs["healthy"])) == str(venvs["healthy"] / "bin" / "python")
    assert pyenv.resolve_explicit(str(venvs["healthy"] / "bin" / "python")) == str(venvs["healthy"] / "bin" / "python")
    with pytest.raises(pyenv.BadPythonError, match="no bin/python"):
        pyenv.resolve_explicit(str(tmp_path))
    with pytest.raises(pyenv.BadPythonError, match="no such file"):
        pyenv.resolve_explicit(str(tmp_path / "nope" / "python"))
    plain = tmp_path / "python"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(pyenv.BadPythonError, match="not executable"):
        pyenv.resolve_explicit(str(plain))


@pytest.mark.parametrize("kind", ["missing", "empty-dir"])
def test_doctor_bad_python_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nope" / "bin" / "python" if kind == "missing" else tmp_path
    res = run_cli("doctor", "--python", str(target), "--offline", "--json", timeout=30)
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["kind"] == "usage"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("echopanel-setup: error: --python")
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(not (PYENV_ROOT / "3.9.18" / "bin" / "python3.9").exists(), reason="no Python 3.9 here")
def test_doctor_python_39_target_fails(tmp_path: Path, gpu_path: str) -> None:
    venv = tmp_path / "py39"
    make_venv(venv, python=str(PYENV_ROOT / "3.9.18" / "bin" / "python3.9"))
    healthy_stack(venv)
    checks = _checks(_doctor(str(venv / "bin" / "python"), gpu_path))
    assert checks["stack.python"]["status"] == "fail"


# --- discovery order ----------------------------------------------------------------------------------------------


def _pip_console_script(bin_dir: Path, python: Path, name: str = "vllm") -> Path:
    """The console script pip writes for `vllm` (distlib's ScriptMaker, as vendored in pip)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    try:
        from pip._vendor.distlib.scripts import ScriptMaker
    except ImportError:  # pragma: no cover - pip absent: the same text distlib writes for a short path
        script = bin_dir / name
        script.write_text(
            f"#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nif __name__ == '__main__':\n"
            "    from vllm.entrypoints.cli.main import main\n"
            "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit(main())\n"
        )
        script.chmod(0o755)
        return script
    maker = ScriptMaker(None, str(bin_dir))
    maker.executable = str(python)
    maker.variants = {""}
    (made,) = maker.make(f"{name} = vllm.entrypoints.cli.main:main")
    return Path(made)


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = tmp_path / "recorded-venv"
    other = tmp_path / "other-venv"
    make_venv(recorded)
    other_python = make_venv(other)
    local_bin = tmp_path / "local-bin"
    script = _pip_console_script(local_bin, other_python)
    assert script.read_text().startswith(f"#!{other_python}\n")
    monkeypatch.setenv("PATH", str(local_bin))
    paths.write_state({"vllm_venv": str(recorded)})
    assert paths.state_file() == Path(os.environ["XDG_STATE_HOME"]) / "echopanel-setup" / "state.json"

    # 1. the venv `install vllm` recorded beats the vllm on PATH
    assert pyenv.discover(None) == (str(recorded / "bin" / "python"), "recorded")
    # --python beats both
    assert pyenv.discover(str(other)) == (str(other_python), "--python")
    # 2. a recorded venv that has gone away is passed over: the vllm on PATH, read from its shebang
    shutil.rmtree(recorded)
    assert pyenv.discover(None) == (str(other_python), "vllm-on-path")
    # 3. nothing recorded, nothing on PATH: this interpreter
    paths.state_file().unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert pyenv.discover(None) == (sys.executable, "current")


def test_doctor_uses_the_recorded_venv(venvs: dict[str, Path], tmp_path: Path, gpu_path: str) -> None:
    _pip_console_script(tmp_path / "local-bin", venvs["seed"] / "bin" / "python")
    paths.write_state({"vllm_venv": str(venvs["healthy"])})
    res = run_cli(
        "doctor", "--offline", "--json", "--mode", "local", env={"PATH": path_with(tmp_path / "local-bin")}, timeout=30
    )
    doc = json.loads(res.stdout)
    assert doc["facts"]["pyenv"]["source"] == "recorded"
    assert doc["facts"]["pyenv"]["packages"]["vllm"] == "0.20.0"
    assert _checks(doc)["stack.tokenizer"]["status"] == "ok"


def test_doctor_uses_the_vllm_on_path(venvs: dict[str, Path], tmp_path: Path, gpu_path: str) -> None:
    _pip_console_script(tmp_path / "local-bin", venvs["seed"] / "bin" / "python")
    res = run_cli(
        "doctor", "--offline", "--json", "--mode", "local", env={"PATH": path_with(tmp_path / "local-bin")}, timeout=30
    )
    doc = json.loads(res.stdout)
    assert doc["facts"]["pyenv"]["source"] == "vllm-on-path"
    assert doc["facts"]["pyenv"]["python"] == str(venvs["seed"] / "bin" / "python")
    assert _checks(doc)["stack.tokenizer"]["status"] == "fail"


def test_vllm_on_path_with_pips_long_path_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / ("deeply-nested-project-directory-" * 4) / "vllm-venv"
    python = make_venv(venv)
    assert len(str(python)) > 127
    script = _pip_console_script(venv / "bin", python)
    assert script.read_text().startswith("#!/bin/sh\n")  # what pip really writes for such a path
    monkeypatch.setenv("PATH", str(venv / "bin"))
    assert pyenv.discover(None) == (str(python), "vllm-on-path")


# --- a target Python that misbehaves ------------------------------------------------------------------------------


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_hanging_python_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hang = _script(tmp_path / "stuck" / "bin" / "python", "exec sleep 30\n")
    monkeypatch.setattr(pyenv, "PROBE_TIMEOUT_S", 1.0)
    facts = pyenv.probe(str(hang), "--python")
    assert not facts.ok
    assert "did not answer" in (facts.error or "")
    assert str(hang) in facts.error


def test_doctor_returns_with_a_hanging_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_path: str) -> None:
    hang = _script(tmp_path / "stuck" / "bin" / "python", "exec sleep 30\n")
    monkeypatch.setattr(pyenv, "PROBE_TIMEOUT_S", 1.0)
    run = doctor.run(Options(python=str(hang), offline=True), mode="local")
    checks = {r.id: r for r in run.results}
    assert checks["stack.python"].status.value in ("fail", "timeout")
    assert run.facts.pyenv.ok is False
    assert "did not answer" in (run.facts.pyenv.error or "") or checks["stack.python"].status.value == "timeout"
    assert checks["stack.vllm"].status.value in ("skip", "timeout")
    assert run.exit_code == 1


def test_python_that_fails(tmp_path: Path) -> None:
    bad = _script(tmp_path / "bad" / "python", "echo 'Fatal Python error: init_fs_encoding' >&2\nexit 1\n")
    facts = pyenv.probe(str(bad), "--python")
    assert not facts.ok
    assert facts.error == f"{bad} failed: Fatal Python error: init_fs_encoding"


def test_python_that_prints_garbage(tmp_path: Path) -> None:
    bad = _script(tmp_path / "bad" / "python", "echo hello\n")
    facts = pyenv.probe(str(bad), "--python")
    assert not facts.ok and "not the probe's JSON" in (facts.error or "")


# --- the cache ----------------------------------------------------------------------------------------------------


def test_cache_hit_then_invalidated_by_an_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = str(make_venv(venv))
    seed_stack(venv)
    first = pyenv.probe(python, "--python")
    assert first.ok and first.cached is False
    assert (paths.state_dir() / "pyenv-cache.json").is_file()

    second = pyenv.probe(python, "--python")
    assert second.cached is True
    assert second.packages == first.packages and second.vllm_tokenizer_group_max_loras is True

    install_dist(venv, "soxr", "1.0.0")
    third = pyenv.probe(python, "--python")
    assert third.cached is False
    assert third.packages["soxr"] == "1.0.0"

    assert pyenv.probe(python, "--python").cached is True
    fresh = pyenv.probe(python, "--python", use_cache=False)
    assert fresh.cached is False and fresh.packages["soxr"] == "1.0.0"


def test_cache_invalidated_by_an_upgrade(tmp_path: Path) -> None:
    """`pip install -U transformers`: the old dist-info goes, a new one comes; the marker must be re-read."""
    venv = tmp_path / "venv"
    python = str(make_venv(venv))
    seed_stack(venv)
    assert pyenv.probe(python, "--python").transformers_mistral_rejects_kwargs is True
    assert pyenv.probe(python, "--python").cached is True
    sp = site_packages(venv)
    shutil.rmtree(sp / "transformers-4.55.4.dist-info")
    shutil.rmtree(sp / "transformers")
    install_transformers(venv, "4.57.1")
    after = pyenv.probe(python, "--python")
    assert after.cached is False
    assert after.packages["transformers"] == "4.57.1"
    assert after.transformers_mistral_rejects_kwargs is False


def test_cache_is_per_interpreter(venvs: dict[str, Path]) -> None:
    seed = pyenv.probe(str(venvs["seed"] / "bin" / "python"), "--python")
    healthy = pyenv.probe(str(venvs["healthy"] / "bin" / "python"), "--python")
    assert not seed.cached and not healthy.cached
    again = pyenv.probe(str(venvs["seed"] / "bin" / "python"), "--python")
    assert again.cached and again.packages["vllm"] == "0.7.3"


def test_unreadable_cache_file_is_ignored(venvs: dict[str, Path]) -> None:
    cache = paths.state_dir() / "pyenv-cache.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("{not json")
    facts = pyenv.probe(str(venvs["healthy"] / "bin" / "python"), "--python")
    assert facts.ok and not facts.cached
    assert pyenv.probe(str(venvs["healthy"] / "bin" / "python"), "--python").cached


@pytest.mark.slow
def test_doctor_cache_and_no_cache(venvs: dict[str, Path], gpu_path: str) -> None:
    python = str(venvs["seed"] / "bin" / "python")
    assert _doctor(python, gpu_path)["facts"]["pyenv"]["cached"] is False
    cached = _doctor(python, gpu_path)
    assert cached["facts"]["pyenv"]["cached"] is True
    assert _checks(cached)["stack.tokenizer"]["status"] == "fail"
    fresh = _doctor(python, gpu_path, "--no-cache")
    assert fresh["facts"]["pyenv"]["cached"] is False
    assert _checks(fresh)["stack.tokenizer"]["status"] == "fail"


# --- what --python names must be a Python ------------------------------------------------------------------------

# What Python 2.7 prints for the probes we run in it: the version when asked with -c, and (before the probe read
# st_mtime_ns defensively) the AttributeError of its stat results. A stand-in where no real 2.7 is installed.
FAKE_PYTHON27 = """#!/bin/sh
if [ "$1" = "-E" ]; then printf '2.7.18'; exit 0; fi
cat >&2 <<'TRACE'
Traceback (most recent call last):
  File "_target_probe.py", line 107, in _path_stamps
AttributeError: 'posix.stat_result' object has no attribute 'st_mtime_ns'
TRACE
exit 1
"""


@pytest.mark.parametrize("named", ["/bin/ls", "script", ""])
def test_what_is_not_a_python_is_a_usage_error(cli, tmp_path: Path, named: str) -> None:
    """`--python /bin/ls`, a shell script or "" exit 2 with one line (the help promises it); "" never means our
    own interpreter, and nothing is handed our probe script."""
    if named == "script":
        named = str(_script(tmp_path / "script", "echo hello\n"))
    run = cli("doctor", "--python", named, "--offline", "--json")
    assert run.code == 2 and run.json()["error"]["kind"] == "usage"
    expected = "is empty" if not named else f"--python {named}: not a Python interpreter"
    assert expected in run.err and len(run.err.strip().splitlines()) == 1


def test_an_old_python_answers_as_a_python(tmp_path: Path) -> None:
    """Python 2.7 is a Python: --python accepts it, and doctor's verdict (not a usage error) says it is too old."""
    fake = str(_script(tmp_path / "python2.7", FAKE_PYTHON27.split("\n", 1)[1]))
    assert pyenv.resolve_explicit(fake) == fake
    facts = pyenv.probe(fake, "--python")
    assert not facts.ok and "st_mtime_ns" in (facts.error or "")


@pytest.mark.skipif(not (PYENV_ROOT / "2.7.18" / "bin" / "python2.7").exists(), reason="no Python 2.7 here")
def test_probe_reports_the_version_of_python_27(gpu_path: str) -> None:
    """The real 2.7 runs the whole probe (no st_mtime_ns there): doctor names its version as too old."""
    doc = _doctor(str(PYENV_ROOT / "2.7.18" / "bin" / "python2.7"), gpu_path)
    assert doc["facts"]["pyenv"]["version"] == "2.7.18" and doc["facts"]["pyenv"]["error"] is None
    check = _checks(doc)["stack.python"]
    assert check["status"] == "fail" and "Python 2.7.18" in check["summary"], check
