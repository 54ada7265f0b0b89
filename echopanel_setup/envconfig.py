"""EchoPanel's env config: a dotenv file of `KEY=value` lines, `#` comments and optional `export `.

This module reads and validates it; the same validation serves `doctor` and `configure`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from echopanel_setup import knowledge

PROVIDER = "ECHOPANEL_ASR_PROVIDER"
URL = "VOXTRAL_VLLM_URL"
DELAY = "VOXTRAL_STREAMING_DELAY_MS"
MODE = "VOXTRAL_MODE"
API_KEY = "VOXTRAL_MISTRAL_API_KEY"
KEYS = (PROVIDER, URL, DELAY, MODE, API_KEY)
SECRET_KEYS = frozenset({API_KEY})

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
            result.errors.append(f"line {number}: not KEY=value: {line[:60]}")
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
    if ms in knowledge.delay_grid():
        return None
    near = " or ".join(str(v) for v in knowledge.nearest_delays(ms))
    d = knowledge.load()["delay"]
    return (
        f"{DELAY}={ms} is not a delay the model was trained for (multiples of {d['step_ms']} from "
        f"{d['min_ms']} to {d['max_ms']}, or 2400); nearest: {near}"
    )


def validate_url(value: str) -> str | None:
    """None for `http(s)://host:port` with no path, as the seed guide writes it."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{URL}={value!r} does not parse: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{URL}={value!r} must look like http://host:8000"
    if parts.path not in ("", "/") or parts.query:
        return f"{URL}={value!r} must have no path (EchoPanel adds /v1/realtime itself): use {parts.scheme}://{parts.netloc}"
    if port is None:
        return f"{URL}={value!r} has no port; vLLM listens on 8000 by default: {parts.scheme}://{parts.hostname}:8000"
    return None


def validate(values: dict[str, str]) -> list[str]:
    """Every problem with EchoPanel's keys, one message each."""
    problems = []
    providers = knowledge.load()["echopanel"]["providers"]
    if PROVIDER in values and values[PROVIDER] not in providers:
        problems.append(f"{PROVIDER}={values[PROVIDER]!r} is not one of {', '.join(providers)}")
    if URL in values and (msg := validate_url(values[URL])):
        problems.append(msg)
    if DELAY in values and (msg := validate_delay(values[DELAY])):
        problems.append(msg)
    if MODE in values and values[MODE] not in ("", "api"):
        problems.append(f"{MODE}={values[MODE]!r}: the only value is 'api' (leave it out for a vLLM server)")
    return problems


def is_local_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.")
