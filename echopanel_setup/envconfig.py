"""EchoPanel's settings keys and their validation, shared by doctor, serve, smoke, configure and setup.

Reading and writing the file is EchoPanel's own business: `echopanel/dotenv.py` implements its `.env` parser and the
writer that follows its rules; `echopanel/settings.py` says which file and which keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
MASK = "<set>"  # a secret's value as facts keep it: present, never the value (schema/doctor.schema.json says so too)
_SECRET_NAME = re.compile(r"(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:_|$)", re.IGNORECASE)


def is_secret(key: str) -> bool:
    """Whether a variable's value must never be shown or saved (API keys, tokens, passwords)."""
    return key in SECRET_KEYS or bool(_SECRET_NAME.search(key))


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
    """Every problem with the Voxtral keys' values, one message each. (Whether the provider selected exists is the
    checkout's to say: doctor's echopanel.provider reads its registry.)"""
    problems = []
    if URL in values and (msg := validate_url(values[URL])):
        problems.append(msg)
    if DELAY in values and (msg := validate_delay(values[DELAY])):
        problems.append(msg)
    if MODE in values and values[MODE] not in ("", "api"):
        problems.append(f"{MODE}={values[MODE]!r}: the only value is 'api' (leave it out for a vLLM server)")
    return problems
