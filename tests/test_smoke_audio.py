"""smoke.audio: the bundled clip, and users' files of any rate/width/channel count → 16 kHz mono PCM16."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
import tracemalloc
import wave
from array import array
from pathlib import Path

import pytest
from smoke_kit import close_to, samples, tone_pcm, write_wav

from echopanel_setup.errors import UsageError
from echopanel_setup.smoke import audio

DECODER = shutil.which("ffmpeg") or shutil.which("sox")


def expected_mono(seconds: float = 1.0) -> bytes:
    """The signal every converted test file must become: the common tones at 16 kHz, side tones cancelled."""
    return tone_pcm(seconds, 16000, 1, side=())


def test_bundled_clip_is_small_16k_mono_speech_with_its_text() -> None:
    clip = audio.bundled()
    assert clip.source == "bundled" and clip.synthesized
    assert "synthesized" in clip.description
    assert 2.0 < clip.duration_s < 8.0
    assert len(clip.pcm) < 256 * 1024
    assert clip.reference and len(clip.reference.split()) >= 8
    assert max(map(abs, samples(clip.pcm))) > 3000, "the clip holds audible speech, not silence"


@pytest.mark.slow
@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1), (22050, 2), (8000, 1), (16000, 2), (96000, 4)])
def test_any_rate_and_channel_count_becomes_16k_mono(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / f"in-{rate}-{channels}.wav"
    tones = (300.0, 1000.0, 2500.0) if rate > 8000 else (300.0, 1000.0)
    write_wav(
        path,
        tone_pcm(1.0, rate, channels, tones=tones, side=(700.0, 3000.0) if rate > 8000 else (700.0,)),
        rate,
        channels,
    )
    clip = audio.load(path, "words")
    assert clip.reference == "words" and not clip.synthesized
    assert close_to(tone_pcm(1.0, 16000, 1, tones=tones, side=()))(clip.pcm) is None


def test_16k_mono_16bit_passes_through_untouched(tmp_path: Path) -> None:
    pcm = tone_pcm(0.5, 16000, 1)
    write_wav(tmp_path / "a.wav", pcm, 16000, 1)
    assert audio.load(tmp_path / "a.wav").pcm == pcm


@pytest.mark.parametrize("width", [1, 3, 4])
def test_8_24_and_32_bit_integer_wavs(tmp_path: Path, width: int) -> None:
    write_wav(tmp_path / "w.wav", tone_pcm(1.0, 16000, 1), 16000, 1, width=width)
    assert close_to(expected_mono(), min_snr_db=30)(audio.load(tmp_path / "w.wav").pcm) is None


@pytest.mark.skipif(DECODER is None, reason="needs ffmpeg or sox to make and read FLAC")
def test_flac_is_decoded_by_ffmpeg_or_sox(tmp_path: Path) -> None:
    wav, flac = tmp_path / "s.wav", tmp_path / "s.flac"
    write_wav(wav, tone_pcm(1.0, 44100, 2), 44100, 2)
    sox = shutil.which("sox")
    if sox:
        subprocess.run([sox, str(wav), str(flac)], check=True)
    else:
        subprocess.run([DECODER, "-v", "error", "-i", str(wav), str(flac)], check=True)  # type: ignore[list-item]
    assert close_to(expected_mono(), min_snr_db=25)(audio.load(flac).pcm) is None


def _float_wav(path: Path, pcm: bytes, rate: int) -> None:
    """A 32-bit float WAV (format 3), which Python's `wave` module refuses."""
    data = b"".join(struct.pack("<f", s / 32768) for s in samples(pcm))
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_without_a_decoder_flac_and_float_wav_get_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "x.flac").write_bytes(b"fLaC" + b"\0" * 64)
    _float_wav(tmp_path / "f.wav", tone_pcm(0.2, 16000, 1), 16000)
    for name in ("x.flac", "f.wav"):
        with pytest.raises(UsageError, match="needs ffmpeg or sox"):
            audio.load(tmp_path / name)


@pytest.mark.skipif(DECODER is None, reason="needs ffmpeg or sox")
def test_float_wav_goes_through_the_external_decoder(tmp_path: Path) -> None:
    _float_wav(tmp_path / "f.wav", tone_pcm(1.0, 16000, 1), 16000)
    assert close_to(expected_mono(), min_snr_db=30)(audio.load(tmp_path / "f.wav").pcm) is None


@pytest.mark.skipif(DECODER is None, reason="needs ffmpeg or sox")
def test_a_corrupt_flac_names_the_decoder_error(tmp_path: Path) -> None:
    (tmp_path / "bad.flac").write_bytes(b"fLaC" + b"\x13" * 200)
    with pytest.raises(UsageError, match="could not decode it"):
        audio.load(tmp_path / "bad.flac")


def test_bad_inputs_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        audio.load(tmp_path / "missing.wav")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="not a WAV or FLAC"):
        audio.load(tmp_path / "notes.txt")
    with wave.open(str(tmp_path / "empty.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(UsageError, match="no audio"):
        audio.load(tmp_path / "empty.wav")
    with pytest.raises(UsageError):
        audio.load(tmp_path)


def _damaged(path: Path, offset: int, fmt: str, value: int) -> Path:
    pcm = array("h", [100, -100] * 800).tobytes()
    write_wav(path, pcm, 16000, 1)
    data = bytearray(path.read_bytes())
    data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_wav_header_is_a_usage_error_or_read_as_far_as_it_goes(tmp_path: Path) -> None:
    """Three damaged headers crashed smoke (exit 4): a sample rate of 0 (ZeroDivisionError), a fmt chunk longer than
    the file (wave's RuntimeError), and a data size past the end (the --http upload's WAV header overflowed)."""
    with pytest.raises(UsageError, match="sample rate of 0 Hz"):
        audio.load(_damaged(tmp_path / "rate0.wav", 24, "<I", 0))
    with pytest.raises(UsageError, match="damaged"):
        audio.load(_damaged(tmp_path / "fmt.wav", 16, "<I", 0xFFFFFFF0))
    clip = audio.load(_damaged(tmp_path / "data.wav", 40, "<I", 0xFFFFFFF0))
    assert clip.n_bytes == 1600 * 2  # the frames the file holds, not the 2 GiB its header claims
    with audio.wav_file(clip) as fh, wave.open(fh, "rb") as w:
        assert w.getnframes() == 1600


def test_wav_file_wraps_a_clip_as_16k_mono_written_block_by_block(tmp_path: Path) -> None:
    pcm = array("h", [0, 1000, -1000, 32767, -32768] * 3000).tobytes()
    write_wav(tmp_path / "in.wav", pcm, 16000, 1)
    clip = audio.load(tmp_path / "in.wav").looped(3)
    with audio.wav_file(clip) as fh, wave.open(fh, "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() == 3 * len(pcm) // 2 and w.readframes(w.getnframes()) == pcm * 3


def test_resampling_keeps_loudness_and_length() -> None:
    out = audio.resample([1000.0] * 4410, 44100, 16000)
    assert len(out) == 1600
    assert all(abs(v - 1000.0) < 1.0 for v in out[100:-100])


def _noise_wav(path: Path, seconds: float, rate: int, channels: int, seed: int = 7) -> bytes:
    """A WAV of loud pseudo-random noise (every sample matters to the filter, and clipping is exercised), written
    in blocks as a recorder would; returns its frames for the whole-file conversion to compare with."""
    rng = random.Random(seed)
    frames = array("h", (rng.randint(-32768, 32767) for _ in range(int(seconds * rate) * channels)))
    raw = frames.tobytes() if sys.byteorder == "little" else _swapped(frames)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        for offset in range(0, len(raw), 65536):
            w.writeframes(raw[offset : offset + 65536])
    return raw


def _swapped(frames: array) -> bytes:
    frames = array("h", frames)
    frames.byteswap()
    return frames.tobytes()


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1), (8000, 1), (16000, 3), (22050, 4)])
def test_a_wav_read_in_blocks_equals_converting_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int, channels: int
) -> None:
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 997)  # blocks that never line up with the filter's phases
    raw = _noise_wav(tmp_path / "n.wav", 0.7, rate, channels)
    clip = audio.load(tmp_path / "n.wav", resampler="python")
    blocks = list(clip.blocks())
    assert len(blocks) > 5, "the file was read in blocks"
    whole = audio.convert(raw, rate, channels)
    assert b"".join(blocks) == whole and clip.n_bytes == len(whole)


@pytest.mark.slow
def test_44k_stereo_in_blocks_of_the_real_size_streams_to_exactly_the_whole_file_conversion(tmp_path: Path) -> None:
    """The real block size over 16 blocks (the filter's positions are integer arithmetic: no drift for a longer
    file to show; half a minute took seconds of CPU for the same proof)."""
    raw = _noise_wav(tmp_path / "long.wav", 3.0, 44100, 2)
    clip = audio.load(tmp_path / "long.wav", resampler="python")
    assert clip.duration_s == pytest.approx(3.0, abs=0.001)
    assert len(list(clip.blocks())) >= 16
    assert b"".join(clip.blocks()) == audio.convert(raw, 44100, 2)


def _peak_while_streaming(path: Path, resampler: str) -> int:
    clip = audio.load(path, resampler=resampler)
    tracemalloc.start()
    try:
        total = sum(len(block) for block in clip.blocks())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == clip.n_bytes
    return peak


@pytest.mark.slow
@pytest.mark.parametrize("resampler", audio.RESAMPLERS)
def test_streaming_memory_does_not_grow_with_the_files_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resampler: str
) -> None:
    if resampler == "soxr":
        pytest.importorskip("soxr")
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 2048)  # quarter-size blocks: the same proof on half the audio
    _noise_wav(tmp_path / "short.wav", 0.25, 44100, 2)
    _noise_wav(tmp_path / "long.wav", 2.0, 44100, 2)  # 8x as long: 350 KB of frames, 64 KB once converted
    _peak_while_streaming(tmp_path / "short.wav", resampler)  # soxr/numpy's one-time allocations
    short = _peak_while_streaming(tmp_path / "short.wav", resampler)
    long = _peak_while_streaming(tmp_path / "long.wav", resampler)
    assert long < 1024 * 1024, f"{long} bytes at peak"  # the filter's taps and one block, whatever the length
    assert long < short * 1.1, (short, long)


@pytest.mark.skipif(DECODER is None, reason="needs ffmpeg or sox")
def test_what_the_decoder_makes_is_read_back_in_blocks_not_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "_BLOCK_BYTES", 4096)
    _float_wav(tmp_path / "f.wav", tone_pcm(1.0, 16000, 1), 16000)
    clip = audio.load(tmp_path / "f.wav")
    assert clip.n_bytes == 32000 and clip.duration_s == pytest.approx(1.0)
    blocks = list(clip.blocks())
    assert max(map(len, blocks)) == 4096 and len(blocks) == 8
    assert b"".join(blocks) == clip.pcm, "each pass reads the decoded audio from the top"


def test_a_file_clip_taken_whole_is_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_wav(tmp_path / "a.wav", tone_pcm(0.2, 44100, 2), 44100, 2)
    clip = audio.load(tmp_path / "a.wav")
    passes: list[int] = []
    blocks = audio._WavStream.blocks
    monkeypatch.setattr(audio._WavStream, "blocks", lambda self: (passes.append(1), blocks(self))[1])
    assert clip.pcm[:10] == clip.pcm[:10] and len(clip.pcm) == clip.n_bytes
    assert len(passes) == 1, "callers that index .pcm repeatedly must not re-read the file each time"


# --- the resampler: soxr when installed (the `audio` extra), our pure-Python filter otherwise ---------------------


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1), (8000, 1), (22050, 4)])
def test_soxr_converts_any_rate_block_by_block_to_the_same_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int, channels: int
) -> None:
    pytest.importorskip("soxr")
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 997)
    tones = (300.0, 1000.0)
    write_wav(tmp_path / "t.wav", tone_pcm(1.0, rate, channels, tones=tones, side=(700.0,)), rate, channels)
    clip = audio.load(tmp_path / "t.wav")  # soxr, being installed
    assert clip.resampler == "soxr" and "by soxr " in clip.conversion
    blocks = list(clip.blocks())
    assert len(blocks) > 5 and sum(map(len, blocks)) == clip.n_bytes
    assert close_to(tone_pcm(1.0, 16000, 1, tones=tones, side=()), min_snr_db=35)(b"".join(blocks)) is None


@pytest.mark.parametrize("resampler", audio.RESAMPLERS)
@pytest.mark.parametrize("seconds", [0.125, 0.3, 1.01])
def test_a_converted_wav_is_exactly_as_long_as_its_rates_say(tmp_path: Path, resampler: str, seconds: float) -> None:
    """Lengths that do not divide evenly: libsoxr gives 0.125 s of 44.1 kHz one sample more than 5512 x 16000 //
    44100; the clip still yields the n_bytes all downstream counts on (the WAV header, --streams' loop positions)."""
    if resampler == "soxr":
        pytest.importorskip("soxr")
    write_wav(tmp_path / "t.wav", tone_pcm(seconds, 44100, 2, tones=(440.0,), side=()), 44100, 2)
    clip = audio.load(tmp_path / "t.wav", resampler=resampler)
    assert clip.resampler == resampler
    assert clip.n_bytes == 2 * (int(seconds * 44100) * 16000 // 44100)
    assert sum(map(len, clip.blocks())) == clip.n_bytes
    with audio.wav_file(clip) as fh, wave.open(fh, "rb") as w:
        assert w.getnframes() * 2 == clip.n_bytes


def test_without_soxr_the_pure_python_resampler_runs_and_says_how_to_get_soxr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "soxr", None)  # `import soxr` fails, whether or not it is installed
    assert audio.choose_resampler() == "python"
    raw = _noise_wav(tmp_path / "n.wav", 0.3, 44100, 2)
    clip = audio.load(tmp_path / "n.wav")
    assert clip.resampler == "python" and "echopanel-setup[audio]" in clip.conversion
    assert "44.1 kHz 16-bit stereo → 16 kHz 16-bit mono" in clip.conversion
    assert b"".join(clip.blocks()) == audio.convert(raw, 44100, 2)


def test_no_resampler_where_the_rate_is_already_16k(tmp_path: Path) -> None:
    write_wav(tmp_path / "m.wav", tone_pcm(0.2, 16000, 1), 16000, 1)
    write_wav(tmp_path / "s.wav", tone_pcm(0.2, 16000, 2), 16000, 2)
    mono, stereo = audio.load(tmp_path / "m.wav"), audio.load(tmp_path / "s.wav")
    assert (mono.resampler, mono.conversion) == (None, "")
    assert stereo.resampler is None and stereo.conversion == "16 kHz 16-bit stereo → 16 kHz 16-bit mono"
    with pytest.raises(ValueError, match="one of soxr, python"):
        audio.choose_resampler("libsamplerate")


# --- routes that read the audio more than once: spooled to a file, looped without copies ---------------------------


def test_a_spooled_clip_is_converted_once_and_read_by_several_readers_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "_BLOCK_BYTES", 1000)
    raw = _noise_wav(tmp_path / "n.wav", 0.3, 44100, 2)
    clip = audio.load(tmp_path / "n.wav", resampler="python")
    passes: list[int] = []
    blocks = audio._WavStream.blocks
    monkeypatch.setattr(audio._WavStream, "blocks", lambda self: (passes.append(1), blocks(self))[1])
    spooled = clip.spool()
    assert spooled.spool() is spooled and spooled.n_bytes == clip.n_bytes
    one, two = spooled.blocks(), spooled.blocks()
    interleaved = [(a, b) for a, b in zip(one, two, strict=True)]  # two readers, one file, each keeps its place
    expected = audio.convert(raw, 44100, 2)
    assert b"".join(a for a, _ in interleaved) == expected == b"".join(b for _, b in interleaved)
    assert passes == [1], "converted once, however many readers"


def test_a_looped_clip_reads_its_blocks_again_instead_of_holding_copies() -> None:
    clip = audio.bundled()
    looped = clip.looped(3)
    assert looped.n_bytes == 3 * clip.n_bytes and looped.duration_s == pytest.approx(3 * clip.duration_s)
    assert b"".join(looped.blocks()) == clip.pcm * 3 and clip.looped(1) is clip
    assert [len(c) for c in looped.chunks(4096)][:-1] == [4096] * (3 * clip.n_bytes // 4096)
