"""`setup`: the guided path for a new user, doctor → install vllm → install voxtral → serve → smoke → provider →
configure → smoke echopanel, skipping what is already done and stopping at the first blocker with its fix.

Where EchoPanel's checkout is on this machine, `provider` makes sure its voxtral_official can work (offering
`provider fix`, applied only with consent or --yes) and the last step runs EchoPanel's own provider against the
server: "set up" means EchoPanel transcribes, not only that the server does.

doctor decides: a failed required check is either one that a later step fixes (vLLM missing → `install
vllm`, model missing → `install voxtral`, no server → `serve`, no config → `configure`) or a blocker
(too little GPU memory, a port held by something else, macOS) that stops the flow with doctor's fix.
`install` and `serve` run as their own commands in a subprocess, exactly as a user would type them, so
their progress, Ctrl-C handling and exit codes are theirs.

`Flow.run` returns a `SetupResult`: every step line, shown live through `setup_render.SetupUi` as it
happens (setup takes minutes), and one JSON document at the end under --json.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from echopanel_setup import env, envconfig, knowledge, ports, setup_voxtral_c
from echopanel_setup.checks import CheckResult, Fix, Status
from echopanel_setup.doctor import DoctorRun
from echopanel_setup.errors import EXIT_FAILED, EXIT_OK, ExternalError, SetupError, UsageError
from echopanel_setup.facts.model import Facts
from echopanel_setup.url import ServerURL

if TYPE_CHECKING:
    from rich.console import Console

# doctor's check ids (checks/*.py) that setup acts on; one ending in "." stands for its whole category.
STACK = "stack."
VLLM = "stack.vllm"
MODEL_FILES = "model.files"
SERVER = "server"
CONFIG = "config."
PLATFORM = "platform.verdict"
MISTRAL_REACHABLE = "network.mistral"
MISTRAL_KEY = "api.key"
# Failed required checks that a later step repairs (install and serve run in local mode only); any other stops.
_REPAIRED = {"local": (STACK, MODEL_FILES, SERVER, CONFIG), "remote": (CONFIG,), "api": (CONFIG,)}
_POLL_S = 2.0
PROVIDER_FIX = ["echopanel-setup provider fix --dry-run", "echopanel-setup provider fix"]


@dataclass(frozen=True, kw_only=True)
class SetupOptions:
    mode: str | None = None
    url: ServerURL | None = None
    api_key: str | None = field(default=None, repr=False)  # a key, or "-": one line of standard input
    key_from_stdin: bool = False  # set by `run` once it has read the "-" key
    vllm_api_key: str | None = field(default=None, repr=False)  # VLLM_API_KEY, read by cli
    offline: bool = False  # no Hugging Face or Mistral API requests (doctor --offline); no downloads
    delay_ms: int | None = None
    yes: bool = False
    exec_: bool = False
    detach: bool = False
    dry_run: bool = False
    facts: str | None = None
    python: str | None = None
    echopanel: str | None = None
    echopanel_python: str | None = None
    provider: str | None = None  # voxtral_realtime: the voxtral.c path (setup_voxtral_c); None: what EchoPanel selects


@dataclass
class Step:
    """One line of the flow: a step, how it went, and the fixes shown under it."""

    step: str
    state: str  # done | skip | stop | warn | run
    text: str
    fixes: list[Fix] = field(default_factory=list)


@dataclass(kw_only=True)
class SetupResult:
    """status: set-up (every step done) | dry-run | stopped (at the step whose fix is shown)."""

    status: str
    mode: str | None
    steps: list[Step]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.status == "stopped" else EXIT_OK


class FlowUi(Protocol):
    """setup's live side (setup_render.SetupUi): each step line as it happens."""

    json_mode: bool
    out: TextIO  # where the lines go (configure's output joins them)
    con: Console

    def begin(self) -> None: ...

    def step(self, step: Step) -> None: ...

    def fix(self, fix: Fix) -> None: ...

    def set_up(self, foreground: bool) -> None: ...

    def confirm(self, question: str) -> bool: ...


# The mode a `setup --mode` chose, kept in our state dir (never in EchoPanel's files). A remote server reached through
# `tunnel start` has a loopback URL, which alone reads as a server on this machine: a rerun resumes the choice
# instead of guessing it from the URL.
_CHOSEN = "setup_choice"


def remember(mode: str, url: ServerURL | None) -> None:
    """Record the mode (and server) this run was told to use; the URL without credentials, and the tunnel it goes
    through when one of ours forwards its port."""
    from datetime import datetime, timezone

    from echopanel_setup import paths
    from echopanel_setup.tunnel import records

    tunnel = records.current()
    through = tunnel is not None and url is not None and url.is_loopback and url.port == tunnel.local_port
    paths.write_state(
        {
            _CHOSEN: {
                "mode": mode,
                "url": url.display if url is not None else None,
                "tunnel": tunnel.host if through and tunnel is not None else None,
                "chosen_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            }
        }
    )


def resume(opts: SetupOptions) -> tuple[SetupOptions, str] | None:
    """The options with the last chosen mode (and its server), and why; None when this run chooses for itself
    (--mode or --provider given, another --url, or nothing recorded)."""
    from echopanel_setup import paths
    from echopanel_setup.tunnel import records

    saved = paths.read_state().get(_CHOSEN)
    if opts.mode is not None or opts.provider is not None or not isinstance(saved, dict):
        return None
    mode, shown = saved.get("mode"), saved.get("url")
    if mode not in ("local", "remote", "api") or (opts.url is not None and opts.url.display != shown):
        return None
    try:
        url = opts.url or (ServerURL.parse(shown) if isinstance(shown, str) else None)
    except UsageError:
        return None
    why = f"resumed: the last `setup --mode {mode}` chose it on {saved.get('chosen_at', '?')}"
    if url is not None:
        why += f" for {url.display}"
    if host := saved.get("tunnel"):
        running = records.current()
        why += f" through the tunnel to {host}" + (
            "" if running is not None else f" (not running: `echopanel-setup tunnel start {host}`)"
        )
    return replace(opts, mode=mode, url=url), f"{why}; --mode to choose again"


def run_command(argv: list[str], stdout: int | None = None) -> int:
    """Run one of our own commands in the foreground, its output live (`stdout=2`: on our stderr); its exit code."""
    proc = subprocess.Popen(argv, stdout=stdout)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.wait()  # the child got the same SIGINT and stops cleanly on its own
        raise


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "echopanel_setup", *args]


class Flow:
    """One guided run. Each step is one line: done (✓), skipped (–), or stopped (✗) with the fix."""

    def __init__(
        self,
        opts: SetupOptions,
        ui: FlowUi,
        runner: Callable[[list[str]], int] | None = None,
        spawn: Callable[[list[str]], subprocess.Popen] | None = None,
    ) -> None:
        """`runner` runs a step to completion, `spawn` starts `serve --exec` alongside the flow; under --json
        both send the commands' output to stderr, so stdout holds only setup's document."""
        stdout = 2 if ui.json_mode else None
        self.opts, self.ui = opts, ui
        self.run_command = runner or (lambda argv: run_command(argv, stdout=stdout))
        self.spawn = spawn or (lambda argv: subprocess.Popen(argv, stdout=stdout))
        self.steps: list[Step] = []
        self.mode: str | None = None
        self.server_proc: subprocess.Popen | None = None
        self.started_with_delay: int | None = None  # the delay `serve` was started with in this run
        self.facts: Facts | None = None  # doctor's, once it ran
        self.resumed: str | None = None  # why the mode came from the last run's choice
        if (resumed := resume(opts)) is not None:
            self.opts, self.resumed = resumed

    # --- output ---

    def _line(self, symbol: str, step: str, text: str) -> None:
        state = {"✓": "done", "–": "skip", "✗": "stop", "!": "warn", "→": "run"}[symbol]
        self.steps.append(Step(step, state, text))
        self.ui.step(self.steps[-1])

    def _fix(self, text: str, commands: list[str]) -> None:
        fix = Fix(text, commands)
        self.steps[-1].fixes.append(fix)
        self.ui.fix(fix)

    def _result(self, status: str) -> SetupResult:
        return SetupResult(status=status, mode=self.mode, steps=self.steps)

    # --- the flow ---

    def run(self) -> SetupResult:
        self.ui.begin()
        try:
            doctor_run = self._doctor()
            mode = self.mode = doctor_run.mode
            if self.opts.mode is not None and self.resumed is None and not self.opts.dry_run:
                remember(self.opts.mode, self.opts.url)
            self.facts = doctor_run.facts
            if setup_voxtral_c.wanted(self.opts.provider, self.opts.mode, doctor_run.facts):
                return setup_voxtral_c.run(self, doctor_run)
            if blocked := self._blockers(doctor_run):
                return self._stop_on(blocked)
            if mode == "local":
                for step, prefix, shown, args in (
                    ("install vllm", STACK, VLLM, ("install", "vllm")),
                    ("install voxtral", MODEL_FILES, MODEL_FILES, ("install", "voxtral")),
                ):
                    after = self._install(step, prefix, shown, args, doctor_run)
                    if after is None:
                        return self._result("stopped")
                    doctor_run = after
                if not self._serve(doctor_run):
                    return self._result("stopped")
            if self.opts.dry_run:
                self._line("–", "smoke", "dry run: would transcribe the bundled clip through the server")
                self._line("–", "provider", "dry run: would check EchoPanel's provider and offer `provider fix`")
                self._line("–", "configure", "dry run: would write EchoPanel's config")
                return self._result("dry-run")
            if not self._smoke(mode, doctor_run):
                return self._result("stopped")
            checkout = self._checkout()
            if checkout is not None and not self._provider(checkout):
                return self._result("stopped")
            if not self._configure(mode, doctor_run, checkout):
                return self._result("stopped")
            if checkout is not None and not self._echopanel_smoke(checkout):
                return self._result("stopped")
            self.ui.set_up(foreground=self.server_proc is not None)
            if self.server_proc is not None:
                self.server_proc.wait()
            return self._result("set-up")
        finally:
            if self.server_proc is not None and self.server_proc.poll() is None:
                self.server_proc.terminate()
                self.server_proc.wait(30)

    def _doctor(self) -> DoctorRun:
        from echopanel_setup import doctor
        from echopanel_setup.facts.collect import Options

        skip = [MISTRAL_REACHABLE] if self.opts.mode == "api" and self.opts.url else []
        url = self.opts.url if self.opts.mode != "api" else None
        opts = Options(
            python=self.opts.python,
            url=url,
            offline=self.opts.offline,
            vllm_api_key=self._server_key(self.opts.mode),
            echopanel=self.opts.echopanel,
            echopanel_python=self.opts.echopanel_python,
        )
        run = doctor.run(opts, mode=self.opts.mode, skip=skip, facts_file=self.opts.facts, url_sets_mode=False)
        failed = len(self._failures(run))
        verdict = (
            f"{failed} required check{'s' if failed != 1 else ''} failed" if failed else "every required check passes"
        )
        why = self.resumed or run.mode_reason
        self._line("✓" if not failed else "!", "doctor", f"{run.mode} mode ({why}): {verdict}")
        return run

    def _server_key(self, mode: str | None) -> str | None:
        """The key for the vLLM server: `--api-key` (outside api mode, where it is Mistral's), else VLLM_API_KEY."""
        return (self.opts.api_key if mode != "api" else None) or self.opts.vllm_api_key

    def _failures(self, run: DoctorRun) -> list[CheckResult]:
        failed = [r for r in run.results if r.counts_as_failure]
        if self.opts.api_key:
            failed = [r for r in failed if r.id != MISTRAL_KEY]
        return failed

    def _blockers(self, run: DoctorRun) -> list[CheckResult]:
        """Failures no later step repairs; install and serve steps exist only in local mode."""
        return [r for r in self._failures(run) if not r.id.startswith(_REPAIRED[run.mode])]

    def _stop_on(self, blocked: list[CheckResult]) -> SetupResult:
        first = blocked[0]
        self._line("✗", "doctor", f"{first.title}: {first.summary}")
        if first.id == PLATFORM and self.facts is not None and setup_voxtral_c.offer(self.facts):
            self._fix(
                "First choice on this Mac: Voxtral on the Apple GPU with voxtral.c (Metal, real time):",
                [setup_voxtral_c.COMMAND],
            )
        if first.fix:
            self._fix(first.fix.text, first.fix.commands)
        if first.id == PLATFORM:
            self._fix(
                "Or let setup take one of the other paths:",
                [
                    f"echopanel-setup setup --mode remote --url {ports.example_url()}",
                    "echopanel-setup setup --mode api",
                ],
            )
        for other in blocked[1:]:
            self._fix(f"Also: {other.title}: {other.summary}", [])
        return self._result("stopped")

    def _install(self, step: str, prefix: str, shown: str, args: tuple[str, ...], run: DoctorRun) -> DoctorRun | None:
        """Run `install …` when doctor's checks for it fail; re-check afterwards. None means stop."""
        failing = [r for r in self._failures(run) if r.id.startswith(prefix)]
        if not failing:
            passed = next((r for r in run.results if r.id == shown and r.status == Status.OK), None)
            self._line("–", step, f"already done ({passed.summary})" if passed else "not needed")
            return run
        command = ["echopanel-setup", *args, *(["--yes"] if self.opts.yes else [])]
        if self.opts.offline:
            self._line("✗", step, f"{failing[0].summary}; `{' '.join(command)}` downloads, and --offline forbids it")
            self._fix("Run setup without --offline (or run the install on a connected machine):", [" ".join(command)])
            return None
        if self.opts.dry_run:
            self._line("–", step, f"dry run: would run `{' '.join(command)}` ({failing[0].summary})")
            return run
        self._line("→", step, f"{failing[0].summary}; running `{' '.join(command)}`")
        if not self._run_ours(step, command[1:]):
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

    def _server_url(self, run: DoctorRun) -> ServerURL:
        """--url, else the server EchoPanel's config names, else vLLM's default address on this machine."""
        return self.opts.url or envconfig.configured_url(run.facts.config.values) or ServerURL.parse(ports.local_url())

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
            if self._run_ours("serve", ["serve", *delay]):
                self._fix(
                    "Start it (or rerun setup with --detach to run it in the background, --exec in the foreground), "
                    "then run setup again:",
                    ["echopanel-setup setup --detach"],
                )
            return False
        flag = "--exec" if self.opts.exec_ else "--detach"
        self._line("→", "serve", f"starting vLLM (`echopanel-setup serve {flag}`)")
        self.started_with_delay = self.opts.delay_ms
        if self.opts.exec_:
            self.server_proc = self.spawn(ours("serve", flag, *delay))
        elif not self._run_ours("serve", ["serve", flag, *delay]):
            return False
        return self._wait_ready(self._server_url(run))

    def _run_ours(self, step: str, args: list[str]) -> bool:
        """Run `echopanel-setup ARGS`; False, with the reason shown, when it fails."""
        returncode = self.run_command(ours(*args))
        if returncode != 0:
            self._line("✗", step, f"`echopanel-setup {' '.join(args)}` exited with {returncode} (its message is above)")
            return False
        return True

    def _wait_ready(self, ep: ServerURL) -> bool:
        """Poll /health and /v1/models until the model is served, the server process dies, or time runs out."""
        from echopanel_setup.smoke import server

        limit = knowledge.load().setup.ready_timeout_s
        deadline = time.monotonic() + limit
        with self.ui.con.status(f"waiting for {ep.http_base} to serve the model (up to {limit / 60:.0f} min)…"):
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
                    info = server.discover(ep, self._server_key(self.opts.mode), "", _POLL_S)
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

        url = self.opts.url if mode == "api" else self._server_url(run)
        self._line("→", "smoke", "transcribing the bundled clip")
        try:
            result = runner.run(
                runner.SmokeOptions(
                    mode=mode, url=url, api_key=self.opts.api_key, vllm_api_key=self.opts.vllm_api_key, fast=True
                )
            )
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

    def _checkout(self) -> Path | None:
        """EchoPanel's checkout on this machine, if any: the provider and the last smoke need it."""
        from echopanel_setup.echopanel import discover

        found = discover.find(self.opts.echopanel, os.environ, Path.cwd(), Path.home())
        if found is None:
            self._line("–", "provider", "no EchoPanel checkout on this machine (--echopanel PATH names one)")
        return found.path if found is not None else None

    def _provider(self, checkout: Path) -> bool:
        """EchoPanel's voxtral_official must be one that can work; if not, offer `provider fix` (consent or --yes)."""
        from echopanel_setup.provider import command as pc

        where, python = str(checkout), self.opts.echopanel_python
        check = pc.run(
            pc.ProviderOptions(action="check", echopanel=where, echopanel_python=python, against_server=False)
        )
        what = check.variant_title or "a voxtral_official echopanel-setup does not know"
        if check.exit_code == 0:
            self._line("✓", "provider", f"{what}: loads in EchoPanel's Python")
            return True
        self._line("!", "provider", f"{what}: {check.reason}")
        fix = pc.ProviderOptions(action="fix", echopanel=where, echopanel_python=python, yes=self.opts.yes)
        fixed = pc.run(fix, ask=self.ui.confirm)
        if fixed.exit_code == 0:
            self._line("✓", "provider", f"replaced by echopanel-setup's realtime provider (original: {fixed.orig})")
            return True
        self._line("✗", "provider", fixed.reason or fixed.outcome)
        self._fix(
            "EchoPanel cannot transcribe with its provider as it is; see the change, then apply it:", PROVIDER_FIX
        )
        return False

    def _echopanel_smoke(self, checkout: Path) -> bool:
        """The honest last step: EchoPanel's own provider, in its Python, with its settings, against its server."""
        from echopanel_setup.smoke import audio
        from echopanel_setup.smoke import echopanel as ep_smoke

        self._line("→", "smoke echopanel", "running EchoPanel's own provider on the bundled clip")
        result = ep_smoke.run(
            echopanel=str(checkout),
            echopanel_python=self.opts.echopanel_python,
            url=None,
            clip=audio.bundled(),
            max_wer=knowledge.load().smoke.max_wer,
            fast=True,
        )
        if result.passed:
            self._line("✓", "smoke echopanel", f"{result.verdict}: {result.transcript.strip()!r}")
            return True
        self._line("✗", "smoke echopanel", result.verdict)
        self._fix("What EchoPanel gets, step by step:", ["echopanel-setup smoke --client echopanel"])
        return False

    def _configure(self, mode: str, run: DoctorRun, checkout: Path | None) -> bool:
        """Write EchoPanel's `.env` in the checkout found (the provider step showed it); without one, say how to
        bring the settings to the machine that runs EchoPanel. False (stop) when configure refuses the selection
        (e.g. --mode api for a provider without an API path) or the write was declined."""
        from echopanel_setup.configure import render as configure_render
        from echopanel_setup.configure import runner as configure
        from echopanel_setup.configure.result import ConfigureOptions
        from echopanel_setup.echopanel.settings import Refused

        if checkout is None:
            # The mode (and server) this run chose travel with the commands: where vLLM cannot run, a bare
            # configure names no server and stops. A local server reaches EchoPanel's machine through `tunnel start`,
            # which configure there finds by itself. No exports for api mode: without a checkout configure cannot
            # tell whether the provider has an API path.
            chosen = f" --mode {mode}" if mode != "local" else ""
            if mode == "remote" and self.opts.url:
                chosen += f" --url {self.opts.url.display}"
            shell = [f"echopanel-setup configure{chosen} --shell"] if mode != "api" else []
            self._line("–", "configure", "no EchoPanel checkout here: nothing to write")
            self._fix(
                "On the machine that runs EchoPanel's backend, write its .env"
                + (" (or print the exports for its shell):" if shell else ":"),
                [f"echopanel-setup configure{chosen} --echopanel PATH", *shell],
            )
            return True
        # In api mode --url is the API's address, not EchoPanel's.
        url = self.opts.url.http_base if self.opts.url and mode != "api" else None
        key = "-" if self.opts.key_from_stdin else self.opts.api_key  # configure words a piped key as such
        opts = ConfigureOptions(
            mode=mode,
            url=url,
            delay_ms=self.opts.delay_ms,
            api_key=key,
            yes=self.opts.yes,
            echopanel=str(checkout),
            echopanel_python=self.opts.echopanel_python,
        )
        self._line("→", "configure", "writing EchoPanel's config")
        facts = run.facts
        if self.started_with_delay is not None:  # serve just started a variant with this delay
            facts = replace(facts, model=replace(facts.model, delay_ms=self.started_with_delay))
        ui = configure_render.ConfigureUi(json_mode=self.ui.json_mode, out=self.ui.out)
        stdin = io.StringIO(f"{self.opts.api_key}\n") if self.opts.key_from_stdin else None
        try:
            result = configure.run(opts, ui, facts=facts, stdin=stdin)
        except Refused as refused:
            self._line("✗", "configure", str(refused))
            self._fix("See what EchoPanel's provider is, and replace it with one that works:", PROVIDER_FIX)
            return False
        if not self.ui.json_mode:
            configure_render.render(result, json_out=False, out=self.ui.out)
        if result.action == "declined":
            self._line("✗", "configure", f"not written: {result.plan.path} (EchoPanel keeps its old settings)")
            return False
        self.steps.append(Step("configure", "done", f"{result.action}: {result.plan.path}"))
        return True


def run(opts: SetupOptions, ui: FlowUi, stdin: TextIO | None = None) -> SetupResult:
    """Check the flags, read a `--api-key -` key from standard input (once: doctor, smoke and configure all
    use it), and run the flow."""
    if opts.exec_ and opts.detach:
        raise UsageError("--exec and --detach exclude each other: pick one")
    if opts.exec_ and ui.json_mode:
        raise UsageError("--exec keeps vLLM in the foreground after setup: use --detach with --json")
    if opts.delay_ms is not None and (problem := envconfig.validate_delay(str(opts.delay_ms))):
        raise UsageError(f"--delay-ms: {problem.split('=', 1)[1]}")
    if opts.offline and opts.mode == "api":
        raise UsageError("--offline and --mode api exclude each other: Mistral's API is on the network")
    if opts.api_key == "-":
        opts = replace(opts, api_key=env.secret_arg("-", stdin=stdin), key_from_stdin=True)
    return Flow(opts, ui).run()
