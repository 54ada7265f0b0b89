"""Errors that map to DEVELOPERS.md's exit codes, and the one place that turns them into one line."""

from __future__ import annotations


class SetupError(Exception):
    """An error the user can act on: printed as one line, no traceback."""

    exit_code = 1


class UsageError(SetupError):
    """Bad flag value, missing or malformed input file (Click's convention: exit 2)."""

    exit_code = 2


class ExternalError(SetupError):
    """Network, Hub or API refused, server unreachable, disk full (exit 3)."""

    exit_code = 3


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_EXTERNAL = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130
