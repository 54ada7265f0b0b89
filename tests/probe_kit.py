"""Real stand-ins for what the probes read: venvs with installed-package metadata, a scripted
`nvidia-smi` on PATH that replays recorded output, and a loopback HTTP server that answers like vLLM.

Nothing here patches the package: the probes run exactly as on a user's machine, against real files,
real executables and real sockets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
SMI_FIXTURES = FIXTURES / "nvidia-smi"

# The fields nvidia-smi (R550) accepts in the two queries gpu.py makes; anything else is refused the way
# the real tool refuses it, so a change of query in gpu.py shows up here instead of parsing garbage.
_SMI_GPU_FIELDS = {
    "index",
    "name",
    "memory.total",
    "memory.free",
    "memory.used",
    "compute_cap",
    "driver_version",
    "mig.mode.current",
    "pci.bus_id",
    "display_active",
    "display_mode",
    "uuid",
    "pci.bus",
    "persistence_mode",
    "temperature.gpu",
    "utilization.gpu",
    "power.draw",
    "mig.mode.pending",
    "vbios_version",
    "serial",
    "count",
}
_SMI_APP_FIELDS = {
    "gpu_bus_id",
    "gpu_uuid",
    "gpu_name",
    "gpu_serial",
    "pid",
    "process_name",
    "used_memory",
    "timestamp",
}

_SMI_SCRIPT = '''#!{python} -IS
"""nvidia-smi stand-in: replays the recorded output of {machine!r}."""
import sys, time
HERE = {here!r}
GPU_FIELDS = {gpu_fields!r}
APP_FIELDS = {app_fields!r}
MODE = {mode!r}

def out(name):
    with open(HERE + "/" + name, encoding="utf-8") as fh:
        sys.stdout.write(fh.read())

def check_fields(arg, allowed, recorded):
    fields = arg.split("=", 1)[1].split(",")
    for f in fields:
        if f not in allowed:
            sys.stdout.write('Field "%s" is not a valid field to query.\\n\\n' % f)
            sys.exit(2)
    with open(HERE + "/" + recorded, encoding="utf-8") as fh:
        widths = set(len(line.split(",")) for line in fh if line.strip())
    if widths - set([len(fields)]):  # the real tool prints every field asked for: re-record the fixture
        sys.stdout.write("stand-in: %s holds %s fields, the query asks %d\\n" % (recorded, sorted(widths), len(fields)))
        sys.exit(2)

args = sys.argv[1:]
if MODE == "hang":
    time.sleep(60)
    sys.exit(0)
if MODE == "garbage":  # a damaged install or a wrong binary: bytes that are not UTF-8, exit 0
    sys.stdout.buffer.write(b"\\x89PNG\\r\\n\\x1a\\n\\xff\\xfe\\x00\\xc3(nvidia\\x80\\x81, 0, ?\\n")
    sys.exit(0)
if MODE == "fail":
    out("stdout.txt")
    sys.exit(9)
query = [a for a in args if a.startswith("--query-")]
if query and "--format=csv,noheader,nounits" not in args:
    sys.stdout.write("this stand-in only replays --format=csv,noheader,nounits\\n")
    sys.exit(2)
if query and query[0].startswith("--query-gpu="):
    check_fields(query[0], GPU_FIELDS, "query-gpu.csv")
    out("query-gpu.csv")
elif query and query[0].startswith("--query-compute-apps="):
    check_fields(query[0], APP_FIELDS, "compute-apps.csv")
    out("compute-apps.csv")
elif not args:
    out("banner.txt")
elif args == ["-L"]:
    out("list.txt")
else:
    sys.stdout.write("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\\n")
    sys.exit(2)
'''


def install_smi(bin_dir: Path, machine: str, mode: str = "replay") -> Path:
    """Write an executable `nvidia-smi` into `bin_dir` that replays tests/fixtures/nvidia-smi/<machine>/.

    mode: "replay" (the recorded output), "fail" (no-driver message, exit 9), "hang" (sleeps 60 s) or "garbage"
    (bytes that are not UTF-8).
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    here = SMI_FIXTURES / (machine if mode != "fail" else "no-driver")
    exe = bin_dir / "nvidia-smi"
    exe.write_text(
        _SMI_SCRIPT.format(
            python=sys.executable,
            machine=machine,
            here=str(here),
            gpu_fields=sorted(_SMI_GPU_FIELDS),
            app_fields=sorted(_SMI_APP_FIELDS),
            mode=mode,
        ),
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return exe


def path_with(bin_dir: Path) -> str:
    """PATH with `bin_dir` first (so its nvidia-smi wins) and everything else kept."""
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


# --- virtual environments with installed packages -------------------------------------------------------------


def make_venv(root: Path, python: str | None = None) -> Path:
    """A real venv (no pip: fast); returns its bin/python."""
    subprocess.run(
        [python or sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True
    )
    return root / "bin" / "python"


def site_packages(venv: Path) -> Path:
    (sp,) = (venv / "lib").glob("python*/site-packages")
    return sp


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_dist(venv: Path, name: str, version: str, files: dict[str, str] | None = None) -> Path:
    """Install a package the way pip leaves it: its files plus NAME-VERSION.dist-info with METADATA,
    INSTALLER, WHEEL and a RECORD listing every file with its hash and size."""
    sp = site_packages(venv)
    files = dict(files or {})
    dist_name = name.replace("-", "_")
    info = f"{dist_name}-{version}.dist-info"
    top = name.replace("-", "_").lower()
    if not any(p.split("/")[0] == top for p in files):
        files.setdefault(f"{top}/__init__.py", f'__version__ = "{version}"\n')
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: stand-in\n\n"
    files[f"{info}/INSTALLER"] = "pip\n"
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: bdist_wheel (0.45.1)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    records = []
    for rel, text in files.items():
        path = sp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        path.write_bytes(data)
        records.append(f"{rel},{_record_hash(data)},{len(data)}")
    records.append(f"{info}/RECORD,,")
    (sp / info / "RECORD").write_text("\n".join(records) + "\n", encoding="utf-8")
    return sp / info


# The two source files behind the seed guide's tokenizer error, abridged from the real releases.
VLLM_073_TOKENIZER_GROUP = """# SPDX-License-Identifier: Apache-2.0

from typing import Optional, Type

from vllm.config import (LoRAConfig, ModelConfig, ParallelConfig,
                         SchedulerConfig, TokenizerPoolConfig)
from vllm.executor.ray_utils import ray

from .base_tokenizer_group import AnyTokenizer, BaseTokenizerGroup
from .tokenizer_group import TokenizerGroup


def init_tokenizer_from_configs(model_config: ModelConfig,
                                scheduler_config: SchedulerConfig,
                                parallel_config: ParallelConfig,
                                lora_config: LoRAConfig):
    init_kwargs = dict(tokenizer_id=model_config.tokenizer,
                       enable_lora=bool(lora_config),
                       max_num_seqs=scheduler_config.max_num_seqs,
                       max_loras=lora_config.max_loras if lora_config else 0,
                       max_input_length=None,
                       tokenizer_mode=model_config.tokenizer_mode,
                       trust_remote_code=model_config.trust_remote_code,
                       revision=model_config.tokenizer_revision,
                       truncation_side=model_config.truncation_side)

    return get_tokenizer_group(parallel_config.tokenizer_pool_config,
                               **init_kwargs)
"""

TRANSFORMERS_MISTRAL_BROKEN = """class MistralCommonTokenizer(PushToHubMixin):
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs):
        if init_inputs:
            raise ValueError("`init_inputs` are not supported by `MistralCommonTokenizer.from_pretrained`.")

        # Handle kwargs and AutoTokenizer case
        if kwargs and not set(kwargs.keys()).issubset({"_from_auto", "trust_remote_code"}):
            raise ValueError(f"Kwargs {list(kwargs.keys())} are not supported by `MistralCommonTokenizer.from_pretrained`.")
"""  # noqa: E501 (transformers' own lines, verbatim: the probe reads them)

TRANSFORMERS_MISTRAL_FIXED = """class MistralCommonTokenizer(PushToHubMixin):
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs):
        # Unknown kwargs are ignored with a warning.
        for key in kwargs:
            logger.warning("Ignoring kwarg %s", key)
"""

VLLM_020_FILES = {
    "vllm/__init__.py": '__version__ = "0.20.0"\n',
    "vllm/tokenizers/mistral.py": "class MistralTokenizer:\n    pass\n",
    "vllm/model_executor/models/voxtral_realtime.py": "class VoxtralRealtimeGeneration:\n    pass\n",
}


def torch_version_py(version: str, cuda: str | None) -> str:
    cuda_repr = "None" if cuda is None else repr(cuda)
    return (
        "from typing import Optional\n\n"
        "__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip']\n"
        f"__version__ = '{version}'\n"
        "debug = False\n"
        f"cuda: Optional[str] = {cuda_repr}\n"
        "git_version = 'a8d6afb511a69687bbb2b7e88a3cf67917e1697e'\n"
        "hip: Optional[str] = None\n"
    )


def install_transformers(venv: Path, version: str) -> None:
    """transformers 4.55.4 (its Mistral tokenizer rejects vLLM's kwargs: the seed guide's error) or 4.57.1 (fixed)."""
    tokenizer = {"4.55.4": TRANSFORMERS_MISTRAL_BROKEN, "4.57.1": TRANSFORMERS_MISTRAL_FIXED}[version]
    files = {"transformers/__init__.py": "", "transformers/tokenization_mistral_common.py": tokenizer}
    install_dist(venv, "transformers", version, files)


def seed_stack(venv: Path) -> None:
    """The seed guide's broken stack: vLLM 0.7.3 + transformers 4.55.4 + mistral_common 1.9.1, torch 2.5.1 cu124."""
    install_dist(
        venv,
        "vllm",
        "0.7.3",
        {
            "vllm/__init__.py": '__version__ = "0.7.3"\n',
            "vllm/transformers_utils/tokenizer_group/__init__.py": VLLM_073_TOKENIZER_GROUP,
            "vllm/transformers_utils/tokenizer_group/tokenizer_group.py": "class TokenizerGroup:\n    pass\n",
        },
    )
    install_transformers(venv, "4.55.4")
    install_dist(venv, "mistral_common", "1.9.1")
    install_dist(
        venv, "torch", "2.5.1", {"torch/__init__.py": "", "torch/version.py": torch_version_py("2.5.1", "12.4")}
    )


def healthy_stack(venv: Path, torch_cuda: str | None = "12.8") -> None:
    """vLLM 0.20.0 (no TokenizerGroup) + transformers 4.57.1 (no kwargs marker) + mistral_common[audio]."""
    install_dist(venv, "vllm", "0.20.0", VLLM_020_FILES)
    install_transformers(venv, "4.57.1")
    torch_v = "2.9.0" if torch_cuda else "2.9.0+cpu"
    install_dist(
        venv, "torch", torch_v, {"torch/__init__.py": "", "torch/version.py": torch_version_py(torch_v, torch_cuda)}
    )
    install_dist(venv, "mistral_common", "1.9.1")
    install_dist(venv, "soxr", "1.0.0")
    install_dist(venv, "soundfile", "0.13.1")


# --- a loopback server that answers like vLLM ----------------------------------------------------------------------

VOXTRAL = "mistralai/Voxtral-Mini-4B-Realtime-2602"


@dataclass
class FakeVllm:
    """What the loopback server answers; tests change it before starting the server."""

    models: list[str] = field(default_factory=lambda: [VOXTRAL])
    version: str = "0.20.0"
    health: int = 200
    api_key: str | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)


def serve_vllm(behaviour: FakeVllm) -> tuple[ThreadingHTTPServer, str]:
    """Start a threaded HTTP server on 127.0.0.1:<free port> that behaves like `vllm serve`:
    /health 200|503 empty body, /version JSON, /v1/* guarded by --api-key (Bearer) when set."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(status)
            if body:
                self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            behaviour.requests.append((self.path, self.headers.get("Authorization")))
            if self.path == "/health":
                return self._send(behaviour.health)
            if self.path == "/version":
                return self._send(200, json.dumps({"version": behaviour.version}).encode())
            if self.path.startswith("/v1/"):
                if behaviour.api_key and self.headers.get("Authorization") != f"Bearer {behaviour.api_key}":
                    return self._send(401, json.dumps({"error": "Unauthorized"}).encode())
                if self.path == "/v1/models":
                    data = [
                        {
                            "id": m,
                            "object": "model",
                            "created": 1764064801,
                            "owned_by": "vllm",
                            "root": m,
                            "parent": None,
                            "max_model_len": 45000,
                        }
                        for m in behaviour.models
                    ]
                    return self._send(200, json.dumps({"object": "list", "data": data}).encode())
            return self._send(404, json.dumps({"detail": "Not Found"}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-vllm").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OutsideHosts:
    """A loopback HTTP server standing in for both huggingface.co and api.mistral.ai (point HF_ENDPOINT and the
    knowledge's Mistral endpoint at `.url`): it answers 401 and records every path asked, so a test can say
    which outside host a command contacted (Hub paths start /api/, Mistral's /v1/)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
