"""install/orphans.py: huggingface_hub's leftover temp files, named by huggingface_hub's own helpers here."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock
from huggingface_hub import constants
from huggingface_hub._local_folder import get_local_download_paths

from echopanel_setup.install import orphans

REPO = "mistralai/Voxtral-Mini-4B-Realtime-2602"
NAMES = ["consolidated.safetensors", "params.json", "tekken.json"]
ETAG = "a" * 64
WANTED = {"consolidated.safetensors": ETAG, "params.json": "g" * 40, "tekken.json": "b" * 64}


def local_orphan(model_dir: Path, name: str, etag: str, size: int, tag: str) -> Path:
    """A temp file exactly where huggingface_hub 2.4.0 puts one for `hf download --local-dir` (plus its 8-hex tag)."""
    base = get_local_download_paths(model_dir, name).incomplete_path(etag)
    path = base.with_name(f"{base.stem}.{tag}.incomplete")
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub_cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def test_finds_local_dir_and_cache_orphans_with_their_etags(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "model"
    small = local_orphan(model, "consolidated.safetensors", ETAG, 10, "0123abcd")
    large = local_orphan(model, "consolidated.safetensors", ETAG, 30, "89abcdef")
    blobs = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{'b' * 64}.deadbeef.incomplete").write_bytes(b"y" * 5)
    found = orphans.find(model, REPO, WANTED)
    assert sorted((o.path.name, o.etag, o.size, o.shared) for o in found) == sorted(
        [
            (small.name, ETAG, 10, False),
            (large.name, ETAG, 30, False),
            (f"{'b' * 64}.deadbeef.incomplete", "b" * 64, 5, True),
        ]
    )
    best = orphans.best_for(found, ETAG, 100, model)
    assert best is not None and best.path == large
    assert orphans.best_for(found, ETAG, 20, model) == next(
        o for o in found if o.path == small
    )  # never larger than the file
    assert orphans.best_for(found, "c" * 64, 100, model) is None


def test_a_running_download_is_left_alone(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "model"
    local_orphan(model, "tekken.json", ETAG, 10, "0123abcd")
    lock = get_local_download_paths(model, "tekken.json").lock_path
    with FileLock(str(lock)):
        assert orphans.find(model, REPO, WANTED) == []
    assert len(orphans.find(model, REPO, WANTED)) == 1


def test_remove_frees_the_bytes(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "model"
    local_orphan(model, "params.json", "g" * 40, 7, "0123abcd")
    found = orphans.find(model, REPO, WANTED)
    assert orphans.reclaimable(found, model) == 7
    assert orphans.remove(found) == 7 and orphans.find(model, REPO, WANTED) == []


def test_the_shared_cache_is_only_read_for_the_versions_we_need_and_never_cleaned(tmp_path: Path, cache: Path) -> None:
    """install deleted every `.incomplete` of the repo in the shared cache: files it does not install, and
    partials another tool (an older huggingface_hub resumes `<etag>.incomplete`) could still continue."""
    model = tmp_path / "model"
    blobs = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    other_file = blobs / f"{'d' * 64}.0123abcd.incomplete"  # model.safetensors: not a file we install
    resumable = blobs / f"{'e' * 64}.incomplete"  # an older huggingface_hub's, of an older tekken.json
    ours = blobs / f"{'b' * 64}.incomplete"  # the tekken.json we need, left by an older huggingface_hub
    for p in (other_file, resumable, ours):
        p.write_bytes(b"z" * 9)
    found = orphans.find(model, REPO, WANTED)
    assert [(o.path, o.shared) for o in found] == [(ours, True)]
    assert orphans.reclaimable(found, model) == 0 and orphans.remove(found) == 0
    assert other_file.exists() and resumable.exists() and ours.exists()
