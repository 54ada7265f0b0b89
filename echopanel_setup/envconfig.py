"""EchoPanel's env config: a dotenv file of `KEY=value` lines, `#` comments and optional `export `.

This module reads and validates it; the same validation serves `doctor` and `configure`, which also
merges its changes into the file and replaces it atomically (see the second half).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from echopanel_setup import knowledge
from echopanel_setup.errors import UsageError

if TYPE_CHECKING:
    from echopanel_setup.url import ServerURL

PROVIDER = "ECHOPANEL_ASR_PROVIDER"
URL = "VOXTRAL_VLLM_URL"
DELAY = "VOXTRAL_STREAMING_DELAY_MS"
MODE = "VOXTRAL_MODE"
API_KEY = "VOXTRAL_MISTRAL_API_KEY"
KEYS = (PROVIDER, URL, DELAY, MODE, API_KEY)
SECRET_KEYS = frozenset({API_KEY})
_SECRET_NAME = re.compile(r"(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:_|$)", re.IGNORECASE)


def is_secret(key: str) -> bool:
    """Whether a variable's value must never be shown or saved (API keys, tokens, passwords)."""
    return key in SECRET_KEYS or bool(_SECRET_NAME.search(key))


_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


@dataclass
class EnvFile:
    values: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def parse(text: str) -> EnvFile:
    """Parse dotenv text; malformed lines are reported by number, never fatal."""
    result = EnvFile()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(raw)
        if not match:
            # The line's text is not echoed: a mistyped `KEY: secret` must not leak into reports.
            result.errors.append(f"line {number}: not KEY=value (write KEY=value, # comments, optional `export `)")
            continue
        key, value = match.groups()
        try:
            result.values[key] = _unquote(value)
        except ValueError as exc:
            result.errors.append(f"line {number}: {exc}")
    return result


def _unquote(value: str) -> str:
    if value[:1] in ("'", '"'):
        parts = shlex.split(value, comments=True)
        if len(parts) != 1:
            raise ValueError("unbalanced or multiple quoted values")
        return parts[0]
    return value.split(" #", 1)[0].rstrip()


def read(path: Path) -> EnvFile:
    return parse(path.read_text(encoding="utf-8"))


def validate_delay(value: str) -> str | None:
    """None when `value` is on the delay grid, else a message naming the nearest valid values."""
    try:
        ms = int(value)
    except ValueError:
        return f"{DELAY}={value!r} is not a whole number of milliseconds"
    d = knowledge.load().delay
    if ms in d.grid():
        return None
    near = " or ".join(str(v) for v in d.nearest(ms))
    extra = "".join(f", or {v}" for v in d.extra_ms)
    return (
        f"{DELAY}={ms} is not a delay the model was trained for (multiples of {d.step_ms} from "
        f"{d.min_ms} to {d.max_ms}{extra}); nearest: {near}"
    )


def validate_url(value: str) -> str | None:
    """None when EchoPanel can use `value` as its URL (http(s)://host:port, no path), else the sentence why."""
    from echopanel_setup.url import ServerURL

    try:
        ServerURL.parse_echopanel(value, what=URL)
    except UsageError as exc:
        return str(exc)
    return None


def configured_url(values: Mapping[str, str]) -> ServerURL | None:
    """EchoPanel's `VOXTRAL_VLLM_URL` as a value, when it is one EchoPanel can use (else None: the config
    check reports why)."""
    from echopanel_setup.url import ServerURL

    text = values.get(URL)
    if not text:
        return None
    try:
        return ServerURL.parse_echopanel(text)
    except UsageError:
        return None


def validate(values: dict[str, str]) -> list[str]:
    """Every problem with EchoPanel's keys, one message each."""
    problems = []
    providers = knowledge.load().echopanel.providers
    if PROVIDER in values and values[PROVIDER] not in providers:
        problems.append(f"{PROVIDER}={values[PROVIDER]!r} is not one of {', '.join(providers)}")
    if URL in values and (msg := validate_url(values[URL])):
        problems.append(msg)
    if DELAY in values and (msg := validate_delay(values[DELAY])):
        problems.append(msg)
    if MODE in values and values[MODE] not in ("", "api"):
        problems.append(f"{MODE}={values[MODE]!r}: the only value is 'api' (leave it out for a vLLM server)")
    return problems


# Writing (configure): merge into the user's file without losing a line, replace it atomically.

_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_BARE = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")
_STALE_TMP_S = 600


def reference(value: str) -> str | None:
    """The variable a `${NAME}` value points to (dotenv's expansion syntax), else None."""
    match = _REF.match(value)
    return match.group(1) if match else None


def effective(path: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The values EchoPanel sees: the file's, overridden by the environment, `${NAME}` references resolved.

    A missing or unreadable file counts as empty; a reference to an unset variable drops the key.
    """
    values: dict[str, str] = {}
    if path is not None and path.is_file():
        try:
            values = read(path).values
        except (OSError, UnicodeDecodeError):
            values = {}
    values.update({k: environ[k] for k in KEYS if k in environ})
    resolved = {}
    for key, value in values.items():
        name = reference(value)
        if name is None:
            resolved[key] = value
        elif name in environ:
            resolved[key] = environ[name]
    return resolved


def has_secret(values: Mapping[str, str]) -> bool:
    """A literal key is inside (a `${NAME}` reference is not a secret)."""
    return any(v and reference(v) is None for k, v in values.items() if k in SECRET_KEYS)


def format_line(key: str, value: str, export: bool = False) -> str:
    """`KEY=value`, single-quoted when needed, readable by both this parser and python-dotenv.

    Values that cannot be written that way (a single quote or a control character) are refused.
    """
    if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
        raise ValueError(f"{key}: control characters (newlines, tabs) cannot go in the env file")
    if _BARE.match(value) or reference(value):
        text = value
    elif "'" not in value:
        text = f"'{value}'"
    else:
        raise ValueError(f"{key}: a value with a single quote cannot go in the env file")
    return f"{'export ' if export else ''}{key}={text}"


def merge(text: str, updates: Mapping[str, str | None]) -> str:
    """`text` with `updates` applied: the last assignment of each key is rewritten in place (its
    `export ` kept), new keys are appended, None removes every assignment of the key. Comments, blank
    lines, unknown keys and their order stay exactly as they were."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    where: dict[str, list[int]] = {}
    for number, raw in enumerate(lines):
        match = _LINE.match(raw)
        if match and not raw.lstrip().startswith("#"):
            where.setdefault(match.group(1), []).append(number)
    dropped: set[int] = set()
    appended: list[str] = []
    for key, value in updates.items():
        found = where.get(key, [])
        if value is None:
            dropped.update(found)
        elif not found:
            appended.append(format_line(key, value))
        elif parse(lines[found[-1]]).values.get(key) != value:
            raw = lines[found[-1]]
            lines[found[-1]] = format_line(key, value, export=raw.lstrip().startswith("export ")) + _inline_comment(raw)
    kept = [line for number, line in enumerate(lines) if number not in dropped] + appended
    return newline.join(kept) + newline if kept else ""


def _inline_comment(raw: str) -> str:
    """The `  # comment` after an assignment's value (a comment is the user's, even on our keys), or ""."""
    match = _LINE.match(raw)
    value = match.group(2) if match else ""
    if value[:1] in ("'", '"'):
        quote, end = value[0], 1
        while end < len(value) and value[end] != quote:
            end += 2 if quote == '"' and value[end] == "\\" else 1
        rest = value[end + 1 :].strip()
    else:
        rest = value[value.find(" #") :].strip() if " #" in value else ""
    return f"  {rest}" if rest.startswith("#") else ""


def write_atomic(path: Path, text: str, secret: bool) -> Path | None:
    """Replace `path` with `text` so that a crash leaves the old file or the new one, never half of one.

    The previous file is kept as `NAME.bak` (its mode kept, 0600 if it held a secret). The new file is
    0600 when `secret`, else it keeps the old file's mode. A symlinked config is written through the
    link. Returns the backup's path, or None when there was no previous file.
    """
    from echopanel_setup.fileio import replace_file  # only configure writes; keep it off doctor's start-up

    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(target)
    backup = None
    old_mode = None
    if target.exists():
        old_mode = stat.S_IMODE(target.stat().st_mode)
        old = target.read_bytes()
        old_secret = has_secret(parse(old.decode("utf-8", errors="replace")).values)
        backup = target.with_name(target.name + ".bak")
        replace_file(backup, old, 0o600 if old_secret else old_mode)
    mode = 0o600 if secret else old_mode  # None: a new file's mode under the umask
    replace_file(target, text.encode("utf-8"), mode)
    return backup


def _clean_stale_temps(target: Path) -> None:
    """Temp files a killed writer left behind (older than ten minutes, so a concurrent writer's is safe)."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                tmp.unlink()


def shell_exports(values: Mapping[str, str | None]) -> str:
    """`export KEY=…` lines safe to `eval`: values single-quoted by shlex, a `${NAME}` reference kept
    as a double-quoted expansion of that one variable, None as `unset KEY`."""
    lines = []
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{key!r} is not a variable name")
        if value is None:
            lines.append(f"unset {key}")
        elif name := reference(value):
            lines.append(f'export {key}="${{{name}}}"')
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return "\n".join(lines) + ("\n" if lines else "")
