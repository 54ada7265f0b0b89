"""install/fetch.py in-process: resumable, hashed transfers from the loopback Hub stand-in's CDN."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from test_install_hub import hub_fixture  # noqa: F401 - fixture

from echopanel_setup.install import fetch
from echopanel_setup.install import hub as hub_mod
from echopanel_setup.install.digest import Expected, Follower

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "hub"))
from hub_server import MIB, REPO, Answer, HubStandIn  # noqa: E402

BIG = "consolidated.safetensors"


class Run:
    """One transfer of the big file into `model_dir`, recording what it reported."""

    def __init__(self, hub: HubStandIn, model_dir: Path, **policy: float) -> None:
        self.hub, self.model_dir = hub, model_dir
        self.content = hub.files[BIG].content
        self.expected = Expected(self.content.size, sha256=self.content.sha256)
        self.partial = fetch.Partial(model_dir, BIG)
        self.policy = fetch.Policy(**{"stall_s": 5.0, "retries": 3, "backoff_s": 0.01, **policy})
        self.notes: list[str] = []
        self.progress = 0

    def __call__(self):  # type: ignore[no-untyped-def]
        offset = self.partial.begin(self.content.sha256, self.content.size)
        self.progress = offset
        return fetch.transfer(
            self.partial,
            offset,
            self.expected,
            lambda: hub_mod.locate(REPO, self.hub.commit, BIG),
            on_bytes=self._count,
            note=self.notes.append,
            policy=self.policy,
        )

    def _count(self, n: int) -> None:
        self.progress += n

    def cdn_ranges(self) -> list[str | None]:
        return [h.range for h in self.hub.hits if h.server == "cdn" and h.method == "GET"]


def test_transfer_fetches_and_hashes_the_whole_file(hub: HubStandIn, tmp_path: Path) -> None:
    run = Run(hub, tmp_path)
    digest = run()
    assert run.expected.matches(digest)
    assert run.partial.path.read_bytes() == run.content.read()
    assert run.progress == run.content.size and run.notes == []
    run.partial.install(tmp_path / BIG)
    assert (tmp_path / BIG).stat().st_size == run.content.size and not run.partial.meta_path.exists()


def test_kept_prefix_is_continued_with_a_range_and_rehashed_from_byte_zero(hub: HubStandIn, tmp_path: Path) -> None:
    run = Run(hub, tmp_path)
    run.partial.begin(run.content.sha256, run.content.size)
    prefix = run.content.read()[: MIB + 17]
    run.partial.path.write_bytes(prefix)
    digest = run()
    assert run.expected.matches(digest)  # the digest covers the kept bytes, re-read from disk
    assert run.cdn_ranges() == [f"bytes={len(prefix)}-"]
    assert hub.bytes_sent(BIG) == run.content.size - len(prefix)


def test_partial_of_another_version_is_not_continued(tmp_path: Path) -> None:
    partial = fetch.Partial(tmp_path, BIG)
    assert partial.begin("etag-a", 100) == 0
    partial.path.write_bytes(b"x" * 40)
    assert partial.kept("etag-a", 100) == 40
    assert partial.kept("etag-b", 100) == 0 and partial.kept("etag-a", 99) == 0
    assert partial.begin("etag-b", 100) == 0 and partial.path.stat().st_size == 0
    assert json.loads(partial.meta_path.read_text()) == {"etag": "etag-b", "size": 100}


def test_dropped_connection_resumes_at_the_byte(hub: HubStandIn, tmp_path: Path) -> None:
    hub.faults.drop_after = MIB
    run = Run(hub, tmp_path)
    assert run.expected.matches(run())
    ranges = run.cdn_ranges()
    assert ranges[0] is None and len(ranges) == 2 and int(ranges[1].split("=")[1].rstrip("-")) >= MIB
    assert any("broke" in n and "retry 1 of 3" in n for n in run.notes)
    assert run.progress == run.content.size


def test_server_ignoring_the_range_restarts_the_file_cleanly(hub: HubStandIn, tmp_path: Path) -> None:
    hub.faults.drop_after, hub.faults.ignore_range = MIB, True
    run = Run(hub, tmp_path)
    assert run.expected.matches(run())
    assert any("ignored the byte range" in n for n in run.notes)
    assert run.progress == run.content.size  # the restart took back what the display had counted


def test_stall_gives_up_after_its_retries_and_keeps_a_clean_prefix(hub: HubStandIn, tmp_path: Path) -> None:
    hub.faults.stall_after, hub.faults.stall_s = MIB, 3
    run = Run(hub, tmp_path, stall_s=0.5, retries=0)
    try:
        with pytest.raises(fetch.TransferError) as info:
            run()
    finally:
        hub.stall_release.set()
    assert "no data from 127.0.0.1" in str(info.value) and "for 0.5 s" in str(info.value)
    kept = run.partial.path.read_bytes()
    assert info.value.offset == len(kept) >= MIB and run.content.read().startswith(kept)


def test_the_hub_changing_the_size_is_not_retried(hub: HubStandIn, tmp_path: Path) -> None:
    run = Run(hub, tmp_path)
    hub.faults.sizes[BIG] = run.content.size + 1
    with pytest.raises(Exception, match="the repo changed"):
        run()


def test_a_throttled_transfer_arrives_in_one_piece(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in's throttle (the kill -9, Ctrl-C and lock tests lean on it) once read the clock twice and
    handed sleep() a negative number now and then, dropping the connection under the test. A clock that
    moves 0.6 chunk-intervals per read makes that happen within a few chunks; the transfer must see one GET."""
    import types

    import hub_server

    interval = 64 * 1024 / hub_server.MIB  # seconds per 64 KiB chunk at 1 MiB/s
    clock = [0.0]

    def monotonic() -> float:
        clock[0] += 0.6 * interval
        return clock[0]

    def sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")

    monkeypatch.setattr(hub_server, "time", types.SimpleNamespace(monotonic=monotonic, sleep=sleep))
    hub.faults.throttle_bps = hub_server.MIB
    run = Run(hub, tmp_path)
    assert run.expected.matches(run())
    assert run.cdn_ranges() == [None] and run.notes == []


class _HeldHasher(Follower):
    """The real hasher, held back until `release` is set: a resumed file's kept prefix that is still being re-read."""

    def __init__(self, path: Path, expected: Expected) -> None:
        super().__init__(path, expected)
        self.release = threading.Event()

    def run(self) -> None:
        self.release.wait(30)
        super().run()


def test_progress_never_shows_done_while_the_hash_is_behind(hub: HubStandIn, tmp_path: Path) -> None:
    """The bar once reached 100 % with the last byte while the kept prefix was still being hashed."""
    run = Run(hub, tmp_path)
    offset = run.partial.begin(run.content.sha256, run.content.size)
    prefix = MIB + 17
    run.partial.path.write_bytes(run.content.read()[:prefix])
    hasher = _HeldHasher(run.partial.path, run.expected)
    hasher.advance(prefix)
    hasher.start()
    waited: list[int] = []
    seen_at_release: list[int] = []

    def hashing() -> None:
        waited.append(run.progress)

    def release_when_all_bytes_are_in() -> None:
        deadline = time.monotonic() + 20
        while hub.bytes_sent(BIG) < run.content.size - prefix and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        seen_at_release.append(run.progress)
        hasher.release.set()

    releaser = threading.Thread(target=release_when_all_bytes_are_in)
    releaser.start()
    run.progress = prefix
    digest = fetch.transfer(
        run.partial,
        prefix,
        run.expected,
        lambda: hub_mod.locate(REPO, hub.commit, BIG),
        on_bytes=run._count,
        note=run.notes.append,
        policy=run.policy,
        hasher=hasher,
        hashing=hashing,
    )
    releaser.join()
    assert offset == 0 and run.expected.matches(digest)
    assert seen_at_release == [prefix]  # every byte received, none of the new ones hashed: nothing more shown
    assert waited == [prefix]  # told "verifying" while the hash caught up
    assert run.progress == run.content.size  # and complete once it did


def test_a_complete_partial_is_hashed_without_a_request(hub: HubStandIn, tmp_path: Path) -> None:
    run = Run(hub, tmp_path)
    run.partial.begin(run.content.sha256, run.content.size)
    run.partial.path.write_bytes(run.content.read())
    assert run.expected.matches(run())
    assert run.cdn_ranges() == [] and run.progress == run.content.size


def test_a_429_from_the_cdn_waits_as_asked_and_never_shows_the_signed_url(hub: HubStandIn, tmp_path: Path) -> None:
    """Retry notes used to quote the CDN URL with its X-Amz-Signature, and ignore Retry-After."""
    hub.faults.answers = [Answer("cdn", "/blobs/", 429, {"Retry-After": "0"})]
    run = Run(hub, tmp_path)
    assert run.expected.matches(run())
    assert run.notes == [
        f"{hub.cdn[7:]} answered 429 Too Many Requests, asking to wait 0 s: resuming at byte 0 (retry 1 of 3, in 1 s)"
    ]
    hub.faults.answers = [Answer("cdn", "/blobs/", 503)]
    run = Run(hub, tmp_path / "again", retries=0)
    with pytest.raises(fetch.TransferError) as info:
        run()
    assert str(info.value) == f"{hub.cdn[7:]} answered 503 Service Unavailable"


def test_an_error_from_the_cdn_is_shown_without_the_query(hub: HubStandIn, tmp_path: Path) -> None:
    hub.faults.answers = [Answer("cdn", "/blobs/", 410)]
    run = Run(hub, tmp_path)
    with pytest.raises(Exception) as info:
        run()
    assert "X-Amz-Signature" in str(info.value)  # what huggingface_hub's error says
    line = str(hub_mod.error(info.value, repo=REPO, revision=hub.commit, name=BIG))
    assert "answered 410" in line and f"{hub.cdn}/blobs/" in line, line
    assert "X-Amz-Signature" not in line and "stand-in" not in line
