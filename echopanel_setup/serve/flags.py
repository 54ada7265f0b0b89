"""What one vLLM version's `vllm serve` accepts, read from its own `--help=all`.

vLLM's flags change between releases (--swap-space and --device were removed, --device-memory-utilization
became an alias, booleans went from `--x/--no-x` to `--enable-x/--disable-x`), so the builder asks the
installed version instead of trusting a list. Plain `--help` hides most groups; `--help=all` lists every
flag. argparse prints one line per option: every spelling (aliases and the negative form) comma-separated,
then the metavar or the choices. The text is cached per version under the state dir, because importing
vLLM to print it takes seconds.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from echopanel_setup import knowledge, paths, proc

_OPTION = re.compile(r"^  (-\S.*)$")  # options are indented by exactly two spaces; help text by more
_SPLIT = re.compile(r"\s{2,}")  # argparse separates the invocation from its help by two spaces or more
_ALIASES = re.compile(r",\s+(?=-)")  # "--a A, -b A" (a choices list has ", '" instead)
_DOCUMENTED = re.compile(r'^\s+[-*] "([^"]+)"')  # '- "mistral" will load ...' in a flag's description


@dataclass(frozen=True)
class Flag:
    """One option line: every spelling, and what values it takes."""

    names: tuple[str, ...]
    metavar: str | None = None  # None: a switch (store_true or a boolean pair)
    choices: tuple[str, ...] | None = None
    documented: tuple[str, ...] = ()  # values its help lists one per bullet, when it has no choices

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None or self.choices is not None

    def allowed(self, value: str) -> bool:
        if self.choices is not None:
            return value in self.choices
        return not self.documented or value in self.documented


@dataclass
class FlagSet:
    """The flags of one vLLM version (or the built-in list when its help could not be read)."""

    version: str | None
    source: str
    flags: list[Flag] = field(default_factory=list)
    _by_name: dict[str, Flag] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for flag in self.flags:
            for name in flag.names:
                self._by_name.setdefault(name, flag)

    def get(self, name: str) -> Flag | None:
        return self._by_name.get(name)

    def has(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> set[str]:
        return set(self._by_name)

    def boolean(self, stem: str, on: bool) -> str | None:
        """The spelling that turns boolean `stem` on or off in this version: `--x`/`--no-x` (up to 0.32),
        `--enable-x`/`--disable-x` (0.33), `--enable-x`/`--no-enable-x`; None when it has no such spelling."""
        for positive in (f"--{stem}", f"--enable-{stem}"):
            flag = self.get(positive)
            if flag is None or flag.takes_value:
                continue
            if on:
                return positive
            longs = [n for n in flag.names if n.startswith("--")]
            others = [n for n in longs if n != positive]
            return others[0] if others else None
        return None

    def check(self, name: str, value: str | None) -> str | None:
        """None when `name value` is accepted, else why not (for the 'not emitted' notes)."""
        flag = self.get(name)
        where = f"vLLM {self.version}" if self.version else "this vLLM"
        if flag is None:
            return f"{where} has no {name}"
        if value is None:
            return f"{name} needs a value in {where}" if flag.takes_value else None
        if not flag.takes_value:
            return f"{name} takes no value in {where}"
        if not flag.allowed(value):
            listed = flag.choices or flag.documented
            return f"{name} {value}: {where} accepts {', '.join(listed)}"
        return None


def parse_help(text: str, version: str | None, source: str) -> FlagSet:
    """Every option of a `vllm serve --help=all` text."""
    flags: list[Flag] = []
    current: dict[str, object] | None = None
    for line in text.splitlines():
        match = _OPTION.match(line)
        if match:
            if current:
                flags.append(Flag(**current))  # type: ignore[arg-type]
            current = _parse_invocation(_SPLIT.split(match.group(1).strip(), maxsplit=1)[0])
            continue
        if current is not None and current.get("metavar") and current.get("choices") is None:
            documented = _DOCUMENTED.match(line)
            if documented:
                current["documented"] = (*current.get("documented", ()), documented.group(1))  # type: ignore[misc]
    if current:
        flags.append(Flag(**current))  # type: ignore[arg-type]
    return FlagSet(version=version, source=source, flags=flags)


def _parse_invocation(invocation: str) -> dict[str, object]:
    names: list[str] = []
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    for part in _ALIASES.split(invocation):
        name, _, rest = part.partition(" ")
        names.append(name)
        rest = rest.strip()
        if not rest:
            continue
        if rest.startswith("{"):
            choices = tuple(rest[1 : rest.index("}")].split(","))
        elif rest.startswith("["):
            try:
                parsed = ast.literal_eval(rest)
                choices = tuple(str(c) for c in parsed) if isinstance(parsed, list) else None
            except (ValueError, SyntaxError):
                metavar = rest.split()[0]
            if choices is None:
                metavar = rest.split()[0]
        else:
            metavar = rest.split()[0]
    return {"names": tuple(names), "metavar": metavar or (None if choices is None else "CHOICE"), "choices": choices}


def builtin(version: str | None) -> FlagSet:
    """Flags every recorded version (0.16.0, 0.20.0, 0.33.0) lists the same way: the safe subset."""
    f = knowledge.load().serve.flags
    switches = {"--enforce-eager": ("--enforce-eager", "--no-enforce-eager")}
    flags = [
        Flag(names=switches[name]) if name in switches else Flag(names=(name,), metavar="VALUE")
        for name in f.known_everywhere
    ]
    return FlagSet(
        version=version, source="built-in list of flags every recorded vLLM (0.16-0.33) accepts", flags=flags
    )


def cache_path(version: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9.+_-]", "_", version)
    return paths.state_dir() / "vllm-help" / f"{safe}.txt"


class HelpUnavailable(RuntimeError):
    """The target env could not print its help (not installed, crashed, too slow)."""


def read_help(
    executable: list[str] | None, version: str, on_run: Callable[[float], None] | None = None
) -> tuple[str, bool]:
    """`vllm serve --help=all` of this version: (text, from_cache). Runs it (timed) on a cache miss."""
    cached = cache_path(version)
    try:
        return cached.read_text(encoding="utf-8"), True
    except OSError:
        pass
    if executable is None:
        raise HelpUnavailable(f"no cached help for vLLM {version} on this machine")
    timeout = knowledge.load().serve.flags.help_timeout_s
    if on_run:
        on_run(timeout)
    # Logs go to stderr and the help is 80 columns wide, as in the recorded references.
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "VLLM_LOGGING_STREAM": "ext://sys.stderr", "COLUMNS": "80"}
    try:
        out = proc.run([*executable, "serve", "--help=all"], timeout=timeout, env=env)  # a hung vLLM's group dies
    except subprocess.TimeoutExpired:
        raise HelpUnavailable(f"`vllm serve --help=all` did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise HelpUnavailable(f"cannot run {executable[0]}: {exc.strerror or exc}") from None
    if out.returncode != 0 or "--max-model-len" not in out.stdout:
        last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        raise HelpUnavailable(f"`vllm serve --help=all` failed: {last[:200]}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(out.stdout, encoding="utf-8")
    except OSError:
        pass  # a cache that cannot be written only costs time
    return out.stdout, False


def learn(
    executable: list[str] | None,
    version: str | None,
    on_run: Callable[[float], None] | None = None,
    no_version: str = "vLLM is not installed in the target environment",
) -> tuple[FlagSet, str | None]:
    """The flags of the target vLLM: (flag set, why the built-in list was used instead, if it was).

    Without an executable (a replayed machine) only the cache is consulted. `on_run(timeout)` is called
    before the slow subprocess, so the user knows why nothing happens for a few seconds. `no_version`: why the
    version is unknown, when it is."""
    if version is None:
        return builtin(version), no_version
    try:
        text, cached = read_help(executable, version, on_run)
    except HelpUnavailable as exc:
        return builtin(version), str(exc)
    how = "cached" if cached else "read now"
    return parse_help(text, version, f"`vllm serve --help=all` of vLLM {version} ({how})"), None
