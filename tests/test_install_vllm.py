"""`echopanel-setup install vllm` end to end: real venvs, real pip and uv, installing small stand-in wheels
built here from a local `--find-links` folder with `--no-index` (no package index is ever asked). The GPU
verdict comes from doctor's saved facts snapshots (`--facts`)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

from echopanel_setup import knowledge

FACTS = FIXTURES / "facts"
UV = shutil.which("uv") or (
    str(Path(sys.executable).with_name("uv")) if Path(sys.executable).with_name("uv").exists() else None
)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(
    folder: Path,
    name: str,
    version: str,
    files: dict[str, str],
    requires: list[str] = (),
    extras: dict[str, list[str]] | None = None,
    scripts: dict[str, str] | None = None,
) -> Path:  # type: ignore[assignment]
    """A real py3-none-any wheel: the package files, METADATA (with Requires-Dist and extras), WHEEL,
    entry_points.txt for console scripts, and a RECORD with every file's hash."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "Summary: stand-in for tests"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    for extra, reqs in (extras or {}).items():
        meta.append(f"Provides-Extra: {extra}")
        meta += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    content = dict(files)
    content[f"{info}/METADATA"] = "\n".join(meta) + "\n\n"
    content[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: echopanel-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if scripts:
        content[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in scripts.items()
        )
    record = [f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in content.items()]
    content[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in content.items():
            zf.writestr(path, text)
    return wheel


def _vllm_files(version: str, old: bool) -> dict[str, str]:
    files = {
        "vllm/__init__.py": f'__version__ = "{version}"\n',
        "vllm/scripts.py": f"import sys\n\ndef main():\n    print('{version}')\n    return 0\n",
    }
    if old:  # the TokenizerGroup that forwards max_loras, as doctor's tokenizer check reads it
        k = knowledge.load().tokenizer_kwargs
        files[f"vllm/{k.vllm_file_marker}.py"] = (
            f"class TokenizerGroup:\n    def __init__(self, tokenizer_id, enable_lora, {k.vllm_text_marker}, "
            "**tokenizer_config):\n        pass\n"
        )
    return files


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vLLM 0.10.1 (too old, the tokenizer bug) and 0.20.1, torch with a CUDA build, transformers before and after
    4.56, mistral_common with its audio extra, soxr and soundfile."""
    folder = tmp_path_factory.mktemp("wheels")
    marker = knowledge.load().tokenizer_kwargs.transformers_text_marker
    for version, old, transformers in (("0.10.1", True, "4.54"), ("0.20.1", False, "4.56")):
        build_wheel(
            folder,
            "vllm",
            version,
            _vllm_files(version, old=old),
            ["torch", f"transformers>={transformers}"],
            scripts={"vllm": "vllm.scripts:main"},
        )
    build_wheel(
        folder,
        "torch",
        "2.9.0",
        {"torch/__init__.py": "", "torch/version.py": "__version__ = '2.9.0+cu128'\ncuda = '12.8'\n"},
    )
    for tf in ("4.55.4", "4.57.6"):
        build_wheel(
            folder,
            "transformers",
            tf,
            {
                "transformers/__init__.py": "",
                "transformers/tokenization_mistral_common.py": f"raise ValueError(f'Kwargs {{kwargs}} {marker}')\n",
            },
        )
    build_wheel(
        folder,
        "mistral_common",
        "1.9.1",
        {"mistral_common/__init__.py": "__version__ = '1.9.1'\n"},
        extras={"audio": ["soxr>=0.5", "soundfile>=0.12"]},
    )
    build_wheel(folder, "soxr", "0.5.0", {"soxr/__init__.py": ""})
    build_wheel(folder, "soundfile", "0.13.1", {"soundfile.py": ""})
    return folder


@pytest.fixture(autouse=True)
def own_installer_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip and uv read only what the test passes: no user or machine config, no inherited find-links."""
    for var in list(os.environ):
        if var.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("UV_NO_CONFIG", "1")


def path_without_uv(tmp_path: Path) -> str:
    """PATH with the system directories only, none of which holds uv (the tests run the CLI by its full path)."""
    return os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if not (Path(p) / "uv").exists())


def install(*args: str, path: str, facts: str = "linux-4090-desktop.json") -> subprocess.CompletedProcess[str]:
    return run_cli("install", "vllm", "--facts", str(FACTS / facts), "--yes", *args, env={"PATH": path}, timeout=120)


def state(home: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((home / "state" / "echopanel-setup" / "state.json").read_text())


def uv_path() -> str:
    if UV is None:
        pytest.skip("uv is not installed (pip install uv)")
    return os.pathsep.join([str(Path(UV).parent), "/usr/bin", "/bin"])


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "says"),
    [
        ("macos-arm64.json", "macOS"),
        ("linux-nogpu.json", "without an NVIDIA GPU"),
        ("linux-v100.json", "compute capability 7.0"),
        ("windows-native.json", "Windows"),
    ],
)
def test_refuses_where_vllm_cannot_serve_voxtral_and_names_alternatives(facts: str, says: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), path=path_without_uv(tmp_path), facts=facts)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert line.startswith("echopanel-setup: error: not installing vLLM") and says in line and "\n" not in line
    assert "VOXTRAL_MODE=api" in proc.stdout  # the Mistral API alternative, with the env lines to use
    assert not venv.exists()


def test_dry_run_prints_the_exact_commands_and_creates_nothing(tmp_path: Path, isolated_home: Path) -> None:
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--dry-run", "--version", "0.20.1", path=path_without_uv(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"{sys.executable} -m venv {venv}" in proc.stdout
    assert f"{venv}/bin/python -m pip install --upgrade vllm==0.20.1 'mistral-common[audio]>=1.9.0'" in proc.stdout
    assert "GB needed" in proc.stdout.split("Would run:")[0]  # disk space is named before the commands
    assert not venv.exists() and not (isolated_home / "state" / "echopanel-setup" / "state.json").exists()


def test_dry_run_with_uv_uses_uv_pip(tmp_path: Path) -> None:
    path = uv_path()
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--dry-run", path=path)
    assert proc.returncode == 0, proc.stderr
    assert f"uv venv --python {sys.executable} {venv}" in proc.stdout
    assert f"uv pip install --python {venv}/bin/python --upgrade --torch-backend=auto 'vllm>=0.20.0'" in proc.stdout


@pytest.mark.parametrize("version", ["0.10.1", "<0.16", "vllm==0.9.2"])
def test_versions_without_voxtral_are_refused(version: str, tmp_path: Path) -> None:
    proc = install("--venv", str(tmp_path / "v"), "--version", version, "--dry-run", path=path_without_uv(tmp_path))
    assert proc.returncode == 2
    assert "no Voxtral Realtime" in proc.stderr


def test_not_a_venv_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    proc = install("--venv", str(folder), path=path_without_uv(tmp_path))
    assert proc.returncode == 2 and "not a virtual environment" in proc.stderr
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_venv_path_that_cannot_be_written_is_refused_before_the_installer_runs(tmp_path: Path, dry_run: bool) -> None:
    blocker = tmp_path / "notes.txt"  # a file where a folder would have to be: unwritable even for root
    blocker.write_text("mine")
    venv = blocker / "venv"
    proc = install("--venv", str(venv), *(["--dry-run"] if dry_run else []), path=path_without_uv(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        proc.stderr.strip()
        == f"echopanel-setup: error: cannot write to {venv} ({blocker} is not a writable folder): pass --venv a folder "
        "you can write to"
    )
    assert "Would run" not in proc.stdout and "$ " not in proc.stdout
    assert blocker.read_text() == "mine"


def test_a_gpu_too_small_for_the_model_is_refused_with_doctors_verdict_unless_forced(tmp_path: Path) -> None:
    """install vllm put ~13 GB on a 12 GB card that doctor and serve already call too small."""
    from echopanel_setup.checks import gpu
    from echopanel_setup.doctor import load_facts

    verdict = gpu.memory(load_facts(str(FACTS / "linux-3060-12gb.json")), "local")
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--dry-run", path=path_without_uv(tmp_path), facts="linux-3060-12gb.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"echopanel-setup: error: not installing vLLM: {verdict.summary}; --force installs anyway"
    )
    assert "Would run" not in proc.stdout and not venv.exists()
    forced = install(
        "--venv", str(venv), "--dry-run", "--force", path=path_without_uv(tmp_path), facts="linux-3060-12gb.json"
    )
    assert forced.returncode == 0, forced.stderr
    assert f"{verdict.summary}; installing anyway (--force)" in forced.stdout and "Would run" in forced.stdout


PYENV = Path.home() / ".pyenv" / "versions"


def _pyenv(version: str) -> str:
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} here")
    return str(found[-1])


@pytest.mark.parametrize("version", ["3.9", "2.7"])
def test_a_python_older_than_vllm_supports_is_refused_before_a_venv_is_made(tmp_path: Path, version: str) -> None:
    """Python 2.7 (no sys.base_prefix) was called an interpreter that "does not run"."""
    old = _pyenv(version)
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--python", old, path=path_without_uv(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert line.startswith(f"echopanel-setup: error: Python {version}.") and "older than vLLM supports" in line
    assert "--python python3.12" in line and len(line.splitlines()) == 1
    assert not venv.exists()


@pytest.mark.parametrize("named", ["", "/bin/ls", "no-such-python"])
def test_what_is_not_a_python_is_refused_as_usage(tmp_path: Path, named: str) -> None:
    """`--python ""` silently used our own interpreter."""
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--python", named, "--dry-run", path=path_without_uv(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--python" in proc.stderr
    assert "Would run" not in proc.stdout and not venv.exists()


def test_a_python_named_on_path_is_found(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.99").symlink_to(sys.executable)
    venv = tmp_path / "venv"
    path = f"{bin_dir}{os.pathsep}{path_without_uv(tmp_path)}"
    proc = install("--venv", str(venv), "--python", "python3.99", "--dry-run", path=path)
    assert proc.returncode == 0, proc.stderr
    assert f"{bin_dir / 'python3.99'} -m venv {venv}" in proc.stdout


def _venv_from(python: str, venv: Path) -> None:
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)


def test_python_naming_another_interpreter_than_the_venvs_is_a_rebuild_with_consent(tmp_path: Path) -> None:
    """--python was ignored once the venv existed, so its own advice ("use --python python3.12") looped."""
    other = _pyenv("3.12")
    venv = tmp_path / "venv"
    _venv_from(sys.executable, venv)
    plan = install("--venv", str(venv), "--python", other, "--dry-run", path=path_without_uv(tmp_path))
    assert plan.returncode == 0, plan.stderr
    assert f"Rebuild: {venv} has Python {'.'.join(map(str, sys.version_info[:3]))}" in plan.stdout
    assert f"--python {other} is Python 3.12." in plan.stdout
    assert f"{other} -m venv --clear {venv}" in plan.stdout
    # No terminal to ask on and no --yes: refused, the venv untouched.
    asked = run_cli(
        "install", "vllm", "--facts", str(FACTS / "linux-4090-desktop.json"), "--venv", str(venv), "--python", other,
        env={"PATH": path_without_uv(tmp_path)}, timeout=60,
    )  # fmt: skip
    assert asked.returncode == 1, asked.stdout + asked.stderr
    assert "pass --yes to rebuild it" in asked.stderr and "--venv DIR for a new one" in asked.stderr
    assert (venv / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}").exists()
    # The same interpreter is no rebuild: the venv is upgraded in place, as before.
    same = install(
        "--venv", str(venv), "--python", str(venv / "bin" / "python"), "--dry-run", path=path_without_uv(tmp_path)
    )
    assert same.returncode == 0 and "Rebuild" not in same.stdout and "--clear" not in same.stdout


@pytest.mark.slow
def test_a_rebuild_with_yes_makes_the_venv_from_the_new_python(wheels: Path, tmp_path: Path) -> None:
    other = _pyenv("3.12")
    venv = tmp_path / "venv"
    _venv_from(sys.executable, venv)
    proc = install(
        "--venv", str(venv), "--python", other, "--find-links", str(wheels), "--no-index", path=fastest_path(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "(3, 12)"


# --- installs ---------------------------------------------------------------------------------------------------


def _assert_ready(proc: subprocess.CompletedProcess[str], venv: Path, home: Path) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert state(home)["vllm_venv"] == str(venv)
    assert subprocess.run([str(venv / "bin" / "vllm")], capture_output=True, text=True).stdout.strip() == "0.20.1"
    for title in ("vLLM", "PyTorch", "mistral_common[audio]", "Tokenizer kwargs error"):
        assert title in proc.stdout
    assert "vLLM 0.20.1" in proc.stdout and "torch 2.9.0 (CUDA 12.8)" in proc.stdout and "soxr 0.5.0" in proc.stdout
    assert "Ready" in proc.stdout


@pytest.mark.slow
def test_installs_with_pip_when_uv_is_absent(wheels: Path, tmp_path: Path, isolated_home: Path) -> None:
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--find-links", str(wheels), "--no-index", path=path_without_uv(tmp_path))
    _assert_ready(proc, venv, isolated_home)
    assert (
        "-m pip install --upgrade" in proc.stdout and "Successfully installed" in proc.stdout
    )  # pip's own output, streamed


@pytest.mark.slow
def test_installs_with_uv_when_it_is_on_path(wheels: Path, tmp_path: Path, isolated_home: Path) -> None:
    path = uv_path()
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--find-links", str(wheels), "--no-index", path=path)
    _assert_ready(proc, venv, isolated_home)
    assert "uv pip install" in proc.stdout and "+ vllm==0.20.1" in proc.stdout


def fastest_path(tmp_path: Path) -> str:
    """uv when it is installed (the installer choice has its own tests above), else pip."""
    return uv_path() if UV else path_without_uv(tmp_path)


@pytest.mark.slow
def test_a_state_dir_that_cannot_be_written_costs_a_warning_not_the_install(wheels: Path, tmp_path: Path) -> None:
    """Recording the venv for doctor used to crash (exit 4) after the install had succeeded."""
    not_a_dir = tmp_path / "state-is-a-file"
    not_a_dir.write_text("")
    venv = tmp_path / "venv"
    proc = run_cli(
        "install",
        "vllm",
        "--facts",
        str(FACTS / "linux-4090-desktop.json"),
        "--yes",
        "--venv",
        str(venv),
        "--find-links",
        str(wheels),
        "--no-index",
        env={"PATH": fastest_path(tmp_path), "XDG_STATE_HOME": str(not_a_dir)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "could not record the venv" in proc.stdout and f"pass --python {venv} to doctor and serve" in proc.stdout
    assert "Ready" in proc.stdout


@pytest.mark.slow
def test_broken_stack_is_repaired_in_place_by_upgrading(wheels: Path, tmp_path: Path, isolated_home: Path) -> None:
    """The seed's tokenizer error (old vLLM + transformers 4.55 + mistral_common) is fixed without a new venv."""
    venv = tmp_path / "venv"
    old = ["vllm==0.10.1", "transformers==4.55.4", "mistral_common[audio]==1.9.1"]
    if UV:
        subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [
                UV,
                "pip",
                "install",
                "-q",
                "--python",
                str(venv / "bin" / "python"),
                "--no-index",
                "--find-links",
                str(wheels),
                *old,
            ],
            check=True,
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--find-links",
                str(wheels),
                *old,
            ],
            check=True,
        )
    keepsake = venv / "keepsake.txt"
    keepsake.write_text("still here")
    before = run_cli(
        "doctor", "--python", str(venv), "--only", "stack.tokenizer", "--facts", str(FACTS / "linux-4090-desktop.json")
    )
    assert "tokenizer" in before.stdout.lower()
    proc = install("--venv", str(venv), "--find-links", str(wheels), "--no-index", path=fastest_path(tmp_path))
    assert "Existing venv" in proc.stdout and "vllm 0.10.1" in proc.stdout and "upgrading in place" in proc.stdout
    _assert_ready(proc, venv, isolated_home)
    assert keepsake.read_text() == "still here"
    assert "vLLM 0.20.1 with transformers 4.57.6: no tokenizer kwargs conflict" in proc.stdout


@pytest.mark.slow
def test_installer_failure_is_one_line_with_its_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    venv = tmp_path / "venv"
    proc = install("--venv", str(venv), "--find-links", str(empty), "--no-index", path=fastest_path(tmp_path))
    assert proc.returncode == 3
    line = proc.stderr.strip()
    assert "\n" not in line and "failed" in line and "vllm" in line.lower()


# --- pieces ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "spec"),
    [
        (None, "vllm>=0.20.0"),
        ("0.20.1", "vllm==0.20.1"),
        (">=0.21,<0.30", "vllm<0.30,>=0.21"),
        ("vllm~=0.25.0", "vllm~=0.25.0"),
        ("<0.17", "vllm<0.17"),
    ],
)
def test_requirement_specs(given: str | None, spec: str) -> None:
    from echopanel_setup.install.vllm import requirement_specs

    assert requirement_specs(given) == [spec, knowledge.load().mistral_common.install_spec]


@pytest.mark.parametrize("given", ["not a version!", "torch==2.9", "0.15.1", "<=0.15"])
def test_requirement_specs_refuse_bad_or_too_old(given: str) -> None:
    from echopanel_setup.errors import UsageError
    from echopanel_setup.install.vllm import requirement_specs

    with pytest.raises(UsageError):
        requirement_specs(given)


def test_installer_reasons_are_found_in_their_output() -> None:
    from echopanel_setup.install.vllm import _cause

    pip = [
        "Looking in links: /w",
        "ERROR: Could not find a version that satisfies the requirement vllm>=0.20.0 (from versions: none)",
        "ERROR: No matching distribution found for vllm>=0.20.0",
    ]
    assert _cause(pip) == "No matching distribution found for vllm>=0.20.0"
    uv = [
        "Using Python 3.11.7 environment at: v",
        "error: No solution found when resolving dependencies",
        "  cause: Because vllm was not found in the provided package locations, …",
    ]
    assert _cause(uv) == "Because vllm was not found in the provided package locations, …"
    uv_tty = ["  × No solution found when resolving dependencies:", "  ╰─▶ Because vllm was not found …"]
    assert _cause(uv_tty) == "Because vllm was not found …"
    assert _cause(["something odd"]) == "something odd" and _cause([]) == "no output"
