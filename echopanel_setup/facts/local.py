"""Facts about this machine's files and sockets: disk, the model dir, the port, EchoPanel's config and
the client packages in our own environment. All cheap; none touches the network."""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from echopanel_setup import envconfig, knowledge
from echopanel_setup.facts.model import ClientFacts, ConfigFacts, DiskFacts, ModelFacts, PortFacts

MIB = 1024 * 1024
CLIENT_PACKAGES = ("websockets", "mistralai", "httpx", "huggingface_hub")
_DELAY = re.compile(rb'"transcription_delay_ms"\s*:\s*(\d+)')
_AUDIO = re.compile(rb'"audio"\s*:\s*\{')


def probe_disk(model_dir: Path) -> DiskFacts:
    """Free space where the model goes (the nearest existing parent if the dir does not exist yet)."""
    checked = model_dir
    while not checked.exists() and checked.parent != checked:
        checked = checked.parent
    facts = DiskFacts(path=str(model_dir), checked_path=str(checked))
    try:
        usage = shutil.disk_usage(checked)
    except OSError:
        return facts
    facts.free_mib, facts.total_mib = usage.free // MIB, usage.total // MIB
    return facts


def read_tekken_delay(tekken: Path) -> int | None:
    """`audio.transcription_delay_ms` from tekken.json without parsing 15 MB of vocabulary."""
    try:
        with tekken.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            audio = _AUDIO.search(mm)
            match = _DELAY.search(mm, audio.end() if audio else 0) or _DELAY.search(mm)
            return int(match.group(1)) if match else None
    except (OSError, ValueError):  # missing, empty (mmap refuses 0 bytes) or unreadable
        return None


def probe_model(model_dir: Path, serve_dir: str | None) -> ModelFacts:
    k = knowledge.load().model
    facts = ModelFacts(path=str(model_dir), exists=model_dir.is_dir())
    for name in k.files:
        p = model_dir / name
        facts.files[name] = p.stat().st_size if p.is_file() else None
    manifest_path = model_dir / k.manifest_name
    if not manifest_path.exists():
        facts.manifest = "absent"
    else:
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            entries = manifest["files"]
            facts.manifest = "present"
            facts.commit = manifest.get("commit")
            facts.verified = all(
                facts.files.get(name) is not None
                and facts.files[name] == entries[name]["size"]
                and not entries[name].get("damaged")
                for name in k.files
            )  # `install voxtral --verify` marks a file whose bytes it found wrong (same size) "damaged"
        except (OSError, ValueError, KeyError, TypeError):
            facts.manifest = "unreadable"
            facts.verified = False
    served = Path(serve_dir) if serve_dir and Path(serve_dir).is_dir() else model_dir
    facts.serve_dir = str(served) if served != model_dir else None
    facts.delay_ms = read_tekken_delay(served / "tekken.json")
    return facts


def probe_port(port: int) -> PortFacts:
    """Is the port free for vLLM to bind on all interfaces? If not, who holds it."""
    facts = PortFacts(port=port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            facts.free = True
            return facts
        except OSError as exc:
            facts.free = False
            if exc.errno != errno.EADDRINUSE:
                facts.holder_name = f"cannot bind: {exc.strerror}"
                return facts
    _find_holder(facts)
    return facts


def _find_holder(facts: PortFacts) -> None:
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == facts.port and c.pid:
            facts.holder_pid = c.pid
            try:
                proc = psutil.Process(c.pid)
                facts.holder_name = proc.name()
                facts.holder_cmdline = redact_cmdline(proc.cmdline())[:300]
            except (psutil.Error, OSError):
                pass
            return


_SECRET_FLAG = re.compile(r"^--?[\w-]*(?:key|token|secret|password|passwd)[\w-]*$", re.IGNORECASE)


def redact_cmdline(argv: list[str]) -> str:
    """A process's command line with the values of secret-looking flags and variables replaced by ***."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name, eq, _value = arg.partition("=")
        if eq and (_SECRET_FLAG.match(name) or envconfig.is_secret(name.lstrip("-"))):
            out.append(f"{name}=***")
        else:
            out.append(arg)
            hide_next = bool(_SECRET_FLAG.match(arg))
    return " ".join(out)


def probe_config(path: Path | None, legacy: Path | None = None) -> ConfigFacts:
    """EchoPanel's `.env` (None: no checkout and no --config) read by EchoPanel's own rules, merged with the process
    environment, which wins over the file as it does in EchoPanel's backend. Secrets are kept as "<set>" only."""
    from echopanel_setup.echopanel.keys import KEYS

    facts = ConfigFacts(path=str(path) if path else "", exists=path is not None and path.is_file())
    facts.legacy = str(legacy) if legacy is not None and legacy.is_file() else None
    values: dict[str, str] = {}
    if path is not None and facts.exists:
        from echopanel_setup.echopanel import dotenv  # only with a file: doctor without EchoPanel stays lean

        try:
            env = dotenv.read(path)
            values = {k: v for k, v in env.values.items() if k in KEYS}
            facts.errors = dotenv.notes(env, KEYS)  # lines that do not set what they look like
        except OSError as exc:
            facts.errors = [f"cannot read: {exc.strerror or exc}"]
    for key in KEYS:
        if key in os.environ:
            values[key] = os.environ[key]
            facts.from_environment.append(key)
    facts.values = {k: (envconfig.MASK if v else "") if envconfig.is_secret(k) else v for k, v in values.items()}
    return facts


def probe_client() -> ClientFacts:
    return ClientFacts(packages=installed_versions(CLIENT_PACKAGES))


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Each package's version in this interpreter (None: not installed), found as importlib.metadata finds it: the
    first `<name>-<version>.dist-info` (or `.egg-info`) on sys.path, its `Version:` header.

    Asking importlib.metadata itself cost every `doctor` ~50M instructions (7 ms) before the first lookup: it
    imports email, zipfile and csv. What pip, uv and setuptools write is read here with a listdir per path entry."""
    wanted = {_normal(name): name for name in names}
    found: dict[str, str | None] = dict.fromkeys(wanted.values())
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:  # a zip, a missing folder
            continue
        for item in listing:
            stem, _, kind = item.rpartition(".")
            name = wanted.get(_normal(stem.split("-", 1)[0]))
            if kind in ("dist-info", "egg-info") and name is not None and found[name] is None:
                found[name] = _version_header(Path(entry or ".", item))
    return found


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Huggingface-Hub` is `huggingface_hub`)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _version_header(dist: Path) -> str | None:
    """`Version:` from a .dist-info's METADATA, an .egg-info folder's PKG-INFO, or an .egg-info file itself."""
    meta = dist / ("METADATA" if dist.suffix == ".dist-info" else "PKG-INFO") if dist.is_dir() else dist
    try:
        with meta.open(encoding="utf-8", errors="replace") as headers:
            for line in headers:
                if not line.strip():  # the headers end at the first blank line
                    break
                if line.startswith("Version:"):
                    return line.removeprefix("Version:").strip()
    except OSError:
        pass
    return None


def port_accepts(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
