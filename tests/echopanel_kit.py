"""A stand-in EchoPanel checkout, written by us from the reference facts (echopanel-contract.md), never copied.

The files are our own minimal versions of what the reference describes: a `pyproject.toml` naming the project
`echopanel`, `server/main.py` with a `.env` loader that follows EchoPanel's rules (§1) and the backend's port (§5),
`server/services/asr_providers.py` with the provider interface (§7), a `model_preloader.py` with the silent fallback
(§2), and `provider_voxtral_official.py` speaking the published chat/PCM protocol (§2-§3): the same variables,
endpoints, model name, body and dependency, so that our contract reader and EchoPanel-replaying code meet what they
would meet in a real checkout. The provider is runnable (it needs `aiohttp` in the interpreter that loads it).

    checkout = make_checkout(tmp_path / "EchoPanel", env="VOXTRAL_VLLM_URL=http://127.0.0.1:8001\\n")
    python = make_backend_python(checkout, {"aiohttp": "3.10.5"})
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from probe_kit import install_dist, make_venv

PYPROJECT = """[project]
name = "{name}"
version = "0.1.0"
description = "stand-in EchoPanel backend (echopanel-setup tests)"
requires-python = ">=3.10"
dependencies = ["fastapi", "uvicorn"]
"""

MAIN = '''"""Stand-in for EchoPanel's server/main.py: the `.env` loader, provider start-up and the backend's port."""

import logging
import os
from pathlib import Path

logger = logging.getLogger("server.main")


def _read_dotenv_file() -> None:
    """Set variables from <checkout>/.env by EchoPanel's rules; the environment and the first line win."""
    env_file = Path(__file__).resolve().parent.parent / ".env"
    if not env_file.is_file():
        return
    try:
        for text in env_file.read_text(errors="ignore").splitlines():
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("export "):
                text = text[7:].strip()
            if "=" not in text:
                continue
            name, _, value = text.partition("=")
            name, value = name.strip(), value.strip()
            if not name or not value:
                continue
            if len(value) >= 1 and value[0] in "\\"'" and value[-1] == value[0]:
                value = value[1:-1]
            os.environ.setdefault(name, value)
    except Exception:
        return


def start_provider():
    """What the lifespan does before serving: read `.env`, then build the selected provider (or fall back)."""
    _read_dotenv_file()
    from server.services.model_preloader import load_provider

    return load_provider()


def main() -> None:
    import uvicorn

    uvicorn.run("server.main:app", host="127.0.0.1", port={port}, reload=False)


if __name__ == "__main__":
    main()
'''

ASR_PROVIDERS = '''"""Stand-in for EchoPanel's provider interface (server/services/asr_providers.py), stdlib only."""

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, AsyncIterator, Dict, List, Optional

logger = logging.getLogger(__name__)


class AudioSource(Enum):
    SYSTEM = "system"
    MICROPHONE = "mic"


@dataclass
class ASRSegment:
    text: str
    t0: float
    t1: float
    confidence: float
    is_final: bool
    source: Optional[AudioSource] = None
    language: Optional[str] = None
    speaker: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ASRConfig:
    model_name: str = "base"
    device: str = "auto"
    compute_type: str = "int8"
    language: Optional[str] = None
    chunk_seconds: int = 4
    vad_enabled: bool = False
    vad_threshold: float = 0.5
    vad_min_speech_ms: int = 250
    vad_min_silence_ms: int = 100
    max_buffer_seconds: int = 30
    streaming_delay_ms: int = 500


class ASRProvider(ABC):
    def __init__(self, config: ASRConfig):
        self.config = config
        self._debug = os.getenv("ECHOPANEL_DEBUG", "0") == "1"

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def is_available(self) -> bool: ...

    @abstractmethod
    def transcribe_stream(
        self, pcm_stream: AsyncIterator[bytes], sample_rate: int = 16000, source: Optional[AudioSource] = None
    ) -> AsyncIterator[ASRSegment]: ...

    async def start_session(self, session_id: str) -> bool:
        return True

    async def stop_session(self) -> None:
        return None

    async def health(self) -> Dict[str, Any]:
        return {{"provider": self.name}}

    async def flush(self, source: Optional[AudioSource] = None) -> List[ASRSegment]:
        return []

    async def unload(self) -> None:
        return None

    def log(self, msg: str) -> None:
        logger.debug(f"[{{self.name}}] {{msg}}")


class ASRProviderRegistry:
    _providers: Dict[str, type] = {{}}
    _instances: Dict[str, ASRProvider] = {{}}

    @classmethod
    def register(cls, name: str, provider_class: type) -> None:
        cls._providers[name] = provider_class

    @classmethod
    def get_provider(cls, name: Optional[str] = None, config: Optional[ASRConfig] = None) -> Optional[ASRProvider]:
        if name is None:
            name = os.getenv("ECHOPANEL_ASR_PROVIDER", "{default}")
        if name not in cls._providers:
            return None
        if name not in cls._instances:
            cls._instances[name] = cls._providers[name](config or ASRConfig())
        return cls._instances[name]
'''

PRELOADER = '''"""Stand-in for EchoPanel's model_preloader: an unavailable provider silently becomes faster_whisper."""

import importlib
import os
import pkgutil

from server import services
from server.services.asr_providers import ASRProviderRegistry


def load_provider():
    for module in pkgutil.iter_modules(services.__path__):
        if module.name.startswith("provider_"):
            importlib.import_module(f"server.services.{{module.name}}")
    provider = ASRProviderRegistry.get_provider()
    if provider is not None and provider.is_available:
        return provider
    fallback = ASRProviderRegistry.get_provider(name="faster_whisper")
    if fallback is not None and fallback.is_available:
        os.environ["ECHOPANEL_ASR_PROVIDER"] = "faster_whisper"
        return fallback
    return None
'''

# The published voxtral_official protocol (reference §2-§3): our own code with the same observable behaviour.
PROVIDER_CHAT_PCM = '''"""Stand-in voxtral_official as published: raw PCM as a data: URL POSTed to chat completions."""

import base64
import os
import urllib.request
from typing import AsyncIterator, Optional

from .asr_providers import ASRConfig, ASRProvider, ASRProviderRegistry, ASRSegment, AudioSource

MODEL_NAME = "voxtral-mini-transcribe-realtime-2602"
DEFAULT_DELAY_MS = 480


class VoxtralOfficialStandIn(ASRProvider):
    def __init__(self, config: ASRConfig):
        super().__init__(config)
        self.base_url = os.getenv("VOXTRAL_VLLM_URL", "http://localhost:8000")
        delay = int(os.getenv("VOXTRAL_STREAMING_DELAY_MS", str(DEFAULT_DELAY_MS)))
        self.delay_ms = min(2400, max(240, delay))

    @property
    def name(self) -> str:
        return "voxtral_official"

    @property
    def is_available(self) -> bool:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            return False
        return True

    def _get(self, path: str) -> Optional[int]:
        try:
            with urllib.request.urlopen(f"{{self.base_url}}{{path}}", timeout=5) as answer:
                return answer.status
        except Exception:
            return None

    async def _post_chunk(self, pcm: bytes) -> Optional[str]:
        import aiohttp

        body = {{
            "model": MODEL_NAME,
            "messages": [
                {{
                    "role": "user",
                    "content": [
                        {{
                            "type": "audio_url",
                            "audio_url": {{
                                "url": "data:audio/pcm;base64," + base64.b64encode(pcm).decode("ascii"),
                                "format": "pcm_s16le_16000",
                            }},
                        }}
                    ],
                }}
            ],
            "max_tokens": 256,
            "temperature": 0.0,
        }}
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{{self.base_url}}/v1/chat/completions", json=body, timeout=30) as answer:
                    if answer.status != 200:
                        self.log(f"vLLM said {{answer.status}}: {{(await answer.text())[:200]}}")
                        return None
                    data = await answer.json()
        except Exception as exc:
            self.log(f"request failed: {{exc}}")
            return None
        choices = data.get("choices") or [{{}}]
        return (choices[0].get("message", {{}}).get("content") or "").strip() or None

    async def transcribe_stream(
        self, pcm_stream: AsyncIterator[bytes], sample_rate: int = 16000, source: Optional[AudioSource] = None
    ) -> AsyncIterator[ASRSegment]:
        if self._get("/health") != 200:
            yield ASRSegment(f"[voxtral_official: vLLM not running at {{self.base_url}}]", 0, 0, 0, True, source)
            return
        self._get("/v1/models")
        chunk_bytes = int(sample_rate * self.delay_ms / 1000 * 2)
        pending = bytearray()
        t0 = 0.0
        async for piece in pcm_stream:
            pending.extend(piece)
            while len(pending) >= chunk_bytes:
                chunk, pending = bytes(pending[:chunk_bytes]), pending[chunk_bytes:]
                t1 = t0 + len(chunk) / (2 * sample_rate)
                text = await self._post_chunk(chunk)
                if text:
                    yield ASRSegment(text, t0, t1, 0.9, True, source)
                t0 = t1


ASRProviderRegistry.register("voxtral_official", VoxtralOfficialStandIn)
'''

# The published voxtral_realtime (reference §6): our own code with its observable behaviour — voxtral.c started with
# `--stdin -I DELAY --silent`, a load banner awaited (that --silent suppresses) for READY_TIMEOUT_S, then killed and
# raised; text read by line (voxtral.c ends no line before end of input); the process stopped after every call.
PROVIDER_VOXTRAL_C = '''"""Stand-in voxtral_realtime as published: a banner awaited, lines read."""

import asyncio
import os
from pathlib import Path

from .asr_providers import ASRProvider, ASRProviderRegistry, ASRSegment

_ROOT = Path(__file__).resolve().parents[2]
READY_MARKERS = (b"Model loaded.", b"Metal:", b"BLAS", b"Ready")
READY_TIMEOUT_S = 120.0


class VoxtralCStandIn(ASRProvider):
    def __init__(self, config):
        super().__init__(config)
        self.binary = Path(os.getenv("ECHOPANEL_VOXTRAL_BIN", str(_ROOT.parent / "voxtral.c" / "voxtral")))
        self.model = Path(os.getenv("ECHOPANEL_VOXTRAL_MODEL", str(_ROOT.parent / "voxtral.c" / "voxtral-model")))
        self.delay = float(os.getenv("ECHOPANEL_VOXTRAL_STREAMING_DELAY", "0.5"))
        self.process = None

    @property
    def name(self) -> str:
        return "voxtral_realtime"

    @property
    def is_available(self) -> bool:
        return self.binary.is_file() and (self.model / "consolidated.safetensors").is_file()

    async def _start(self):
        pipe = asyncio.subprocess.PIPE
        cmd = [str(self.binary), "-d", str(self.model), "--stdin", "-I", str(self.delay), "--silent"]
        process = await asyncio.create_subprocess_exec(*cmd, stdin=pipe, stdout=pipe, stderr=pipe)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        seen = b""
        while loop.time() < deadline and process.returncode is None:
            for stream in (process.stdout, process.stderr):
                try:
                    seen += await asyncio.wait_for(stream.read(1024), 0.5)
                except asyncio.TimeoutError:
                    pass
            if any(marker in seen for marker in READY_MARKERS):
                return process
        if process.returncode is None:
            process.kill()
        await process.wait()
        raise RuntimeError(f"voxtral.c failed to become ready after {{READY_TIMEOUT_S:.1f}}s")

    async def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()

    async def transcribe_stream(self, pcm_stream, sample_rate=16000, source=None):
        if not self.is_available:
            yield ASRSegment("[Voxtral ASR unavailable]", 0, 0, 0, True, source)
            async for _ in pcm_stream:
                pass
            return
        chunk_bytes = int(sample_rate * self.config.chunk_seconds * 2)
        pending = bytearray()
        lines = asyncio.Queue()
        try:
            if self.process is None or self.process.returncode is not None:
                self.process = await self._start()
            process = self.process

            async def read_lines():
                while process.returncode is None:
                    try:
                        line = await asyncio.wait_for(process.stdout.readline(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if not line:
                        break
                    if line.strip():
                        await lines.put(line.decode("utf-8", "replace").strip())

            reader = asyncio.create_task(read_lines())
            t0 = 0.0
            async for piece in pcm_stream:
                pending.extend(piece)
                while len(pending) >= chunk_bytes:
                    chunk, pending = bytes(pending[:chunk_bytes]), pending[chunk_bytes:]
                    process.stdin.write(chunk)
                    await process.stdin.drain()
                    t1 = t0 + len(chunk) / (2 * sample_rate)
                    while not lines.empty():
                        yield ASRSegment(lines.get_nowait(), t0, t1, 0.9, True, source)
                    t0 = t1
            if pending:
                process.stdin.write(bytes(pending))
                await process.stdin.drain()
            await asyncio.sleep(self.delay + 0.5)
            reader.cancel()
            while not lines.empty():
                yield ASRSegment(lines.get_nowait(), 0, 0, 0.9, True, source)
        finally:
            await self._stop()


ASRProviderRegistry.register("voxtral_realtime", VoxtralCStandIn)
'''


def voxtral_c_provider(ready_timeout_s: float = 120.0) -> str:
    """PROVIDER_VOXTRAL_C, waiting `ready_timeout_s` for its banner instead of the published 120 s (fast tests)."""
    return PROVIDER_VOXTRAL_C.format().replace("READY_TIMEOUT_S = 120.0", f"READY_TIMEOUT_S = {ready_timeout_s!r}")


PROVIDER_FASTER_WHISPER = '''"""Stand-in faster_whisper provider: available when the faster_whisper package imports."""

from .asr_providers import ASRProvider, ASRProviderRegistry


class FasterWhisperStandIn(ASRProvider):
    name = "faster_whisper"

    @property
    def is_available(self) -> bool:
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            return False
        return True

    async def transcribe_stream(self, pcm_stream, sample_rate=16000, source=None):
        async for _ in pcm_stream:
            pass
        return
        yield


ASRProviderRegistry.register("faster_whisper", FasterWhisperStandIn)
'''

PROVIDERS = {
    "voxtral_official": ("provider_voxtral_official.py", PROVIDER_CHAT_PCM),
    "voxtral_realtime": ("provider_voxtral_realtime.py", PROVIDER_VOXTRAL_C),
    "faster_whisper": ("provider_faster_whisper.py", PROVIDER_FASTER_WHISPER),
}


def make_checkout(
    root: Path,
    *,
    env: str | bytes | None = None,
    name: str = "echopanel",
    port: int = 8000,
    providers: dict[str, str] | None = None,
    git: bool = False,
) -> Path:
    """Write a stand-in checkout at `root` and return it.

    `env`: the `.env` to put next to pyproject.toml (bytes are written as they are: BOMs, CRLF, odd encodings).
    `providers`: file name -> source, replacing or adding provider files (default: the three above).
    `git`: make it a git work tree with one commit (needs git on PATH).
    """
    services = root / "server" / "services"
    services.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name=name), encoding="utf-8")
    (root / "server" / "__init__.py").write_text("", encoding="utf-8")
    (services / "__init__.py").write_text("", encoding="utf-8")
    (root / "server" / "main.py").write_text(MAIN.replace("{port}", str(port)), encoding="utf-8")
    (services / "asr_providers.py").write_text(ASR_PROVIDERS.format(default="faster_whisper"), encoding="utf-8")
    (services / "model_preloader.py").write_text(PRELOADER.format(), encoding="utf-8")
    files = {file: source.format() for file, source in PROVIDERS.values()}
    files.update(providers or {})
    for file, source in files.items():
        (services / file).write_text(source, encoding="utf-8")
    (root / ".gitignore").write_text(".env\n.venv/\n__pycache__/\n", encoding="utf-8")
    if env is not None:
        write_env(root, env)
    if git:
        _git(root, "init", "-q")
        _git(root, "add", "-A")
        _git(root, "-c", "user.name=kit", "-c", "user.email=kit@localhost", "commit", "-q", "-m", "stand-in")
    return root


def write_env(checkout: Path, env: str | bytes) -> Path:
    path = checkout / ".env"
    path.write_bytes(env if isinstance(env, bytes) else env.encode("utf-8"))
    return path


def make_backend_python(checkout: Path, packages: dict[str, str] | None = None) -> Path:
    """`<checkout>/.venv`, a real venv holding `packages` (name -> version, with real metadata); its python."""
    python = make_venv(checkout / ".venv")
    for package, version in (packages or {}).items():
        install_dist(checkout / ".venv", package, version)
    return python


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
