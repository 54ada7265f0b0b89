"""One way to replace a file: a crash, a kill -9 or a full disk leaves the old file or the new one, never half.

Used for everything we write that a user or EchoPanel reads back: EchoPanel's `.env`, our env config and its
backups, the provider file `provider fix` installs and its records. Kept out of start-up: only writers import it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_file(target: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `target` through a temporary file beside it, synced, then renamed over it.

    `mode` is set on the temporary file before a byte is written (a secret is never readable by others, not even
    for a moment); None means what a new file gets under the current umask. The temporary file is named
    `.NAME.XXXX.tmp`, so a writer killed before the rename leaves something a later run can recognise and remove.
    """
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
