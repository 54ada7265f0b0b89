"""install/manifest.py: the record of a verified install, and doctor's reading of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from echopanel_setup.facts.local import probe_model
from echopanel_setup.install import fetch, manifest
from echopanel_setup.install.digest import Digest
from echopanel_setup.install.manifest import Manifest

NAMES = ["consolidated.safetensors", "params.json", "tekken.json"]


def _install(tmp_path: Path) -> Manifest:
    m = Manifest("mistralai/Voxtral-Mini-4B-Realtime-2602", "main", "c" * 40, "http://hub")
    for i, name in enumerate(NAMES):
        f = tmp_path / name
        f.write_bytes(b'{"audio": {"transcription_delay_ms": 480}}' if name == "tekken.json" else os.urandom(100 + i))
        m.files[name] = manifest.entry_for(
            f, Digest(f.stat().st_size, "s" * 64, "g" * 40 if name == "params.json" else None)
        )
    manifest.write(tmp_path / ".echopanel-manifest.json", m)
    return m


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    m = _install(tmp_path)
    back = manifest.read(tmp_path / ".echopanel-manifest.json")
    assert back is not None and back.files == m.files and back.commit == m.commit and back.verified_at
    doc = json.loads((tmp_path / ".echopanel-manifest.json").read_text())
    assert doc["files"]["params.json"]["git_sha1"] == "g" * 40 and "git_sha1" not in doc["files"]["tekken.json"]


def test_changes_are_size_mtime_missing_or_damage(tmp_path: Path) -> None:
    m = _install(tmp_path)
    assert m.changes(tmp_path, NAMES) == []
    big = tmp_path / NAMES[0]
    st = big.stat()
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    (tmp_path / NAMES[1]).unlink()
    m.files[NAMES[2]].damaged = True
    assert m.changes(tmp_path, NAMES) == [
        "consolidated.safetensors: changed since it was verified",
        "params.json: missing",
        "tekken.json: found damaged by --verify",
    ]


def test_unreadable_manifest_is_none(tmp_path: Path) -> None:
    path = tmp_path / ".echopanel-manifest.json"
    assert manifest.read(path) is None
    path.write_text("{not json")
    assert manifest.read(path) is None
    path.write_text(json.dumps({"repo": "r", "commit": "c", "files": {"a": {"size": "x"}}}))
    assert manifest.read(path) is None
    # 1e400 is infinity to json: int() of it raised OverflowError, an exit 4 on every later install and doctor.
    path.write_text('{"repo": "r", "commit": "c", "files": {"a": {"size": 1e400, "sha256": "s"}}}')
    assert manifest.read(path) is None


def test_unreadable_partial_metadata_keeps_nothing(tmp_path: Path) -> None:
    """A `.part.json` that is not (etag text, size a count of bytes) is no partial: the file starts over."""
    partial = fetch.Partial(tmp_path, "consolidated.safetensors")
    partial.dir.mkdir()
    partial.path.write_bytes(b"xxxx")
    for meta in ('{"etag": "e", "size": 1e400}', '{"etag": 5, "size": 10}', '{"etag": "e", "size": true}', "[1]"):
        partial.meta_path.write_text(meta)
        assert partial.kept("e", 10) == 0 and partial.prehash() is None, meta
    partial.meta_path.write_text('{"etag": "e", "size": 10}')
    assert partial.kept("e", 10) == 4


def test_doctor_reads_the_manifest_we_write(tmp_path: Path) -> None:
    m = _install(tmp_path)
    facts = probe_model(tmp_path, None)
    assert facts.manifest == "present" and facts.verified is True and facts.commit == m.commit and facts.delay_ms == 480
