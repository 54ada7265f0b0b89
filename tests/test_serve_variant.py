"""Delay variants: a dir beside the verified model with links to its weights and params.json and its own
tekken.json; the model dir is never written, off-grid delays are refused, and doctor sees the variant."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from serve_kit import make_model, tekken

from echopanel_setup import paths
from echopanel_setup.errors import SetupError, UsageError
from echopanel_setup.facts.local import probe_model, read_tekken_delay
from echopanel_setup.serve import variant


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_a_variant_links_the_weights_and_patches_only_the_delay(tmp_path: Path) -> None:
    model = make_model(tmp_path / "models" / "Voxtral-Mini-4B-Realtime-2602")
    before = digest(model)
    v = variant.ensure(model, 960)
    assert v.created and v.path == tmp_path / "models" / "Voxtral-Mini-4B-Realtime-2602-delay960ms"
    for name in ("consolidated.safetensors", "params.json"):
        link = v.path / name
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: survives bind mounts
        assert link.resolve() == (model / name).resolve()
    assert read_tekken_delay(v.path / "tekken.json") == 960
    original, patched = (model / "tekken.json").read_text(), (v.path / "tekken.json").read_text()
    assert patched == original.replace('"transcription_delay_ms": 480', '"transcription_delay_ms": 960')
    assert digest(model) == before  # the verified files are untouched
    marker = json.loads((v.path / variant.MARKER).read_text())
    assert marker["source"] == str(model.resolve()) and marker["delay_ms"] == 960


def test_ensure_is_idempotent_and_rebuilds_a_stale_variant(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Voxtral")
    first = variant.ensure(model, 720)
    mtime = (first.path / "tekken.json").stat().st_mtime_ns
    again = variant.ensure(model, 720)
    assert not again.created and (again.path / "tekken.json").stat().st_mtime_ns == mtime

    (model / "tekken.json").write_text(
        tekken(480).replace('"frame_rate": 12.5', '"frame_rate": 12.5 '), encoding="utf-8"
    )
    rebuilt = variant.ensure(model, 720)  # the source tokenizer changed: the copy follows it
    assert rebuilt.created and '"frame_rate": 12.5 ' in (rebuilt.path / "tekken.json").read_text()
    assert not any(p.name.startswith(".") for p in model.parent.iterdir())  # no temp dirs left behind

    (rebuilt.path / "tekken.json").write_text("{}", encoding="utf-8")  # damaged by hand
    assert variant.ensure(model, 720).created


@pytest.mark.parametrize(("delay", "nearest"), [(1000, "960 or 1040"), (1300, "1200"), (100, "240"), (2000, "2400")])
def test_off_grid_delays_are_refused_with_the_nearest_valid_ones(tmp_path: Path, delay: int, nearest: str) -> None:
    model = make_model(tmp_path / "models" / "Voxtral")
    with pytest.raises(UsageError, match=f"nearest: {nearest}$"):
        variant.ensure(model, delay)
    assert list(model.parent.iterdir()) == [model]


def test_2400_is_on_the_grid(tmp_path: Path) -> None:
    assert read_tekken_delay(variant.ensure(make_model(tmp_path / "Voxtral"), 2400).path / "tekken.json") == 2400


def test_a_missing_model_or_delay_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="install voxtral"):
        variant.ensure(tmp_path / "absent", 960)
    with pytest.raises(SetupError, match="no transcription_delay_ms"):
        variant.patched_tekken(b'{"audio": {"sampling_rate": 16000}}', 960)


def test_a_top_level_delay_is_patched_when_there_is_no_audio_object() -> None:
    patched = variant.patched_tekken(b'{"vocab": [], "transcription_delay_ms": 480}', 1200)
    assert patched == b'{"vocab": [], "transcription_delay_ms": 1200}'


def test_doctor_sees_the_variant_recorded_as_serve_dir(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Voxtral")
    v = variant.ensure(model, 960)
    paths.write_state({"serve_dir": str(v.path)})
    facts = probe_model(model, paths.read_state().get("serve_dir"))
    assert facts.delay_ms == 960 and facts.serve_dir == str(v.path)


def test_a_dir_with_the_variants_name_that_we_did_not_make_is_never_replaced(tmp_path: Path) -> None:
    """A hand-patched copy (the seed guide's way) named like our variant used to be deleted and rebuilt."""
    model = make_model(tmp_path / "models" / "Voxtral")
    theirs = tmp_path / "models" / "Voxtral-delay960ms"
    make_model(theirs, delay_ms=960, weights=b"their own copy")
    before = digest(theirs)
    with pytest.raises(SetupError, match="was not made by echopanel-setup"):
        variant.ensure(model, 960)
    assert digest(theirs) == before
    (tmp_path / "models" / "Voxtral-delay720ms").mkdir()  # an empty dir is fine to take over
    assert variant.ensure(model, 720).created
