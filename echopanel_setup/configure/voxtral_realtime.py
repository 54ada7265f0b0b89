"""`configure --provider voxtral_realtime`: EchoPanel's voxtral.c provider, selected with absolute paths to the binary
and the weights, and voxtral.c's `-I` only when the user gives one. Without a binary or weights EchoPanel silently
falls back to faster_whisper, so configure refuses the selection (unless --force) and says what to install."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from echopanel_setup.configure.result import VOXTRAL_C, Advice, ConfigureOptions
from echopanel_setup.echopanel import settings
from echopanel_setup.errors import UsageError

VC_BIN, VC_MODEL, VC_INTERVAL = "ECHOPANEL_VOXTRAL_BIN", "ECHOPANEL_VOXTRAL_MODEL", "ECHOPANEL_VOXTRAL_STREAMING_DELAY"


def decide(
    opts: ConfigureOptions,
    existing: dict[str, str],
    updates: dict[str, str | None],
    reasons: dict[str, str],
    notes: list[str],
    advice: list[Advice],
) -> None:
    """voxtral_realtime's settings: absolute paths to the binary and the weights (the flags, else a usable value
    already in the file, else what `install voxtral-c` built and `install voxtral` verified), and voxtral.c's `-I`
    only when the user gives one. What is not there yet is advice, never a guess."""
    from echopanel_setup.facts import voxtral_c
    from echopanel_setup.install import voxtral as install_voxtral

    build = voxtral_c.read_build()
    binary = _path(
        VC_BIN,
        opts.voxtral_bin,
        "--voxtral-bin",
        existing,
        Path(build.binary) if build is not None and build.binary else None,
        "built by `echopanel-setup install voxtral-c`",
        Path.is_file,
        reasons,
    )
    if binary is not None:
        updates[VC_BIN] = binary
    else:
        advice.append(
            Advice(
                f"no voxtral.c binary yet, so {VC_BIN} is not written: until there is one EchoPanel silently falls "
                "back to faster_whisper. Build it, then configure again:",
                ["echopanel-setup install voxtral-c", "echopanel-setup configure --provider voxtral_realtime"],
            )
        )
    model = _path(
        VC_MODEL,
        opts.voxtral_model,
        "--voxtral-model",
        existing,
        install_voxtral.choose_dir(None)[0],
        "install voxtral's model dir (it holds consolidated.safetensors)",
        lambda p: (p / "consolidated.safetensors").is_file(),
        reasons,
    )
    if model is not None:
        updates[VC_MODEL] = model
    else:
        advice.append(
            Advice(
                f"no Voxtral weights yet (consolidated.safetensors, tekken.json), so {VC_MODEL} is not written. "
                "Download them (~8.9 GB), then configure again:",
                ["echopanel-setup install voxtral", "echopanel-setup configure --provider voxtral_realtime"],
            )
        )
    if opts.interval is not None:
        updates[VC_INTERVAL] = f"{opts.interval:g}"
        reasons[VC_INTERVAL] = "--interval: voxtral.c's -I, the encoder processing interval in seconds"
        if opts.interval < 0.5:
            advice.append(
                Advice(
                    f"--interval {opts.interval:g}: voxtral.c's README says an encoder interval below 0.5 s wastes "
                    "most of the GPU time; 1.0-2.0 suits live use:",
                    ["echopanel-setup configure --provider voxtral_realtime --interval 1.0"],
                )
            )
    elif (current := existing.get(VC_INTERVAL)) is not None and not _positive(current):
        notes.append(
            f"{VC_INTERVAL}={current} in the file is not a positive number of seconds: voxtral.c refuses it as -I "
            "and EchoPanel's provider cannot start it; set one with --interval 1.0 (1.0-2.0 suits live use)"
        )


def require(updates: dict[str, str | None], *, force: bool) -> None:
    """Refused (unless --force) while the binary or the weights are missing: EchoPanel would select voxtral_realtime,
    find it unavailable and silently fall back to faster_whisper."""
    missing = [
        what for key, what in ((VC_BIN, "a voxtral.c binary"), (VC_MODEL, "the Voxtral weights")) if key not in updates
    ]
    if missing and not force:
        raise settings.Refused(
            f"{VOXTRAL_C} needs {' and '.join(missing)} before EchoPanel can use it, or EchoPanel silently falls "
            "back to faster_whisper: run `echopanel-setup install voxtral-c` / `echopanel-setup install voxtral`, "
            "then configure again (--force writes the selection anyway)"
        )


def _path(
    key: str,
    flag_value: str | None,
    flag: str,
    existing: dict[str, str],
    installed: Path | None,
    installed_why: str,
    usable: Callable[[Path], bool],
    reasons: dict[str, str],
) -> str | None:
    """An absolute path for `key`: the flag (which must be usable), else the file's when absolute and usable, else
    the installed one when usable; None when there is none."""
    if flag_value is not None:
        path = Path(flag_value).expanduser().absolute()
        if not usable(path):
            what = "a voxtral.c binary" if key == VC_BIN else "a dir with consolidated.safetensors"
            raise UsageError(f"{flag} {flag_value}: not {what}")
        reasons[key] = flag
        return str(path)
    current = existing.get(key)
    if current and Path(current).is_absolute() and usable(Path(current)):
        reasons[key] = "kept from the existing file"
        return current
    if installed is not None and usable(installed):
        reasons[key] = installed_why + (f" (the file's {current} is not usable)" if current else "")
        return str(installed.absolute())
    return None


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False
