"""Where things live: our own data and state (never mixed with EchoPanel's).

Locations follow platformdirs, so XDG_CONFIG_HOME / XDG_DATA_HOME / XDG_STATE_HOME move them on Linux.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs

APP = "echopanel-setup"
ECHOPANEL_APP = "echopanel"
ECHOPANEL_ENV_NAME = "echopanel.env"
MODEL_DIR_NAME = "Voxtral-Mini-4B-Realtime-2602"


def legacy_echopanel_env() -> Path:
    """The per-user `echopanel.env` earlier versions of this tool wrote. EchoPanel never read it (its backend reads
    only its environment and `<checkout>/.env`): configure offers to migrate it, nothing else reads it."""
    return Path(platformdirs.user_config_dir(ECHOPANEL_APP)) / ECHOPANEL_ENV_NAME


def data_dir() -> Path:
    """Our large files: the model and the vLLM venv."""
    return Path(platformdirs.user_data_dir(APP))


def state_dir() -> Path:
    """Our small state: what install/serve recorded, crash reports."""
    return Path(platformdirs.user_state_dir(APP))


def default_model_dir() -> Path:
    return data_dir() / "models" / MODEL_DIR_NAME


def venv_python(venv: Path) -> Path:
    """The interpreter inside a venv: `bin/python`, or `Scripts/python.exe` on Windows."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def default_venv_dir() -> Path:
    return data_dir() / "vllm-venv"


def install_target(given: str | None, flag: str, recorded: object, default: Path) -> tuple[Path, str]:
    """Where an install goes and why, as its plan says it: `flag`'s path, else the one an earlier install recorded
    (doctor, serve and smoke look there), else the default; the reason names the flag that changes it."""
    if given:
        return Path(given).expanduser().absolute(), flag
    if isinstance(recorded, str) and recorded:
        return Path(recorded), f"recorded by an earlier install; {flag} to change"
    return default, f"default; {flag} to change"


def timestamp() -> str:
    """Now in UTC, to the second (ISO 8601): the time stamp of what we record (manifests, builds, tunnels, samples)."""
    from datetime import datetime, timezone  # lazily: doctor's start-up never needs it

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def state_file() -> Path:
    return state_dir() / "state.json"


_DIR_KEYS = ("model_dir", "vllm_venv", "serve_dir")  # recorded directories: text (serve_dir: or null)


def read_state() -> dict[str, Any]:
    """What install and serve recorded (venv, model dir, serve dir). Missing or unreadable means nothing; a recorded
    dir that is not text (a hand-edited file) means that dir is not recorded: it would crash every command that reads
    it, and the next write replaces it."""
    try:
        data = json.loads(state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k not in _DIR_KEYS or isinstance(v, str)}


def write_state(updates: dict[str, Any]) -> Path:
    """Merge `updates` into the state file atomically (a crash never leaves half a file)."""
    path = state_file()
    data = read_state()
    data.update(updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
