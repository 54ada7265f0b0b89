"""EchoPanel's `.env`: parsed by its rules, written so that its loader reads back exactly what we meant."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from echopanel_kit import make_checkout, write_env

from echopanel_setup.echopanel import dotenv
from echopanel_setup.errors import UsageError

URL = "VOXTRAL_VLLM_URL"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K=v\n", {"K": "v"}),
        ("  K  =  v  \n", {"K": "v"}),
        ("K=v # not a comment\n", {"K": "v # not a comment"}),
        ("# K=v\n   # K=w\n", {}),
        ("export K=v\n", {"K": "v"}),
        ("export\tK=v\n", {"export\tK": "v"}),  # only `export ` with a space is removed
        ("K=\n", {}),  # empty: skipped, the variable stays unset
        ('K=""\n', {"K": ""}),  # passes the empty test, then loses its quotes: the empty string
        ("K=''\n", {"K": ""}),
        ('K="a b"\n', {"K": "a b"}),
        ("K='\"a\"'\n", {"K": '"a"'}),  # one pair removed, whatever is inside
        ('K="a\\nb"\n', {"K": "a\\nb"}),  # no escapes
        ("K=${HOME}\n", {"K": "${HOME}"}),  # no expansion
        ('K="unbalanced\n', {"K": '"unbalanced'}),
        ("K=a=b=c\n", {"K": "a=b=c"}),
        ("no equals sign\n=v\n", {}),
        ("K=first\nK=second\n", {"K": "first"}),  # the first line wins
        ("K=\nK=second\n", {"K": "second"}),  # an empty first line sets nothing
        ("\ufeffK=v\nL=w\n", {"\ufeffK": "v", "L": "w"}),  # the BOM stays in the first key
        ("K=v\r\nL=w\r\n", {"K": "v", "L": "w"}),
        ("K=v\rL=w\x0bM=x\n", {"K": "v", "L": "w", "M": "x"}),  # str.splitlines() boundaries
        ("K=v\nBAD=a\x00b\nL=w\n", {"K": "v"}),  # NUL: os.environ raises, EchoPanel stops reading
    ],
)
def test_parse_follows_echopanels_rules(text: str, expected: dict[str, str]) -> None:
    assert dotenv.parse(text).values == expected


def test_decode_drops_undecodable_bytes_like_read_text_errors_ignore() -> None:
    assert dotenv.parse(dotenv.decode(b"K=a\xffb\n")).values == {"K": "ab"}


def test_environment_wins_and_is_reported() -> None:
    env = dotenv.parse("VOXTRAL_VLLM_URL=http://file:8001\nECHOPANEL_ASR_PROVIDER=voxtral_official\n")
    seen = dotenv.effective(env, {URL: "http://env:8001"}, [URL, "ECHOPANEL_ASR_PROVIDER", "OTHER"])
    assert seen[URL] == dotenv.Seen(URL, "http://env:8001", "environment", "http://file:8001")
    assert seen["ECHOPANEL_ASR_PROVIDER"].source == "file"
    assert seen["OTHER"] == dotenv.Seen("OTHER", None, "unset")


def test_notes_name_lines_that_do_not_do_what_they_look_like() -> None:
    text = f"\ufeff{URL}=a\nexport\t{URL}=b\n{URL}=\nECHOPANEL_ASR_PROVIDER=x # c\n{URL}=c\n{URL}=d\n"
    notes = dotenv.notes(dotenv.parse(text), [URL, "ECHOPANEL_ASR_PROVIDER"])
    assert [n.split(":")[0] for n in notes] == ["line 1", "line 2", "line 3", "line 4", "line 6"]
    assert "byte-order mark" in notes[0] and "tab" in notes[1] and "unset" in notes[2]
    assert "inline comments" in notes[3] and "first one" in notes[4]


# Writing

HOSTILE_BASE = (
    "\ufeff# EchoPanel settings\r\n"
    "OPENAI_API_KEY='sk-secret # not a comment'\r\n"
    'export OTHER="x=y"\r\n'
    f"{URL}=http://old:8000 # the old box\r\n"
    "\r\n"
    "   # indented comment\r\n"
    f"{URL}=http://later:8000\r\n"
    "ECHOPANEL_ASR_PROVIDER=faster_whisper\r\n"
    "EMPTY=\r\n"
    'QUOTED_EMPTY=""\r\n'
    "export\tTABBED=1\r\n"
    "LAST=no-newline"
)


def test_merge_replaces_the_first_occurrence_in_place_and_keeps_everything_else() -> None:
    merged = dotenv.merge(HOSTILE_BASE, {URL: "http://gpu:8001", "ECHOPANEL_ASR_PROVIDER": "voxtral_official"})
    assert merged.startswith("\ufeff# EchoPanel settings\r\n")
    assert merged.splitlines(keepends=True) == [
        "\ufeff# EchoPanel settings\r\n",
        "OPENAI_API_KEY='sk-secret # not a comment'\r\n",
        'export OTHER="x=y"\r\n',
        "# the old box\r\n",  # what looked like an inline comment stays, as a comment
        f"{URL}=http://gpu:8001\r\n",
        "\r\n",
        "   # indented comment\r\n",
        "ECHOPANEL_ASR_PROVIDER=voxtral_official\r\n",  # the later duplicate of URL is gone
        "EMPTY=\r\n",
        'QUOTED_EMPTY=""\r\n',
        "export\tTABBED=1\r\n",
        "LAST=no-newline",
    ]


def test_merge_appends_new_keys_with_the_files_line_ending() -> None:
    assert dotenv.merge("A=1\r\nB=2", {URL: "http://h:8001"}) == f"A=1\r\nB=2\r\n{URL}=http://h:8001\r\n"
    assert dotenv.merge("", {URL: "http://h:8001"}) == f"{URL}=http://h:8001\n"


def test_merge_none_removes_every_line_of_the_key() -> None:
    assert dotenv.merge(f"A=1\n{URL}=x\nB=2\n{URL}=y\n", {URL: None}) == "A=1\nB=2\n"


def test_merge_keeps_export_and_indentation_of_the_line_it_rewrites() -> None:
    assert dotenv.merge(f"  export {URL}=old\n", {URL: "new"}) == f"  export {URL}=new\n"


def test_merge_frees_our_key_from_a_bom() -> None:
    """`\\ufeffKEY=` sets another variable for EchoPanel: the BOM stays, on a line of its own."""
    merged = dotenv.merge(f"\ufeff{URL}=old\nA=1\n", {URL: "http://h:8001"})
    assert merged == f"\ufeff\n{URL}=http://h:8001\nA=1\n"
    assert dotenv.parse(merged).values == {URL: "http://h:8001", "A": "1"}


@pytest.mark.parametrize("value", ["", "${MISTRAL_API_KEY}", "a\nb", "a\rb", "a\u2028b", "a\x00b"])
def test_values_echopanel_cannot_read_back_are_refused(value: str) -> None:
    with pytest.raises(UsageError):
        dotenv.format_line(URL, value)


HOSTILE_VALUES = [
    "plain",
    "http://127.0.0.1:8001",
    "a # b",
    "#starts-with-hash",
    "x=y=z",
    " leading space",
    "trailing space ",
    '"double-quoted"',
    "'single-quoted'",
    '"',
    "'",
    "it's",
    'say "hi"',
    "back\\slash\\n",
    "tab\tinside",
    "ünïcödé",
]


def _loaded_by_stand_in(checkout: Path, keys: list[str]) -> dict[str, str | None]:
    """Run the stand-in backend's `.env` loader in a fresh process (a clean environment) and report `keys`."""
    script = (
        "import json, os, sys; sys.path.insert(0, sys.argv[1]); import server.main as m; m._read_dotenv_file(); "
        "print(json.dumps({k: os.environ.get(k) for k in sys.argv[2:]}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(checkout), *keys],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONIOENCODING": "utf-8"},
    )
    return json.loads(done.stdout)


def test_hostile_values_round_trip_through_the_backends_loader(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", env=HOSTILE_BASE)
    keys = [f"K{i}" for i in range(len(HOSTILE_VALUES))]
    text = (checkout / ".env").read_text(encoding="utf-8")
    merged = dotenv.merge(text, dict(zip(keys, HOSTILE_VALUES, strict=True)))
    write_env(checkout, merged)
    assert _loaded_by_stand_in(checkout, keys) == dict(zip(keys, HOSTILE_VALUES, strict=True))
    assert {k: dotenv.parse(merged).values[k] for k in keys} == dict(zip(keys, HOSTILE_VALUES, strict=True))
    # and the lines we did not manage still read as before
    before = dotenv.parse(HOSTILE_BASE).values
    assert {k: v for k, v in dotenv.parse(merged).values.items() if k not in keys} == before


def test_unquoted_where_safe() -> None:
    assert dotenv.format_line(URL, "http://h:8001") == f"{URL}=http://h:8001"
    assert dotenv.format_line("K", "a # b") == "K=a # b"
    assert dotenv.format_line("K", " x") == 'K=" x"'
    assert dotenv.format_line("K", '"x"') == "K='\"x\"'"


def test_write_atomic_backs_up_to_our_state_dir_0600_and_keeps_the_mode(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", env="A=1\n")
    env_path = checkout / ".env"
    env_path.chmod(0o640)
    with dotenv.locked(env_path):
        backup = dotenv.write_atomic(env_path, "A=2\n")
    assert backup is not None and backup.read_text() == "A=1\n"
    assert backup.parent == dotenv.backup_dir() and checkout not in backup.parents
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o640
    assert sorted(p.name for p in checkout.iterdir() if p.name.startswith(".env")) == [".env"]


def test_a_new_env_is_private_and_a_symlink_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    real.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(real)
    dotenv.write_atomic(link, "A=2\n")
    assert link.is_symlink() and real.read_text() == "A=2\n"
    fresh = tmp_path / "fresh" / ".env"
    fresh.parent.mkdir()
    assert dotenv.write_atomic(fresh, "A=1\n") is None
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


_WRITER = """
import sys
from pathlib import Path
from echopanel_setup.echopanel import dotenv
path, key = Path(sys.argv[1]), sys.argv[2]
for round in range(15):
    with dotenv.locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        dotenv.write_atomic(path, dotenv.merge(text, {key: f"round{round}"}))
"""


def test_concurrent_writers_under_the_lock_lose_nothing(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "EchoPanel", env="# mine\nKEEP=me\n")
    env_path = checkout / ".env"
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(env_path), f"KEY{i}"], env=os.environ.copy())
        for i in range(4)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    values = dotenv.read(env_path).values
    assert values == {"KEEP": "me", **{f"KEY{i}": "round14" for i in range(4)}}
    assert env_path.read_text().startswith("# mine\nKEEP=me\n")


def test_only_a_regular_file_is_read(tmp_path: Path) -> None:
    """A `.env` (or --config) that is /dev/zero grew doctor to 11 GB in 9 s; a FIFO blocked its probe until the
    timeout: what is not a regular file (or a link to one) reads as empty, without being opened."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / ".env"
    link.symlink_to("/dev/zero")
    for path in (fifo, link, tmp_path, Path("/dev/zero")):
        assert dotenv.read(path).values == {}, path
    (tmp_path / "checkout").mkdir()
    regular = write_env(tmp_path / "checkout", "VOXTRAL_VLLM_URL=http://localhost:8001\n")
    assert dotenv.read(regular).values == {"VOXTRAL_VLLM_URL": "http://localhost:8001"}
    assert dotenv.file_kind(fifo.stat().st_mode) == "a named pipe (FIFO)"
