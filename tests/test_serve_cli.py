"""`serve` as a command group: its lifecycle subcommands, today's flags as their aliases, and the edges of
parsing (help, unknown options and commands, options given to the wrong level). In process, through cli.main."""

from __future__ import annotations

import pytest
from conftest import Cli

from echopanel_setup.cli import app


@pytest.mark.parametrize("args", [["serve", "--help"], ["serve", "status", "--help"], ["serve", "logs", "-h"]])
def test_help_exits_0(cli: Cli, args: list[str]) -> None:
    run = cli(*args)
    assert run.code == 0 and f"{' '.join(args[:-1])} [OPTIONS]" in run.out.splitlines()[0]


def test_serve_help_names_the_subcommands(cli: Cli) -> None:
    out = cli("serve", "--help").out
    assert "Commands:" in out and all(f"  {name} " in out for name in ("status", "logs", "stop"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--bogus"], "No such option: --bogus"),
        (["serve", "status", "--bogus"], "serve status --help')"),
        (["serve", "logs", "--lines", "-1"], "'--lines'"),
        (["serve", "frob"], "No such command 'frob'"),
        (["serve", "--json", "status"], "--json before `status`: give `serve status` its options after its name"),
        (["serve", "--port", "9000", "stop"], "--port before `stop`"),
        (["serve", "--status", "--logs"], "--status and --logs do not go together"),
        (["serve", "--stop", "--detach"], "--stop and --exec/--detach do not go together"),
        (["serve", "--gpu", "H100", "--follow"], "--follow goes with the log: `echopanel-setup serve logs --follow`"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: list[str], message: str) -> None:
    run = cli(*args)
    assert run.code == 2, run.err
    assert run.err.count("\n") == 1 and message in run.err and "Traceback" not in run.err
    if "--json" in args:  # the error document, and nothing else
        assert run.json()["exit_code"] == 2 and run.json()["error"]["kind"] == "usage"
    else:
        assert run.out == ""


def test_with_no_server_the_subcommands_and_their_aliases_answer_alike(cli: Cli) -> None:
    for sub, alias in (("status", "--status"), ("stop", "--stop"), ("logs", "--logs")):
        assert cli("serve", sub) == cli("serve", alias), sub
    status = cli("serve", "status")
    assert status.code == 1 and status.out.startswith("not running")
    assert cli("serve", "stop", "--json").json()["stopped"] is False
    logs = cli("serve", "logs")
    assert logs.code == 1 and "no vLLM log yet" in logs.err


def test_only_the_serve_group_is_built_for_a_serve_run() -> None:
    single = app.app_for(["serve", "status", "--json"])
    assert [g.name for g in single.registered_groups] == ["serve"] and single.registered_commands == []
    listing = app.app_for(["--help"])  # every command, as option-less stand-ins (test_cli_main)
    assert [g.name for g in listing.registered_groups] == [g.name for g in app.whole().registered_groups]


def test_errors_under_json_are_one_error_document(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 1 from an error (no log yet), 2 (bad input) and 4 (a crash): one envelope each, nothing else."""
    from echopanel_setup.serve import main

    no_log = cli("serve", "logs", "--json")
    assert no_log.code == 1 and no_log.json()["error"]["kind"] == "failed"
    assert "no vLLM log yet" in no_log.json()["error"]["message"]
    usage = cli("serve", "--json", "--gpu", "Voodoo5")
    assert (
        usage.code == 2
        and usage.json()["command"] == "serve"
        and "is not a GPU I know" in usage.json()["error"]["message"]
    )

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("planner exploded")

    monkeypatch.setattr(main, "run", boom)
    crash = cli("serve", "status", "--json")
    doc = crash.json()
    assert crash.code == 4 and doc["command"] == "serve status" and doc["error"]["kind"] == "internal"
    assert doc["error"]["message"] == "RuntimeError: planner exploded" and doc["error"]["traceback"]


@pytest.mark.parametrize("fmt", ["shell", "json", "docker", "compose"])
@pytest.mark.parametrize("exported", [None, "another-key"])
def test_a_key_the_shell_does_not_hold_is_refused(
    cli: Cli, fixtures, monkeypatch: pytest.MonkeyPatch, exported: str | None, fmt: str
) -> None:
    """`serve --api-key K` prints a command that takes the key from the shell's VLLM_API_KEY (`-e VLLM_API_KEY`
    for docker): where that is unset (or another key) the server would not get K. Refused, with how to pass it;
    K is never echoed."""
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    if exported:
        monkeypatch.setenv("VLLM_API_KEY", exported)
    facts = str(fixtures / "facts" / "linux-4090-desktop.json")
    run = cli("serve", "--facts", facts, "--format", fmt, "--api-key", "k-1")
    assert run.code == 2 and run.out == "" and "k-1" not in run.err
    assert "export VLLM_API_KEY" in run.err and len(run.err.strip().splitlines()) == 1
    monkeypatch.setenv("VLLM_API_KEY", "k-1")
    assert cli("serve", "--facts", facts, "--format", fmt, "--api-key", "k-1").code == 0


@pytest.mark.parametrize(
    "args", [["--format", f] for f in ("shell", "json", "docker", "compose", "systemd")] + [["--json"]]
)
def test_no_printed_form_holds_the_key(cli: Cli, fixtures, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    """The key never reaches the output: the printed forms name VLLM_API_KEY instead (issue 18, secrets)."""
    monkeypatch.setenv("VLLM_API_KEY", "SEKRET-K9")
    run = cli("serve", "--facts", str(fixtures / "facts" / "linux-4090-desktop.json"), *args, "--api-key", "SEKRET-K9")
    assert run.code == 0, run.err
    assert "SEKRET-K9" not in run.out + run.err and "VLLM_API_KEY" in run.out


def test_streams_help_says_what_giving_it_changes(cli: Cli) -> None:
    """Without --streams a GPU of its own may run every stream its share holds; with it, only N (SRV's memory plan)."""
    out = " ".join(cli("serve", "--help").out.split())
    assert "on a GPU of its own vLLM may then run every stream its share holds" in out
    assert "Given, vLLM holds only what N streams need." in out
