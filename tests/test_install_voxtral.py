"""`echopanel-setup install voxtral` end to end: the real CLI in a subprocess, the real huggingface_hub inside
it, HF_ENDPOINT pointing at the loopback Hub stand-in (tests/fixtures/hub/hub_server.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, start_cli

from echopanel_setup.errors import Interrupted
from echopanel_setup.facts.local import probe_model
from echopanel_setup.install.progress import Ui

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "hub"))
from hub_server import MIB, REPO, HubStandIn, voxtral_files  # noqa: E402

NEEDED = ("consolidated.safetensors", "params.json", "tekken.json")
NOT_NEEDED = (
    "model.safetensors",
    "config.json",
    "README.md",
    "generation_config.json",
    "processor_config.json",
    ".gitattributes",
)
BIG = "consolidated.safetensors"


@pytest.fixture
def hub():
    with HubStandIn() as h:
        yield h


@pytest.fixture
def model_dir(isolated_home: Path) -> Path:
    return isolated_home / "data" / "echopanel-setup" / "models" / "Voxtral-Mini-4B-Realtime-2602"


def install(hub: HubStandIn, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("install", "voxtral", *args, env={"HF_ENDPOINT": hub.endpoint, **(env or {})})


def popen(hub: HubStandIn, *args: str) -> subprocess.Popen[str]:
    return start_cli("install", "voxtral", *args, env={"HF_ENDPOINT": hub.endpoint}, text=True)


def wait_for(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("echopanel-setup: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_installed(hub: HubStandIn, model_dir: Path) -> None:
    for name in NEEDED:
        assert (model_dir / name).read_bytes() == hub.files[name].content.read(), name
    doc = json.loads((model_dir / ".echopanel-manifest.json").read_text())
    assert doc["repo"] == REPO and doc["commit"] == hub.commit
    for name in NEEDED:
        assert doc["files"][name]["size"] == hub.files[name].content.size
        assert doc["files"][name]["sha256"] == hub.files[name].content.sha256
    assert not (model_dir / ".echopanel-download").exists()


def downloads(hub: HubStandIn, since: int = 0) -> list[str]:
    """Names of files whose bytes were requested (by resolve or CDN GET) after hit number `since`."""
    names = []
    for h in hub.hits[since:]:
        if h.method != "GET":
            continue
        for f in hub.files.values():
            if (f.lfs and f.content.sha256 in h.path) or (
                not f.lfs and h.path.endswith(f"/resolve/{hub.commit}/{f.path}")
            ):
                names.append(f.path)
    return names


# --- happy path and the fast path ----------------------------------------------------------------------------


@pytest.mark.slow
def test_installs_only_the_three_files_verified_then_answers_from_the_manifest(
    hub: HubStandIn, model_dir: Path, isolated_home: Path
) -> None:
    proc = install(hub, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "installed" and doc["commit"] == hub.commit and doc["dir"] == str(model_dir)
    assert {f["name"]: f["outcome"] for f in doc["files"]} == dict.fromkeys(NEEDED, "downloaded")
    assert doc["downloaded_bytes"] == sum(hub.files[n].content.size for n in NEEDED) and doc["reused_bytes"] == 0
    assert_installed(hub, model_dir)
    assert sorted(downloads(hub)) == sorted(NEEDED)
    touched = " ".join(h.path for h in hub.hits)
    for name in NOT_NEEDED:
        assert f"/{name}" not in touched, name
    state = json.loads((isolated_home / "state" / "echopanel-setup" / "state.json").read_text())
    assert state["model_dir"] == str(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*NEEDED, ".echopanel-manifest.json"])
    # Installed and verified: confirmed from the manifest, with the Hub gone and in offline mode.
    hub.stop()
    again = install(hub)
    assert again.returncode == 0, again.stderr
    assert "installed and verified" in again.stdout and str(model_dir) in again.stdout
    offline = install(hub, "--json", env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["status"] == "already-installed"


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_writes_nothing(hub: HubStandIn, model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "models" / "voxtral-mini"
    proc = install(hub, "--dir", str(target), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    for name in NEEDED:
        assert name in proc.stdout
    assert "To download: 3.17 MB" in proc.stdout and "free there" in proc.stdout
    assert hub.commit[:12] in proc.stdout
    assert not target.exists() and not model_dir.exists()
    assert downloads(hub) == []
    doc = json.loads(install(hub, "--dir", str(target), "--dry-run", "--json").stdout)
    assert doc["status"] == "planned" and doc["downloaded_bytes"] == 0  # a plan downloads nothing
    assert doc["disk"]["needed"] == sum(hub.files[n].content.size for n in NEEDED) and doc["disk"]["fits"]
    assert not target.exists()


@pytest.mark.slow
def test_dir_flag_works_as_in_the_seed_guide(hub: HubStandIn, tmp_path: Path, isolated_home: Path) -> None:
    target = tmp_path / "models" / "voxtral-mini"
    proc = install(hub, "--dir", str(target))
    assert proc.returncode == 0, proc.stderr
    assert_installed(hub, target)
    # Later runs (and doctor) find it without --dir.
    again = install(hub)
    assert again.returncode == 0 and str(target) in again.stdout


@pytest.mark.slow
def test_a_new_commit_on_main_fetches_only_the_changed_file(hub: HubStandIn, model_dir: Path) -> None:
    assert install(hub).returncode == 0
    changed = voxtral_files()
    changed["tekken.json"].content = type(changed["tekken.json"].content)(
        data=hub.files["tekken.json"].content.read() + b" "
    )
    new_commit = "b" * 40
    hub.files["tekken.json"] = changed["tekken.json"]
    hub.revisions.update({"main": new_commit, new_commit: new_commit})
    hub.commit = new_commit
    mark = len(hub.hits)
    proc = install(hub, "--revision", "main")
    assert proc.returncode == 0, proc.stderr
    assert downloads(hub, mark) == ["tekken.json"]
    assert json.loads((model_dir / ".echopanel-manifest.json").read_text())["commit"] == new_commit


# --- interruption and resume ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_file_then_rerun_resumes_at_the_byte(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.throttle_bps = 1 * MIB
    proc = popen(hub)
    part = model_dir / ".echopanel-download" / f"{BIG}.part"
    wait_for(lambda: part.exists() and part.stat().st_size >= MIB)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    kept = part.stat().st_size
    assert 0 < kept < hub.files[BIG].content.size
    assert part.read_bytes() == hub.files[BIG].content.read()[:kept]  # a clean prefix
    hub.faults.throttle_bps = None
    mark = len(hub.hits)
    rerun = install(hub)
    assert rerun.returncode == 0, rerun.stderr
    gets = [
        h
        for h in hub.hits[mark:]
        if h.server == "cdn" and h.method == "GET" and hub.files[BIG].content.sha256 in h.path
    ]
    assert [h.range for h in gets] == [f"bytes={kept}-"]
    assert gets[0].sent == hub.files[BIG].content.size - kept
    assert f"{kept:,} bytes reused" in rerun.stdout
    assert_installed(hub, model_dir)


def _killed_before_the_rename(hub: HubStandIn, model_dir: Path, content: bytes) -> Path:
    """What a kill between the last byte and the rename leaves: a full partial file and its version record."""
    work = model_dir / ".echopanel-download"
    work.mkdir(parents=True)
    part = work / f"{BIG}.part"
    part.write_bytes(content)
    sha = hub.files[BIG].content.sha256
    (work / f"{BIG}.part.json").write_text(json.dumps({"etag": sha, "size": hub.files[BIG].content.size}))
    return part


@pytest.mark.slow
def test_a_kill_after_the_last_byte_is_finished_by_the_next_run(hub: HubStandIn, model_dir: Path) -> None:
    """Every later run used to die with "AssertionError: every step ends with a digest" (exit 4)."""
    content = hub.files[BIG].content.read()
    _killed_before_the_rename(hub, model_dir, content)
    proc = install(hub, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    big = next(f for f in doc["files"] if f["name"] == BIG)
    assert big["action"] == "resume" and big["outcome"] == "resumed" and big["reused_bytes"] == len(content)
    assert downloads(hub).count(BIG) == 0  # hashed and moved into place, not fetched again
    assert_installed(hub, model_dir)


@pytest.mark.slow
def test_a_complete_but_wrong_partial_is_discarded_and_fetched_again(hub: HubStandIn, model_dir: Path) -> None:
    content = bytearray(hub.files[BIG].content.read())
    content[12345] ^= 0xFF
    _killed_before_the_rename(hub, model_dir, bytes(content))
    plan = install(hub, "--dry-run")
    assert "every byte kept from the last run: will be checked" in plan.stdout
    proc = install(hub)
    assert proc.returncode == 0, proc.stderr
    assert f"Checking {BIG}: all {len(content):,} bytes were downloaded by the last run" in proc.stdout
    assert "were damaged" in proc.stdout and "downloading it from the start" in proc.stdout
    assert downloads(hub).count(BIG) == 1
    assert_installed(hub, model_dir)


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_one_line_resume_hint(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.throttle_bps = MIB // 4  # ~10 s left after the 512 KiB mark: Ctrl-C lands mid-transfer even under load
    proc = popen(hub)
    part = model_dir / ".echopanel-download" / f"{BIG}.part"
    wait_for(lambda: part.exists() and part.stat().st_size >= 512 * 1024)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "again to resume" in lines[0], err
    assert part.exists() and part.stat().st_size > 0


def test_ctrl_c_while_checking_a_file_on_disk_says_how_to_finish(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_install_hub import point_at

    from echopanel_setup.install import voxtral

    point_at(hub.endpoint, monkeypatch)
    target = tmp_path / "by-hand"
    target.mkdir()
    for name in NEEDED:
        (target / name).write_bytes(hub.files[name].content.read())

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(voxtral, "hash_file", interrupted)
    try:
        voxtral.run(voxtral.VoxtralOptions(dir=str(target), yes=True), Ui())
    except KeyboardInterrupt:
        pytest.fail("a bare KeyboardInterrupt escaped: the user is not told how to finish")
    except Interrupted as exc:
        assert exc.exit_code == 130
        assert (
            str(exc)
            == f"interrupted while checking {BIG}; nothing was changed: run `echopanel-setup install voxtral --dir "
            f"{target}` again to finish"
        )
    else:
        pytest.fail("the interrupted check did not stop the install")
    assert sorted(p.name for p in target.iterdir()) == sorted(NEEDED)  # no work dir or lock left behind
    assert all((target / n).read_bytes() == hub.files[n].content.read() for n in NEEDED)


@pytest.mark.slow
def test_a_run_refused_because_another_is_writing_leaves_that_runs_lock_and_partial_alone(
    hub: HubStandIn, model_dir: Path
) -> None:
    """A refused run used to delete the running one's lock on its way out, so the next run wrote into the
    same partial file beside it."""
    hub.faults.throttle_bps = 256 * 1024
    first = popen(hub)
    work = model_dir / ".echopanel-download"
    part = work / f"{BIG}.part"
    try:
        wait_for(lambda: part.exists() and part.stat().st_size >= 128 * 1024)
        for _ in range(2):  # the second refusal proves the lock survived the first
            busy = install(hub)
            assert busy.returncode == 1, busy.stderr
            assert "another `install voxtral` is writing" in one_error_line(busy)
            assert (work / "lock").exists() and part.exists() and (work / f"{BIG}.part.json").exists()
    finally:
        hub.faults.throttle_bps = None
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert_installed(hub, model_dir)


@pytest.mark.slow
def test_orphan_of_a_killed_hf_download_is_continued_not_refetched(model_dir: Path) -> None:
    """huggingface_hub restarts its own partial file from zero and leaves it behind; we continue it.

    It writes in 10 MiB pieces, so the file must be larger than that for a piece to land before the kill.
    """
    hub = HubStandIn(voxtral_files(big_size=12 * MIB + 7)).start()
    hub.faults.throttle_bps = 16 * MIB
    script = (
        "import sys; from huggingface_hub import hf_hub_download; "
        f"hf_hub_download({REPO!r}, {BIG!r}, local_dir=sys.argv[1])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(model_dir)],
        env={**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
    )
    download = model_dir / ".cache" / "huggingface" / "download"
    orphans = lambda: list(download.glob("*.incomplete")) if download.exists() else []  # noqa: E731
    try:
        wait_for(lambda: bool(orphans()) and orphans()[0].stat().st_size >= 10 * MIB)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kept = orphans()[0].stat().st_size
        hub.faults.throttle_bps = None
        mark = len(hub.hits)
        rerun = install(hub)
        assert rerun.returncode == 0, rerun.stderr
        assert "huggingface_hub's partial" in rerun.stdout and f"{kept:,} bytes" in rerun.stdout
        gets = [
            h
            for h in hub.hits[mark:]
            if h.server == "cdn" and hub.files[BIG].content.sha256 in h.path and h.method == "GET"
        ]
        assert [h.range for h in gets] == [f"bytes={kept}-"]
        assert orphans() == []
        assert_installed(hub, model_dir)
    finally:
        proc.kill()
        hub.stop()


@pytest.mark.slow
def test_server_vanishing_mid_download_keeps_the_partial_and_a_rerun_resumes(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.vanish_after = MIB
    proc = install(hub, "--retries", "1")
    assert proc.returncode == 3, proc.stderr
    line = one_error_line(proc)
    assert "again to resume" in line and "127.0.0.1" in line
    part = model_dir / ".echopanel-download" / f"{BIG}.part"
    kept = part.stat().st_size
    assert kept >= MIB and part.read_bytes() == hub.files[BIG].content.read()[:kept]
    hub.start()  # the same ports again
    rerun = install(hub)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{kept:,} bytes reused" in rerun.stdout
    assert_installed(hub, model_dir)


@pytest.mark.slow
def test_stall_is_detected_and_resumed_in_the_same_run(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.stall_after, hub.faults.stall_s = MIB, 10
    try:
        proc = install(hub, "--stall-timeout", "1")
    finally:
        hub.stall_release.set()
    assert proc.returncode == 0, proc.stderr
    assert "no data from 127.0.0.1" in proc.stdout and "for 1 s" in proc.stdout and "retry 1 of 5" in proc.stdout
    ranges = [
        h.range for h in hub.hits if h.server == "cdn" and h.method == "GET" and hub.files[BIG].content.sha256 in h.path
    ]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert_installed(hub, model_dir)


@pytest.mark.slow
def test_dropped_connection_is_resumed_in_the_same_run(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.drop_after = MIB
    proc = install(hub)
    assert proc.returncode == 0, proc.stderr
    assert "connection to 127.0.0.1" in proc.stdout and "broke" in proc.stdout
    assert_installed(hub, model_dir)


# --- damage and repair --------------------------------------------------------------------------------------------


def _flip_byte(path: Path, at: int) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # silent corruption: size and mtime unchanged


@pytest.mark.slow
def test_verify_names_the_corrupt_file_and_install_repairs_only_it(hub: HubStandIn, model_dir: Path) -> None:
    assert install(hub).returncode == 0
    _flip_byte(model_dir / "tekken.json", 100)
    hub.stop()  # --verify needs no network once a manifest exists
    check = install(hub, "--verify")
    assert check.returncode == 1, check.stderr
    assert "tekken.json" in check.stdout and "corrupt" in check.stdout
    assert "consolidated.safetensors" in check.stdout and "ok" in check.stdout
    doc = json.loads(install(hub, "--verify", "--json").stdout)
    assert doc["command"] == "install voxtral" and doc["status"] == "damaged" and doc["exit_code"] == 1
    assert doc["files"]["tekken.json"].startswith("corrupt") and doc["files"]["params.json"] == "ok"
    assert not probe_model(model_dir, None).verified  # doctor reads the damage from the manifest (same size)
    hub.start()
    mark = len(hub.hits)
    repair = install(hub)
    assert repair.returncode == 0, repair.stderr
    assert (
        f"Commit {hub.commit[:12]} of {REPO} ({hub.endpoint}): the installed one; --revision main looks for a newer one"
        in repair.stdout
    )
    assert downloads(hub, mark) == ["tekken.json"]
    assert_installed(hub, model_dir)
    assert probe_model(model_dir, None).verified
    assert install(hub, "--verify").returncode == 0
    # A missing file is fetched alone too.
    (model_dir / "params.json").unlink()
    mark = len(hub.hits)
    proc = install(hub)
    assert proc.returncode == 0, proc.stderr
    assert downloads(hub, mark) == ["params.json"]
    assert_installed(hub, model_dir)


@pytest.mark.slow
def test_offline_rerun_rechecks_a_touched_file_locally_and_refuses_a_damaged_one(
    hub: HubStandIn, model_dir: Path
) -> None:
    assert install(hub).returncode == 0
    hub.stop()
    big = model_dir / BIG
    os.utime(big)  # same bytes, new mtime: re-hashed against the manifest, no network needed
    proc = install(hub, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert f"Checking {BIG}" in proc.stdout and "installed and verified" in proc.stdout
    assert (
        json.loads((model_dir / ".echopanel-manifest.json").read_text())["files"][BIG]["mtime_ns"]
        == big.stat().st_mtime_ns
    )
    _flip_byte(big, 10)
    os.utime(big)
    damaged = install(hub, env={"HF_HUB_OFFLINE": "1"})
    assert damaged.returncode == 3
    assert f"HF_HUB_OFFLINE=1 and {BIG} cannot be used" in one_error_line(damaged)


def _namespaces() -> bool:
    return (
        shutil.which("unshare") is not None
        and subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0
    )


@pytest.mark.slow
def test_verify_on_a_read_only_model_dir_only_reads(hub: HubStandIn, model_dir: Path) -> None:
    """--verify crashed (exit 4) writing its manifest into a read-only dir, even with every file intact."""
    if not _namespaces():
        pytest.skip("needs unshare -Urm (user and mount namespaces) for a read-only bind mount")
    assert install(hub).returncode == 0
    hub.stop()
    verify = f"{sys.executable} -m echopanel_setup install voxtral --verify"
    script = f"mount --bind {model_dir} {model_dir} && mount -o remount,ro,bind {model_dir} && {verify}"
    proc = subprocess.run(["unshare", "-Urm", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"All {len(NEEDED)} files match their sha256" in proc.stdout, proc.stdout
    assert "the result is not recorded" in proc.stdout and "Read-only file system" in proc.stdout
    assert "Traceback" not in proc.stderr and not proc.stderr.strip()


def test_verify_without_an_install_says_what_to_run(hub: HubStandIn) -> None:
    proc = install(hub, "--verify")
    assert proc.returncode == 1
    assert "nothing installed" in one_error_line(proc)


# --- errors: one line, the right exit code -------------------------------------------------------------------------


@pytest.mark.slow
def test_bad_token_is_named(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.token = "hf_good"
    proc = install(hub, env={"HF_TOKEN": "hf_bad"})
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "401" in line and "token" in line
    assert not model_dir.exists()


@pytest.mark.slow
def test_gated_repo_gives_the_licence_url(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.gated, hub.faults.token = True, "hf_good"
    proc = install(hub, env={"HF_TOKEN": "hf_good"})
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "gated" in line and f"{hub.endpoint}/{REPO}" in line
    assert not model_dir.parent.parent.exists()  # the folders this run made are gone again
    hub.faults.authorized = True
    assert install(hub, env={"HF_TOKEN": "hf_good"}).returncode == 0


@pytest.mark.slow
def test_unknown_revision(hub: HubStandIn) -> None:
    proc = install(hub, "--revision", "no-such-branch")
    assert proc.returncode == 3
    assert "revision 'no-such-branch' not found" in one_error_line(proc)


def test_offline_with_nothing_installed(hub: HubStandIn) -> None:
    proc = install(hub, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "HF_HUB_OFFLINE=1" in line and "nothing verified" in line
    assert hub.hits == []


@pytest.mark.slow
def test_low_disk_is_refused_before_any_byte(hub: HubStandIn, model_dir: Path) -> None:
    hub.faults.sizes[BIG] = 10**16
    proc = install(hub)
    assert proc.returncode == 1
    assert "not enough disk space" in one_error_line(proc) and "10,000 TB" in proc.stdout
    assert downloads(hub) == []
    assert not (model_dir / ".echopanel-download").exists()


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/sys/echopanel-voxtral")  # sysfs refuses new entries even to root
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "voxtral"


def test_unwritable_dir_is_a_usage_error(hub: HubStandIn, tmp_path: Path) -> None:
    target = _unwritable(tmp_path)
    proc = install(hub, "--dir", str(target))
    assert proc.returncode == 2
    assert f"cannot write to {target}" in one_error_line(proc)
    assert hub.hits == []


def test_a_socks_proxy_without_socksio_names_the_package_huggingface_hub_needs(hub: HubStandIn) -> None:
    """ALL_PROXY=socks5://… crashed (exit 4) with httpx2's hint `pip install httpx[socks]`: not what it uses."""
    import importlib.util

    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: the SOCKS proxy would be used")
    proc = install(hub, env={"ALL_PROXY": "socks5://alice:pw@127.0.0.1:1080"})
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "ALL_PROXY=socks5://***@127.0.0.1:1080 needs SOCKS support" in line
    assert "pip install socksio" in line and "httpx[socks]" not in line
    assert ":pw@" not in line and hub.hits == []


def test_a_proxy_port_that_is_not_a_number_is_a_usage_error(hub: HubStandIn) -> None:
    proc = install(hub, env={"HTTPS_PROXY": "http://proxy:abc", "HTTP_PROXY": "http://proxy:abc"})
    assert proc.returncode == 2, proc.stderr
    assert "not a usable proxy URL" in one_error_line(proc) and hub.hits == []


@pytest.mark.parametrize("endpoint", ["127.0.0.1:{port}", "http://127.0.0.1:abc"])
def test_an_hf_endpoint_that_is_not_a_url_is_a_usage_error(hub: HubStandIn, model_dir: Path, endpoint: str) -> None:
    """A port that is not a number used to crash (exit 4) inside huggingface_hub's import, which parses it."""
    where = endpoint.format(port=hub.hub_port)
    proc = install(hub, env={"HF_ENDPOINT": where})
    assert proc.returncode == 2
    assert f"HF_ENDPOINT={where!r} is not an http(s) URL" in one_error_line(proc)
    assert hub.hits == [] and not model_dir.parent.parent.exists()


@pytest.mark.slow
def test_a_state_dir_that_cannot_be_written_costs_a_warning_not_the_install(hub: HubStandIn, tmp_path: Path) -> None:
    """Recording the model dir for doctor used to crash (exit 4) after the whole download had succeeded."""
    not_a_dir = tmp_path / "state-is-a-file"
    not_a_dir.write_text("")
    target = tmp_path / "model"
    proc = install(hub, "--dir", str(target), env={"XDG_STATE_HOME": str(not_a_dir)})
    assert proc.returncode == 0, proc.stderr
    assert (
        "could not record the model dir" in proc.stdout
        and f"pass --model-dir {target} to doctor and serve" in proc.stdout
    )
    assert "installed and verified" in proc.stdout
    assert_installed(hub, target)


@pytest.mark.slow
def test_disk_full_mid_download_leaves_a_clean_partial_that_resumes(hub: HubStandIn, tmp_path: Path) -> None:
    """A real ENOSPC: a tmpfs in a private mount namespace, shrunk under the running download."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode != 0
    ):
        pytest.skip("needs unshare -Urm (user and mount namespaces)")
    hub.faults.throttle_bps = 2 * MIB
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir(), out.mkdir()
    part = mnt / ".echopanel-download" / f"{BIG}.part"
    install = f"{sys.executable} -m echopanel_setup install voxtral --dir {mnt}"
    script = f"""
set -u
mount -t tmpfs -o size=3g tmpfs {mnt}
{install} > {out}/first.out 2> {out}/first.err &
pid=$!
while [ ! -f {part} ] || [ $(stat -c %s {part}) -lt 1048576 ]; do sleep 0.02; done
used=$(du -sk {mnt} | cut -f1)
mount -o remount,size=$((used + 256))k {mnt}
wait $pid; echo $? > {out}/first.rc
cp {part} {out}/partial.bin
{install} --dry-run > {out}/plan.out 2> {out}/plan.err; echo $? > {out}/plan.rc
mount -o remount,size=3g {mnt}
{install} > {out}/second.out 2> {out}/second.err; echo $? > {out}/second.rc
cp {mnt}/{BIG} {out}/final.bin
"""
    subprocess.run(
        ["unshare", "-Urm", "bash", "-c", script],
        env={**os.environ, "HF_ENDPOINT": hub.endpoint},
        timeout=60,
        check=True,
    )
    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "3", first_err
    assert "disk full" in first_err and "partial file is kept" in first_err and len(first_err.strip().splitlines()) == 1
    # What the message asks to free is what the next run's disk check wants (it asked for the file's rest,
    # then refused unless a fixed 2 GiB margin more was free).
    plan_err = (out / "plan.err").read_text()
    assert (out / "plan.rc").read_text().strip() == "1" and "not enough disk space" in plan_err, plan_err
    asked = re.search(r"free (\S+ \S+) more and run", first_err)
    wanted = re.search(r"free (\S+ \S+) more or pass --dir", plan_err)
    assert asked and wanted and asked.group(1) == wanted.group(1), (first_err, plan_err)
    content = hub.files[BIG].content.read()
    partial = (out / "partial.bin").read_bytes()
    assert 0 < len(partial) < len(content) and content.startswith(partial)
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    assert (out / "final.bin").read_bytes() == content


@pytest.mark.slow
def test_files_downloaded_by_hand_are_checked_and_adopted_without_a_download(hub: HubStandIn, tmp_path: Path) -> None:
    """The seed's way (`hf download … --local-dir`) left the files but no manifest: hash them, keep them."""
    target = tmp_path / "models" / "voxtral-mini"
    script = (
        f"import sys; from huggingface_hub import hf_hub_download\nfor n in {list(NEEDED)!r}: "
        f"hf_hub_download({REPO!r}, n, local_dir=sys.argv[1])"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(target)],
        env={**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
        check=True,
    )
    check = install(hub, "--dir", str(target), "--verify")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "checking against the Hub" in check.stdout and (target / ".echopanel-manifest.json").exists()
    (target / ".echopanel-manifest.json").unlink()
    mark = len(hub.hits)
    proc = install(hub, "--dir", str(target), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {f["name"]: f["outcome"] for f in doc["files"]} == dict.fromkeys(NEEDED, "verified")
    assert doc["downloaded_bytes"] == 0 and doc["reused_bytes"] == sum(hub.files[n].content.size for n in NEEDED)
    assert {f["name"]: f["reused_bytes"] for f in doc["files"]} == {n: hub.files[n].content.size for n in NEEDED}
    assert downloads(hub, mark) == []
    assert_installed(hub, target)


@pytest.mark.slow
def test_a_password_in_hf_endpoint_reaches_no_output_nor_the_manifest(hub: HubStandIn, model_dir: Path) -> None:
    """A mirror behind Basic auth (`HF_ENDPOINT=http://user:pw@host`): huggingface_hub still sends it, but what we
    print (also under --json) and the manifest we record show `***`."""
    with_password = hub.endpoint.replace("http://", "http://mirror:HUB-PW-9@")
    for args in ((), ("--json",)):
        proc = install(hub, *args, env={"HF_ENDPOINT": with_password})
        assert proc.returncode == 0, proc.stderr
        assert "HUB-PW-9" not in proc.stdout + proc.stderr
    recorded = [p.read_text() for p in model_dir.rglob("*") if p.is_file() and p.stat().st_size < 1_000_000]
    assert recorded and not [text for text in recorded if "HUB-PW-9" in text]
