"""Local resources for serving: the model files, disk space for the download, and the port.

Signals: file sizes and the manifest `install voxtral` writes (no re-hash: that is `install --verify`),
free disk at the model dir, a bind test on the port and the process that holds it.
"""

from __future__ import annotations

from echopanel_setup import knowledge, ports
from echopanel_setup.checks import REQUIRED, Fix, Outcome, Status, check
from echopanel_setup.checks.common import gib
from echopanel_setup.facts.model import Facts

MIB = 1024 * 1024


def _dir_flag(facts: Facts) -> str:
    """` --dir PATH` unless the model lives where `install voxtral` puts it by default."""
    from echopanel_setup import paths

    return "" if facts.model.path == str(paths.default_model_dir()) else f" --dir {facts.model.path}"


def _complete(facts: Facts) -> bool:
    return facts.model.exists and all(size is not None for size in facts.model.files.values())


@check("model.files", "Voxtral model files", "storage", ("model",), local=REQUIRED, after=("platform.verdict",))
def model_files(facts: Facts, mode: str) -> Outcome:
    """The three files vLLM reads, and whether `install voxtral` verified them (from its manifest)."""
    m = facts.model
    install = Fix(
        "Download the three files vLLM needs (about 8.9 GB), verified:",
        [f"echopanel-setup install voxtral{_dir_flag(facts)}"],
    )
    if not m.exists:
        return Outcome(Status.FAIL, f"not downloaded yet ({m.path})", [], install)
    missing = [name for name, size in m.files.items() if size is None]
    if missing:
        return Outcome(Status.FAIL, f"{', '.join(missing)} missing in {m.path}", [], install)
    if m.manifest != "present" and (short := _short_files(facts)):
        return Outcome(
            Status.FAIL,
            f"{short[0]} in {m.path} is not the model file: {'; '.join(short[1:])}",
            [
                "A git-LFS pointer (a ~130-byte text file left by `git clone` without git-lfs) or a truncated copy "
                "passes a presence check but not vLLM.",
                f"Source: {knowledge.load().model.source}",
            ],
            Fix("Download the real files, verified (files already right are kept):", install.commands),
        )
    if m.manifest == "absent":
        return Outcome(
            Status.WARN,
            f"files present in {m.path} but never verified",
            [],
            Fix(
                "Check them against the Hub's sizes and sha256:",
                [f"echopanel-setup install voxtral{_dir_flag(facts)} --verify"],
            ),
        )
    if not m.verified:
        return Outcome(
            Status.FAIL,
            f"files in {m.path} differ from the manifest ({m.manifest}): damaged or half-written",
            [],
            Fix(
                "Re-run the install: it repairs only the damaged file.",
                [f"echopanel-setup install voxtral{_dir_flag(facts)}"],
            ),
        )
    commit = f" at {m.commit[:12]}" if m.commit else ""
    return Outcome(Status.OK, f"verified{commit} in {m.path}")


def _short_files(facts: Facts) -> list[str]:
    """[names, "NAME: N bytes where the Hub lists about M", …] for files far smaller than the Hub's listing (under
    half: the listing rounds to 3 digits, and a revision may change a small file a little); [] when none is."""
    k = knowledge.load().model
    lines = [
        f"{name}: {size} bytes where the Hub lists about {listed}"
        for name, listed in zip(k.files, k.listed_bytes, strict=True)
        if (size := facts.model.files.get(name)) is not None and size < listed // 2
    ]
    names = ", ".join(line.split(":")[0] for line in lines)
    return [names, *lines] if lines else []


@check("disk.space", "Disk space", "storage", ("disk", "model"), local=REQUIRED, after=("platform.verdict",))
def disk_space(facts: Facts, mode: str) -> Outcome:
    """Free space where the model goes: the download plus a margin, unless the files are already there."""
    k = knowledge.load()
    d = facts.disk
    if d.free_mib is None:
        return Outcome(Status.WARN, f"free space unknown at {d.checked_path}")
    if _complete(facts):
        return Outcome(Status.OK, f"model present; {gib(d.free_mib)} free at {d.checked_path}")
    left = max(0, k.model.download_bytes - sum(size or 0 for size in facts.model.files.values()))
    need = (left + k.disk.margin(left)) // MIB
    if d.free_mib < need:
        return Outcome(
            Status.FAIL,
            f"{gib(d.free_mib)} free at {d.checked_path}; the download needs {gib(need)} (with margin)",
            [f"Source: {k.disk.source}"],
            Fix("Free space there, or download elsewhere:", ["echopanel-setup install voxtral --dir /path/with/space"]),
        )
    return Outcome(Status.OK, f"{gib(d.free_mib)} free at {d.checked_path} (download needs {gib(need)})")


@check("port", "Server port", "storage", ("port",), local=REQUIRED, after=("platform.verdict",))
def port(facts: Facts, mode: str) -> Outcome:
    """The port vLLM will listen on: free, or already held by a vLLM server (fine), or by something else."""
    p = facts.port
    if p.echopanel_port_kind == "vllm":
        return Outcome(
            Status.FAIL,
            f"a vLLM server holds port {p.echopanel_port}, EchoPanel's own backend port: EchoPanel cannot start "
            f'("Port {p.echopanel_port} is already in use"), or talks to vLLM where it expects itself',
            [f"vLLM's port here is {ports.default_port()}; EchoPanel's backend owns {p.echopanel_port}."],
            Fix(
                "Stop that server and serve on vLLM's port instead:",
                [
                    "echopanel-setup serve stop",
                    "echopanel-setup serve",
                    f"echopanel-setup configure --url {ports.local_url()}",
                ],
            ),
        )
    if p.free:
        return Outcome(Status.OK, f"port {p.port} is free")
    holder = f"{p.holder_name or 'an unknown process'}" + (f" (pid {p.holder_pid})" if p.holder_pid else "")
    server = facts.network.server
    is_vllm = "vllm" in (p.holder_cmdline or "").lower() or bool(server and server.version)
    if is_vllm:
        return Outcome(Status.OK, f"port {p.port}: a vLLM server is already listening ({holder})")
    details = [f"Command line: {p.holder_cmdline}"] if p.holder_cmdline else []
    return Outcome(
        Status.FAIL,
        f"port {p.port} is taken by {holder}",
        details,
        Fix(
            "Stop that process, or serve on another port and point EchoPanel at it:",
            [
                f"echopanel-setup serve --port {p.port + 1}",
                f"echopanel-setup configure --url http://localhost:{p.port + 1}",
            ],
        ),
    )
