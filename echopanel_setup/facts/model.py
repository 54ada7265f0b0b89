"""The `Facts` snapshot: everything the probes learned about this machine, as plain data.

Checks are pure functions of a `Facts`, so a snapshot saved on one machine (`doctor --save-facts`) can be
replayed anywhere (`doctor --facts FILE`). Secrets never enter a snapshot: keys and tokens are recorded as
presence only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from echopanel_setup.knowledge import Section

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    from echopanel_setup.knowledge import dataclass_transform  # its run-time stand-in: typing_extensions costs start-up

FACTS_SCHEMA_VERSION = 1
R = TypeVar("R", bound="Record")


class Record:
    """The base of every facts class: the `__init__`, `__repr__` and `__eq__` that `@dataclass` would generate.

    The decorator compiles those methods for each class with `exec`; for the ~26 classes here that was some 50M
    instructions (7 ms) of every `doctor` start. Written once instead, as `knowledge.Section` does for the frozen
    sections (whose `__repr__`/`__eq__` these are): fields(), asdict() and replace() work as on any dataclass.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        declared = fields(self)  # type: ignore[arg-type]  # self is always a dataclass here
        name = type(self).__name__
        if len(args) > len(declared):
            raise TypeError(f"{name}() takes {len(declared)} positional arguments but {len(args)} were given")
        for f, value in zip(declared, args, strict=False):  # fewer positionals than fields: the rest by keyword
            if f.name in kwargs:
                raise TypeError(f"{name}() got multiple values for argument '{f.name}'")
            kwargs[f.name] = value
        for f in declared:
            if f.name in kwargs:
                setattr(self, f.name, kwargs.pop(f.name))
            elif f.default is not MISSING:
                setattr(self, f.name, f.default)
            elif f.default_factory is not MISSING:
                setattr(self, f.name, f.default_factory())
            else:
                raise TypeError(f"{name}() missing required argument: '{f.name}'")
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")

    __repr__ = Section.__repr__
    __eq__ = Section.__eq__
    __hash__ = None  # type: ignore[assignment]  # as @dataclass leaves a mutable class: unhashable


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[R]) -> type[R]:
    """Declare a facts class: a dataclass (fields(), asdict(), replace() work) with `Record`'s methods."""
    return dataclass(init=False, repr=False, eq=False)(cls)


@record
class ProbeInfo(Record):
    """How one probe went: its wall time and whether it finished."""

    name: str
    duration_ms: float = 0.0
    status: str = "ok"  # ok | timeout | crashed | skipped
    error: str | None = None


@record
class PlatformFacts(Record):
    """The operating system, CPU, memory and container this runs in."""

    system: str = ""  # Linux | Darwin | Windows
    release: str = ""
    kernel: str = ""
    distro: str | None = None
    arch: str = ""
    is_wsl: bool = False
    container: str | None = None  # docker | podman | kubernetes | lxc | container
    apple_silicon: bool | None = None
    rosetta: bool | None = None
    cpu: str | None = None
    ram_total_mib: int | None = None
    shm_total_mib: int | None = None
    python: str = ""  # our own interpreter's version


@record
class GpuProcess(Record):
    """A process holding GPU memory (vLLM's start-up check counts it against free memory)."""

    pid: int
    name: str = ""
    used_mib: int | None = None


@record
class MigDevice(Record):
    """One MIG instance of a GPU, as `nvidia-smi -L` lists it (memory from the banner's "MIG devices" table)."""

    index: int  # the MIG device's number on its GPU ("Device  0")
    profile: str  # "3g.40gb"
    uuid: str = ""
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None


@record
class GpuDevice(Record):
    """One NVIDIA GPU as NVML or nvidia-smi reports it."""

    index: int
    name: str
    memory_total_mib: int | None  # None when the GPU does not report it (unified memory)
    memory_free_mib: int | None = None
    memory_used_mib: int | None = None
    compute_capability: str | None = None  # "8.9"
    mig_mode: str | None = None  # Enabled | Disabled | None when not supported
    processes: list[GpuProcess] = field(default_factory=list)
    # A display is initialised on it (a desktop, even with its Xorg hidden from a container): the desktop needs the
    # memory vLLM does not. None: unknown (the driver did not say, or a snapshot from before this field).
    display_active: bool | None = None
    # With MIG enabled: the instances (None: not listed, e.g. an older snapshot). CUDA uses one of them, never the
    # whole GPU, so memory is planned and judged by the instance.
    mig_devices: list[MigDevice] | None = None
    mig_profile: str | None = None  # set on the stand-in `GpuFacts.visible()` returns for a MIG instance


@record
class GpuFacts(Record):
    """The GPUs vLLM could use, and where the facts came from."""

    source: str = "none"  # nvml | nvidia-smi | metal | none
    error: str | None = None  # why NVML / nvidia-smi gave nothing, in their words
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the newest CUDA the driver supports, "12.4"
    cuda_visible_devices: str | None = None
    devices: list[GpuDevice] = field(default_factory=list)
    metal: bool | None = None  # Apple GPU with Metal
    apple_gpu: str | None = None
    # What the machine has, apart from what the driver answers: tells "no GPU" from "a GPU the driver cannot reach".
    pci_gpus: list[str] | None = None  # display-class PCI devices as "vendor:device" ("10de:2684"); None: unreadable
    driver_loaded: bool | None = None  # /proc/driver/nvidia exists (the NVIDIA kernel module is loaded)
    jetson: str | None = None  # the first line of /etc/nv_tegra_release on an NVIDIA Jetson (L4T)
    smi_raw: str | None = None  # nvidia-smi's output when it could not be read as expected (for --report)

    def visible(self) -> list[GpuDevice]:
        """The GPUs vLLM would see, honouring CUDA_VISIBLE_DEVICES given as indices (UUIDs keep all), with a
        MIG-enabled GPU replaced by the one instance CUDA uses (the named MIG-<uuid>, else the first).

        A method on the facts (not in `checks/`) because doctor's checks and serve's planner both need it."""
        wanted = [p.strip() for p in (self.cuda_visible_devices or "").split(",") if p.strip()]
        if self.cuda_visible_devices is not None and (not wanted or wanted == ["-1"]):
            return []
        if wanted and all(p.isdigit() for p in wanted):
            devices = [d for d in self.devices if str(d.index) in wanted]
        else:
            devices = self.devices
        out: list[GpuDevice] = []
        for d in devices:
            if d.mig_mode != "Enabled" or d.mig_devices is None:
                out.append(d)
                continue
            named = [m for m in d.mig_devices if m.uuid and m.uuid in wanted]
            chosen = (named or d.mig_devices)[:1]  # CUDA uses a single MIG instance per process: the first visible
            out += [_mig_view(d, m) for m in chosen]
        return out[:1] if any(d.mig_profile for d in out) else out


def _mig_view(gpu: GpuDevice, mig: MigDevice) -> GpuDevice:
    """The MIG instance as the device vLLM gets: its own memory, its parent's compute capability."""
    free = None
    if mig.memory_total_mib is not None and mig.memory_used_mib is not None:
        free = mig.memory_total_mib - mig.memory_used_mib
    return GpuDevice(
        index=gpu.index,
        name=f"{gpu.name} MIG {mig.profile}",
        memory_total_mib=mig.memory_total_mib,
        memory_free_mib=free,
        memory_used_mib=mig.memory_used_mib,
        compute_capability=gpu.compute_capability,
        mig_mode="Enabled",
        display_active=gpu.display_active,
        mig_profile=mig.profile,
    )


@record
class PyEnvFacts(Record):
    """The interpreter that runs (or will run) vLLM, read from the outside."""

    python: str | None = None
    source: str = "current"  # --python | recorded | vllm-on-path | current
    ok: bool = False
    cached: bool = False  # reused from the last run: no import directory changed since
    error: str | None = None
    version: str | None = None
    prefix: str | None = None
    is_venv: bool | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    torch_cuda: str | None = None  # torch.version.cuda, read from torch/version.py
    vllm_tokenizer_group_max_loras: bool | None = None
    transformers_mistral_rejects_kwargs: bool | None = None


@record
class DiskFacts(Record):
    """Free space where the model goes."""

    path: str = ""
    checked_path: str = ""  # the nearest existing parent that was measured
    free_mib: int | None = None
    total_mib: int | None = None


@record
class ModelFacts(Record):
    """The model directory: which files are there and whether they match the manifest."""

    path: str = ""
    exists: bool = False
    files: dict[str, int | None] = field(default_factory=dict)  # name -> size in bytes, None if absent
    manifest: str | None = None  # absent | present | unreadable
    verified: bool | None = None
    commit: str | None = None
    delay_ms: int | None = None  # audio.transcription_delay_ms of the dir vLLM will serve
    serve_dir: str | None = None  # a delay variant recorded by `serve`, if any


@record
class HttpProbe(Record):
    """One HTTP request's outcome (reachability, not content)."""

    url: str
    reachable: bool = False
    status: int | None = None
    error: str | None = None
    elapsed_ms: float | None = None


@record
class ServerFacts(Record):
    """What a vLLM server answered on /health, /version, /v1/models and /metrics."""

    url: str
    health: int | None = None
    version: str | None = None
    models: list[str] | None = None
    error: str | None = None
    auth_required: bool = False
    metrics: dict[str, Any] | None = None  # one /metrics sample as `watch` reads it (watch.sample.to_facts)
    kind: str | None = None  # who answered /health: "vllm", "echopanel" (EchoPanel's own backend), "other"


@record
class NetworkFacts(Record):
    """Proxies, credentials present (never their values) and the endpoints doctor asked."""

    offline: bool = False
    proxies: dict[str, str] = field(default_factory=dict)  # variable -> proxy URL with credentials removed
    hf_token: bool = False
    mistral_api_key: str | None = None  # name of the variable that holds a key, never the key
    vllm_api_key: bool = False
    server_url: str | None = None  # the vLLM server doctor checks (configured, or a local listener)
    hf: HttpProbe | None = None
    mistral: HttpProbe | None = None
    server: ServerFacts | None = None


@record
class PortFacts(Record):
    """Whether vLLM's port is free here, who holds it, and who answers on EchoPanel's port."""

    port: int = 8001
    free: bool | None = None
    holder_pid: int | None = None
    holder_name: str | None = None
    holder_cmdline: str | None = None
    # Where EchoPanel runs here: its backend's port, and who answers /health there
    # (vllm, echopanel, other; None: no one).
    echopanel_port: int | None = None
    echopanel_port_kind: str | None = None


@record
class ConfigFacts(Record):
    """EchoPanel's env file as found; secret values are replaced by '<set>'."""

    path: str = ""
    exists: bool = False
    values: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    from_environment: list[str] = field(default_factory=list)  # keys that the process environment overrides
    legacy: str | None = None  # the per-user echopanel.env an earlier echopanel-setup wrote, when it is still there


@record
class ClientFacts(Record):
    """Packages that `smoke` and API mode need, in echopanel-setup's own environment."""

    packages: dict[str, str | None] = field(default_factory=dict)


# EchoPanel (echopanel_setup/echopanel/): its checkout, the contract read from its files, the backend's Python and
# the settings it will see. Values of other `.env` keys are never recorded, only counted.


@record
class EnvRead(Record):
    """One environment variable a provider reads: `default` when the code gives a literal, else `default_expr`."""

    key: str
    default: str | None = None
    default_expr: str | None = None  # the default's source text when it is computed (e.g. a path)


@record
class ProviderContract(Record):
    """One ASR provider as its file reads."""

    name: str  # the name it registers under, the value of ECHOPANEL_ASR_PROVIDER that selects it
    file: str  # relative to the checkout
    sha256: str
    env: list[EnvRead] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)  # URL paths it builds, e.g. /v1/chat/completions
    model: str | None = None  # the "model" it sends
    auth: bool = False  # sends an Authorization header or an API key
    deps: list[str] = field(default_factory=list)  # third-party top-level modules it imports (lazily or not)
    audio_format: str | None = None  # how it ships audio, e.g. "data:audio/pcm;base64"
    variant: str | None = None  # id of a known variant in the knowledge file, None when unknown

    def reads(self, key: str) -> bool:
        return any(e.key == key for e in self.env)

    def default(self, key: str) -> str | None:
        return next((e.default for e in self.env if e.key == key), None)


@record
class DotenvLoader(Record):
    """The function in server/main.py that reads `<checkout>/.env`, and which of EchoPanel's known rules it has."""

    function: str
    environment_wins: bool  # os.environ.setdefault
    strips_export: bool
    strips_quotes: bool
    skips_empty: bool
    known: bool  # all of the above: the rules dotenv.parse reproduces


@record
class Contract(Record):
    """Everything read from one checkout."""

    backend_port: int | None = None
    dotenv: DotenvLoader | None = None
    default_provider: str | None = None  # get_provider's getenv default
    fallback_provider: str | None = None  # what the preloader silently rewrites the selection to
    registered: list[str] = field(default_factory=list)  # every provider name the checkout registers
    providers: list[ProviderContract] = field(default_factory=list)  # the ones read in full
    errors: list[str] = field(default_factory=list)  # files that did not parse, by name

    def provider(self, name: str | None) -> ProviderContract | None:
        return next((p for p in self.providers if p.name == name), None)


@record
class GitState(Record):
    """The checkout's commit and whether it has local changes."""

    commit: str | None = None
    dirty: bool | None = None
    changed: list[str] = field(default_factory=list)  # paths git reports as changed (first 20)


@record
class EchoPanelEnvFacts(Record):
    """The `.env` EchoPanel reads and the environment that overrides it, for the keys this tool manages only."""

    path: str | None = None
    exists: bool = False
    values: dict[str, str] = field(default_factory=dict)  # managed keys as EchoPanel parses them; secrets '<set>'
    environment: dict[str, str] = field(default_factory=dict)  # managed keys set in the environment (they win)
    other_keys: int = 0  # how many other keys the file sets (never their names' values)
    notes: list[str] = field(default_factory=list)  # lines that do not do what they look like (dotenv.notes)
    error: str | None = None


@record
class EchoPanelFacts(Record):
    """Where EchoPanel is and what it will do. `checkout` None: none found (then `error` may say why)."""

    checkout: str | None = None
    how: str | None = None  # --echopanel | ECHOPANEL_HOME | current directory | usual place
    candidates: list[str] = field(default_factory=list)
    error: str | None = None  # a flag or variable naming no checkout, or several candidates
    git: GitState = field(default_factory=GitState)
    python: str | None = None
    python_source: str | None = None  # --echopanel-python | <checkout>/.venv
    python_version: str | None = None
    python_error: str | None = None
    modules: dict[str, str | None] = field(default_factory=dict)  # dependency -> version ("" unknown) or None
    contract: Contract | None = None
    env: EchoPanelEnvFacts = field(default_factory=EchoPanelEnvFacts)
    provider_drift: str | None = None  # voxtral_official no longer what `provider fix` wrote (echopanel/fixes.py)


# voxtral.c (echopanel_setup/facts/voxtral_c.py): the toolchain `install voxtral-c` needs, what it built, and the binary
# and weights EchoPanel's `voxtral_realtime` provider will use. Probed only where EchoPanel selects that provider or
# `install voxtral-c` ran (`probed` False otherwise: the checks skip).


@record
class VoxtralCBuild(Record):
    """What `install voxtral-c` built, from its record in our state dir."""

    checkout: str
    commit: str
    backend: str  # mps | blas
    binary: str
    repo_url: str = ""
    log: str | None = None
    built_at: str | None = None


@record
class VoxtralCBinary(Record):
    """A voxtral.c binary and whether it runs: `--help` exits 0 with usage on stderr."""

    path: str
    source: str  # the environment | <checkout>/.env | EchoPanel's default | install voxtral-c
    exists: bool = False
    runs: bool | None = None
    error: str | None = None  # why it does not run, in one line


@record
class VoxtralCFacts(Record):
    probed: bool = False
    compiler: str | None = None  # the Makefile's compiler (gcc) on PATH
    make: str | None = None
    git: str | None = None
    xcode_clt: bool | None = None  # macOS: `xcode-select -p` names the command-line tools
    blas: bool | None = None  # Linux: cblas.h compiles and -lopenblas links (None elsewhere)
    blas_error: str | None = None
    build: VoxtralCBuild | None = None
    binary: VoxtralCBinary | None = None  # the one EchoPanel will run (ECHOPANEL_VOXTRAL_BIN as it sees it)
    model: str | None = None  # ECHOPANEL_VOXTRAL_MODEL as EchoPanel will see it
    model_source: str | None = None
    model_files: dict[str, int | None] = field(default_factory=dict)  # name -> size, None if absent
    model_verified: bool | None = None  # `install voxtral`'s manifest vouches for the files (None: no manifest)
    user_clone: str | None = None  # <checkout>/../voxtral.c, a clone we did not create (left alone)
    user_clone_commit: str | None = None


@record
class Facts(Record):
    """One snapshot of everything the checks judge; `--save-facts` writes it and `--facts` replays it."""

    schema_version: int = FACTS_SCHEMA_VERSION
    tool_version: str = ""
    collected_at: str = ""
    platform: PlatformFacts = field(default_factory=PlatformFacts)
    gpu: GpuFacts = field(default_factory=GpuFacts)
    pyenv: PyEnvFacts = field(default_factory=PyEnvFacts)
    disk: DiskFacts = field(default_factory=DiskFacts)
    model: ModelFacts = field(default_factory=ModelFacts)
    network: NetworkFacts = field(default_factory=NetworkFacts)
    port: PortFacts = field(default_factory=PortFacts)
    config: ConfigFacts = field(default_factory=ConfigFacts)
    client: ClientFacts = field(default_factory=ClientFacts)
    echopanel: EchoPanelFacts = field(default_factory=EchoPanelFacts)
    voxtral_c: VoxtralCFacts = field(default_factory=VoxtralCFacts)
    probes: list[ProbeInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Facts:
        """Rebuild a snapshot; unknown keys are ignored so older tools read newer snapshots."""
        if not isinstance(data, dict):
            raise ValueError("a facts snapshot is a JSON object")
        version = data.get("schema_version", FACTS_SCHEMA_VERSION)
        if not isinstance(version, int) or version > FACTS_SCHEMA_VERSION:
            raise ValueError(f"facts schema_version {version!r} is newer than this tool understands")
        missing = [name for name in ("platform", "gpu", "pyenv") if name not in data]
        if missing:
            raise ValueError(
                f"missing {', '.join(missing)} (write one with `echopanel-setup doctor --save-facts FILE`)"
            )
        return _build(cls, data)


def _build(tp: Any, value: Any) -> Any:
    """Turn JSON-shaped `value` into an instance of the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _build(args[0], value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value}
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise ValueError(f"{tp.__name__}: {exc}") from None
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return [_build(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return {str(k): _build(item, v) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ValueError(f"expected {tp.__name__}, got {value!r}")
    return value
