"""The exit codes every command shares, and the errors that carry them.

Failures travel one way: a command raises one of these; `cli.main` alone turns it into one line on stderr (and,
under --json, an error document) and the exit code. Commands return results, never failing exit codes.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_EXTERNAL = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130


class SetupError(Exception):
    """An error the user can act on: printed as one line, no traceback."""

    exit_code = EXIT_FAILED


class UsageError(SetupError):
    """Bad flag value, missing or malformed input file (Click's convention: exit 2)."""

    exit_code = EXIT_USAGE


class ExternalError(SetupError):
    """Network, Hub or API refused, server unreachable, disk full (exit 3)."""

    exit_code = EXIT_EXTERNAL


class Unreachable(ExternalError):
    """Nothing answered at the URL (refused, no such host, timed out): no verdict on the server, exit 3 in every
    client, also where a client that got nothing would otherwise fail the check (exit 1)."""


class Interrupted(SetupError):
    """Ctrl-C in the middle of work that can be resumed: the message says what was kept and how to go on."""

    exit_code = EXIT_INTERRUPTED
