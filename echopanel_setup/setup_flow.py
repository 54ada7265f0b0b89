"""`setup`: the guided path for a new user, doctor → install vllm → install voxtral → serve → smoke →
configure, skipping what is already done and stopping at the first blocker with its fix.

doctor decides: a failed required check is either one that a later step fixes (vLLM missing → `install
vllm`, model missing → `install voxtral`, no server → `serve`, no config → `configure`) or a blocker
(too little GPU memory, a port held by something else, macOS) that stops the flow with doctor's fix.
`install` and `serve` run as their own commands in a subprocess, exactly as a user would type them, so
their progress, Ctrl-C handling and exit codes are theirs; a version where one of them is not built
yet gets the manual command instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TextIO

from echopanel_setup import envconfig, knowledge, paths
from echopanel_setup.checks import CheckResult, Status
from echopanel_setup.errors import ExternalError, SetupError, UsageError
from echopanel_setup.report import DoctorRun

_NOT_BUILT = "is not available in echopanel-setup"
# Failed required checks that a later step repairs; anything else stops the flow.
_FIXED_BY = {"stack.": "install vllm", "model.files": "install voxtral", "server": "serve", "config.": "configure"}
_POLL_S = 2.0


@dataclass
class SetupOptions:
    mode: str | None = None
    url: str | None = None
    api_key: str | None = None
    delay_ms: int | None = None
    yes: bool = False
    exec_: bool = False
    detach: bool = False
    dry_run: bool = False
    facts: str | None = None
    python: str | None = None


@dataclass
class CommandOutcome:
    returncode: int
    not_built: bool


def run_command(argv: list[str], err: TextIO | None = None) -> CommandOutcome:
    """Run one of our own commands with its output live; notice the 'not available yet' stub."""
    err = err or sys.stderr
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace")
    not_built = False
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if _NOT_BUILT in line:
                not_built = True
            else:
                err.write(line)
        return CommandOutcome(proc.wait(), not_built and proc.returncode == 2)
    except KeyboardInterrupt:
        proc.wait()  # the child got the same SIGINT and stops cleanly on its own
        raise


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "echopanel_setup", *args]


class Flow:
    """One guided run. Each step prints one line: done (✓), skipped (–), or stopped (✗) with the fix."""

    def __init__(
        self,
        opts: SetupOptions,
        out: TextIO | None = None,
        runner: Callable[[list[str]], CommandOutcome] = run_command,
        spawn: Callable[[list[str]], subprocess.Popen] = subprocess.Popen,  # type: ignore[type-arg]
    ) -> None:
        """`runner` runs a step to completion, `spawn` starts `serve --exec` alongside the flow."""
        from echopanel_setup.report import console

        self.opts, self.run_command, self.spawn = opts, runner, spawn
        self.con = console(out or sys.stdout)
        self.server_proc: subprocess.Popen | None = None  # type: ignore[type-arg]
        self.started_with_delay: int | None = None  # the delay `serve` was started with in this run

    # --- output ---

    def _line(self, symbol: str, step: str, text: str) -> None:
        from rich.markup import escape

        style = {"✓": "green", "–": "dim", "✗": "bold red", "!": "yellow", "→": "cyan"}[symbol]
        word = {"✓": "done", "–": "skip", "✗": "stop", "!": "warn", "→": "run "}[symbol]
        self.con.print(f"[{style}]{symbol} {word}[/]  {step:<16} {escape(text)}")

    def _fix(self, text: str, commands: list[str]) -> None:
        from rich.markup import escape

        if text:
            self.con.print(f"          {escape(text)}")
        for command in commands:
            self.con.print(f"          [cyan]{escape(command)}[/]")

    # --- the flow ---

    def run(self) -> int:
        self.con.print(
            "[bold]echopanel-setup setup[/]  ·  doctor → install vllm → install voxtral → serve → smoke → configure"
        )
        try:
            doctor_run = self._doctor()
            mode = doctor_run.mode
            if blocked := self._blockers(doctor_run):
                return self._stop_on(blocked, mode)
            if mode == "local":
                for step, prefix, shown, args in (
                    ("install vllm", "stack.", "stack.vllm", ("install", "vllm")),
                    ("install voxtral", "model.files", "model.files", ("install", "voxtral")),
                ):
                    after = self._install(step, prefix, shown, args, doctor_run)
                    if after is None:
                        return 1
                    doctor_run = after
                if not self._serve(doctor_run):
                    return 1
            if self.opts.dry_run:
                self._line("–", "smoke", "dry run: would transcribe the bundled clip through the server")
                self._line("–", "configure", "dry run: would write EchoPanel's config")
                return 0
            if not self._smoke(mode, doctor_run):
                return 1
            self._configure(mode, doctor_run)
            self.con.print(
                "[green]Voxtral is set up for EchoPanel.[/] Re-check any time with [cyan]echopanel-setup doctor[/]."
            )
            if self.server_proc is not None:
                self.con.print("vLLM keeps running in the foreground (Ctrl-C stops it).")
                self.server_proc.wait()
            return 0
        finally:
            if self.server_proc is not None and self.server_proc.poll() is None:
                self.server_proc.terminate()
                self.server_proc.wait(30)

    def _doctor(self) -> DoctorRun:
        from echopanel_setup import doctor
        from echopanel_setup.facts.collect import Options
        from echopanel_setup.url import ServerURL

        skip = ["network.mistral"] if self.opts.mode == "api" and self.opts.url else []
        url = ServerURL.parse(self.opts.url) if self.opts.url and self.opts.mode != "api" else None
        with _vllm_key(self.opts.api_key if self.opts.mode != "api" else None):
            run = doctor.run(
                Options(python=self.opts.python, url=url), mode=self.opts.mode, skip=skip, facts_file=self.opts.facts
            )
        failed = len(self._failures(run))
        verdict = (
            f"{failed} required check{'s' if failed != 1 else ''} failed" if failed else "every required check passes"
        )
        self._line("✓" if not failed else "!", "doctor", f"{run.mode} mode ({run.mode_reason}): {verdict}")
        return run

    def _failures(self, run: DoctorRun) -> list[CheckResult]:
        failed = [r for r in run.results if r.counts_as_failure]
        if self.opts.api_key:
            failed = [r for r in failed if r.id != "api.key"]
        return failed

    def _blockers(self, run: DoctorRun) -> list[CheckResult]:
        """Failures no later step repairs; install and serve steps exist only in local mode."""
        fixable = _FIXED_BY if run.mode == "local" else {"config.": "configure"}
        return [r for r in self._failures(run) if not any(r.id.startswith(p) for p in fixable)]

    def _stop_on(self, blocked: list[CheckResult], mode: str) -> int:
        first = blocked[0]
        self._line("✗", "doctor", f"{first.title}: {first.summary}")
        if first.fix:
            self._fix(first.fix.text, first.fix.commands)
        if first.id == "platform.verdict":
            self._fix(
                "Or let setup take one of the other paths:",
                ["echopanel-setup setup --mode remote --url http://GPU-HOST:8000", "echopanel-setup setup --mode api"],
            )
        for other in blocked[1:]:
            self._fix(f"Also: {other.title}: {other.summary}", [])
        return 1

    def _install(self, step: str, prefix: str, shown: str, args: tuple[str, ...], run: DoctorRun) -> DoctorRun | None:
        """Run `install …` when doctor's checks for it fail; re-check afterwards. None means stop."""
        failing = [r for r in self._failures(run) if r.id.startswith(prefix)]
        if not failing:
            passed = next((r for r in run.results if r.id == shown and r.status == Status.OK), None)
            self._line("–", step, f"already done ({passed.summary})" if passed else "not needed")
            return run
        command = ["echopanel-setup", *args, *(["--yes"] if self.opts.yes else [])]
        if self.opts.dry_run:
            self._line("–", step, f"dry run: would run `{' '.join(command)}` ({failing[0].summary})")
            return run
        self._line("→", step, f"{failing[0].summary}; running `{' '.join(command)}`")
        if not self._run_ours(step, command[1:], run):
            return None
        run = self._doctor()
        still = [r for r in self._failures(run) if r.id.startswith(prefix)]
        if still:
            self._line("✗", step, f"after it, {still[0].title} still fails: {still[0].summary}")
            if still[0].fix:
                self._fix(still[0].fix.text, still[0].fix.commands)
            return None
        self._line("✓", step, "done")
        return run

    def _not_built(self, step: str, run: DoctorRun) -> None:
        """The command is still a stub in this version: give the manual equivalent instead."""
        issue = {"install vllm": 9, "install voxtral": 9, "serve": 10}[step]
        self._line(
            "✗",
            step,
            f"`{step}` is not available in this version of echopanel-setup yet (issue #{issue}); do it by hand:",
        )
        self._fix("", [self._manual(step, run)])
        self._fix("Then run setup again; it skips what is done.", ["echopanel-setup setup"])

    def _manual(self, step: str, run: DoctorRun) -> str:
        k = knowledge.load()
        state = paths.read_state()
        model_dir = state.get("model_dir") or run.facts.model.path or str(paths.default_model_dir())
        template = getattr(k.setup, "manual_" + step.replace(" ", "_"))
        return template.format(
            venv=state.get("vllm_venv") or paths.default_venv_dir(),
            vllm_spec=k.vllm.install_spec,
            mistral_common_spec=k.mistral_common.install_spec,
            repo=k.model.repo,
            files=" ".join(k.model.files),
            model_dir=model_dir,
            port=run.facts.port.port,
        )

    def _server_url(self, run: DoctorRun) -> str:
        from echopanel_setup import envconfig

        return self.opts.url or run.facts.config.values.get(envconfig.URL) or knowledge.load().server.default_url

    def _serve(self, run: DoctorRun) -> bool:
        server = next((r for r in run.results if r.id == "server"), None)
        if server is not None and server.status == Status.OK:
            self._line("–", "serve", f"already running ({server.summary})")
            return True
        if self.opts.dry_run:
            self._line("–", "serve", "dry run: would start vLLM (`echopanel-setup serve --detach`)")
            return True
        delay = ["--delay-ms", str(self.opts.delay_ms)] if self.opts.delay_ms else []
        if not (self.opts.exec_ or self.opts.detach):
            self._line("→", "serve", "no server yet; the command that starts one:")
            if self._run_ours("serve", ["serve", *delay], run):
                self._fix(
                    "Start it (or rerun setup with --detach to run it in the background, --exec in the foreground), then run setup again:",
                    ["echopanel-setup setup --detach"],
                )
            return False
        flag = "--exec" if self.opts.exec_ else "--detach"
        self._line("→", "serve", f"starting vLLM (`echopanel-setup serve {flag}`)")
        self.started_with_delay = self.opts.delay_ms
        if self.opts.exec_:
            self.server_proc = self.spawn(ours("serve", flag, *delay))
        elif not self._run_ours("serve", ["serve", flag, *delay], run):
            return False
        return self._wait_ready(self._server_url(run))

    def _run_ours(self, step: str, args: list[str], run: DoctorRun) -> bool:
        """Run `echopanel-setup ARGS`; False, with the reason printed, when it is not built yet or fails."""
        outcome = self.run_command(ours(*args))
        if outcome.not_built:
            self._not_built(step, run)
            return False
        if outcome.returncode != 0:
            self._line(
                "✗", step, f"`echopanel-setup {' '.join(args)}` exited with {outcome.returncode} (its message is above)"
            )
            return False
        return True

    def _wait_ready(self, url: str) -> bool:
        """Poll /health and /v1/models until the model is served, the server process dies, or time runs out."""
        from echopanel_setup.smoke import server
        from echopanel_setup.url import ServerURL

        limit = knowledge.load().setup.ready_timeout_s
        deadline = time.monotonic() + limit
        ep = ServerURL.parse(url)
        with self.con.status(f"waiting for {ep.http_base} to serve the model (up to {limit / 60:.0f} min)…"):
            while time.monotonic() < deadline:
                if self.server_proc is not None and self.server_proc.poll() is not None:
                    self._line(
                        "✗",
                        "serve",
                        f"vLLM exited with {self.server_proc.returncode} before it was ready (its log is above)",
                    )
                    self.server_proc = None
                    return False
                try:
                    info = server.discover(ep, self.opts.api_key, "", _POLL_S)
                except ExternalError:  # not up yet; a UsageError (e.g. an unusable proxy) stops at once
                    if self.server_proc is None:
                        time.sleep(_POLL_S)
                    else:  # wake up as soon as vLLM exits
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            self.server_proc.wait(_POLL_S)
                    continue
                self._line("✓", "serve", f"{ep.http_base} serves {', '.join(info.models)}")
                return True
        self._line("✗", "serve", f"{ep.http_base} was not ready after {limit:.0f} s")
        self._fix("Read the log:", ["echopanel-setup serve --logs"])
        return False

    def _smoke(self, mode: str, run: DoctorRun) -> bool:
        from echopanel_setup.smoke import runner
        from echopanel_setup.url import ServerURL

        url = self.opts.url if mode == "api" else self._server_url(run)
        self._line("→", "smoke", "transcribing the bundled clip")
        try:
            server = ServerURL.parse(url) if url else None
            result = runner.run(runner.SmokeOptions(mode=mode, url=server, api_key=self.opts.api_key, fast=True))
        except SetupError as exc:
            self._line("✗", "smoke", str(exc))
            self._fix("Details and options:", ["echopanel-setup smoke --help"])
            return False
        score = f"WER {result.score.wer:.0%}" if result.score else "no reference"
        if not result.passed:
            self._line("✗", "smoke", f"{score} over the {result.max_wer:.0%} limit: {result.transcript.text!r}")
            self._fix(
                "The server answers but transcribes badly; check what it serves:",
                ["echopanel-setup smoke", "echopanel-setup doctor"],
            )
            return False
        self._line("✓", "smoke", f"{score}, model {result.model}: {result.transcript.text.strip()!r}")
        return True

    def _configure(self, mode: str, run: DoctorRun) -> None:
        from echopanel_setup import configure

        url = self.opts.url if mode != "api" else None  # in api mode --url is the API's address, not EchoPanel's
        opts = configure.ConfigureOptions(mode=mode, url=url, delay_ms=self.opts.delay_ms, api_key=self.opts.api_key)
        self._line("→", "configure", "writing EchoPanel's config")
        facts = run.facts
        if self.started_with_delay is not None:  # serve just started a variant with this delay
            facts = replace(facts, model=replace(facts.model, delay_ms=self.started_with_delay))
        configure.run(opts, yes=self.opts.yes, out=self.con.file, facts=facts)


@contextlib.contextmanager
def _vllm_key(key: str | None) -> Iterator[None]:
    """Doctor asks the server with VLLM_API_KEY from the environment; `setup --api-key` must count too."""
    if not key:
        yield
        return
    before = os.environ.get("VLLM_API_KEY")
    os.environ["VLLM_API_KEY"] = key
    try:
        yield
    finally:
        if before is None:
            del os.environ["VLLM_API_KEY"]
        else:
            os.environ["VLLM_API_KEY"] = before


def run(opts: SetupOptions, out: TextIO | None = None) -> int:
    if opts.exec_ and opts.detach:
        raise UsageError("--exec and --detach exclude each other: pick one")
    if opts.delay_ms is not None and (problem := envconfig.validate_delay(str(opts.delay_ms))):
        raise UsageError(f"--delay-ms: {problem.split('=', 1)[1]}")
    return Flow(opts, out).run()
