"""voxtral.c on this machine: the toolchain `install voxtral-c` needs, what it built (our record), and the binary and
weights EchoPanel's `voxtral_realtime` provider will use (ECHOPANEL_VOXTRAL_BIN / _MODEL as EchoPanel sees them).

Every probe here is a file read, a `which`, or one short subprocess under a timeout: `--help` of a binary (it prints
usage and exits without loading anything), `xcode-select -p`, `git rev-parse`, and on Linux one compile-and-link of
a five-line program against OpenBLAS, exactly as voxtral.c's Makefile compiles (`-I/usr/include/openblas
-lopenblas`) — the only way to know the build will find it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from echopanel_setup import knowledge, paths, proc
from echopanel_setup.facts.model import EchoPanelFacts, VoxtralCBinary, VoxtralCBuild, VoxtralCFacts

STATE_KEY = "voxtral_c"
PROVIDER = "voxtral_realtime"
BIN = "ECHOPANEL_VOXTRAL_BIN"
MODEL = "ECHOPANEL_VOXTRAL_MODEL"
TIMEOUT_S = 5.0
_BLAS_TEST = "#include <cblas.h>\nint main(void) { return cblas_sdot(0, 0, 1, 0, 1) != 0.0f; }\n"


def probe(system: str, echopanel: EchoPanelFacts | None = None, *, force: bool = False) -> VoxtralCFacts:
    """What doctor and `install voxtral-c` need. Without `force`, nothing is probed unless EchoPanel selects
    voxtral_realtime or `install voxtral-c` has run (doctor stays fast for everyone else)."""
    build = read_build()
    selected = selected_provider(echopanel) if echopanel else None
    if not (force or build or selected == PROVIDER):
        return VoxtralCFacts()
    facts = VoxtralCFacts(probed=True, build=build)
    toolchain(facts, system)
    if echopanel is not None and echopanel.checkout:
        facts.user_clone, facts.user_clone_commit = user_clone(Path(echopanel.checkout), build)
    where, source = binary_for_echopanel(echopanel, build)
    if where is not None:
        facts.binary = check_binary(where, source)
    model, facts.model_source = model_for_echopanel(echopanel)
    if model is not None:
        from echopanel_setup.facts.local import probe_model

        facts.model = str(model)
        found = probe_model(model, None)
        wanted = knowledge.load().voxtral_c.model_files
        facts.model_files = {n: (model / n).stat().st_size if (model / n).is_file() else None for n in wanted}
        facts.model_verified = found.verified
    return facts


def selected_provider(ep: EchoPanelFacts) -> str | None:
    """ECHOPANEL_ASR_PROVIDER as EchoPanel's backend will see it: its environment wins over `.env`."""
    from echopanel_setup.echopanel.keys import SELECTOR

    return ep.env.environment.get(SELECTOR) or ep.env.values.get(SELECTOR)


def _as_echopanel_sees(
    ep: EchoPanelFacts | None, key: str, default: str, ours: tuple[str | None, str]
) -> tuple[Path | None, str]:
    """(path, where it comes from) for `key` as EchoPanel resolves it: its environment, then `.env`, then its default
    relative to the checkout; without a checkout, `ours` (what our installs recorded)."""
    if ep is not None and key in ep.env.environment:
        return Path(ep.env.environment[key]).expanduser(), "the environment"
    if ep is not None and ep.env.values.get(key):
        return Path(ep.env.values[key]).expanduser(), ep.env.path or ".env"
    if ep is not None and ep.checkout:
        return (Path(ep.checkout) / default).resolve(), "EchoPanel's default"
    recorded, source = ours
    return (Path(recorded), source) if recorded else (None, "unset")


def binary_for_echopanel(ep: EchoPanelFacts | None, build: VoxtralCBuild | None) -> tuple[Path | None, str]:
    """The binary EchoPanel will start (ECHOPANEL_VOXTRAL_BIN); without a checkout, the one install voxtral-c built."""
    default = knowledge.load().voxtral_c.echopanel_default_bin
    return _as_echopanel_sees(ep, BIN, default, (build.binary if build else None, "install voxtral-c"))


def model_for_echopanel(ep: EchoPanelFacts | None) -> tuple[Path | None, str]:
    """The weights EchoPanel hands voxtral.c (ECHOPANEL_VOXTRAL_MODEL); without a checkout, install voxtral's dir."""
    recorded = paths.read_state().get("model_dir")
    default = knowledge.load().voxtral_c.echopanel_default_model
    return _as_echopanel_sees(ep, MODEL, default, (recorded if isinstance(recorded, str) else None, "install voxtral"))


def toolchain(facts: VoxtralCFacts, system: str) -> None:
    """The compiler voxtral.c's Makefile names, make, git; Xcode's tools on macOS, OpenBLAS on Linux."""
    k = knowledge.load().voxtral_c
    facts.compiler = shutil.which(k.compiler)
    facts.make = shutil.which("make")
    facts.git = shutil.which("git")
    if system == "Darwin":
        facts.xcode_clt = _quiet(["xcode-select", "-p"]) == 0
    elif system == "Linux" and facts.compiler:
        facts.blas, facts.blas_error = blas_links(facts.compiler)


def blas_links(compiler: str) -> tuple[bool, str | None]:
    """Does `cblas.h` compile and `-lopenblas` link, with the Makefile's own flags? (the first error line if not)."""
    k = knowledge.load().voxtral_c
    with tempfile.TemporaryDirectory(prefix="echopanel-blas-") as tmp:
        src = Path(tmp) / "t.c"
        src.write_text(_BLAS_TEST, encoding="utf-8")
        cmd = [compiler, *k.blas_cflags, str(src), "-o", str(Path(tmp) / "t"), *k.blas_libs]
        try:
            done = proc.run(cmd, timeout=TIMEOUT_S * 3)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{Path(compiler).name} did not run: {exc}"
    if done.returncode == 0:
        return True, None
    return False, first_error(done.stderr.splitlines()) or f"exit {done.returncode}"


def first_error(lines: list[str]) -> str | None:
    """The first line a compiler, linker or make marks as an error (`file:line: error: …`, `ld: …`, `make: ***`)."""
    for marks in ((": error:", ": fatal error:", "error:"), ("undefined reference", "cannot find -l", "ld:"), ("***",)):
        for line in lines:
            if any(m in line for m in marks):
                return line.strip()
    return None


def check_binary(path: Path, source: str) -> VoxtralCBinary:
    """`path --help` exits 0 with voxtral.c's usage on stderr (it loads nothing: milliseconds)."""
    found = VoxtralCBinary(path=str(path), source=source, exists=path.is_file())
    if not found.exists:
        return found
    if not os.access(path, os.X_OK):
        found.runs, found.error = False, "not executable"
        return found
    try:
        done = proc.run([str(path), "--help"], timeout=TIMEOUT_S)  # a binary that hangs: its whole group is killed
    except subprocess.TimeoutExpired:
        found.runs, found.error = False, f"`--help` did not return within {TIMEOUT_S:.0f} s"
        return found
    except OSError as exc:
        found.runs, found.error = False, f"does not start: {exc.strerror or exc}"
        return found
    marker = knowledge.load().voxtral_c.help_marker
    if done.returncode == 0 and marker in done.stderr:
        found.runs = True
    else:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        found.runs, found.error = False, f"`--help` exit {done.returncode}: {tail[:200]}"
    return found


def user_clone(checkout: Path, build: VoxtralCBuild | None) -> tuple[str | None, str | None]:
    """EchoPanel's default place for voxtral.c, `<checkout>/../voxtral.c`, when it holds a clone we did not make."""
    sibling = (checkout / "..").resolve() / "voxtral.c"
    if not sibling.is_dir() or (build is not None and Path(build.checkout) == sibling):
        return None, None
    return str(sibling), git_head(sibling)


def git_head(repo: Path) -> str | None:
    try:
        done = proc.run(["git", "-C", str(repo), "rev-parse", "HEAD"], timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _quiet(cmd: list[str]) -> int | None:
    try:
        return proc.run(cmd, timeout=TIMEOUT_S).returncode
    except (OSError, subprocess.TimeoutExpired):
        return None


# -- the record `install voxtral-c` keeps in our state file --------------------------------------------------------


def read_build() -> VoxtralCBuild | None:
    """What `install voxtral-c` recorded (None when it never ran or the record is unreadable)."""
    data: Any = paths.read_state().get(STATE_KEY)
    if not isinstance(data, dict):
        return None
    try:
        return VoxtralCBuild(**{k: v for k, v in data.items() if k in VoxtralCBuild.__dataclass_fields__})
    except TypeError:
        return None


def write_build(build: VoxtralCBuild) -> Path:
    return paths.write_state({STATE_KEY: asdict(build)})


def for_echopanel() -> tuple[Path, Path] | None:
    """(binary, model dir) to write as absolute ECHOPANEL_VOXTRAL_BIN and ECHOPANEL_VOXTRAL_MODEL: what `install
    voxtral-c` built and the dir `install voxtral` verified. None until both exist."""
    build = read_build()
    model = paths.read_state().get("model_dir")
    if build is None or not isinstance(model, str) or not model:
        return None
    binary = Path(build.binary)
    return (binary, Path(model)) if binary.is_file() else None
