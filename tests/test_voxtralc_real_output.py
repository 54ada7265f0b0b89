"""Our voxtral.c readers against what the real voxtral.c printed (tests/fixtures/voxtral-c, commit 134d366)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from echopanel_setup.facts import voxtral_c as probe

REAL = Path(__file__).parent / "fixtures" / "voxtral-c"


def _replaying(tmp_path: Path, stderr: str, code: int) -> Path:
    """An executable that prints `stderr` and exits `code`, as the real binary does for --help."""
    text = tmp_path / "help.txt"
    text.write_text(stderr, encoding="utf-8")
    script = tmp_path / "voxtral"
    script.write_text(
        f"#!{sys.executable} -IS\nimport sys\nsys.stderr.write(open({str(text)!r}, encoding='utf-8').read())\n"
        f"sys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_the_real_help_passes_the_run_check(tmp_path: Path) -> None:
    real = (REAL / "help-134d366.stderr.txt").read_text(encoding="utf-8")
    found = probe.check_binary(_replaying(tmp_path, real, 0), "install voxtral-c")
    assert found.runs and found.error is None


def test_a_help_without_usage_fails_the_run_check(tmp_path: Path) -> None:
    found = probe.check_binary(_replaying(tmp_path, "Segmentation fault\n", 139), "install voxtral-c")
    assert found.runs is False and found.error == "`--help` exit 139: Segmentation fault"


def test_the_real_build_log_has_no_error_line() -> None:
    lines = (REAL / "make-blas-134d366.log").read_text(encoding="utf-8").splitlines()
    assert probe.first_error(lines) is None  # its one warning is not an error
    broken = [*lines[:5], "voxtral_kernels.c:19:10: fatal error: cblas.h: No such file or directory", "make: *** [x] 1"]
    assert probe.first_error(broken) == "voxtral_kernels.c:19:10: fatal error: cblas.h: No such file or directory"
