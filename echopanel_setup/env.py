"""The environment variables echopanel-setup itself acts on, read in one place at the edge (`cli`) and
passed on in options, so no module deep inside reads — or writes — `os.environ` to hand a value along.

(EchoPanel's own settings are another matter: what EchoPanel will see comes from its environment and
its `.env`, read by EchoPanel's rules in `envconfig`.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from echopanel_setup.errors import UsageError

VLLM_API_KEY = "VLLM_API_KEY"
SSL_CERT_FILE = "SSL_CERT_FILE"


def vllm_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """vLLM's own variable for `--api-key` (`vllm serve` reads it too): the key a keyed server wants on
    `/v1/*`. None when unset or empty."""
    value = (os.environ if environ is None else environ).get(VLLM_API_KEY)
    return header_value(value, VLLM_API_KEY) or None


def header_value(value: str | None, name: str) -> str | None:
    """A key that goes into an HTTP header (`Authorization: Bearer …`): printable ASCII only. A line break or a
    letter outside ASCII crashed the request that built the header (exit 4); it is a usage error naming where the
    key came from, never showing it."""
    if value and not all(" " <= c <= "~" for c in value):
        raise UsageError(
            f"{name} holds a character an HTTP header cannot carry (a line break, a control character or a letter "
            "outside ASCII): give the key alone"
        )
    return value


def ssl_cert_file(environ: Mapping[str, str] | None = None) -> str | None:
    """OpenSSL's variable for a CA bundle: honoured for every https:// server, loopback ones included (where httpx
    reads no environment)."""
    return (os.environ if environ is None else environ).get(SSL_CERT_FILE) or None


def secret_arg(value: str | None, flag: str = "--api-key", stdin: TextIO | None = None) -> str | None:
    """A secret given on the command line, where `-` means one line of standard input: the way to pass a key
    that stays out of `ps` and the shell history. An empty line is a usage error, never an empty key."""
    if value != "-":
        return header_value(value, flag)
    line = (stdin or sys.stdin).readline().strip()
    if not line:
        raise UsageError(f"{flag} -: standard input gave no key (pipe one line in, e.g. from your secret store)")
    return header_value(line, f"{flag} - (standard input)")
