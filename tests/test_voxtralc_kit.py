"""The voxtral.c stand-in behaves like voxtral.c at the edges our code and EchoPanel's provider meet."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest
import voxtralc_kit as kit

pytestmark = pytest.mark.skipif(not kit.compiler_available(), reason="needs make and a C compiler")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kit.build(kit.make_repo(tmp_path_factory.mktemp("vc") / "voxtral.c"), "blas")


def test_help_is_usage_on_stderr_exit_0(binary: Path) -> None:
    done = subprocess.run([binary, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == ""
    assert "Usage:" in done.stderr


def test_silent_prints_only_the_transcript_and_one_newline_at_eof(binary: Path, tmp_path: Path) -> None:
    model = kit.make_model(tmp_path / "m", "one two three four five")
    args = [binary, "-d", model, "--stdin", "-I", "1.0"]
    silent = subprocess.run([*args, "--silent"], input=kit.pcm(2.2), capture_output=True)
    assert (silent.returncode, silent.stdout, silent.stderr) == (0, b"one two three four five\n", b"")
    loud = subprocess.run(args, input=kit.pcm(1.2), capture_output=True)
    assert loud.stdout == b"one two three\n"
    assert b"Model loaded." in loud.stderr
    assert len(kit.runs(model)) == 2


def test_tokens_arrive_without_newline_while_stdin_stays_open(binary: Path, tmp_path: Path) -> None:
    model = kit.make_model(tmp_path / "m", "alpha beta gamma delta")
    proc = subprocess.Popen(
        [binary, "-d", model, "--stdin", "-I", "0.5", "--silent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(kit.pcm(1.5))
    proc.stdin.flush()
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    seen = b""
    deadline = time.monotonic() + 5
    while b"beta" not in seen and time.monotonic() < deadline:
        seen += os.read(fd, 100) if _readable(fd) else b""
        time.sleep(0.01)
    assert seen.startswith(b"alpha beta") and b"\n" not in seen
    proc.stdin.close()
    os.set_blocking(fd, True)
    rest = proc.stdout.read()
    assert proc.wait(timeout=5) == 0
    assert (seen + rest).endswith(b"\n") and (seen + rest).count(b"\n") == 1


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_missing_weights_fail_like_voxtral_c(binary: Path, tmp_path: Path) -> None:
    model = kit.make_model(tmp_path / "m", "x", safetensors=False)
    done = subprocess.run([binary, "-d", model, "--stdin"], input=kit.pcm(0.5), capture_output=True, text=False)
    assert done.returncode == 1 and b"Failed to load model" in done.stderr


def test_broken_source_fails_to_build(tmp_path: Path) -> None:
    repo = kit.make_repo(tmp_path / "voxtral.c", broken=True)
    with pytest.raises(subprocess.CalledProcessError):
        kit.build(repo, "mps")
    assert kit.head(repo) != kit.add_commit(repo)
