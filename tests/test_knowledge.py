"""compat.toml builds into its typed view: a typo or a wrong type fails here, not in a check on a user's machine."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from echopanel_setup import knowledge

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TOML = Path(knowledge.__file__).with_name("compat.toml")


def raw() -> dict[str, Any]:
    return tomllib.loads(TOML.read_text(encoding="utf-8"))


def sections(node: object, path: str = "compat.toml") -> list[tuple[str, object]]:
    """Every section dataclass in the tree, with where it sits."""
    found = [(path, node)]
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item):
                found += sections(item, f"{path}.{f.name}" + (f"[{i}]" if isinstance(value, tuple) else ""))
    return found


def test_every_section_builds_with_its_declared_types() -> None:
    k = knowledge.build(raw())
    assert k == knowledge.load()
    built = sections(k)
    assert len(built) > 40  # every table and array-of-tables entry, not just the top level
    for path, section in built:
        for f in dataclasses.fields(section):  # type: ignore[arg-type]
            value = getattr(section, f.name)
            assert value is not None or f.default is None, f"{path}.{f.name}"


def test_every_table_names_its_source() -> None:
    for path, section in sections(knowledge.load()):
        if path in ("compat.toml", "compat.toml.serve"):  # containers of other tables
            continue
        sources = [getattr(section, f.name) for f in dataclasses.fields(section) if f.name.endswith("source")]  # type: ignore[arg-type]
        assert sources and all(s.strip() for s in sources), path


def test_sources_are_public_or_in_this_repository() -> None:
    """A source is a URL, an upstream file at a version, or a file in this repository: never a note that only the
    team that wrote it can read (the research notes it was distilled from cite their own public sources)."""
    private = re.compile(r"seed guide|\breference\b|addendum|DEVELOPERS\.md|shared/|[\w-]+\.md §")
    repo = Path(__file__).resolve().parents[1]
    for path, section in sections(knowledge.load()):
        for f in dataclasses.fields(section):  # type: ignore[arg-type]
            if not f.name.endswith("source"):
                continue
            text = getattr(section, f.name) or ""
            assert not private.search(text), f"{path}.{f.name}: {text}"
            for doc in re.findall(r"(?<!EchoPanel )(?<!vLLM )(?<![\w/.])((?:docs|tests)/[\w./-]+)", text):
                assert (repo / doc.rstrip(".")).exists(), f"{path}.{f.name} cites {doc}: not in this repo"


def test_comments_and_code_cite_public_sources_too() -> None:
    """Issue 14: citations in code and in compat.toml's comments name public sources or files in this repository,
    not the team's notes (compat.toml cited "echopanel-contract.md section 6" in a comment, beside its sources)."""
    private = re.compile(r"seed guide|addendum|DEVELOPERS\.md|shared/|[\w-]+\.md (?:§|section)")
    package = Path(__file__).resolve().parents[1] / "echopanel_setup"
    found = []
    for path in [*package.rglob("*.py"), package / "knowledge" / "compat.toml"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if private.search(line):
                found.append(f"{path.relative_to(package.parent)}:{number}: {line.strip()}")
    assert not found, found


def test_every_pattern_compiles() -> None:
    k = knowledge.load()
    patterns = [p for sig in k.signature for p in sig.patterns]
    patterns += [p.pattern for p in k.serve.phase] + list(k.serve.log.patterns().values())
    for pattern in patterns:
        re.compile(pattern)


def test_values_arrive_typed() -> None:
    k = knowledge.load()
    assert isinstance(k.gpu.min_free_mib, int)
    assert isinstance(k.setup.ready_timeout_s, float)  # written as 900 in the TOML
    assert k.model.files == ("consolidated.safetensors", "params.json", "tekken.json")
    assert k.smoke.server_errors.hints["invalid_json"].startswith("vLLM could not parse")
    assert k.delay.default_ms in k.delay.grid()
    assert k.delay.nearest(500) == [480]


def test_the_view_is_frozen_and_built_once() -> None:
    k = knowledge.load()
    assert knowledge.load() is k
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.gpu.min_free_mib = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        k.driver.min_for_cuda_major["12"] = "1"  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["gpu"].update(min_free_mib="11264"),
            "compat.toml.gpu.min_free_mib: expected int, got str '11264'",
        ),
        (lambda d: d["gpu"].update(min_free_mib=True), "compat.toml.gpu.min_free_mib: expected int, got bool"),
        (lambda d: d["gpu"].pop("min_free_mib"), "compat.toml.gpu: missing key min_free_mib"),
        (lambda d: d["gpu"].update(min_fre_mib=1), "compat.toml.gpu: unknown key(s) min_fre_mib"),
        (lambda d: d["model"].update(files="params.json"), "compat.toml.model.files: expected an array, got str"),
        (lambda d: d["signature"][2].update(patterns=[1]), "compat.toml.signature[2].patterns[0]: expected str"),
        (
            lambda d: d["serve"]["gpu"][0].update(unconfirmed="yes"),
            "compat.toml.serve.gpu[0].unconfirmed: expected bool",
        ),
        (
            lambda d: d["driver"].update(min_for_cuda_major=[]),
            "compat.toml.driver.min_for_cuda_major: expected a table",
        ),
        (lambda d: d.update(smoke=1), "compat.toml.smoke: expected a table, got int"),
    ],
)
def test_a_typo_or_a_wrong_type_names_the_key(change: Any, message: str) -> None:
    data = raw()
    change(data)
    with pytest.raises(knowledge.KnowledgeError) as err:
        knowledge.build(data)
    assert str(err.value).startswith(message)


def test_optional_fields_may_be_left_out() -> None:
    k = knowledge.load()
    assert [a.rtf for a in k.alternative if a.id in ("remote", "api")] == [None, None]
    assert any(g.unconfirmed for g in k.serve.gpu) and not all(g.unconfirmed for g in k.serve.gpu)


def test_the_parsed_toml_is_kept_and_reused_only_while_it_matches(tmp_path, monkeypatch) -> None:
    """load() reads a marshal copy of the parsed TOML from our state dir: the same data, re-parsed when the file
    changes, and a corrupt or unwritable copy only costs the parse."""
    toml = tmp_path / "compat.toml"
    toml.write_text('a = 1\n[b]\nc = "x"\n', encoding="utf-8")
    assert knowledge._parsed(toml) == {"a": 1, "b": {"c": "x"}}
    [cache] = paths_state().glob("knowledge-cache-*.marshal")
    monkeypatch.setattr(knowledge, "_toml_loads", lambda text: pytest.fail("parsed again"))
    assert knowledge._parsed(toml) == {"a": 1, "b": {"c": "x"}}
    monkeypatch.undo()
    toml.write_text("a = 2\n", encoding="utf-8")
    os.utime(toml, ns=(1, 1))  # a changed file, even one written in the same clock tick
    assert knowledge._parsed(toml) == {"a": 2}
    cache.write_bytes(b"\x00garbage")
    assert knowledge._parsed(toml) == {"a": 2}
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # the state dir cannot be made, even as root
    assert knowledge._parsed(toml) == {"a": 2}


def test_each_installed_copy_keeps_its_own_parsed_toml(tmp_path) -> None:
    """Two installs sharing one state dir (pipx and a venv, or two versions) do not overwrite each other's copy, which
    would make every run of each re-parse the TOML."""
    first, second = tmp_path / "a" / "compat.toml", tmp_path / "b" / "compat.toml"
    for toml, value in ((first, 1), (second, 2)):
        toml.parent.mkdir()
        toml.write_text(f"a = {value}\n", encoding="utf-8")
        os.utime(toml, ns=(1, 1))  # the same size and mtime: only where they are tells them apart
    assert knowledge._parsed(first) == {"a": 1} and knowledge._parsed(second) == {"a": 2}
    assert len(list(paths_state().glob("knowledge-cache-*.marshal"))) == 2
    assert knowledge._parsed(first) == {"a": 1}


def paths_state() -> Path:
    from echopanel_setup import paths

    return paths.state_dir()
