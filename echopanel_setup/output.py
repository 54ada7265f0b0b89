"""The `--json` envelope every command shares: one document per run, one line per event for live commands.

Every document starts with `header()` and carries `exit_code` and `error` (null unless the run ended in
an error): scripts can read `.exit_code` and `.error.message` from any command's output without knowing
which command wrote it. `schema/envelope.schema.json` pins this; each command's own fields come after.
Errors are written by `cli.main` alone (it is the one place that turns exceptions into exit codes), so a
command only ever writes its result.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from echopanel_setup import __version__
from echopanel_setup.errors import EXIT_EXTERNAL, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE

ENVELOPE_SCHEMA_VERSION = 1
# `error.kind` by exit code: what a script branches on (retry on "external", fix the call on "usage").
ERROR_KINDS = {
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage",
    EXIT_EXTERNAL: "external",
    EXIT_INTERNAL: "internal",
    EXIT_INTERRUPTED: "interrupted",
}

_lines_written = False  # set by write_line: an error after NDJSON events must be a line too


def header(command: str, schema_version: int) -> dict[str, Any]:
    """The fields every command's `--json` document (and every NDJSON line) starts with."""
    return {
        "schema_version": schema_version,
        "tool": {"name": "echopanel-setup", "version": __version__},
        "command": command,
    }


def document(command: str, schema_version: int, exit_code: int, **fields: Any) -> dict[str, Any]:
    """A command's result document: the header, its exit code, `error: null`, then the command's fields."""
    return {**header(command, schema_version), "exit_code": exit_code, "error": None, **fields}


def error_document(command: str, message: str, exit_code: int, traceback: str | None = None) -> dict[str, Any]:
    """The document for a run that ended in an error (exit 1 from an error, 2, 3, 4 or 130).

    `traceback` is where an internal error's traceback was saved (exit 4), never the traceback itself.
    """
    return {
        **header(command, ENVELOPE_SCHEMA_VERSION),
        "exit_code": exit_code,
        "error": error(message, exit_code, traceback),
    }


def error(message: str, exit_code: int, traceback: str | None = None) -> dict[str, Any]:
    """The envelope's `error` object, also for a result document whose run ended in an external error (exit 3)."""
    return {"kind": ERROR_KINDS.get(exit_code, "failed"), "message": message, "traceback": traceback}


def write_json(doc: dict[str, Any], out: TextIO | None = None) -> None:
    """One indented JSON document; `\\u` escapes keep it valid where stdout cannot encode UTF-8 (LANG=C)."""
    stream = out or sys.stdout
    stream.write(json.dumps(doc, indent=2, ensure_ascii=not is_utf8(stream)) + "\n")


def write_line(doc: dict[str, Any], out: TextIO | None = None) -> None:
    """One NDJSON line (a live command's event), flushed at once so a pipe sees it as it happens."""
    global _lines_written
    stream = out or sys.stdout
    stream.write(json.dumps(doc, ensure_ascii=not is_utf8(stream), separators=(",", ":")) + "\n")
    stream.flush()
    _lines_written = True


def write_error(doc: dict[str, Any], out: TextIO | None = None) -> None:
    """An error document: indented, or one line when this run has already written NDJSON lines."""
    (write_line if _lines_written else write_json)(doc, out)


def is_utf8(stream: TextIO) -> bool:
    """Whether `stream` can take any character (else: \\u escapes in JSON, ASCII symbols in text)."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return encoding in ("utf8", "utf_8")
