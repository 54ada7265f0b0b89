"""Stand-ins for `serve` tests: a target venv whose `vllm` is the scripted one (tests/fixtures/serve), a small
model dir with the real file names and a real-layout params.json / tekken.json, and free loopback ports.

The venv is real (package metadata says vLLM VERSION), so doctor's probes, `--python` and the flag reading
all run exactly as on a user's machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from probe_kit import healthy_stack, install_dist, install_smi, make_venv, path_with, site_packages

FIXTURES = Path(__file__).parent / "fixtures"
HELP_DIR = FIXTURES / "vllm-serve-help"
LOGS_DIR = FIXTURES / "logs"
SCRIPT = FIXTURES / "serve" / "scripted_vllm.py"
VERSIONS = ("0.16.0", "0.20.0", "0.33.0")

PARAMS = {
    "dim": 3072,
    "n_layers": 26,
    "head_dim": 128,
    "hidden_dim": 9216,
    "n_heads": 32,
    "n_kv_heads": 8,
    "use_biases": False,
    "causal": True,
    "rope_theta": 1000000.0,
    "norm_eps": 1e-5,
    "vocab_size": 131072,
    "model_parallel": 1,
    "tied_embeddings": True,
    "sliding_window": 8192,
    "model_max_length": 131072,
    "multimodal": {
        "whisper_model_args": {
            "encoder_args": {
                "audio_encoding_args": {
                    "sampling_rate": 16000,
                    "frame_rate": 12.5,
                    "num_mel_bins": 128,
                    "hop_length": 160,
                    "window_size": 400,
                    "chunk_length_s": None,
                    "global_log_mel_max": 1.5,
                    "transcription_format": "streaming",
                },
                "dim": 1280,
                "n_layers": 32,
                "head_dim": 64,
                "hidden_dim": 5120,
                "n_heads": 32,
                "vocab_size": 131072,
                "n_kv_heads": 32,
                "use_biases": True,
                "use_cache": False,
                "rope_theta": 1000000.0,
                "causal": True,
                "norm_eps": 1e-5,
                "pos_embed": "rope",
                "max_source_positions": None,
                "ffn_type": "swiglu",
                "norm_type": "rms_norm",
                "sliding_window": 750,
            },
            "downsample_args": {"downsample_factor": 4},
        }
    },
}


def tekken(delay_ms: int | None = 480, vocab: int = 50) -> str:
    """tekken.json's layout: config, vocab, special tokens, then the audio object holding the delay (left out for
    `delay_ms=None`). A larger `vocab` puts the audio object further from the start, as in the real 15 MB file."""
    doc: dict[str, Any] = {
        "config": {
            "pattern": "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*",
            "num_vocab_tokens": 150000,
            "default_vocab_size": 131072,
            "default_num_special_tokens": 1000,
            "version": "v13",
        },
        "vocab": [{"rank": i, "token_bytes": "QQ==", "token_str": "A"} for i in range(vocab)],
        "special_tokens": [{"rank": 0, "token_str": "<unk>", "is_control": True}],
    }
    if delay_ms is not None:
        doc["audio"] = {
            "sampling_rate": 16000,
            "frame_rate": 12.5,
            "transcription_delay_ms": delay_ms,
            "streaming_n_left_pad_tokens": 32,
            "transcription_format": "streaming",
        }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def make_model(model_dir: Path, delay_ms: int = 480, weights: bytes = b"\0" * 4096) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "consolidated.safetensors").write_bytes(weights)
    (model_dir / "params.json").write_text(json.dumps(PARAMS, indent=2), encoding="utf-8")
    (model_dir / "tekken.json").write_text(tekken(delay_ms), encoding="utf-8")
    return model_dir


def install_vllm(
    bin_dir: Path, version: str = "0.20.0", scenario: str = "ok", python: str | None = None, line_delay_s: float = 0.005
) -> Path:
    """Write the scripted `vllm` (and its vllm.json) into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "vllm"
    exe.write_text(f"#!{python or sys.executable}\n" + SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    exe.chmod(0o755)
    set_scenario(bin_dir, scenario, version, line_delay_s)
    return exe


def set_scenario(bin_dir: Path, scenario: str, version: str = "0.20.0", line_delay_s: float = 0.005) -> None:
    config = {
        "version": version,
        "help_dir": str(HELP_DIR),
        "logs_dir": str(LOGS_DIR),
        "scenario": scenario,
        "line_delay_s": line_delay_s,
    }
    (bin_dir / "vllm.json").write_text(json.dumps(config), encoding="utf-8")


def target_venv(root: Path, version: str = "0.20.0", scenario: str = "ok") -> Path:
    """A real venv whose metadata says vLLM `version`, with the scripted vllm as its bin/vllm; returns its python."""
    python = make_venv(root)
    healthy_stack(root)
    if version != "0.20.0":
        shutil.rmtree(site_packages(root) / "vllm-0.20.0.dist-info")
        install_dist(root, "vllm", version)
    install_vllm(root / "bin", version, scenario, python=sys.executable)
    return python


def serving(url: str) -> None:
    """The record of a server `serve --exec/--detach` started at `url`, this test process standing in for it (alive)."""
    import psutil

    from echopanel_setup.serve import launcher

    me = psutil.Process()
    launcher.Record(
        pid=me.pid,
        create_time=me.create_time(),
        url=url,
        served_model_name="voxtral-mini-transcribe-realtime-2602",
        argv=["vllm", "serve"],
        log=str(launcher.log_path()),
        started_at="now",
        detached=True,
    ).write()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Machine:
    """A Linux box with an H100 (scripted nvidia-smi), the model and a free port, for CLI runs of `serve`."""

    python: Path
    model: Path
    port: int

    def scenario(self, name: str) -> None:
        set_scenario(self.python.parent, name)

    def args(self, *extra: str) -> list[str]:
        return ["serve", "--python", str(self.python), "--model-dir", str(self.model), "--port", str(self.port), *extra]


@pytest.fixture(scope="module", name="venv")
def venv_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The target venv's python (import this fixture into a test module to use it)."""
    return target_venv(tmp_path_factory.mktemp("target") / "venv")


@pytest.fixture(name="machine")
def machine_fixture(tmp_path: Path, venv: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """A `Machine`; whatever a test leaves running is stopped afterwards."""
    from echopanel_setup.serve import launcher

    install_smi(tmp_path / "bin", "h100")
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    m = Machine(venv, make_model(tmp_path / "models" / "Voxtral-Mini-4B-Realtime-2602"), free_port())
    m.scenario("ok")
    yield m
    launcher.stop()
