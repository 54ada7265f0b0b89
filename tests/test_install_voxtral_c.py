"""`install voxtral-c` against the voxtral.c stand-in (tests/voxtralc_kit.py): a real git repository, a real `make`
and compiler. Platform facts that this Linux machine cannot have (a Mac, Rosetta) come from facts snapshots."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import facts_kit
import pytest
import voxtralc_kit as kit
from echopanel_kit import make_checkout

from echopanel_setup import paths

pytestmark = pytest.mark.skipif(not kit.compiler_available(), reason="needs make and gcc")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return kit.make_repo(tmp_path / "upstream" / "voxtral.c")


def _snapshot(tmp_path: Path, name: str, **changes: Any) -> Path:
    """A facts snapshot of `name` with voxtral.c's toolchain as this machine has it, and `changes` applied
    (`platform__rosetta=True` sets facts.platform.rosetta)."""
    data = facts_kit.raw(name)
    data["voxtral_c"] = {
        "probed": True,
        "compiler": "/usr/bin/gcc",
        "make": "/usr/bin/make",
        "git": "/usr/bin/git",
        "xcode_clt": True if data["platform"]["system"] == "Darwin" else None,
        "blas": True if data["platform"]["system"] == "Linux" else None,
    }
    return facts_kit.write(facts_kit.changed(data, **changes), tmp_path / f"facts-{name}")


def _tree(root: Path) -> str:
    """A digest of every file under `root` (names, bytes, modes): proof that nothing changed."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes() + oct(p.stat().st_mode).encode())
    return h.hexdigest()


@pytest.mark.slow
def test_builds_records_and_is_idempotent(cli: Any, repo: Path, tmp_path: Path) -> None:
    first = cli("install", "voxtral-c", "--repo", str(repo), "--ref", kit.head(repo), "--json")
    assert first.code == 0, first.err
    doc = first.json()
    assert doc["status"] == "built" and doc["backend"] == "blas" and doc["commit"] == kit.head(repo)
    binary = Path(doc["binary"])
    assert binary.is_file() and doc["echopanel_env"] == {"ECHOPANEL_VOXTRAL_BIN": str(binary)}
    assert "Built with BLAS backend" in Path(doc["log"]).read_text()
    assert paths.read_state()["voxtral_c"]["binary"] == str(binary)
    built = binary.stat().st_mtime_ns

    again = cli("install", "voxtral-c", "--ref", kit.head(repo), "--json")
    assert again.code == 0 and again.json()["status"] == "already-built"
    assert binary.stat().st_mtime_ns == built  # not rebuilt

    newer = kit.add_commit(repo)
    third = cli("install", "voxtral-c", "--ref", newer, "--json")
    assert third.code == 0 and third.json()["status"] == "built" and third.json()["commit"] == newer

    newest = kit.add_commit(repo, "a branch moves on")  # --ref main follows the branch: fetched, then rebuilt
    fourth = cli("install", "voxtral-c", "--ref", "main", "--json")
    assert fourth.code == 0 and (fourth.json()["status"], fourth.json()["commit"]) == ("built", newest)
    assert cli("install", "voxtral-c", "--ref", "main", "--json").json()["status"] == "already-built"


@pytest.mark.slow
def test_a_failed_rebuild_keeps_the_place_and_the_next_run_repairs(cli: Any, repo: Path, tmp_path: Path) -> None:
    custom = tmp_path / "elsewhere" / "voxtral.c"
    assert cli("install", "voxtral-c", "--repo", str(repo), "--ref", "main", "--dir", str(custom)).code == 0
    (repo / "main.c").write_text(kit.BROKEN)
    broken = kit.add_commit(repo, "break the build")
    assert cli("install", "voxtral-c", "--ref", broken).code == 3  # same folder: the record remembers it
    assert not (custom / "voxtral").exists()
    from echopanel_setup.facts import voxtral_c

    assert voxtral_c.for_echopanel() is None  # nothing to point EchoPanel at
    (repo / "main.c").write_text(kit.SOURCE)
    fixed = kit.add_commit(repo, "fix the build")
    again = cli("install", "voxtral-c", "--ref", fixed, "--json")
    assert again.code == 0 and Path(again.json()["checkout"]) == custom


@pytest.mark.slow
def test_rebuilds_when_the_backend_changes(cli: Any, repo: Path, tmp_path: Path) -> None:
    mac = _snapshot(tmp_path, "macos-arm64.json")
    assert cli("install", "voxtral-c", "--repo", str(repo), "--ref", "main", "--backend", "blas").code == 0
    run = cli("install", "voxtral-c", "--ref", "main", "--facts", str(mac), "--json")
    assert run.code == 0, run.err
    assert (run.json()["status"], run.json()["backend"]) == ("built", "mps")  # Apple Silicon: mps by default
    assert "Built with MPS backend" in Path(run.json()["log"]).read_text()


def test_weights_are_install_voxtrals_dir_used_in_place(cli: Any, repo: Path, tmp_path: Path) -> None:
    model = kit.make_model(tmp_path / "models" / "Voxtral", "hello")
    paths.write_state({"model_dir": str(model)})
    doc = cli("install", "voxtral-c", "--repo", str(repo), "--ref", "main", "--json").json()
    assert doc["model"] == str(model) and doc["model_verified"] is None  # no manifest: present, not verified
    assert doc["echopanel_env"]["ECHOPANEL_VOXTRAL_MODEL"] == str(model)
    assert not any(p.is_symlink() for p in Path(doc["checkout"]).rglob("*"))


def test_dry_run_changes_nothing(cli: Any, repo: Path) -> None:
    run = cli("install", "voxtral-c", "--repo", str(repo), "--dry-run", "--json")
    assert run.code == 0 and run.json()["status"] == "planned"
    assert [c[:2] for c in run.json()["commands"]][:1] == [["git", "clone"]]
    assert not (paths.data_dir() / "voxtral.c").exists() and "voxtral_c" not in paths.read_state()


# -- refusals and failures: one line each, with its exit code ---------------------------------------------------------


def test_missing_compiler_exit_1(cli: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "make"):
        os.symlink(f"/usr/bin/{tool}", bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    run = cli("install", "voxtral-c", "--repo", str(repo))
    assert run.code == 1
    assert "cannot build voxtral.c: gcc (the compiler voxtral.c's Makefile uses) not found" in run.err
    assert "sudo apt install build-essential" in run.err


def test_missing_blas_names_the_debian_package_exit_1(cli: Any, repo: Path, tmp_path: Path) -> None:
    facts = _snapshot(tmp_path, "linux-4090-desktop.json")
    data = json.loads(facts.read_text())
    data["voxtral_c"].update(blas=False, blas_error="t.c:1:10: fatal error: cblas.h: No such file or directory")
    facts.write_text(json.dumps(data))
    run = cli("install", "voxtral-c", "--repo", str(repo), "--facts", str(facts), "--json")
    assert run.code == 1
    assert "libopenblas-dev" in run.json()["error"]["message"] and "cblas.h" in run.json()["error"]["message"]


def test_mac_under_rosetta_exit_1(cli: Any, repo: Path, tmp_path: Path) -> None:
    facts = _snapshot(tmp_path, "macos-arm64.json", platform__rosetta=True)
    run = cli("install", "voxtral-c", "--repo", str(repo), "--facts", str(facts))
    assert run.code == 1
    assert "runs under Rosetta" in run.err and "arch -arm64" in run.err
    assert not (paths.data_dir() / "voxtral.c").exists()


def test_mps_on_linux_exit_1(cli: Any, repo: Path) -> None:
    run = cli("install", "voxtral-c", "--repo", str(repo), "--backend", "mps")
    assert run.code == 1 and "`make mps` needs Apple Silicon" in run.err and "--backend blas" in run.err


def test_build_failure_names_its_first_error_and_keeps_the_log_exit_3(cli: Any, tmp_path: Path) -> None:
    broken = kit.make_repo(tmp_path / "broken" / "voxtral.c", broken=True)
    run = cli("install", "voxtral-c", "--repo", str(broken), "--ref", "main", "--json")
    assert run.code == 3
    message = run.json()["error"]["message"]
    assert "`make blas` failed (exit 2)" in message and "error: ‘undefined_symbol_here’ undeclared" in message
    log = Path(message.rsplit("build log: ", 1)[1])
    assert "undefined_symbol_here" in log.read_text()
    assert "voxtral_c" not in paths.read_state()  # nothing recorded as built


def test_git_failure_exit_3(cli: Any, tmp_path: Path) -> None:
    run = cli("install", "voxtral-c", "--repo", str(tmp_path / "no-such-repo.git"), "--ref", "main")
    assert run.code == 3 and "cannot clone" in run.err
    assert not (paths.data_dir() / "voxtral.c").exists()  # nothing half-cloned left behind


def test_a_folder_that_cannot_be_written_exit_2(cli: Any, repo: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    run = cli("install", "voxtral-c", "--repo", str(repo), "--dir", str(blocker))
    assert run.code == 2 and "is a file, not a folder" in run.err and blocker.read_text() == "not a folder\n"


def test_unknown_ref_exit_2(cli: Any, repo: Path) -> None:
    run = cli("install", "voxtral-c", "--repo", str(repo), "--ref", "no-such-branch")
    assert run.code == 2 and "--ref no-such-branch: no such commit" in run.err
    assert not (paths.data_dir() / "voxtral.c").exists()


@pytest.mark.slow
def test_existing_user_clone_is_reported_and_left_alone(cli: Any, repo: Path, tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "work" / "EchoPanel")
    theirs = kit.make_repo(tmp_path / "work" / "voxtral.c")
    (theirs / "local-notes.txt").write_text("mine\n")
    kit.build(theirs, "blas")
    before = _tree(theirs)

    run = cli("install", "voxtral-c", "--repo", str(repo), "--ref", "main", "--echopanel", str(checkout), "--json")
    assert run.code == 0, run.err
    assert run.json()["user_clone"] == {"path": str(theirs), "commit": kit.head(theirs)}
    assert Path(run.json()["checkout"]) != theirs and _tree(theirs) == before

    into_theirs = cli("install", "voxtral-c", "--dir", str(theirs), "--repo", str(repo))
    assert into_theirs.code == 1 and "was not cloned by echopanel-setup: it is left alone" in into_theirs.err
    assert _tree(theirs) == before


def test_a_mirror_without_the_pinned_commit_says_so_not_ref(cli: Any, repo: Path) -> None:
    """No --ref given: the error names the pinned commit the mirror lacks and --ref as the way on, never a '--ref'
    the user did not pass."""
    run = cli("install", "voxtral-c", "--repo", str(repo))
    assert run.code == 2 and "does not hold the pinned voxtral.c commit" in run.err and "pass --ref" in run.err
    assert not run.err.startswith("echopanel-setup: error: --ref")
    assert not (paths.data_dir() / "voxtral.c").exists()
