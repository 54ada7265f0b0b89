"""Find the user's EchoPanel checkout, and the Python its backend runs on.

A checkout is a directory with `server/main.py`, `server/services/asr_providers.py` and a `pyproject.toml` whose
project name is `echopanel` (other FastAPI projects share the rest of that layout). Order: `--echopanel PATH`,
`ECHOPANEL_HOME`, the current directory or a parent, then the usual places. One named by the user (flag or variable)
must be valid; one found by looking around is shown and confirmed before anything is written into it; several found
in the usual places are listed, and the user picks one (exit 2).
"""

from __future__ import annotations

import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from echopanel_setup import paths
from echopanel_setup.errors import UsageError

HOME_VAR = "ECHOPANEL_HOME"
PROJECT_NAME = "echopanel"
REQUIRED_FILES = ("server/main.py", "server/services/asr_providers.py", "pyproject.toml")
USUAL_PLACES = ("EchoPanel", "Projects/EchoPanel", "src/EchoPanel", "code/EchoPanel")
FLAG = "--echopanel"


@dataclass(frozen=True)
class Checkout:
    """A valid EchoPanel checkout and how it was found."""

    path: Path
    how: str  # "--echopanel" | "ECHOPANEL_HOME" | "current directory" | "usual place"

    @property
    def named_by_user(self) -> bool:
        """Named by flag or variable: writing into it needs no confirmation. Found by looking: ask first."""
        return self.how in (FLAG, HOME_VAR)

    @property
    def env_file(self) -> Path:
        """Where EchoPanel's backend reads its `.env`: next to `pyproject.toml`, whatever the working directory."""
        return self.path / ".env"


class AmbiguousCheckout(UsageError):
    """Several checkouts in the usual places: the user names one."""

    def __init__(self, candidates: list[Path]) -> None:
        self.candidates = candidates
        listed = ", ".join(str(c) for c in candidates)
        super().__init__(f"several EchoPanel checkouts found ({listed}); pick one with {FLAG} PATH or {HOME_VAR}")


def why_not(path: Path) -> str | None:
    """None when `path` is an EchoPanel checkout, else what is missing (in words for an error message)."""
    if not path.is_dir():
        return "not a directory" if path.exists() else "no such directory"
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        return f"no {', '.join(missing)}"
    if sys.version_info >= (3, 11):  # imported here: doctor without a checkout never parses one (start-up)
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"pyproject.toml does not parse ({exc})"
    name = data.get("project", {}).get("name") if isinstance(data.get("project"), dict) else None
    if not isinstance(name, str) or _normalise(name) != PROJECT_NAME:
        return f"pyproject.toml names project {name!r}, not {PROJECT_NAME!r}"
    return None


def _normalise(name: str) -> str:
    """PEP 503 normalisation: `Echo_Panel` and `echo-panel` are the same project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find(
    explicit: str | None,
    environ: Mapping[str, str],
    cwd: Path,
    home: Path,
) -> Checkout | None:
    """The checkout to use, or None when there is none anywhere we look.

    Raises UsageError when the flag or the variable names something that is not a checkout, and AmbiguousCheckout
    when several usual places hold one.
    """
    for how, value in ((FLAG, explicit), (HOME_VAR, environ.get(HOME_VAR) or None)):
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        if problem := why_not(path):
            raise UsageError(f"{how} {value}: not an EchoPanel checkout ({problem})")
        return Checkout(path, how)
    for folder in (cwd.resolve(), *cwd.resolve().parents):
        if why_not(folder) is None:
            return Checkout(folder, "current directory")
    found = []
    for place in USUAL_PLACES:
        path = (home / place).resolve()
        if why_not(path) is None and path not in found:
            found.append(path)
    if len(found) > 1:
        raise AmbiguousCheckout(found)
    return Checkout(found[0], "usual place") if found else None


def backend_python(checkout: Path, explicit: str | None) -> tuple[Path, str]:
    """(the Python EchoPanel's backend runs on, where that came from). `--echopanel-python` may name the
    interpreter or its venv; otherwise the checkout's own `.venv`, as EchoPanel's dev scripts use."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = paths.venv_python(path)
        return path, "--echopanel-python"
    return paths.venv_python(checkout / ".venv"), "<checkout>/.venv"


def describe(checkout: Checkout) -> str:
    """One line for the user: which checkout, and how it was found."""
    return f"EchoPanel checkout {checkout.path} ({checkout.how})"


def env_path(config: str | None, checkout: Checkout | None) -> Path | None:
    """The EchoPanel `.env` doctor, serve, smoke and watch read: `--config FILE`, else the checkout's own `.env`, else
    none (EchoPanel then has only its environment)."""
    if config:
        return _config_file(Path(config).expanduser())
    return checkout.env_file if checkout is not None else None


def _config_file(path: Path) -> Path:
    """`--config FILE` as given. Not there, it reads as empty, as EchoPanel reads a missing `.env`; but what is not a
    regular file (a FIFO, /dev/zero, a directory) is a usage error, not a config that reads as empty."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}; name an EchoPanel .env file") from None
    if not stat.S_ISREG(mode):
        from echopanel_setup.echopanel import dotenv  # lazily: doctor without a checkout loads no .env reader

        raise UsageError(f"--config {path}: {dotenv.file_kind(mode)}, not a regular file; name an EchoPanel .env file")
    return path
