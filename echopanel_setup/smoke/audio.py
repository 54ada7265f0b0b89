"""Audio for `smoke`: the bundled clip, and a user's WAV/FLAC turned into what vLLM expects.

vLLM's realtime endpoint takes PCM16 little-endian, 16 kHz, mono, and does not resample (vLLM
`entrypoints/speech_to_text/realtime/`), so a 44.1 kHz stereo file sent as-is would be heard at the wrong speed. WAV is
read with the standard library (`wave`), downmixed and resampled here in pure Python (a windowed-sinc polyphase filter,
so no numpy); FLAC, and WAV encodings `wave` cannot read (float, extensible), go through ffmpeg or sox when one of them
is installed.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
import wave
from array import array
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from operator import mul
from pathlib import Path

from echopanel_setup.errors import UsageError

RATE = 16000
_ZEROS = 8  # zero crossings of the sinc on each side: ~60 dB stopband with the Blackman window
_ROLLOFF = 0.94  # cutoff as a fraction of the lower Nyquist frequency, leaving room for the transition band
_DECODE_TIMEOUT_S = 60
_sumprod = getattr(math, "sumprod", None) or (lambda a, b: sum(map(mul, a, b)))


@dataclass(frozen=True)
class Clip:
    """Speech ready to send: `pcm` is PCM16 little-endian, 16 kHz, mono."""

    pcm: bytes
    source: str  # "bundled" or the user's path
    reference: str | None
    synthesized: bool = False
    description: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / RATE


def bundled() -> Clip:
    """The short English clip shipped in the package, with its reference text."""
    data = resources.files("echopanel_setup.smoke") / "data"
    meta = json.loads((data / "clip.json").read_text(encoding="utf-8"))
    pcm, rate, channels = _read_wav(io.BytesIO((data / meta["file"]).read_bytes()), "bundled clip")
    assert rate == RATE and channels == 1, "the bundled clip is stored as 16 kHz mono"
    return Clip(pcm, "bundled", meta["text"], bool(meta.get("synthesized")), meta.get("description", ""))


def probe(path: str | Path) -> bytes:
    """The file's first 12 bytes, once it is known to be a readable WAV or FLAC: the cheap check smoke makes before
    asking the server, leaving the costly decoding for after it answered."""
    try:
        with Path(path).expanduser().open("rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        raise UsageError(f"--audio {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--audio {path}: cannot read it: {exc.strerror or exc}") from None
    if head[:4] != b"fLaC" and not (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        raise UsageError(
            f"--audio {path}: not a WAV or FLAC file (it starts with {head[:4]!r}); convert it with ffmpeg or sox"
        )
    return head


def load(path: str | Path, reference: str | None = None) -> Clip:
    """A user's WAV or FLAC of any rate and channel count, converted to 16 kHz mono PCM16."""
    p = Path(path).expanduser()
    head = probe(path)
    if head[:4] == b"fLaC":
        pcm = _decode_external(p, "FLAC")
    else:
        try:
            with p.open("rb") as fh:
                samples, rate, channels = _read_wav(fh, str(path))
        except _UnsupportedWav as exc:
            pcm = _decode_external(p, f"WAV ({exc})")
        else:
            pcm = convert(samples, rate, channels)
    if not pcm:
        raise UsageError(f"--audio {path}: the file holds no audio")
    return Clip(pcm, str(path), reference, description=f"{p.name}")


def to_wav(pcm: bytes) -> bytes:
    """Wrap 16 kHz mono PCM16 in a WAV container, for the HTTP transcription route."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return buf.getvalue()


class _UnsupportedWav(Exception):
    """A WAV encoding Python's `wave` cannot read (float, WAVE_FORMAT_EXTENSIBLE, compressed)."""


def _read_wav(fh, name: str) -> tuple[bytes, int, int]:
    """(16-bit little-endian interleaved frames, rate, channels); other integer widths become 16-bit."""
    try:
        with wave.open(fh, "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except wave.Error as exc:
        raise _UnsupportedWav(str(exc)) from None
    except EOFError:
        raise UsageError(f"{name}: the WAV file is truncated") from None
    return _to_int16(frames, width), rate, channels


def _to_int16(frames: bytes, width: int) -> bytes:
    """Integer PCM of 1-4 bytes per sample to 16-bit little-endian, keeping the top 16 bits."""
    if width == 2:
        return frames
    if width == 1:  # WAV's 8-bit samples are unsigned
        out = array("h", ((b - 128) << 8 for b in frames))
        return _le(out)
    if width in (3, 4):
        out_bytes = bytearray(len(frames) // width * 2)
        out_bytes[0::2] = frames[width - 2 :: width]
        out_bytes[1::2] = frames[width - 1 :: width]
        return bytes(out_bytes)
    raise _UnsupportedWav(f"{width * 8}-bit samples")


def convert(frames: bytes, rate: int, channels: int) -> bytes:
    """Interleaved 16-bit little-endian frames at any rate/channel count → 16 kHz mono PCM16."""
    if rate == RATE and channels == 1:
        return frames
    samples = array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % (2 * channels)])
    if sys.byteorder == "big":
        samples.byteswap()
    if channels == 1:
        mono: list[float] | array = samples
    elif channels == 2:
        mono = [a + b for a, b in zip(samples[0::2], samples[1::2], strict=False)]
    else:
        mono = [sum(samples[i : i + channels]) for i in range(0, len(samples), channels)]
    gain = 1.0 / channels
    out = [s * gain for s in mono] if rate == RATE else resample(mono, rate, RATE, gain)
    return _le(array("h", (max(-32768, min(32767, round(s))) for s in out)))


def resample(x, src: int, dst: int, gain: float = 1.0) -> list[float]:
    """Band-limited resampling by a windowed-sinc polyphase filter (anti-aliased when going down).

    Output sample n sits at input time n·src/dst; its taps are the filter phase for that fractional
    position, computed once per distinct phase (there are dst/gcd(src, dst) of them).
    """
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    ratio = min(1.0, dst / src)
    half = math.ceil(_ZEROS / ratio)
    padded = [0.0] * half + list(x) + [0.0] * (half + 1)
    taps = _phases(up, half, ratio * _ROLLOFF, gain)
    n_out = (len(x) * up) // down
    out: list[float] = []
    append = out.append
    for n in range(n_out):
        i, phase = divmod(n * down, up)
        append(_sumprod(taps[phase], padded[i + 1 : i + 1 + 2 * half]))
    return out


@lru_cache(maxsize=8)
def _phases(up: int, half: int, cutoff: float, gain: float) -> list[tuple[float, ...]]:
    """Filter taps for each of `up` fractional positions, each normalised to unity gain at DC × `gain`."""
    phases = []
    for phase in range(up):
        frac = phase / up
        taps = []
        for k in range(-half + 1, half + 1):
            d = k - frac
            w = 0.42 + 0.5 * math.cos(math.pi * d / half) + 0.08 * math.cos(2 * math.pi * d / half)
            arg = math.pi * cutoff * d
            taps.append((math.sin(arg) / arg if arg else 1.0) * w)
        scale = gain / sum(taps)
        phases.append(tuple(t * scale for t in taps))
    return phases


def _le(samples: array) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _decode_external(path: Path, what: str) -> bytes:
    """Decode with ffmpeg or sox, straight to 16 kHz mono PCM16; a clear error when neither exists."""
    if ffmpeg := shutil.which("ffmpeg"):
        cmd = [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-f",
            "s16le",
            "-acodec",
            "pcm_s16le",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-",
        ]
    elif sox := shutil.which("sox"):
        cmd = [
            sox,
            "-q",
            str(path),
            "-t",
            "raw",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-L",
            "-c",
            "1",
            "-r",
            str(RATE),
            "-",
        ]
    else:
        raise UsageError(
            f"--audio {path}: reading {what} needs ffmpeg or sox, and neither is on PATH; install one "
            "(apt install sox / brew install sox) or convert the file to a 16-bit PCM WAV"
        )
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=_DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"--audio {path}: {Path(cmd[0]).name} took over {_DECODE_TIMEOUT_S} s to decode it") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(
            f"--audio {path}: {Path(cmd[0]).name} could not decode it: "
            f"{why[-1] if why else 'exit ' + str(done.returncode)}"
        )
    return done.stdout
