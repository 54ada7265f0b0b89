"""EchoPanel's `.env`: read it exactly as EchoPanel's backend does, and write it so EchoPanel reads what we meant.

EchoPanel has its own loader (`server/main.py` `_read_dotenv_file` at pranaysuyash/EchoPanel 3845da5), not
python-dotenv. Its rules, which `parse` reproduces line for line:

- the text is split with `str.splitlines()` and each line stripped; blank lines and lines starting with `#` are
  skipped; one leading `export ` (with a space, not a tab) is removed; a line without `=` is skipped;
- key and value are split at the first `=` and stripped; an empty key or an empty value is skipped (`K=` leaves
  the variable unset) — but `K=""` passes that test and then loses its quotes: it sets the EMPTY string;
- one pair of matching wrapping quotes is removed; no escapes, no inline comments, no `${...}` expansion;
- `os.environ.setdefault`: the environment wins over the file, and the FIRST line for a key wins;
- a UTF-8 BOM is not stripped (it stays in the first key), undecodable bytes are dropped, and any exception (an
  embedded NUL) silently ends the loading at that line.

The writer (`merge`) follows from those rules: one line per key (the first occurrence replaced in place, later
duplicates of our keys dropped), no inline comments, no empty values, nothing that needs expansion or escapes,
everything else (lines, comments, order, each line's ending, a BOM) kept byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup.errors import ExternalError, UsageError
from echopanel_setup.fileio import replace_file

BOM = "\ufeff"
_QUOTES = ("'", '"')
_LOCK_TIMEOUT_S = 30.0
_BACKUPS_KEPT = 20


@dataclass(frozen=True)
class Line:
    """One line of the file as EchoPanel's loader sees it: `key` is None for lines it skips."""

    index: int
    text: str  # without its line ending
    ending: str  # "\n", "\r\n", "\r", … or "" for a last line without one
    key: str | None = None
    value: str | None = None  # None: the key is named but the value is empty (`K=`), so the line sets nothing


@dataclass
class DotEnv:
    """A parsed `.env`: its lines, and the values EchoPanel takes from it (first occurrence wins)."""

    lines: list[Line] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    stopped_at: int | None = None  # index of the line whose exception ended EchoPanel's loading
    bom: bool = False

    def first(self, key: str) -> Line | None:
        """The line whose value EchoPanel uses for `key` (None when no line sets it)."""
        return next((ln for ln in self.lines if ln.key == key and ln.value is not None), None)


def _split_lines(text: str) -> list[tuple[str, str]]:
    """(content, ending) pairs, on exactly the boundaries `str.splitlines()` uses."""
    pairs = []
    for chunk in text.splitlines(keepends=True):
        content = chunk.splitlines()[0]
        pairs.append((content, chunk[len(content) :]))
    return pairs


def _read_line(index: int, content: str, ending: str) -> Line:
    line = content.strip()
    if not line or line.startswith("#"):
        return Line(index, content, ending)
    if line.startswith("export "):
        line = line[len("export ") :].strip()
    if "=" not in line:
        return Line(index, content, ending)
    key, value = (part.strip() for part in line.split("=", 1))
    if not key:
        return Line(index, content, ending)
    if not value:
        return Line(index, content, ending, key, None)
    if value[0] in _QUOTES and value.endswith(value[0]):
        value = value[1:-1]
    return Line(index, content, ending, key, value)


def parse(text: str) -> DotEnv:
    """The file as EchoPanel's loader reads it."""
    env = DotEnv(bom=text.startswith(BOM))
    for index, (content, ending) in enumerate(_split_lines(text)):
        line = _read_line(index, content, ending)
        env.lines.append(line)
        if env.stopped_at is not None or line.key is None or line.value is None:
            continue
        if "\x00" in line.key or "\x00" in line.value:  # os.environ raises; EchoPanel's `except` ends the loading
            env.stopped_at = index
            continue
        env.values.setdefault(line.key, line.value)
    return env


def decode(data: bytes) -> str:
    """Bytes to text the way EchoPanel's `read_text(errors="ignore")` does on a UTF-8 system."""
    return data.decode("utf-8", errors="ignore")


def read(path: Path) -> DotEnv:
    """Parse the file at `path`; a missing file is an empty one (EchoPanel then reads nothing), and so is anything
    but a regular file (or a link to one), never opened: /dev/zero would be read until memory runs out, a FIFO would
    block the read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return DotEnv()
        return parse(decode(path.read_bytes()))
    except FileNotFoundError:
        return DotEnv()


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, for an error: "a directory", "a named pipe (FIFO)", …"""
    for test, word in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "a special file"


@dataclass(frozen=True)
class Seen:
    """What EchoPanel's process will hold for one key, and where it came from."""

    key: str
    value: str | None  # None: unset (the provider uses its default)
    source: str  # "environment" | "file" | "unset"
    shadowed: str | None = None  # the file's value when the environment overrides it


def effective(env: DotEnv, environ: Mapping[str, str], keys: list[str] | tuple[str, ...]) -> dict[str, Seen]:
    """For each key: the environment's value if set there (setdefault never overrides it), else the file's."""
    seen = {}
    for key in keys:
        if key in environ:
            seen[key] = Seen(key, environ[key], "environment", env.values.get(key))
        elif key in env.values:
            seen[key] = Seen(key, env.values[key], "file")
        else:
            seen[key] = Seen(key, None, "unset")
    return seen


def notes(env: DotEnv, keys: list[str] | tuple[str, ...]) -> list[str]:
    """Lines that do not do what they look like for `keys` (by line number, never quoting a value)."""
    found = []
    wanted = set(keys)
    for line in env.lines:
        number = line.index + 1
        stripped = line.text.strip().lstrip(BOM)
        bare = stripped[len("export") :].lstrip() if stripped.startswith(("export\t", "export  ")) else stripped
        name = bare.split("=", 1)[0].strip() if "=" in bare else ""
        head = bare.split(None, 1)[0].rstrip(":") if bare and "=" not in bare else ""
        if line.key is None and head in wanted:
            found.append(f"line {number}: no `=`, so EchoPanel skips this line: it does not set {head}")
        elif line.key is not None and line.key.startswith(BOM) and line.key[1:] in wanted:
            found.append(
                f"line {number}: the file starts with a byte-order mark, so EchoPanel reads this key as "
                f"'\\ufeff{line.key[1:]}', not {line.key[1:]}"
            )
        elif line.key is not None and line.key.startswith("export\t") and name in wanted:
            found.append(f"line {number}: `export` followed by a tab is not removed: EchoPanel ignores this {name}")
        elif line.key in wanted and line.value is None:
            found.append(f"line {number}: {line.key}= is empty, so EchoPanel leaves {line.key} unset")
        elif line.key in wanted and env.first(line.key) is not line and line.value is not None:
            found.append(f"line {number}: a later {line.key} line; EchoPanel uses the first one")
        elif line.key in wanted and line.value is not None and " #" in line.value:
            found.append(f"line {number}: EchoPanel keeps ' # …' as part of {line.key}'s value (no inline comments)")
        elif line.key in wanted and line.value is not None and "${" in line.value:
            found.append(f"line {number}: EchoPanel does not expand ${{…}}: {line.key} gets the literal text")
    if env.stopped_at is not None:
        found.append(f"line {env.stopped_at + 1}: a NUL character; EchoPanel stops reading the file here")
    return found


# Writing


def format_line(key: str, value: str) -> str:
    """`KEY=value` that EchoPanel's loader reads back as exactly `value`; unquoted where that is safe.

    Refused (UsageError): an empty value (EchoPanel would skip the line; remove the key instead), a line break or
    NUL (the line would split), and `${...}` (EchoPanel would use the reference's literal text).
    """
    if not value:
        raise UsageError(f"{key}: an empty value is never written (EchoPanel skips `{key}=`); remove the key instead")
    if "${" in value:
        raise UsageError(f"{key}: EchoPanel expands nothing, so '${{…}}' would arrive literally; give the value itself")
    if len(value.splitlines()) != 1 or value.splitlines()[0] != value or "\x00" in value:
        raise UsageError(f"{key}: a value with a line break or NUL cannot go in EchoPanel's .env")
    needs_quotes = value != value.strip() or (value[0] in _QUOTES and value.endswith(value[0]))
    if not needs_quotes:
        return f"{key}={value}"
    quote = "'" if '"' in value else '"'  # EchoPanel removes exactly one wrapping pair, whatever is inside
    return f"{key}={quote}{value}{quote}"


def merge(text: str, updates: Mapping[str, str | None]) -> str:
    """`text` with `updates` applied by EchoPanel's rules; None removes every line of a key.

    The first line of a key is rewritten in place (keeping its `export ` and its line ending), later lines of the same
    key are dropped (EchoPanel would ignore them, and a reader would not), new keys are appended. What looked like an
    inline comment on a rewritten line is kept as a comment line above it. Every other line, the order, each line's
    ending and a BOM stay exactly as they were.
    """
    env = parse(text)
    first = env.lines[0] if env.lines else None
    if first is not None and first.key is not None and first.key[1:] in updates and first.key.startswith(BOM):
        # `\ufeffKEY=` sets another variable for EchoPanel: keep the BOM on a line of its own, so KEY is ours again.
        env = parse(BOM + (first.ending or "\n") + text[1:])
    newline = next((ln.ending for ln in env.lines if ln.ending), "\n")
    out: list[str] = []
    written: set[str] = set()
    for line in env.lines:
        key = line.key
        if key is None or key not in updates:
            out.append(line.text + line.ending)
            continue
        value = updates[key]
        if key in written or value is None:
            written.add(key)
            continue
        written.add(key)
        indent = line.text[: len(line.text) - len(line.text.lstrip())]
        export = "export " if line.text.strip().startswith("export ") else ""
        ending = line.ending or newline
        if comment := _inline_comment(line):
            out.append(f"{indent}{comment}{ending}")
        out.append(f"{indent}{export}{format_line(key, value)}{ending}")
    missing = [(k, v) for k, v in updates.items() if v is not None and k not in written]
    if missing and out and not out[-1].endswith(_ENDINGS):
        out[-1] += newline
    out.extend(f"{format_line(k, v)}{newline}" for k, v in missing)
    return "".join(out)


_ENDINGS = ("\r\n", "\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _inline_comment(line: Line) -> str:
    """`# note` from an unquoted `K=v  # note` (which EchoPanel took as part of the value), or ""."""
    raw = line.text.split("=", 1)[1].strip() if "=" in line.text else ""
    if raw[:1] in _QUOTES or " #" not in raw:
        return ""
    return raw[raw.index(" #") + 1 :].strip()


def backup_dir() -> Path:
    """Where configure keeps previous versions of a `.env`: our state dir, never EchoPanel's checkout (its
    `.gitignore` covers `.env`, not `.env.bak`)."""
    from echopanel_setup import paths

    return paths.state_dir() / "backups"


def _slug(path: Path) -> str:
    """A file-name-safe, collision-free name for `path`'s backups and lock."""
    digest = hashlib.sha256(str(path).encode("utf-8", errors="surrogateescape")).hexdigest()[:12]
    return f"{path.parent.name or 'root'}-{path.name}-{digest}"


@contextlib.contextmanager
def locked(path: Path, timeout_s: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock for writing `path`: a concurrent configure waits (then reads the file we wrote), never
    interleaves. The lock file lives in our state dir."""
    from filelock import FileLock, Timeout

    target = Path(os.path.realpath(path))
    lock_dir = backup_dir().parent / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock_dir / f"{_slug(target)}.lock"), timeout=timeout_s):
            yield
    except Timeout:
        raise ExternalError(
            f"{path}: another echopanel-setup is writing it (waited {timeout_s:.0f} s); try again when it is done"
        ) from None


def write_atomic(path: Path, text: str, *, private: bool = False) -> Path | None:
    """Replace `path` with `text` so that a crash leaves the old file or the new one, never half of one.

    The previous version is copied to our backup dir (0600) first; the new file keeps the old one's mode (a new one is
    0600: a `.env` tends to collect tokens), without the group and other bits when `private` (it now holds a secret).
    A symlinked `.env` is written through its link. Returns the backup's path, or None for a new file. Call it under
    `locked(path)`.
    """
    target = Path(os.path.realpath(path))
    _sweep_temps(target)
    backup = None
    mode = 0o600
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode) & (0o700 if private else 0o7777)
        backup = _backup(target)
    replace_file(target, text.encode("utf-8"), mode)
    return backup


def _sweep_temps(target: Path) -> None:
    """Remove what a writer killed before its rename left beside `target` or its backups (`.NAME.XXXX.tmp`, see
    fileio): under the lock no other configure writes them, and a stray copy of `.env` must not linger in the checkout
    (git would show it, and it may hold a key)."""
    for tmp in [*target.parent.glob(f".{target.name}.*.tmp"), *backup_dir().glob(f".{_slug(target)}.*.tmp")]:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _backup(target: Path) -> Path:
    folder = backup_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
    backup = folder / f"{_slug(target)}.{stamp}"
    replace_file(backup, target.read_bytes(), 0o600)
    olds = sorted(folder.glob(f"{_slug(target)}.*"))
    for old in olds[:-_BACKUPS_KEPT]:
        with contextlib.suppress(OSError):
            old.unlink()
    return backup
