"""`smoke --client voxtral-c`: voxtral.c alone, started as EchoPanel's `voxtral_realtime` starts it.

`voxtral -d MODEL --stdin -I S --silent` gets the clip as raw PCM16 16 kHz mono on its stdin, as fast as it reads
(the way voxtral.c's own speed figures are taken), then end of input; its stdout is the transcript (tokens without
newlines, one `\\n` at the end). Reported: WER against the clip's reference, the model load, the time to first text
and the real-time factor.

Under `--silent` voxtral.c prints nothing when its model is loaded, so the load is read from the pipe: the audio
fills the pipe's buffer (64 KiB, 2 s of audio) while the model loads, and the first time the pipe drains again is the
moment voxtral.c began reading. Time to first text and RTF count from there, so the load is not in them; when the
pipe never filled (a load faster than the writes) they count from the start.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup.errors import SetupError, UsageError
from echopanel_setup.smoke import audio
from echopanel_setup.smoke.client import over_cap
from echopanel_setup.smoke.scoring import WerResult, wer

DEFAULT_INTERVAL_S = 1.0  # what our voxtral_realtime provider uses when ECHOPANEL_VOXTRAL_STREAMING_DELAY is unset
LOAD_TIMEOUT_S = 300.0  # the model load (9 GB from disk, converted to f16 under Metal) before it reads any audio
WRITE_BLOCK = 65536
_STUCK_FIX = (
    "check its weights (`echopanel-setup install voxtral --verify`), rebuild it (`echopanel-setup install voxtral-c`)"
)


@dataclass(frozen=True)
class Target:
    """What to run, and where each part came from (a flag, EchoPanel's settings, our install records)."""

    binary: Path
    model: Path
    interval_s: float
    binary_from: str
    model_from: str
    interval_from: str

    def argv(self) -> list[str]:
        return [str(self.binary), "-d", str(self.model), "--stdin", "-I", f"{self.interval_s:g}", "--silent"]


@dataclass
class VoxtralCSmoke:
    target: Target
    clip: audio.Clip
    max_wer: float
    transcript: str = ""
    score: WerResult | None = None
    returncode: int | None = None
    error: str | None = None  # why it produced no transcript (exit status and its last stderr line, a timeout)
    load_s: float | None = None  # start → voxtral.c read its first audio (None: the pipe never filled)
    first_text_s: float | None = None  # that moment → its first text on stdout
    finish_s: float | None = None  # that moment → its exit, after end of input
    wall_s: float = 0.0
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def rtf(self) -> float | None:
        """Processing time over audio time, the load left out (voxtral.c's SPEED.md measures it this way)."""
        if self.finish_s is None or self.clip.duration_s <= 0:
            return None
        return self.finish_s / self.clip.duration_s

    @property
    def passed(self) -> bool:
        if self.error or not self.transcript.strip():
            return False
        return self.score is None or self.score.wer <= self.max_wer

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def verdict(self) -> str:
        if self.passed:
            return "voxtral.c transcribes on this machine"
        if self.error:
            return f"voxtral.c failed: {self.error}"
        if not self.transcript.strip():
            return "voxtral.c ran but printed no transcript"
        return "voxtral.c's transcript is over the word error limit"


def target(
    *,
    binary: str | None,
    model: str | None,
    interval: float | None,
    echopanel: str | None,
) -> Target:
    """--voxtral-bin/--voxtral-model/--interval, else what EchoPanel is set to (its environment, then its .env),
    else what `install voxtral-c` and `install voxtral` recorded."""
    values, where = _echopanel_settings(echopanel)
    if binary:
        bin_path, bin_from = Path(binary).expanduser().absolute(), "--voxtral-bin"
    elif values.get("ECHOPANEL_VOXTRAL_BIN"):
        bin_path, bin_from = Path(values["ECHOPANEL_VOXTRAL_BIN"]).expanduser(), f"ECHOPANEL_VOXTRAL_BIN ({where})"
    else:
        bin_path, bin_from = installed_binary()
    if model:
        model_path, model_from = Path(model).expanduser().absolute(), "--voxtral-model"
    elif values.get("ECHOPANEL_VOXTRAL_MODEL"):
        model_path = Path(values["ECHOPANEL_VOXTRAL_MODEL"]).expanduser()
        model_from = f"ECHOPANEL_VOXTRAL_MODEL ({where})"
    else:
        from echopanel_setup.install import voxtral as install_voxtral

        model_path, how = install_voxtral.choose_dir(None)
        model_from = f"install voxtral's model dir ({how.split(';')[0]})"
    if interval is not None:
        seconds, interval_from = interval, "--interval"
    else:
        seconds, interval_from = _interval(values.get("ECHOPANEL_VOXTRAL_STREAMING_DELAY"), where)
    return Target(bin_path, model_path, seconds, bin_from, model_from, interval_from)


def installed_binary() -> tuple[Path, str]:
    """The binary `install voxtral-c` built (its record in our state), else where it builds by default."""
    from echopanel_setup import paths
    from echopanel_setup.facts import voxtral_c

    build = voxtral_c.read_build()
    if build is not None and build.binary:
        return Path(build.binary), "recorded by install voxtral-c"
    return paths.data_dir() / "voxtral.c" / "voxtral", "install voxtral-c's default place"


def _interval(raw: str | None, where: str) -> tuple[float, str]:
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL_S, "default (voxtral.c's README: 1.0-2.0 for live use)"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(
            f"ECHOPANEL_VOXTRAL_STREAMING_DELAY={raw!r} ({where}) is not a positive number of seconds: voxtral.c "
            "refuses it as -I; set it to 1.0-2.0, or pass --interval"
        )
    return value, f"ECHOPANEL_VOXTRAL_STREAMING_DELAY ({where})"


def _echopanel_settings(echopanel: str | None) -> tuple[dict[str, str], str]:
    """EchoPanel's voxtral.c keys as it will see them, and where they were read; empty without a checkout."""
    from echopanel_setup.echopanel import discover, dotenv

    try:
        found = discover.find(echopanel, os.environ, Path.cwd(), Path.home())
    except UsageError:
        if echopanel:
            raise
        return {}, ""
    if found is None:
        return {}, ""
    keys = ("ECHOPANEL_VOXTRAL_BIN", "ECHOPANEL_VOXTRAL_MODEL", "ECHOPANEL_VOXTRAL_STREAMING_DELAY")
    seen = dotenv.effective(dotenv.read(found.env_file), os.environ, keys)
    values = {key: s.value for key, s in seen.items() if s.value is not None}
    sources = {s.source for s in seen.values() if s.value is not None}
    where = "the environment" if sources == {"environment"} else f"{found.env_file}"
    return values, where


def run(t: Target, clip: audio.Clip, *, max_wer: float, load_timeout_s: float = LOAD_TIMEOUT_S) -> VoxtralCSmoke:
    """Run voxtral.c on `clip` and measure it. A binary or weights that are not there is a SetupError (exit 1)."""
    if not t.binary.is_file():
        raise SetupError(
            f"no voxtral.c binary at {t.binary} ({t.binary_from}): build it with `echopanel-setup install voxtral-c`"
        )
    if not (t.model / "consolidated.safetensors").is_file():
        raise SetupError(
            f"no consolidated.safetensors in {t.model} ({t.model_from}): `echopanel-setup install voxtral` fetches it"
        )
    result = VoxtralCSmoke(t, clip, max_wer)
    # Converted into a temporary file first, so that the feed measures voxtral.c's speed, not our resampler's.
    spooled = clip.spool()
    started = time.monotonic()
    try:
        proc = subprocess.Popen(t.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise SetupError(f"cannot run {t.binary}: {exc.strerror or exc}") from None
    out = bytearray()
    first: list[float] = []
    overflow: list[SetupError] = []
    readers = [
        threading.Thread(target=_read_stdout, args=(proc, out, first, overflow), daemon=True),
        threading.Thread(target=_read_stderr, args=(proc, result.stderr_tail), daemon=True),
    ]
    for thread in readers:
        thread.start()
    try:
        reading = _feed(proc, spooled.chunks(WRITE_BLOCK), started + load_timeout_s)
        done = proc.wait(timeout=max(30.0, 10 * clip.duration_s))
    except TimeoutError:
        result.error = f"it read no audio within {load_timeout_s:.0f} s (still loading the model?)"
        reading, done = None, None
    except subprocess.TimeoutExpired:
        result.error = f"it did not finish within {max(30.0, 10 * clip.duration_s):.0f} s of the end of the audio"
        reading, done = None, None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for thread in readers:
            thread.join(5)
    ended = time.monotonic()
    result.wall_s = ended - started
    result.returncode = proc.returncode
    result.transcript = " ".join(out.decode("utf-8", "replace").split())
    origin = reading if reading is not None else started
    result.load_s = None if reading is None else reading - started
    if first:
        result.first_text_s = max(0.0, first[0] - origin)
    if done is not None:
        result.finish_s = ended - origin
        if done != 0:
            last = next((line for line in reversed(result.stderr_tail) if line.strip()), "")
            result.error = f"exit {done}" + (f": {last}" if last else "")
    if overflow:  # we stopped it: its exit status says nothing
        result.error = str(overflow[0])
    if clip.reference is not None and result.transcript:
        result.score = wer(clip.reference, result.transcript)
    return result


def _feed(proc: subprocess.Popen[bytes], pieces: Iterable[bytes], deadline: float) -> float | None:
    """Write the audio (read piece by piece, never whole) as fast as the pipe takes it, then end the input. Returns
    when voxtral.c first drained a full pipe (it began reading after its load), or None when the pipe never
    filled."""
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    os.set_blocking(fd, False)
    filled, reading = False, None
    try:
        for piece in pieces:
            view, offset = memoryview(piece), 0
            while offset < len(piece):
                try:
                    offset += os.write(fd, view[offset:])
                except BlockingIOError:
                    filled = True
                    left = deadline - time.monotonic() if reading is None else 60.0
                    if left <= 0 or not select.select([], [fd], [], left)[1]:
                        raise TimeoutError from None
                    continue
                if filled and reading is None:
                    reading = time.monotonic()
    except (BrokenPipeError, ConnectionResetError):
        pass  # it exited early: its status and stderr say why
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    return reading


def _read_stdout(proc: subprocess.Popen[bytes], out: bytearray, first: list[float], overflow: list[SetupError]) -> None:
    """Its transcript as it comes (tokens arrive without newlines); past our bound on its memory, it is stopped."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 4096):
        if not first and chunk.strip():
            first.append(time.monotonic())
        out.extend(chunk)
        if error := over_cap(len(out), source="voxtral.c", fix=_STUCK_FIX):
            overflow.append(error)
            proc.kill()
            return


def _read_stderr(proc: subprocess.Popen[bytes], tail: list[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line.decode("utf-8", "replace").rstrip())
        del tail[:-20]
