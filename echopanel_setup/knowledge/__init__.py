"""The knowledge file (compat.toml) as typed, frozen values.

Everything version-, threshold- or text-specific lives in the TOML so that a new vLLM release is a data
change, not a code change. Each table carries its source. `load()` parses the file once per process and
builds one `Knowledge` tree of frozen dataclasses, checking every key's type on the way: a typo or a wrong
type in the TOML fails `tests/test_knowledge.py`, instead of crashing a check on a user's machine, and call
sites read `load().gpu.min_free_mib` (an int) rather than `int(load()["gpu"]["min_free_mib"])`.

Adding a section (the pattern):

1. Write the table in compat.toml, with its `source`.
2. Declare a frozen dataclass here whose field names are the table's keys and whose annotations are the types
   the code wants: `str`, `int`, `float` (an integer in the TOML is accepted), `bool`, `tuple[X, ...]` for
   arrays, `Mapping[str, str]` for free-form tables, another section dataclass for a sub-table,
   `tuple[Section, ...]` for an array of tables (`[[x]]`). A field with a default may be left out of the TOML;
   a key the dataclass does not declare is an error.
3. Add the field to `Knowledge` (or to the parent section for a sub-table) and use it:
   `knowledge.load().my_section.my_key`.

`tests/test_knowledge.py` builds the whole tree, so step 2 is all the checking a new section needs.
Annotations are real types here (no `from __future__ import annotations`): the builder reads them at run time
without `typing.get_type_hints`, which keeps `load()` within a millisecond or two of the TOML parse.
"""

import math
import os
import sys
import types
from collections.abc import Mapping
from dataclasses import MISSING, FrozenInstanceError, dataclass, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, get_args, get_origin

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object) -> Any:
        """Only type checkers read it; at run time importing typing_extensions would cost start-up."""
        return lambda decorated: decorated


T = TypeVar("T")
S = TypeVar("S", bound="Section")


class Section:
    """The base of every section: frozen, built by keyword, compared and shown field by field.

    This is what `@dataclass(frozen=True)` generates, written once: the decorator compiles five methods per class
    with `exec`, about 0.3 ms a class, which for some 35 sections would add ~10 ms to every `doctor`.
    """

    __slots__ = ()

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)  # type: ignore[arg-type]
        )

    __hash__ = None  # type: ignore[assignment]  # sections hold mappings, which are not hashable


@dataclass_transform(kw_only_default=True, frozen_default=True)
def section(cls: type[S]) -> type[S]:
    """Declare a section: a dataclass (fields(), replace() and is_dataclass() work) with `Section`'s methods."""
    return dataclass(init=False, repr=False, eq=False)(cls)


class KnowledgeError(ValueError):
    """compat.toml does not match the sections declared here (a missing key, a wrong type, an unknown key)."""


# --- sections, in the order of compat.toml ---------------------------------------------------------------------------


@section
class Model(Section):
    """The model repository: the files vLLM reads and their sizes, for download and disk checks."""

    repo: str
    files: tuple[str, ...]  # the files vLLM reads in Mistral format
    weights_file: str
    listed_bytes: tuple[int, ...]  # the Hub listing's size of each of `files`, same order (3 significant digits)
    download_bytes: int
    repo_bytes: int
    weights_mib: int
    manifest_name: str
    api_model: str  # the model name on Mistral's hosted API
    source: str


@section
class Delay(Section):
    """The transcription delay: the steps the model accepts and EchoPanel's floor."""

    step_ms: int
    min_ms: int
    max_ms: int
    extra_ms: tuple[int, ...]
    default_ms: int
    tekken_key: str
    source: str

    def grid(self) -> list[int]:
        """Every streaming delay EchoPanel may use: the model's trained values from EchoPanel's floor up."""
        return [*range(self.min_ms, self.max_ms + 1, self.step_ms), *self.extra_ms]

    def nearest(self, value: int) -> list[int]:
        """The valid delays closest to `value` (one or two of them), for 'did you mean' messages."""
        grid = self.grid()
        best = min(abs(g - value) for g in grid)
        return [g for g in grid if abs(g - value) == best]


@section
class Sm75(Section):
    """Compute capability 7.5: the vLLM versions that pick FlashInfer, and the flags that avoid it."""

    flashinfer_picked: str  # a version specifier
    attention_flag: str
    dtype_flag: str
    source: str


@section
class Vllm(Section):
    """Which vLLM versions can serve the model, and how it is installed."""

    min_version: str
    min_source: str
    recommended_version: str
    recommended_source: str
    install_spec: str
    min_python: str
    min_python_source: str
    piecewise_required: str  # a version specifier
    piecewise_source: str
    default_gpu_memory_utilization: float
    default_gpu_memory_utilization_source: str
    sm75: Sm75


@section
class MistralCommon(Section):
    """mistral_common, which vLLM needs with its audio extra to read Voxtral's tokenizer."""

    min_version: str
    audio_modules: tuple[str, ...]
    install_spec: str
    source: str


@section
class TokenizerKwargs(Section):
    """The `max_loras`/`_from_auto` tokenizer error (EchoPanel's setup guide quotes it): version ranges (fallback) and
    the markers read in installed files."""

    vllm_affected: str
    transformers_affected: str
    vllm_file_marker: str
    vllm_text_marker: str
    transformers_file_marker: str
    transformers_text_marker: str
    error_text: str
    source: str


@section
class Gpu(Section):
    """GPU thresholds: compute capability and memory below which the model cannot run or runs tight."""

    min_compute_capability: str
    full_compute_capability: str
    fail_below_total_mib: int
    comfortable_total_mib: int
    min_free_mib: int
    cuda_context_mib: int
    source: str
    sm_source: str


@section
class Driver(Section):
    """The oldest NVIDIA driver each CUDA major version needs."""

    source: str
    min_for_cuda_major: Mapping[str, str]  # CUDA major ("12") -> minimum Linux driver ("525.60.13")


@section
class Hardware(Section):
    """What doctor says about a GPU the NVIDIA driver does not show: vendors, driver fixes, AMD and Jetson routes."""

    nvidia_vendor: str
    amd_vendor: str
    source: str
    driver_commands: tuple[str, ...]
    driver_source: str
    mismatch_commands: tuple[str, ...]
    mismatch_source: str
    container_commands: tuple[str, ...]
    container_source: str
    rocm_gpus: str
    rocm_source: str
    rocm_image: str
    jetson_route: str
    jetson_source: str


@section
class Container(Section):
    """Container settings vLLM needs (shared memory)."""

    min_shm_mib: int
    source: str


@section
class Disk(Section):
    """Free space the download needs beyond the files themselves: a share of what is written plus a floor."""

    margin_percent: float
    margin_fixed_mib: int
    source: str

    def margin(self, written: int) -> int:
        """Bytes of headroom beside `written` bytes of downloads: install voxtral's disk check, the figure its
        disk-full message asks for, and doctor's disk.space all use this one rule."""
        return int(written * self.margin_percent / 100) + self.margin_fixed_mib * 1024 * 1024


@section
class Server(Section):
    """Where vLLM listens by default here (not EchoPanel's port)."""

    default_port: int  # vLLM's port everywhere here: 8001, since EchoPanel's backend owns 8000
    source: str


@section
class Network(Section):
    """The endpoints doctor may ask, and how long it waits for them."""

    hf_endpoint: str
    mistral_endpoint: str
    budget_s: float
    source: str


@section
class ProviderVariant(Section):
    """A known variant of one of EchoPanel's ASR providers, recognised by content (echopanel/contract.py): the
    provider registers as `provider`, reads exactly `reads`, and its file holds every string in `markers`."""

    provider: str
    title: str
    backend: str  # what it talks to: "vllm", "voxtral.c", ...
    reads: tuple[str, ...]
    markers: tuple[str, ...]
    deps: tuple[str, ...]  # third-party modules the backend's Python must import
    works: bool  # can transcribe as published, against its backend
    api_path: bool  # can use Mistral's hosted API
    reason: str
    fix: str  # the command that repairs it ("" when there is none)
    source: str


@section
class EchopanelDefaults(Section):
    """What EchoPanel does when its checkout cannot be read: its backend port, VOXTRAL_VLLM_URL's default, the name
    its provider sends."""

    backend_port: int
    vllm_url: str
    model_name: str
    source: str


@section
class EchopanelConcurrency(Section):
    """How many streams one EchoPanel meeting opens (one per audio source)."""

    env: str
    default: int
    source: str


@section
class Echopanel(Section):
    """What this tool knows of EchoPanel: its provider variants, defaults and concurrency."""

    providers: tuple[str, ...]
    modes: tuple[str, ...]
    source: str
    variants: Mapping[str, ProviderVariant]  # id -> variant
    defaults: EchopanelDefaults
    concurrency: EchopanelConcurrency


@section
class Alternative(Section):
    """A way to transcribe when this machine cannot run vLLM."""

    id: str
    title: str
    platforms: tuple[str, ...]  # "darwin", "linux", "windows"
    env: tuple[str, ...]  # EchoPanel env lines that select it
    source: str
    rtf: float | None = None


@section
class Signature(Section):
    """A known vLLM failure: regular expressions tried against a log, its cause and fix."""

    id: str
    title: str
    patterns: tuple[str, ...]
    cause: str
    fix: str
    commands: tuple[str, ...]
    source: str


@section
class ServerErrors(Section):
    """Hints for the `error` events of vLLM's /v1/realtime, by error code."""

    hints: Mapping[str, str]
    source: str


@section
class SmokeApi(Section):
    """Mistral's SDK as smoke's API client needs it."""

    min_sdk: str
    install_spec: str
    key_vars: tuple[str, ...]  # env vars holding a Mistral API key, first wins
    source: str


@section
class SmokeStreams(Section):
    """`smoke --streams N`: how long each stream runs, and when a stream counts as fallen behind."""

    default_duration_s: float
    max_streams: int
    max_lag_growth_s: float
    source: str


@section
class Smoke(Section):
    """The smoke test's audio format, pass mark and timeouts."""

    sample_rate: int
    chunk_bytes: int
    max_wer: float
    connect_timeout_s: float
    session_timeout_s: float
    done_timeout_s: float
    source: str
    server_errors: ServerErrors
    api: SmokeApi
    streams: SmokeStreams


@section
class Setup(Section):
    """The guided path's waits."""

    ready_timeout_s: float
    source: str


@section
class ModelArch(Section):
    """Voxtral Mini 4B Realtime's shape: the built-in one here, used when params.json cannot be read; the serve
    planner builds the same type from params.json (`serve.planner.read_arch`), so the KV arithmetic lives once."""

    decoder_layers: int
    decoder_kv_heads: int
    decoder_head_dim: int
    decoder_sliding_window: int
    encoder_layers: int
    encoder_kv_heads: int
    encoder_head_dim: int
    encoder_sliding_window: int
    block_pool_size: int
    ms_per_token: int
    max_model_len: int
    dtype_bytes: int
    source: str

    def decoder_bytes_per_token(self, tp: int = 1) -> int:
        """KV bytes per token of the decoder (K and V, each GPU's share of the heads under tensor parallelism)."""
        return (
            2 * self.decoder_layers * math.ceil(self.decoder_kv_heads / tp) * self.decoder_head_dim * self.dtype_bytes
        )

    def encoder_bytes_per_token(self, tp: int = 1) -> int:
        """Per decoder-token slot: vLLM's block-pooling attention counts block_pool_size x heads per slot."""
        heads = self.block_pool_size * math.ceil(self.encoder_kv_heads / tp)
        return 2 * self.encoder_layers * heads * self.encoder_head_dim * self.dtype_bytes


@section
class Planner(Section):
    """The memory planner's constants (see compat.toml for what each one covers)."""

    margin_mib: int
    max_utilization: float
    safety_mib: int
    non_torch_mib: int
    nccl_mib: int
    activation_base_mib: int
    activation_per_batched_token_mib: float
    graph_base_mib: int
    graph_per_capture_size_mib: int
    graph_full_and_piecewise_factor: float
    graphs_in_budget_for: str  # a version specifier: vLLM counts CUDA graphs inside its budget
    graphs_source: str
    block_size: int
    batched_tokens_small: int
    batched_tokens_large: int
    large_card_from_mib: int
    min_max_model_len: int
    model_len_margin: float
    max_streams: int  # the most --max-num-seqs the planner allows on a GPU of its own (vLLM's default)
    max_streams_source: str
    unlisted_mib: int  # memory in use beyond the listed processes' that counts as another (unnamed) user
    unlisted_source: str
    source: str


@section
class Flags(Section):
    """How serve reads vLLM's own flags from `vllm serve --help=all`."""

    help_timeout_s: float
    known_everywhere: tuple[str, ...]
    mistral_format_flags: tuple[str, ...]
    piecewise_flag_for: str  # a version specifier
    source: str


@section
class Launch(Section):
    """How serve starts vLLM and waits for it."""

    health_timeout_s: int
    poll_interval_s: float
    confirm_timeout_s: float
    stop_grace_s: int
    docker_image: str
    source: str


@section
class Phase(Section):
    """A start-up phase recognised in vLLM's log."""

    id: str
    title: str
    pattern: str
    source: str


@section
class ServeLog(Section):
    """Regular expressions for vLLM's own start-up memory figures."""

    kv_memory: str
    kv_tokens: str
    concurrency: str
    version: str
    source: str

    def patterns(self) -> dict[str, str]:
        """Figure name -> pattern, for scanning a log line by line."""
        return {
            "kv_memory": self.kv_memory,
            "kv_tokens": self.kv_tokens,
            "concurrency": self.concurrency,
            "version": self.version,
        }


@section
class KnownGpu(Section):
    """A GPU `serve --gpu NAME` can plan for (memory as nvidia-smi reports it)."""

    name: str
    aliases: tuple[str, ...]
    total_mib: int
    compute_capability: str
    source: str
    unconfirmed: bool = False


@section
class Serve(Section):
    """serve's planning and launching knowledge, one sub-table each."""

    model_arch: ModelArch
    planner: Planner
    flags: Flags
    launch: Launch
    phase: tuple[Phase, ...]
    log: ServeLog
    gpu: tuple[KnownGpu, ...]


@section
class VllmInstall(Section):
    """What `install vllm` needs: Python, disk, and the uv/pip arguments."""

    python: str  # a specifier for the venv's Python
    python_source: str
    python_unconfirmed: bool
    disk_mib: int
    disk_source: str
    disk_unconfirmed: bool
    uv_args: tuple[str, ...]
    uv_source: str
    source: str


@section
class VoxtralC(Section):
    """antirez/voxtral.c: the pinned commit `install voxtral-c` builds, its toolchain, speed and memory."""

    repo_url: str
    commit: str
    commit_date: str
    binary: str
    model_files: tuple[str, ...]  # what voxtral.c reads from its model directory (`install voxtral` fetches both)
    help_marker: str
    compiler: str
    blas_package: str
    blas_cflags: tuple[str, ...]
    blas_libs: tuple[str, ...]
    disk_mib: int
    mps_ms_per_token: float
    blas_ms_per_token: int
    token_budget_ms: int
    mps_resident_mib: int
    min_ram_mib: int
    comfortable_ram_mib: int
    interval_default_s: float
    interval_live_min_s: float
    interval_live_max_s: float
    interval_waste_below_s: float
    echopanel_default_bin: str  # relative to EchoPanel's checkout
    echopanel_default_model: str
    source: str


@section
class WatchMetrics(Section):
    """Where each `watch` signal lives: metric families tried in order (counters named without `_total`)."""

    running: tuple[str, ...]
    waiting: tuple[str, ...]
    waiting_by_reason: tuple[str, ...]
    kv_usage: tuple[str, ...]
    generation_tokens: tuple[str, ...]
    preemptions: tuple[str, ...]
    finished: tuple[str, ...]
    corrupted: tuple[str, ...]
    step_latency: tuple[str, ...]
    inter_token_latency: tuple[str, ...]
    sessions_active: tuple[str, ...]
    sessions_opened: tuple[str, ...]
    process_start: tuple[str, ...]
    source: str


@section
class WatchName(Section):
    """A metric name and the vLLM versions that expose it (inclusive)."""

    metric: str
    source: str
    since: str | None = None
    until: str | None = None
    replaced_by: str | None = None


@section
class PausedSession(Section):
    """Where vLLM counts a realtime session waiting for its next 80 ms of audio ("" = nowhere)."""

    since: str
    counted_in: str
    source: str
    until: str | None = None


@section
class Watch(Section):
    """watch's thresholds and where each signal lives in vLLM's /metrics."""

    interval_s: float
    once_interval_s: float
    timeout_s: float
    rate_tolerance: float
    kv_warn: float
    session_warn_minutes: float
    streams_per_meeting: int
    trend_points: int
    source: str
    metrics: WatchMetrics
    names: tuple[WatchName, ...]
    paused_session: tuple[PausedSession, ...]


@section
class Knowledge(Section):
    """The whole of compat.toml. Array-of-tables fields keep the TOML's singular names (`signature`)."""

    schema: int
    model: Model
    delay: Delay
    vllm: Vllm
    mistral_common: MistralCommon
    tokenizer_kwargs: TokenizerKwargs
    gpu: Gpu
    driver: Driver
    hardware: Hardware
    container: Container
    disk: Disk
    server: Server
    network: Network
    echopanel: Echopanel
    alternative: tuple[Alternative, ...]
    signature: tuple[Signature, ...]
    smoke: Smoke
    setup: Setup
    serve: Serve
    vllm_install: VllmInstall
    watch: Watch
    voxtral_c: VoxtralC

    def alternatives(self, system: str) -> list[str]:
        """One line per alternative for `system` (platform.system()) with its EchoPanel env lines.

        Lives with the knowledge because doctor's checks and serve's refusal print the same lines."""
        key = {"Darwin": "darwin", "Windows": "windows"}.get(system, "linux")
        lines = []
        for alt in self.alternative:
            if key in alt.platforms:
                rtf = f" (RTF ≈ {alt.rtf})" if alt.rtf is not None else ""
                lines.append(f"{alt.title}{rtf}: {'  '.join(alt.env)}")
        return lines


# --- building ------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def load() -> Knowledge:
    """Parse compat.toml and build the typed tree, once per process."""
    return build(_parsed(Path(__file__).with_name("compat.toml")))


def _parsed(toml: Path) -> dict[str, Any]:
    """The TOML as plain data, from a marshal copy in our state dir when it matches the file.

    Parsing the TOML is most of doctor's knowledge cost (about 10 ms of a 0.3 s start-up, and the file grows with
    every vLLM release); `marshal` reads the same dicts back in a fraction of that. The copy is keyed by the file's
    size, mtime and our Python's version, written atomically, and any problem with it only costs the parse. Each
    installed copy of this tool keeps its own (named by where its compat.toml is): two installs of different versions
    sharing one state dir (pipx and a venv) would otherwise overwrite each other's copy on every run."""
    import marshal
    from binascii import crc32

    from echopanel_setup import paths

    stat = toml.stat()
    key = f"{stat.st_size}-{stat.st_mtime_ns}-{sys.version_info[0]}.{sys.version_info[1]}"
    cache = paths.state_dir() / f"knowledge-cache-{crc32(os.fsencode(toml)):08x}.marshal"
    try:
        stored_key, data = marshal.loads(cache.read_bytes())
        if stored_key == key and isinstance(data, dict):
            return data
    except (OSError, ValueError, EOFError, TypeError):
        pass
    data = _toml_loads(toml.read_text(encoding="utf-8"))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        partial.write_bytes(marshal.dumps((key, data)))
        os.replace(partial, cache)
    except (OSError, ValueError):
        pass  # a read-only state dir: parse every time
    return data


def _toml_loads(text: str) -> dict[str, Any]:
    """The TOML parser, imported only when the marshal copy cannot be used (a few ms of start-up otherwise)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    return tomllib.loads(text)


def build(data: Mapping[str, Any]) -> Knowledge:
    """The typed tree for parsed TOML; raises KnowledgeError naming the first key that does not fit."""
    return _section(Knowledge, data, "compat.toml")


def _section(cls: type[T], table: Any, where: str) -> T:
    if not isinstance(table, Mapping):
        raise KnowledgeError(f"{where}: expected a table, got {type(table).__name__}")
    declared = fields(cls)  # type: ignore[arg-type]  # cls is always a dataclass here
    unknown = set(table) - {f.name for f in declared}
    if unknown:
        raise KnowledgeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    values = {}
    for f in declared:
        if f.name in table:
            values[f.name] = _value(table[f.name], f.type, f"{where}.{f.name}")
        elif f.default is MISSING:
            raise KnowledgeError(f"{where}: missing key {f.name}")
    return cls(**values)


def _value(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, type) and is_dataclass(tp):
        return _section(tp, value, where)
    if origin is tuple:
        item = get_args(tp)[0]
        if not isinstance(value, list):
            raise KnowledgeError(f"{where}: expected an array, got {type(value).__name__}")
        return tuple(_value(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Mapping:
        item = get_args(tp)[1]
        if not isinstance(value, Mapping):
            raise KnowledgeError(f"{where}: expected a table, got {type(value).__name__}")
        return types.MappingProxyType({str(k): _value(v, item, f"{where}.{k}") for k, v in value.items()})
    if origin is types.UnionType:  # `X | None`: None is a field default, never written in TOML
        return _value(value, next(a for a in get_args(tp) if a is not type(None)), where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise KnowledgeError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value
