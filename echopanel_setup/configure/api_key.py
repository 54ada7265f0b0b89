"""`configure --mode api`: the Mistral API key. A key given now goes into `.env` (made private); `--shell` prints only
a reference to MISTRAL_API_KEY; otherwise the file's or the environment's key is used, or configure says how."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from echopanel_setup.configure.result import API_KEY, Advice, ConfigureOptions
from echopanel_setup.echopanel import settings
from echopanel_setup.errors import UsageError

FALLBACK_KEY = "MISTRAL_API_KEY"  # our provider's fallback for the API key, read from the environment only
SHELL_KEY_REF = "${" + FALLBACK_KEY + "}"


def decide(
    opts: ConfigureOptions,
    chosen: settings.Provider,
    existing: dict[str, str],
    environ: Mapping[str, str],
    stdin: TextIO | None,
    updates: dict[str, str | None],
    shell_refs: dict[str, str],
    reasons: dict[str, str],
    advice: list[Advice],
) -> None:
    """A key given now goes into `.env` (private, 0600); --shell prints only a reference to MISTRAL_API_KEY; otherwise
    the file's key stays, or the environment's is used where it is, or configure says how to provide one."""
    if opts.shell:
        if opts.api_key:
            raise UsageError(
                "--shell never prints a key: export MISTRAL_API_KEY=… in the shell that starts EchoPanel's backend "
                "(the exports refer to it), or store the key in .env with `configure --mode api --api-key -`"
            )
        if existing.get(API_KEY) and not environ.get(FALLBACK_KEY):
            # The reference would export an empty key, and EchoPanel's .env never overrides its environment: the
            # file's key would be hidden.
            advice.append(
                Advice(
                    f"{API_KEY} stays in .env: {FALLBACK_KEY} is not set here, and exporting it empty would hide the "
                    "file's key from EchoPanel."
                )
            )
            return
        shell_refs[API_KEY] = SHELL_KEY_REF
        updates[API_KEY] = SHELL_KEY_REF
        reasons[API_KEY] = f"a reference to {FALLBACK_KEY} in that shell (--shell prints no secret)"
        return
    key = opts.api_key
    if key == "-":
        key = (stdin or sys.stdin).readline().strip()
        if not key:
            raise UsageError(
                "--api-key -: standard input was empty; pipe the key in, e.g. `pass show mistral | echopanel-setup "
                "configure --mode api --api-key -`"
            )
        reasons[API_KEY] = "read from standard input (written; the file is made private, 0600)"
    elif key:
        reasons[API_KEY] = "--api-key (written; the file is made private, 0600)"
        advice.append(
            Advice(
                "A key on the command line stays in your shell history; `--api-key -` reads it from standard input "
                "instead."
            )
        )
    if key:
        updates[API_KEY] = key
        return
    if existing.get(API_KEY):
        reasons[API_KEY] = "kept from the existing file"
        return
    if environ.get(API_KEY):
        reasons[API_KEY] = f"EchoPanel's backend reads {API_KEY} from its environment; nothing written"
        return
    if environ.get(FALLBACK_KEY) and chosen.reads(FALLBACK_KEY):
        reasons[API_KEY] = (
            f"not written: the provider falls back to {FALLBACK_KEY}, set in this shell — start EchoPanel's backend "
            "from a shell that has it, or store the key with --api-key -"
        )
        return
    advice.append(
        Advice(
            "No Mistral API key: API mode needs one (https://console.mistral.ai/api-keys). Store it in .env (the file "
            "becomes 0600), or export it in the shell that starts EchoPanel's backend:",
            [
                "echopanel-setup configure --mode api --api-key -   # reads the key from standard input",
                f"export {FALLBACK_KEY}=…",
            ],
        )
    )
