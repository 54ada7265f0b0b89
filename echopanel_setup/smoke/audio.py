"""Audio for `smoke`: the bundled clip, and a user's WAV/FLAC turned into what vLLM expects.

vLLM's realtime endpoint takes PCM16 little-endian, 16 kHz, mono, and does not resample (vLLM
`entrypoints/speech_to_text/realtime/`), so a 44.1 kHz stereo file sent as-is would be heard at the wrong speed. WAV is
read with the standard library (`wave`), downmixed and resampled here: by soxr (libsoxr, the optional `audio` extra:
`pip install 'echopanel-setup[audio]'`) when it is installed, else in pure Python (a windowed-sinc polyphase filter, no
numpy; seconds of CPU per minute of 44.1 kHz audio, ~20x soxr's). FLAC, and WAV encodings `wave` cannot read (float,
extensible), go through ffmpeg or sox when one of them is installed. A user's file is never held whole: a WAV is read,
downmixed and resampled block by block (the filter's state carried across blocks), and what ffmpeg/sox decode goes to
an anonymous temporary file, so memory stays the same for a 2-hour recording as for a 10-second one. Routes that read
the audio more than once, or faster than it converts (N streams, voxtral.c's own speed, EchoPanel's two feeds, an HTTP
upload, `--fast`), `spool()` it: converted once into a temporary file, read back in blocks.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from importlib import resources
from operator import mul
from pathlib import Path
from typing import IO, Any, Protocol

from echopanel_setup.errors import UsageError

RATE = 16000
_ZEROS = 8  # zero crossings of the sinc on each side: ~60 dB stopband with the Blackman window
_ROLLOFF = 0.94  # cutoff as a fraction of the lower Nyquist frequency, leaving room for the transition band
_DECODE_TIMEOUT_S = 600  # ffmpeg/sox decode a 2-hour file in seconds; this only stops one that hangs
_BLOCK_FRAMES = 8192  # input frames read at a time: ~190 ms at 44.1 kHz, a few hundred KB at most
_BLOCK_BYTES = 64 * 1024  # bytes of decoded PCM read at a time from ffmpeg's/sox's output
_sumprod = getattr(math, "sumprod", None) or (lambda a, b: sum(map(mul, a, b)))
RESAMPLERS = ("soxr", "python")  # soxr when installed (the `audio` extra), else our pure-Python filter


class PcmStream(Protocol):
    """A file's audio as 16 kHz mono PCM16, produced on demand in blocks (each call starts again from the top)."""

    @property
    def n_bytes(self) -> int: ...

    def blocks(self) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class Clip:
    """Speech ready to send, as PCM16 little-endian, 16 kHz, mono: `data` in memory (the bundled clip), or `stream`
    read from the user's file while it is sent, so that a long recording never sits in memory whole."""

    data: bytes
    source: str  # "bundled" or the user's path
    reference: str | None
    synthesized: bool = False
    description: str = ""
    stream: PcmStream | None = field(default=None, compare=False, repr=False)
    resampler: str | None = None  # what converts it to 16 kHz: soxr | python | ffmpeg | sox; None: nothing to convert
    conversion: str = ""  # the same in words, with the file's own format ("44.1 kHz stereo → 16 kHz mono by soxr")

    @property
    def n_bytes(self) -> int:
        return self.stream.n_bytes if self.stream is not None else len(self.data)

    @property
    def duration_s(self) -> float:
        return self.n_bytes / 2 / RATE

    @cached_property
    def pcm(self) -> bytes:
        """All of the audio at once: only for short clips (the bundled one, tests); every smoke route reads
        `blocks()` instead, so a long file is never held whole."""
        return b"".join(self.blocks()) if self.stream is not None else self.data

    def blocks(self) -> Iterator[bytes]:
        """The audio in blocks of any size, in order; bounded memory for a file."""
        if self.stream is not None:
            return self.stream.blocks()
        return iter((self.data,))

    def document(self) -> dict[str, Any]:
        """The audio in smoke's JSON documents: where it came from, how long, and what converted it."""
        return {
            "source": self.source,
            "duration_s": round(self.duration_s, 3),
            "resampler": self.resampler,
            "conversion": self.conversion or None,
        }

    def chunks(self, size: int) -> Iterator[bytes]:
        """The audio in chunks of exactly `size` bytes (the last may be shorter), as the wire protocols send it."""
        return chunks(self.blocks(), size)

    def spool(self, file: IO[bytes] | None = None) -> Clip:
        """The clip with its converted audio in `file` (default: an anonymous temporary file, removed when closed),
        converted once and read back in blocks: for routes that read it more than once, by several readers at once,
        or faster than it converts. A clip already in memory or in a file is returned as it is unless `file` is
        given (a path another process reads)."""
        if file is None and (self.stream is None or isinstance(self.stream, _FileStream)):
            return self
        out = file if file is not None else tempfile.TemporaryFile()  # noqa: SIM115 - the clip keeps it open
        size = 0
        for block in self.blocks():
            out.write(block)
            size += len(block)
        out.flush()
        return replace(self, stream=_FileStream(out, size))

    def looped(self, times: int) -> Clip:
        """The audio `times` over, read block by block each time (never `times` copies in memory)."""
        return replace(self, stream=_Looped(self, times)) if times > 1 else self


@dataclass(frozen=True)
class _Looped:
    """A clip `times` over: its blocks read again on each pass."""

    clip: Clip
    times: int

    @property
    def n_bytes(self) -> int:
        return self.clip.n_bytes * self.times

    def blocks(self) -> Iterator[bytes]:
        return itertools.chain.from_iterable(self.clip.blocks() for _ in range(self.times))


def chunks(blocks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Blocks of any size regrouped into chunks of exactly `size` bytes (the last may be shorter), holding no more
    than one block and one chunk at a time."""
    pending = bytearray()
    for block in blocks:
        pending += block
        if len(pending) >= size:
            whole = len(pending) - len(pending) % size
            view = memoryview(pending)
            for offset in range(0, whole, size):
                yield bytes(view[offset : offset + size])
            view.release()
            del pending[:whole]
    if pending:
        yield bytes(pending)


@contextlib.contextmanager
def wav_file(clip: Clip) -> Iterator[IO[bytes]]:
    """The clip as a 16 kHz mono PCM16 WAV in an anonymous temporary file (open, at its start), written block by
    block: what the HTTP route uploads, streamed from disk instead of built in memory."""
    with tempfile.TemporaryFile() as fh:
        with wave.open(fh, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.setnframes(clip.n_bytes // 2)
            for block in clip.blocks():
                w.writeframesraw(block)
        fh.seek(0)
        yield fh


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


def load(path: str | Path, reference: str | None = None, *, resampler: str | None = None) -> Clip:
    """A user's WAV or FLAC of any rate and channel count, to be converted to 16 kHz mono PCM16 as it is read.
    `resampler` (one of RESAMPLERS) picks the WAV resampler; default: soxr when installed, else pure Python."""
    p = Path(path).expanduser()
    head = probe(path)
    stream: _WavStream | _FileStream
    used: str | None
    if head[:4] == b"fLaC":
        stream, tool = _decode_external(p, "FLAC")
        used, how = tool, f"decoded by {tool}"
    else:
        try:
            stream = _WavStream.open(p, str(path), resampler)
            used, how = stream.conversion()
        except _UnsupportedWav as exc:
            stream, tool = _decode_external(p, f"WAV ({exc})")
            used, how = tool, f"{exc}: decoded by {tool}"
    if not stream.n_bytes:
        raise UsageError(f"--audio {path}: the file holds no audio")
    return Clip(b"", str(path), reference, description=p.name, stream=stream, resampler=used, conversion=how)


def choose_resampler(wanted: str | None = None) -> str:
    """`wanted`, else soxr when it can be imported, else our pure-Python filter."""
    if wanted is not None:
        if wanted not in RESAMPLERS:
            raise ValueError(f"resampler {wanted!r}: one of {', '.join(RESAMPLERS)}")
        return wanted
    try:
        import soxr  # noqa: F401
    except ImportError:
        return "python"
    return "soxr"


def resampler_label(name: str | None) -> str:
    """How a resampler is shown: soxr with its version; the pure-Python one with the way to a faster one."""
    if name == "soxr":
        from importlib import metadata

        return f"soxr {metadata.version('soxr')}"
    if name == "python":
        return "the pure-Python resampler (slow: pip install 'echopanel-setup[audio]' for soxr)"
    return name or "nothing (already 16 kHz mono)"


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


@dataclass(frozen=True)
class _WavStream:
    """An integer PCM WAV converted block by block: downmixed, resampled with the filter's state carried over."""

    path: Path
    name: str
    rate: int
    channels: int
    width: int
    frames: int
    resampler: str = "python"  # used only when the rate is not 16 kHz

    @classmethod
    def open(cls, path: Path, name: str, resampler: str | None = None) -> _WavStream:
        """Read only the header; `_UnsupportedWav` for what `wave` cannot read. A damaged header is a usage error; a
        data chunk that claims more than the file holds (a recording cut short) is read as far as it goes."""
        try:
            with path.open("rb") as fh, wave.open(fh, "rb") as w:
                if w.getsampwidth() not in (1, 2, 3, 4):
                    raise _UnsupportedWav(f"{w.getsampwidth() * 8}-bit samples")
                rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
                if rate <= 0:
                    raise UsageError(f"{name}: the WAV header says a sample rate of {rate} Hz: the file is damaged")
                held = (path.stat().st_size - fh.tell()) // (width * channels)  # wave stops at the data's start
                chosen = choose_resampler(resampler) if rate != RATE else "python"
                return cls(path, name, rate, channels, width, min(w.getnframes(), max(0, held)), chosen)
        except wave.Error as exc:
            raise _UnsupportedWav(str(exc)) from None
        except EOFError:
            raise UsageError(f"{name}: the WAV file is truncated") from None
        except RuntimeError:  # wave's chunk reader, skipping a chunk that runs past the end of the file
            raise UsageError(f"{name}: the WAV file is damaged (a chunk runs past its end)") from None

    @property
    def n_bytes(self) -> int:
        g = math.gcd(self.rate, RATE)
        return 2 * (self.frames * (RATE // g) // (self.rate // g))

    def conversion(self) -> tuple[str | None, str]:
        """(the resampler that runs, or None; the conversion in words)."""
        if self.rate == RATE and self.channels == 1 and self.width == 2:
            return None, ""
        channels = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        was = f"{self.rate / 1000:g} kHz {self.width * 8}-bit {channels}"
        if self.rate == RATE:
            return None, f"{was} → 16 kHz 16-bit mono"
        return self.resampler, f"{was} → 16 kHz 16-bit mono by {resampler_label(self.resampler)}"

    def blocks(self) -> Iterator[bytes]:
        """Exactly `n_bytes` in all. libsoxr's last block may come a sample short or long of the length the rates
        give (0.125 s of 44.1 kHz: 2000 samples for the 1999 that its 5512 frames give), and what reads the clip
        counts on that length: the WAV header written before the data, each loop's word positions under
        `--streams`, the send budget."""
        left = self.n_bytes
        for block in self._converted():
            if block := block[:left]:
                left -= len(block)
                yield block
        if left:
            yield bytes(left)  # silence for the missing tail sample(s)

    def _converted(self) -> Iterator[bytes]:
        convert = _SoxrConverter if self.rate != RATE and self.resampler == "soxr" else _PythonConverter
        converter = convert(self.rate, self.channels)
        with self.path.open("rb") as fh, wave.open(fh, "rb") as w:
            while frames := w.readframes(_BLOCK_FRAMES):
                if out := converter.feed(_to_int16(frames, self.width)):
                    yield out
        if tail := converter.finish():
            yield tail


class _PythonConverter:
    """Interleaved 16-bit frames → 16 kHz mono PCM16 by our pure-Python filter, block by block."""

    def __init__(self, rate: int, channels: int) -> None:
        self.channels, self.gain = channels, 1.0 / channels
        self.resampler = _Resampler(rate, RATE, self.gain) if rate != RATE else None

    def feed(self, frames: bytes) -> bytes:
        samples = _int16(frames, self.channels)
        if self.channels == 1 and self.resampler is None:
            return _le(samples)
        mono = _mono(samples, self.channels)
        return _pcm16(self.resampler.feed(mono) if self.resampler else [s * self.gain for s in mono])

    def finish(self) -> bytes:
        return _pcm16(self.resampler.finish()) if self.resampler else b""


class _SoxrConverter:
    """The same conversion by libsoxr (`soxr.ResampleStream`, its state carried across blocks): ~100× faster."""

    def __init__(self, rate: int, channels: int) -> None:
        import numpy as np
        import soxr

        self.np, self.channels = np, channels
        self.stream = soxr.ResampleStream(rate, RATE, 1, dtype="float32", quality="HQ")

    def feed(self, frames: bytes) -> bytes:
        np, ch = self.np, self.channels
        x = np.frombuffer(frames, dtype="<i2")
        mono = x[: len(x) - len(x) % ch].reshape(-1, ch).mean(axis=1, dtype=np.float32)
        return self._pcm16(self.stream.resample_chunk(mono))

    def finish(self) -> bytes:
        return self._pcm16(self.stream.resample_chunk(self.np.zeros(0, dtype=self.np.float32), last=True))

    def _pcm16(self, y: Any) -> bytes:  # a numpy array; numpy comes with soxr, so it is not imported at the top
        return self.np.clip(self.np.rint(y), -32768, 32767).astype("<i2").tobytes()


@dataclass(frozen=True)
class _FileStream:
    """Converted audio in a file (what ffmpeg/sox decoded, or a spooled clip), read back in blocks. Each pass keeps
    its own place, so several readers (N concurrent streams) can share the file."""

    file: IO[bytes]
    n_bytes: int

    def blocks(self) -> Iterator[bytes]:
        offset = 0
        while offset < self.n_bytes:
            self.file.seek(offset)
            block = self.file.read(min(_BLOCK_BYTES, self.n_bytes - offset))
            if not block:
                return
            offset += len(block)
            yield block


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
    """Interleaved 16-bit little-endian frames at any rate/channel count → 16 kHz mono PCM16, all at once."""
    if rate == RATE and channels == 1:
        return frames
    mono = _mono(_int16(frames, channels), channels)
    gain = 1.0 / channels
    return _pcm16([s * gain for s in mono] if rate == RATE else resample(mono, rate, RATE, gain))


def _int16(frames: bytes, channels: int) -> array:
    """Whole frames of 16-bit little-endian samples as native ints."""
    samples = array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % (2 * channels)])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _mono(samples: array, channels: int) -> list[int] | array:
    """The channels' sum per frame (the 1/channels gain goes into the filter, saving a pass)."""
    if channels == 1:
        return samples
    if channels == 2:
        return [a + b for a, b in zip(samples[0::2], samples[1::2], strict=False)]
    return [sum(samples[i : i + channels]) for i in range(0, len(samples), channels)]


def _pcm16(values) -> bytes:
    return _le(array("h", (max(-32768, min(32767, round(s))) for s in values)))


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


class _Resampler:
    """`resample` over a signal that arrives in blocks: the same taps over the same samples, so the output equals
    resampling the whole signal at once, while only ~2 filter lengths of input are kept between blocks."""

    def __init__(self, src: int, dst: int, gain: float = 1.0) -> None:
        g = math.gcd(src, dst)
        self.up, self.down = dst // g, src // g
        ratio = min(1.0, dst / src)
        self.half = math.ceil(_ZEROS / ratio)
        self.taps = _phases(self.up, self.half, ratio * _ROLLOFF, gain)
        self.kept: list[float] = [0.0] * self.half  # the zero-padded signal, from index `start` on
        self.start = 0
        self.n = 0  # the next output sample
        self.seen = 0  # input samples fed so far

    def feed(self, x) -> list[float]:
        """The output samples whose filter window the input so far covers."""
        self.kept.extend(x)
        self.seen += len(x)
        return self._drain(None)

    def finish(self) -> list[float]:
        """The rest, past the end of the signal padded with zeros as `resample` pads it."""
        self.kept.extend([0.0] * (self.half + 1))
        return self._drain(self.seen * self.up // self.down)

    def _drain(self, limit: int | None) -> list[float]:
        up, down, width, taps, kept, start = self.up, self.down, 2 * self.half, self.taps, self.kept, self.start
        end = start + len(kept)
        out: list[float] = []
        n = self.n
        while limit is None or n < limit:
            i, phase = divmod(n * down, up)
            if i + 1 + width > end:
                break
            out.append(_sumprod(taps[phase], kept[i + 1 - start : i + 1 - start + width]))
            n += 1
        self.n = n
        if (drop := (n * down) // up + 1 - start) > 0:
            del kept[:drop]
            self.start += drop
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


def _decode_external(path: Path, what: str) -> tuple[_FileStream, str]:
    """Decode with ffmpeg or sox, straight to 16 kHz mono PCM16 in a temporary file (not memory); a clear error when
    neither exists."""
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
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the clip keeps it open while it is sent; closing removes it
    try:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, timeout=_DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        out.close()
        raise UsageError(f"--audio {path}: {Path(cmd[0]).name} took over {_DECODE_TIMEOUT_S} s to decode it") from None
    if done.returncode != 0:
        out.close()
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(
            f"--audio {path}: {Path(cmd[0]).name} could not decode it: "
            f"{why[-1] if why else 'exit ' + str(done.returncode)}"
        )
    size = out.seek(0, io.SEEK_END)
    return _FileStream(out, size - size % 2), Path(cmd[0]).name
