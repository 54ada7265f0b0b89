"""EchoPanel's settings: present, read as EchoPanel reads them, valid values, and a delay the server really serves.

Signals: EchoPanel's `.env` (the checkout's, or --config; merged with the process environment, which wins) and
`audio.transcription_delay_ms` in the tekken.json vLLM will load. The env variable alone changes nothing
on the server: vLLM reads the delay from tekken.json at start-up.
"""

from __future__ import annotations

from echopanel_setup import envconfig, knowledge, ports
from echopanel_setup.checks import REQUIRED, Fix, Outcome, Status, check
from echopanel_setup.facts.model import Facts
from echopanel_setup.url import is_loopback


@check("config.values", "EchoPanel config", "config", ("config",), local=REQUIRED, remote=REQUIRED, api=REQUIRED)
def values(facts: Facts, mode: str) -> Outcome:
    """The file parses, each key has a valid value, and it selects Voxtral in the mode being checked."""
    c = facts.config
    legacy = (
        [f"{c.legacy}: written by an earlier echopanel-setup; EchoPanel never read it (`configure` carries it over)"]
        if c.legacy
        else []
    )
    if not c.exists and not c.values:
        if mode == "local" and not (facts.platform.system == "Linux" and facts.gpu.devices):
            fix = Fix(
                "This machine cannot serve Voxtral itself; write the config for another way:",
                [
                    f"echopanel-setup configure --mode remote --url {ports.example_url()}",
                    "echopanel-setup configure --mode api",
                ],
            )
        else:
            fix = Fix("Write it once the server works:", [configure_command(facts, mode)])
        if not c.path:  # no checkout here and no --config: nothing EchoPanel reads on this machine
            # The exports carry the mode (and URL) too: a bare `configure --shell` stops where vLLM cannot run here.
            # Without a checkout configure cannot tell whether the provider has an API path, so none for api.
            shell = [f"{fix.commands[0]} --shell"] if mode != "api" else []
            fix.commands = [*(f"{cmd} --echopanel PATH" for cmd in fix.commands), *shell]
            return Outcome(
                Status.WARN,
                "no EchoPanel checkout here, so no .env to read (--echopanel PATH, or --config FILE for another)",
                legacy,
                fix,
                advisory=True,
            )
        return Outcome(Status.WARN, f"no EchoPanel settings in {c.path}", legacy, fix, advisory=True)
    problems = [*c.errors, *envconfig.validate(c.values)]
    overrides = ", ".join(c.from_environment)
    env_note = [*([f"From the environment (overrides the file): {overrides}"] if overrides else []), *legacy]
    if problems:
        return Outcome(
            Status.FAIL,
            problems[0],
            [*problems[1:], *env_note],
            Fix("Fix the file, or rewrite it:", [f"echopanel-setup configure --mode {mode}"]),
        )
    provider = c.values.get(envconfig.PROVIDER)
    if provider and provider != "voxtral_official":
        return Outcome(Status.WARN, f"{envconfig.PROVIDER}={provider}: EchoPanel will not use Voxtral", env_note)
    configured_mode = "api" if c.values.get(envconfig.MODE) == "api" else None
    if configured_mode is None and envconfig.URL in c.values:
        configured_mode = "local" if is_loopback(c.values[envconfig.URL]) else "remote"
    if configured_mode and configured_mode != mode:
        return Outcome(Status.WARN, f"the config selects {configured_mode} mode, but doctor checked {mode}", env_note)
    shown = ", ".join(f"{k}={v}" for k, v in c.values.items() if k in envconfig.KEYS)
    return Outcome(Status.OK, f"{c.path}: {shown or 'no Voxtral keys'}", env_note)


def configure_command(facts: Facts, mode: str) -> str:
    """The configure command that writes `mode`: remote needs the server, the one doctor checked if it had one."""
    url = f" --url {facts.network.server_url or ports.example_url()}" if mode == "remote" else ""
    return f"echopanel-setup configure --mode {mode}{url}"


@check("config.delay", "Streaming delay", "config", ("config", "model"), local=REQUIRED, after=("platform.verdict",))
def delay(facts: Facts, mode: str) -> Outcome:
    """EchoPanel's delay must equal `audio.transcription_delay_ms` of the model dir vLLM serves."""
    d = knowledge.load().delay
    raw = facts.config.values.get(envconfig.DELAY)
    served = facts.model.delay_ms
    if served is None:
        return Outcome(Status.SKIP, "the model dir is not there yet to compare with")
    if raw is None:
        wanted, origin = d.default_ms, "default"
    elif envconfig.validate_delay(raw):
        return Outcome(Status.SKIP, "the configured delay is invalid (see config.values)")
    else:
        wanted, origin = int(raw), envconfig.DELAY
    if wanted == served:
        return Outcome(Status.OK, f"{wanted} ms ({origin}) = the model's audio.transcription_delay_ms")
    return Outcome(
        Status.FAIL,
        f"EchoPanel asks for {wanted} ms but the model dir serves {served} ms",
        [
            "vLLM reads audio.transcription_delay_ms from tekken.json once, at start-up; the env variable alone "
            "changes nothing on the server.",
            f"Source: {d.source}",
        ],
        Fix(
            "Serve a variant with the delay EchoPanel uses (the verified files stay untouched), or set EchoPanel to "
            "the served one:",
            [f"echopanel-setup serve --delay-ms {wanted}", f"echopanel-setup configure --delay-ms {served}"],
        ),
    )
