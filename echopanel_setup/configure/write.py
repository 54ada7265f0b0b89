"""Where configure writes and how: the target file (`<checkout>/.env`, or `--output`), read only when it is a regular
UTF-8 file; the write under the file's lock, merged into what it holds then; and the masked diff and `--shell` exports
shown instead of (or before) a write."""

from __future__ import annotations

import difflib
import errno
import shlex
import stat
from pathlib import Path

from echopanel_setup.configure.result import MAC_NOTE, MASKED, ConfigureOptions, NoCheckout, Plan
from echopanel_setup.echopanel import discover, dotenv
from echopanel_setup.envconfig import URL, is_secret
from echopanel_setup.errors import ExternalError, UsageError
from echopanel_setup.url import redact


def require_target(opts: ConfigureOptions, checkout: discover.Checkout | None, system: str) -> None:
    """NoCheckout when configure has nowhere to write: no checkout found, no --output, no --shell."""
    if checkout is None and not opts.output and not opts.shell:
        mac = f". {MAC_NOTE}" if system == "Darwin" else ""
        raise NoCheckout(
            "no EchoPanel checkout found (looked at --echopanel, ECHOPANEL_HOME, this directory and its parents, "
            f"~/{', ~/'.join(discover.USUAL_PLACES)}): pass --echopanel PATH, or write the settings to a file with "
            f"--output FILE, or print them for the shell that starts EchoPanel's backend with --shell{mac}"
        )


def target_path(opts: ConfigureOptions, checkout: discover.Checkout | None) -> Path | None:
    if opts.output:
        return Path(opts.output).expanduser()
    return checkout.env_file if checkout is not None else None


def read_target(path: Path | None) -> tuple[str, bool]:
    """(the file's text, whether it is read-only). Only a regular file (or a link to one) is read: a FIFO would block,
    a device or a directory is not a settings file, and none of them may be replaced by one."""
    if path is None:
        return "", False
    try:
        st = path.stat()
    except FileNotFoundError:
        return "", False
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(
            f"{path}: {dotenv.file_kind(st.st_mode)}, not a regular file; name the settings file itself (--output)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # rewriting it would drop the bytes EchoPanel's reader ignores
        raise UsageError(f"{path}: not UTF-8 text; configure would lose bytes rewriting it: fix or move it") from None
    return text, not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def apply(plan: Plan) -> tuple[Path | None, bool]:
    """Write the plan under the file's lock: the file is read again there and the updates merged into what it holds
    now, so a concurrent configure's keys (or the user's edit) are never lost. Returns (backup or None, changed)."""
    assert plan.path is not None
    try:
        with dotenv.locked(plan.path):
            current, _ = read_target(plan.path)
            text = dotenv.merge(current, plan.updates)
            if text == current:
                return None, False
            return dotenv.write_atomic(plan.path, text, private=plan.secret), True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # the disk, not the user's input
            raise ExternalError(
                f"{plan.path}: cannot write it: {exc.strerror or exc} (the previous file is untouched); free some "
                "space and run configure again"
            ) from None
        raise UsageError(f"{plan.path}: cannot write it: {exc.strerror or exc}") from None


def shown(key: str, value: str) -> str:
    """A value as configure may show it: a secret masked, a URL's user and password as `***`."""
    if is_secret(key) and value:
        return MASKED
    return redact(value) if key == URL else value


def masked(text: str) -> str:
    """`text` with the value of every line whose key names a secret replaced, and a URL's credentials (diffs show
    context lines too)."""
    out = []
    for line in dotenv.parse(text).lines:
        key = line.key.lstrip(dotenv.BOM) if line.key is not None else None
        if key is not None and line.value and (value := shown(key, line.value)) != line.value:
            out.append(line.text.split("=", 1)[0] + "=" + value + line.ending)
        else:
            out.append(line.text + line.ending)
    return "".join(out)


def diff(plan: Plan) -> str:
    name = str(plan.path) if plan.path else ".env"
    return "".join(
        difflib.unified_diff(
            masked(plan.old_text).splitlines(keepends=True),
            masked(plan.new_text).splitlines(keepends=True),
            fromfile=f"{name} (now)",
            tofile=f"{name} (after configure)",
        )
    )


def shell(plan: Plan) -> str:
    """`export` lines for the shell that starts EchoPanel's backend: the managed keys of the result, secrets only as
    `"${MISTRAL_API_KEY}"`, a removed key as `unset`. Safe to `eval` whatever the values hold. A URL carrying a
    password is left out (its shown form would point EchoPanel at the wrong credentials): the plan's notes say so."""
    values: dict[str, str | None] = {k: v for k, v in plan.values.items() if shown(k, v) == v}
    values.update({k: None for k, v in plan.updates.items() if v is None})
    lines = []
    for key, value in values.items():
        lines.append(f"unset {key}" if value is None else f"export {key}={shlex.quote(value)}")
    lines.extend(f'export {key}="{ref}"' for key, ref in plan.shell_refs.items())
    return "".join(f"{line}\n" for line in lines)
