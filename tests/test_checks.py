"""Checks replayed from recorded fact snapshots (tests/fixtures/facts): statuses, key wording, exit codes.

Every check is a pure function of a `Facts` snapshot and the mode, so these tests need no GPU, no vLLM and
no network: each snapshot is a machine as `doctor --save-facts` recorded it, and variants change only the
fields under test.
"""

from __future__ import annotations

import pytest
from facts_kit import FACTS_DIR, evaluate, fixture_names, load, raw, text_of, write

from echopanel_setup import checks, doctor, envconfig, knowledge
from echopanel_setup.checks import REQUIRED, Check, CheckResult, Outcome, Status
from echopanel_setup.checks.common import pick_mode
from echopanel_setup.errors import UsageError
from echopanel_setup.facts.collect import Options
from echopanel_setup.facts.model import (
    Facts,
    GpuDevice,
    GpuProcess,
    HttpProbe,
    NetworkFacts,
    ProbeInfo,
    ServerFacts,
)

OK, WARN, FAIL, SKIP = Status.OK, Status.WARN, Status.FAIL, Status.SKIP
GPU_STACK_STORAGE = [
    "platform.shm",
    "gpu.compute",
    "gpu.memory",
    "gpu.free",
    "gpu.driver",
    "stack.tokenizer",
    "stack.python",
    "stack.vllm",
    "stack.torch",
    "stack.mistral_common",
    "model.files",
    "disk.space",
    "port",
    "config.delay",
]
# The EchoPanel category is required only where a checkout is found; the snapshots are GPU hosts without one.
# EchoPanel's and voxtral.c's checks skip where no checkout selects them (a GPU host); the rest must pass there.
LOCAL_REQUIRED = [
    c.id
    for c in checks.all_checks()
    if c.modes.get("local") == REQUIRED and c.category not in ("echopanel", "voxtral_c")
]


def replay(name: str, mode: str | None, **kw):  # type: ignore[no-untyped-def]
    """doctor.run on a recorded snapshot, as `doctor --facts FILE` does."""
    return doctor.run(Options(), mode=mode, facts_file=str(FACTS_DIR / name), **kw)


def by_id(run) -> dict:  # type: ignore[no-untyped-def]
    return {r.id: r for r in run.results}


def failed(facts: Facts, cid: str, mode: str = "local") -> CheckResult:
    """Check `cid` fails on `facts` and so does doctor (exit 1); its result, for the test's asserts on the words."""
    results, code = evaluate(facts, mode)
    assert results[cid].status is FAIL, results[cid].summary
    assert code == 1
    return results[cid]


# --- the snapshots themselves -------------------------------------------------------------------------


@pytest.mark.parametrize("name", fixture_names())
def test_snapshot_is_a_full_facts_document(name: str) -> None:
    data = raw(name)
    facts = Facts.from_dict(data)
    assert facts.to_dict() == data, "the fixture must be exactly what Facts.to_dict() writes"


def test_the_expected_snapshots_exist() -> None:
    assert {
        "linux-h100-vllm020.json",
        "linux-4090-vllm073-tf455.json",
        "linux-t4.json",
        "linux-v100.json",
        "linux-4080.json",
        "linux-3060-12gb.json",
        "linux-4090-desktop.json",
        "linux-nogpu.json",
        "container-shm64.json",
        "macos-arm64.json",
        "windows-native.json",
    } <= set(fixture_names())


# --- whole machines -----------------------------------------------------------------------------------


def test_h100_with_vllm_020_is_ready_for_local_mode() -> None:
    run = replay("linux-h100-vllm020.json", None)
    assert run.mode == "local"
    assert run.replayed
    results = by_id(run)
    for cid in LOCAL_REQUIRED:
        assert results[cid].status is OK, (cid, results[cid].summary)
    assert {r.status for r in results.values() if r.category in ("echopanel", "voxtral_c")} == {SKIP}
    # `server` is advisory in local mode: nothing listens yet, which only warns.
    assert results["server"].status in (OK, WARN, SKIP)
    assert not results["server"].required
    assert run.exit_code == 0
    assert "81559 MiB" in results["gpu.memory"].summary
    assert "vLLM 0.20.0" in results["stack.vllm"].summary


def test_h100_strict_passes_despite_the_advisory_server_warning() -> None:
    """Regression: --strict failed a ready machine on "no server yet", so the README's CI recipe always exited 1."""
    run = replay("linux-h100-vllm020.json", "local", strict=True)
    assert any(r.status is WARN and not r.required for r in run.results)
    assert run.exit_code == 0
    assert run.strict


def test_seed_error_machine_names_the_tokenizer_error() -> None:
    run = replay("linux-4090-vllm073-tf455.json", "local")
    results = by_id(run)
    tok = results["stack.tokenizer"]
    assert tok.status is FAIL and tok.required
    assert "vLLM 0.7.3" in tok.summary and "transformers 4.55.4" in tok.summary
    assert any("Kwargs ['max_loras', '_from_auto'] are not supported" in line for line in tok.details)
    assert tok.fix is not None and "echopanel-setup install vllm" in tok.fix.commands
    vllm = results["stack.vllm"]
    assert vllm.status is FAIL
    assert "0.16.0" in vllm.summary and "older" in vllm.summary
    stack_failures = [r.id for r in run.results if r.category == "stack" and r.status is FAIL]
    assert stack_failures[0] == "stack.tokenizer"
    # The GPU is fine: the stack is the first thing to fix.
    assert [r.id for r in run.results if r.counts_as_failure][0] == "stack.tokenizer"
    assert run.exit_code == 1


def test_tokenizer_markers_from_files_are_reported_as_such() -> None:
    results, _ = evaluate(load("linux-4090-vllm073-tf455.json"), "local")
    assert "read from its files" in text_of(results["stack.tokenizer"])


def test_tokenizer_falls_back_to_version_ranges_when_files_are_unreadable() -> None:
    facts = load("linux-4090-vllm073-tf455.json")
    facts.pyenv.vllm_tokenizer_group_max_loras = None
    facts.pyenv.transformers_mistral_rejects_kwargs = None
    tok = failed(facts, "stack.tokenizer")
    assert "vLLM 0.7.3" in tok.summary and "transformers 4.55.4" in tok.summary
    assert any("version rule" in line for line in tok.details)
    assert any("Kwargs ['max_loras', '_from_auto'] are not supported" in line for line in tok.details)


def test_tokenizer_version_fallback_outside_the_affected_range_passes() -> None:
    facts = load("linux-4090-vllm073-tf455.json")
    facts.pyenv.vllm_tokenizer_group_max_loras = None
    facts.pyenv.transformers_mistral_rejects_kwargs = None
    facts.pyenv.packages["transformers"] = "4.53.3"  # before MistralCommonTokenizer routing
    results, _ = evaluate(facts, "local")
    assert results["stack.tokenizer"].status is OK
    assert results["stack.vllm"].status is FAIL  # still too old for Voxtral Realtime


def test_tokenizer_file_marker_wins_over_the_version_range() -> None:
    facts = load("linux-4090-vllm073-tf455.json")
    facts.pyenv.vllm_tokenizer_group_max_loras = False  # a patched vLLM that does not forward max_loras
    results, _ = evaluate(facts, "local")
    assert results["stack.tokenizer"].status is OK


def test_tokenizer_error_is_only_a_warning_until_mistral_common_is_installed() -> None:
    facts = load("linux-4090-vllm073-tf455.json")
    facts.pyenv.packages["mistral_common"] = None
    results, _ = evaluate(facts, "local")
    assert results["stack.tokenizer"].status is WARN
    assert "once mistral_common is installed" in results["stack.tokenizer"].summary
    assert results["stack.mistral_common"].status is FAIL


def test_t4_warns_with_dtype_and_attention_flags() -> None:
    results, code = evaluate(load("linux-t4.json"), "local")
    comp = results["gpu.compute"]
    assert comp.status is WARN
    assert "7.5" in comp.summary
    details = "\n".join(comp.details)
    assert "--dtype half" in details
    assert "--attention-backend TRITON_ATTN" in details
    assert "FlashInfer" in details
    assert results["gpu.memory"].status is WARN  # 15360 MiB: fits, short sessions
    assert code == 0


def test_t4_with_vllm_033_needs_no_attention_flag() -> None:
    facts = load("linux-t4.json")
    facts.pyenv.packages["vllm"] = "0.33.0"
    comp = evaluate(facts, "local")[0]["gpu.compute"]
    assert comp.status is WARN
    attention = [line for line in comp.details if line.startswith("Attention:")]
    assert len(attention) == 1
    assert "Triton" in attention[0] and "no flag needed" in attention[0]
    assert "--attention-backend" not in attention[0]
    assert any("--dtype half" in line for line in comp.details)


@pytest.mark.parametrize("installed", ["0.16.0", "0.20.0", "0.23.0", "0.24.0", "0.25.1", "0.33.0"])
def test_t4_attention_flag_follows_the_flashinfer_range(installed: str) -> None:
    """The flag is advised exactly for the vLLM versions compat.toml says pick FlashInfer on 7.5."""
    from echopanel_setup import knowledge
    from echopanel_setup.versions import in_range

    facts = load("linux-t4.json")
    facts.pyenv.packages["vllm"] = installed
    comp = evaluate(facts, "local")[0]["gpu.compute"]
    attention = next(line for line in comp.details if line.startswith("Attention:"))
    assert installed in attention
    needs_flag = in_range(installed, knowledge.load().vllm.sm75.flashinfer_picked)
    assert ("--attention-backend TRITON_ATTN" in attention) is needs_flag
    assert ("no flag needed" in attention) is (not needs_flag)


def test_t4_without_vllm_mentions_the_flag_for_later() -> None:
    facts = load("linux-t4.json")
    facts.pyenv.packages["vllm"] = None
    comp = evaluate(facts, "local")[0]["gpu.compute"]
    assert comp.status is WARN
    assert "--attention-backend TRITON_ATTN" in "\n".join(comp.details)


def test_v100_fails_compute_capability() -> None:
    comp = failed(load("linux-v100.json"), "gpu.compute")
    assert "7.0" in comp.summary and "7.5" in comp.summary
    assert comp.fix is not None and comp.fix.commands  # the alternatives


@pytest.mark.parametrize(
    ("snapshot", "status", "total", "code"),
    [("linux-4080.json", WARN, "16376 MiB", 0), ("linux-3060-12gb.json", FAIL, "12288 MiB", 1)],
    ids=["16gb-warns-but-does-not-fail", "12gb-fails"],
)
def test_gpu_memory_by_card_size(snapshot: str, status: Status, total: str, code: int) -> None:
    results, exit_code = evaluate(load(snapshot), "local")
    mem = results["gpu.memory"]
    assert mem.status is status
    assert total in mem.summary
    assert exit_code == code


def test_desktop_card_with_xorg_warns_with_a_utilisation() -> None:
    results, code = evaluate(load("linux-4090-desktop.json"), "local")
    free = results["gpu.free"]
    assert free.status is WARN
    assert "6144 MiB" in free.summary
    # (18420 free - 512 CUDA context) / 24564 total = 0.73
    assert "0.73" in free.summary
    assert "Xorg" in "\n".join(free.details)
    assert "GPU 0 drives a display: `echopanel-setup serve` gives vLLM only what its plan needs" in "\n".join(
        free.details
    )
    assert code == 0


def test_gpu_with_5000_mib_free_fails_and_names_the_processes() -> None:
    facts = load("linux-4090-desktop.json")
    dev = facts.gpu.devices[0]
    dev.memory_free_mib, dev.memory_used_mib = 5000, 19564
    dev.processes = [GpuProcess(1873, "Xorg", 412), GpuProcess(48211, "python3", 18950)]
    free = failed(facts, "gpu.free")
    assert "5000 MiB" in free.summary
    details = "\n".join(free.details)
    assert "48211" in details and "python3" in details and "Xorg" in details


def test_gpu_held_by_a_running_vllm_server_is_fine() -> None:
    facts = load("linux-h100-vllm020.json")
    dev = facts.gpu.devices[0]
    dev.memory_free_mib = 4120
    dev.processes = [GpuProcess(77102, "VLLM::EngineCore", 76900)]
    free = evaluate(facts, "local")[0]["gpu.free"]
    assert free.status is OK
    assert "vLLM server already holds" in free.summary


def test_mig_enabled_is_explained() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.gpu.devices[0].mig_mode = "Enabled"
    free = evaluate(facts, "local")[0]["gpu.free"]
    assert any("MIG" in line for line in free.details)


@pytest.mark.parametrize("cvd", ["", "-1", "1"])
def test_cuda_visible_devices_hiding_every_gpu_fails_the_verdict(cvd: str) -> None:
    facts = load("linux-h100-vllm020.json")
    facts.gpu.cuda_visible_devices = cvd
    results, code = evaluate(facts, "local")
    verdict = results["platform.verdict"]
    assert verdict.status is FAIL
    assert "CUDA_VISIBLE_DEVICES" in verdict.summary
    assert results["gpu.memory"].status is SKIP
    assert code == 1


@pytest.mark.parametrize("cvd", ["0", "GPU-5e2b6f0c-8d3a-4b1e-9f7a-2c4d6e8f0a1b"])
def test_cuda_visible_devices_naming_a_gpu_passes(cvd: str) -> None:
    facts = load("linux-h100-vllm020.json")
    facts.gpu.cuda_visible_devices = cvd
    assert evaluate(facts, "local")[0]["platform.verdict"].status is OK


def test_cuda_visible_devices_selects_which_gpu_is_judged() -> None:
    facts = load("linux-3060-12gb.json")
    facts.gpu.devices.append(GpuDevice(1, "NVIDIA GeForce RTX 4090", 24564, 24100, 464, "8.9", "N/A", []))
    facts.gpu.cuda_visible_devices = "0"
    assert evaluate(facts, "local")[0]["gpu.memory"].status is FAIL
    facts.gpu.cuda_visible_devices = "1"
    assert evaluate(facts, "local")[0]["gpu.memory"].status is OK
    facts.gpu.cuda_visible_devices = None  # both visible: the better card is judged
    assert evaluate(facts, "local")[0]["gpu.memory"].status is OK


def test_driver_too_old_for_torch_cuda_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.gpu.driver_version, facts.gpu.cuda_driver_version = "470.239.06", "11.4"
    drv = failed(facts, "gpu.driver")
    assert "470.239.06" in drv.summary and "12.8" in drv.summary and "525.60.13" in drv.summary


def test_driver_older_than_torch_cuda_minor_only_warns() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.gpu.driver_version, facts.gpu.cuda_driver_version = "550.54.15", "12.4"
    drv = evaluate(facts, "local")[0]["gpu.driver"]
    assert drv.status is WARN
    assert "12.4" in drv.summary and "12.8" in drv.summary


def test_driver_too_old_for_a_cuda_13_torch_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.torch_cuda = "13.0"
    drv = evaluate(facts, "local")[0]["gpu.driver"]
    assert drv.status is FAIL
    assert "580.65.06" in drv.summary


def test_driver_without_torch_is_judged_against_cuda_12() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.torch_cuda = None
    facts.gpu.driver_version, facts.gpu.cuda_driver_version = "515.105.01", "11.7"
    assert evaluate(facts, "local")[0]["gpu.driver"].status is FAIL
    facts.gpu.driver_version, facts.gpu.cuda_driver_version = "570.124.06", "12.8"
    assert evaluate(facts, "local")[0]["gpu.driver"].status is OK


def test_cpu_only_torch_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.torch_cuda = None
    torch = evaluate(facts, "local")[0]["stack.torch"]
    assert torch.status is FAIL
    assert "CPU-only" in torch.summary


def test_mistral_common_without_soxr_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.packages["soxr"] = None
    mc = failed(facts, "stack.mistral_common")
    assert "soxr" in mc.summary
    assert mc.fix is not None and any("mistral-common[audio]" in c for c in mc.fix.commands)


def test_old_mistral_common_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.packages["mistral_common"] = "1.8.5"
    mc = evaluate(facts, "local")[0]["stack.mistral_common"]
    assert mc.status is FAIL and "1.9.0" in mc.summary


@pytest.mark.parametrize(
    ("installed", "status"),
    [(None, FAIL), ("0.11.0", FAIL), ("0.16.0", WARN), ("0.19.1", WARN), ("0.20.0", OK), ("0.33.0", OK)],
)
def test_vllm_version_floor_and_recommendation(installed: str | None, status: Status) -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.packages["vllm"] = installed
    assert evaluate(facts, "local")[0]["stack.vllm"].status is status


def test_vllm_missing_skips_the_checks_that_come_with_it() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.packages["vllm"] = None
    results, code = evaluate(facts, "local")
    assert results["stack.vllm"].status is FAIL
    assert (
        results["stack.vllm"].fix is not None and "echopanel-setup install vllm" in results["stack.vllm"].fix.commands
    )
    for cid in ("stack.tokenizer", "stack.torch", "stack.mistral_common"):
        assert results[cid].status is SKIP, cid
    assert code == 1


def test_broken_target_python_fails_and_skips_the_stack() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.pyenv.ok = False
    facts.pyenv.error = "exit 127"
    results, _ = evaluate(facts, "local")
    assert results["stack.python"].status is FAIL
    for cid in ("stack.tokenizer", "stack.vllm", "stack.torch", "stack.mistral_common"):
        assert results[cid].status is SKIP, cid


def test_python_too_old_for_vllm_fails_before_install() -> None:
    facts = load("linux-nogpu.json")
    facts.platform = load("linux-h100-vllm020.json").platform
    facts.gpu = load("linux-h100-vllm020.json").gpu
    facts.pyenv.version = "3.9.18"
    py = evaluate(facts, "local")[0]["stack.python"]
    assert py.status is FAIL
    assert "3.9.18" in py.summary


def test_no_gpu_linux_fails_the_verdict_and_skips_the_moot_checks() -> None:
    results, code = evaluate(load("linux-nogpu.json"), "local")
    verdict = results["platform.verdict"]
    assert verdict.status is FAIL
    assert "without an NVIDIA GPU" in verdict.summary
    assert any("NVML" in line for line in verdict.details)
    for cid in GPU_STACK_STORAGE:
        assert results[cid].status is SKIP, cid
        assert "platform.verdict" in results[cid].summary, cid
    assert code == 1


@pytest.mark.parametrize("mode", ["remote", "api"])
def test_no_gpu_verdict_is_skipped_outside_local_mode(mode: str) -> None:
    results, _ = evaluate(load("linux-nogpu.json"), mode)
    assert results["platform.verdict"].status is SKIP
    assert mode in results["platform.verdict"].summary


def test_container_with_64_mib_shm_fails() -> None:
    results, code = evaluate(load("container-shm64.json"), "local")
    shm = results["platform.shm"]
    assert shm.status is FAIL
    assert "64 MiB" in shm.summary and "docker" in shm.summary
    commands = "\n".join(shm.fix.commands) if shm.fix else ""
    assert "--ipc=host" in commands and "--shm-size" in commands
    assert results["platform.verdict"].status is OK
    assert code == 1


def test_small_shm_outside_a_container_only_warns() -> None:
    facts = load("container-shm64.json")
    facts.platform.container = None
    facts.platform.shm_total_mib = 512
    assert evaluate(facts, "local")[0]["platform.shm"].status is WARN


def test_wsl2_with_a_gpu_is_a_supported_platform() -> None:
    facts = load("linux-4090-desktop.json")
    facts.platform.is_wsl = True
    facts.platform.release = facts.platform.kernel = "5.15.167.4-microsoft-standard-WSL2"
    verdict = evaluate(facts, "local")[0]["platform.verdict"]
    assert verdict.status is OK and "WSL2" in verdict.summary


def test_macos_fails_local_mode_and_offers_alternatives() -> None:
    run = replay("macos-arm64.json", "local")
    verdict = by_id(run)["platform.verdict"]
    assert verdict.status is FAIL
    assert "macOS" in verdict.summary
    assert verdict.fix is not None
    commands = verdict.fix.commands
    assert any("ECHOPANEL_ASR_PROVIDER=mlx_whisper" in c for c in commands)
    assert any("VOXTRAL_MODE=api" in c for c in commands)
    for cid in GPU_STACK_STORAGE:
        assert by_id(run)[cid].status is SKIP, cid
    assert run.exit_code == 1


def test_macos_under_rosetta_says_so() -> None:
    facts = load("macos-arm64.json")
    facts.platform.rosetta = True
    verdict = evaluate(facts, "local")[0]["platform.verdict"]
    assert any("Rosetta" in line for line in verdict.details)


def test_macos_api_mode_passes_with_a_key_and_the_sdk() -> None:
    run = replay("macos-arm64.json", None)
    assert run.mode == "api"  # VOXTRAL_MODE=api in the config
    results = by_id(run)
    assert results["api.key"].status is OK and "MISTRAL_API_KEY" in results["api.key"].summary
    assert results["api.sdk"].status is OK and "mistralai" in results["api.sdk"].summary
    assert results["network.mistral"].status is OK
    assert results["platform.verdict"].status is SKIP
    assert run.exit_code == 0


def test_api_mode_without_a_key_fails() -> None:
    facts = load("macos-arm64.json")
    facts.network.mistral_api_key = None
    key = failed(facts, "api.key", "api")
    assert "VOXTRAL_MISTRAL_API_KEY" in key.summary


def test_api_mode_without_the_realtime_extra_fails() -> None:
    facts = load("macos-arm64.json")
    facts.client.packages["websockets"] = None
    assert evaluate(facts, "api")[0]["api.sdk"].status is FAIL
    facts.client.packages["mistralai"] = None
    assert evaluate(facts, "api")[0]["api.sdk"].status is FAIL


def test_api_mode_with_mistral_unreachable_fails() -> None:
    facts = load("macos-arm64.json")
    facts.network.mistral = HttpProbe(
        url="https://api.mistral.ai/v1/models", reachable=False, error="[Errno -3] Temporary failure in name resolution"
    )
    facts.network.proxies = {"HTTPS_PROXY": "http://***@proxy.corp:3128"}
    result, code = evaluate(facts, "api")
    assert result["network.mistral"].status is FAIL
    assert "name resolution" in result["network.mistral"].summary
    assert any("HTTPS_PROXY" in line for line in result["network.mistral"].details)
    assert code == 1


def test_windows_native_fails_and_points_at_wsl2() -> None:
    verdict = failed(load("windows-native.json"), "platform.verdict")
    assert "WSL2" in verdict.summary
    assert verdict.fix is not None and any("wsl --install" in c for c in verdict.fix.commands)


# --- storage, port and config -------------------------------------------------------------------------


def test_model_not_downloaded_fails_with_the_install_command() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.model.exists = False
    facts.model.files = dict.fromkeys(facts.model.files)
    facts.model.manifest, facts.model.verified, facts.model.delay_ms = "absent", None, None
    results, _ = evaluate(facts, "local")
    files = results["model.files"]
    assert files.status is FAIL and "not downloaded" in files.summary
    assert files.fix is not None and any(c.startswith("echopanel-setup install voxtral") for c in files.fix.commands)
    assert results["config.delay"].status is SKIP
    assert results["disk.space"].status is OK  # 1.3 TiB free


def test_unverified_and_damaged_model_files() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.model.manifest, facts.model.verified = "absent", None
    files = evaluate(facts, "local")[0]["model.files"]
    assert files.status is WARN
    assert files.fix is not None and any("--verify" in c for c in files.fix.commands)
    facts.model.manifest, facts.model.verified = "present", False
    assert evaluate(facts, "local")[0]["model.files"].status is FAIL


def test_missing_model_file_is_named() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.model.files["tekken.json"] = None
    files = evaluate(facts, "local")[0]["model.files"]
    assert files.status is FAIL and "tekken.json" in files.summary


def test_too_little_disk_for_the_download_fails() -> None:
    facts = load("linux-nogpu.json")
    h100 = load("linux-h100-vllm020.json")
    facts.platform, facts.gpu, facts.pyenv = h100.platform, h100.gpu, h100.pyenv
    facts.disk.free_mib = 6000
    disk = evaluate(facts, "local")[0]["disk.space"]
    assert disk.status is FAIL
    assert disk.fix is not None and any("--dir" in c for c in disk.fix.commands)


def test_disk_check_wants_what_install_voxtral_wants() -> None:
    """doctor asked for the download plus a fixed 2 GiB margin for temp files the install never writes."""
    k = knowledge.load()
    facts = load("linux-nogpu.json")
    h100 = load("linux-h100-vllm020.json")
    facts.platform, facts.gpu, facts.pyenv = h100.platform, h100.gpu, h100.pyenv
    want_mib = -(-(k.model.download_bytes + k.disk.margin(k.model.download_bytes)) // (1024 * 1024))
    facts.disk.free_mib = want_mib + 1
    assert evaluate(facts, "local")[0]["disk.space"].status is OK
    facts.disk.free_mib = want_mib - 2
    assert evaluate(facts, "local")[0]["disk.space"].status is FAIL


def test_port_held_by_nginx_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.port.free = False
    facts.port.holder_pid, facts.port.holder_name = 1342, "nginx"
    facts.port.holder_cmdline = "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"
    port = failed(facts, "port")
    assert "nginx" in port.summary and "1342" in port.summary and "8000" in port.summary
    assert port.fix is not None and "echopanel-setup serve --port 8001" in port.fix.commands


def test_port_held_by_vllm_is_fine() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.port.free = False
    facts.port.holder_pid, facts.port.holder_name = 90211, "python3"
    facts.port.holder_cmdline = "/opt/vllm/bin/python3 /opt/vllm/bin/vllm serve mistralai/Voxtral-Mini-4B-Realtime-2602"
    port = evaluate(facts, "local")[0]["port"]
    assert port.status is OK and "vLLM" in port.summary


def test_config_delay_that_differs_from_the_model_fails() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.values[envconfig.DELAY] = "960"
    results, code = evaluate(facts, "local")
    delay = results["config.delay"]
    assert delay.status is FAIL
    assert "960" in delay.summary and "480" in delay.summary
    assert delay.fix is not None
    assert "echopanel-setup serve --delay-ms 960" in delay.fix.commands
    assert "echopanel-setup configure --delay-ms 480" in delay.fix.commands
    assert results["config.values"].status is OK  # 960 is a valid delay
    assert code == 1


def test_config_without_a_delay_uses_the_default() -> None:
    facts = load("linux-h100-vllm020.json")
    del facts.config.values[envconfig.DELAY]
    assert evaluate(facts, "local")[0]["config.delay"].status is OK


@pytest.mark.parametrize(
    ("value", "nearest"), [("500", "nearest: 480"), ("520", "nearest: 480 or 560"), ("40", "nearest: 240")]
)
def test_off_grid_delay_fails_config_values_naming_the_nearest(value: str, nearest: str) -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.values[envconfig.DELAY] = value
    results, _ = evaluate(facts, "local")
    values = results["config.values"]
    assert values.status is FAIL
    assert nearest in values.summary
    assert results["config.delay"].status is SKIP
    for mode in ("remote", "api"):
        assert evaluate(facts, mode)[0]["config.values"].status is FAIL


def test_off_grid_delay_fails_doctor_in_local_mode() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.values[envconfig.DELAY] = "500"
    _, code = evaluate(facts, "local")
    assert code == 1


def test_a_provider_name_is_judged_by_the_checkout_not_a_fixed_list() -> None:
    """EchoPanel registers more providers than this tool knows (faster_whisper…): config.values only says it is not
    Voxtral; echopanel.provider checks the name against the checkout's registry."""
    facts = load("linux-h100-vllm020.json")
    facts.config.values[envconfig.PROVIDER] = "faster_whisper"
    values = evaluate(facts, "remote")[0]["config.values"]
    assert values.status is WARN and "will not use Voxtral" in values.summary


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (envconfig.URL, "http://localhost:8000/v1/realtime", "no path"),
        (envconfig.URL, "http://localhost", "no port"),
        (envconfig.MODE, "API", "the only value is 'api'"),
    ],
)
def test_invalid_config_values_fail(key: str, value: str, fragment: str) -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.values[key] = value
    values = evaluate(facts, "remote")[0]["config.values"]
    assert values.status is FAIL
    assert fragment in values.summary + "\n".join(values.details)


def test_config_parse_errors_fail_config_values() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.errors = ["line 3: unbalanced or multiple quoted values"]
    values = evaluate(facts, "remote")[0]["config.values"]
    assert values.status is FAIL and "line 3" in values.summary


def test_config_selecting_another_mode_warns() -> None:
    results, _ = evaluate(load("linux-h100-vllm020.json"), "remote")
    assert results["config.values"].status is WARN
    assert "local" in results["config.values"].summary


def test_other_provider_warns() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.values[envconfig.PROVIDER] = "whisper_cpp"
    assert evaluate(facts, "local")[0]["config.values"].status is WARN


def test_missing_config_warns_with_configure_command() -> None:
    values = evaluate(load("linux-nogpu.json"), "remote")[0]["config.values"]
    assert values.status is WARN
    # --mode remote needs the server: configure stops without --url
    assert (
        values.fix is not None
        and "echopanel-setup configure --mode remote --url http://GPU-HOST:8001" in values.fix.commands
    )


# --- remote mode and the server check -----------------------------------------------------------------


def _remote(server: ServerFacts | None, url: str | None = "http://gpu-box.lan:8000") -> Facts:
    facts = load("linux-nogpu.json")
    facts.network = NetworkFacts(offline=False, server=server)
    facts.config.exists = True
    facts.config.values = {envconfig.PROVIDER: "voxtral_official"}
    if url:
        facts.config.values[envconfig.URL] = url
    return facts


def test_remote_mode_is_picked_from_a_non_local_url() -> None:
    facts = _remote(None)
    assert pick_mode(facts, None)[0] == "remote"


def test_remote_mode_without_a_url_fails_the_server_check() -> None:
    facts = _remote(None, url=None)
    server = failed(facts, "server", "remote")
    assert "no server URL" in server.summary
    assert server.required


def test_remote_mode_without_a_url_fails_even_offline() -> None:
    facts = _remote(None, url=None)
    facts.network.offline = True
    results, code = evaluate(facts, "remote")
    assert results["server"].status is FAIL
    assert code == 1


def test_remote_server_serving_voxtral_passes() -> None:
    server = ServerFacts(
        url="http://gpu-box.lan:8000", health=200, version="0.20.0", models=["mistralai/Voxtral-Mini-4B-Realtime-2602"]
    )
    results, code = evaluate(_remote(server), "remote")
    assert results["server"].status is OK
    assert "0.20.0" in results["server"].summary
    assert results["config.values"].status is OK
    assert code == 0


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        (ServerFacts(url="http://gpu-box.lan:8000", error="[Errno 111] Connection refused"), "unreachable"),
        (ServerFacts(url="http://gpu-box.lan:8000", health=503, version="0.20.0"), "not ready"),
        (ServerFacts(url="http://gpu-box.lan:8000", health=200, version="0.20.0", auth_required=True), "API key"),
        (
            ServerFacts(url="http://gpu-box.lan:8000", health=200, version="0.20.0", models=["Qwen/Qwen3-8B"]),
            "not Voxtral Realtime",
        ),
    ],
)
def test_remote_server_problems_fail(server: ServerFacts, fragment: str) -> None:
    results, code = evaluate(_remote(server), "remote")
    assert results["server"].status is FAIL
    assert fragment in results["server"].summary
    assert code == 1


def test_unreachable_server_only_warns_in_local_mode() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.network.server = ServerFacts(url="http://localhost:8000", error="[Errno 111] Connection refused")
    server = evaluate(facts, "local")[0]["server"]
    assert server.status is WARN and not server.required


# --- mode choice --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode", "why"),
    [
        ("linux-h100-vllm020.json", "local", envconfig.URL),
        ("macos-arm64.json", "api", envconfig.MODE),
        ("linux-nogpu.json", "local", "no EchoPanel config"),
    ],
)
def test_pick_mode_from_the_config_or_hardware(name: str, mode: str, why: str) -> None:
    chosen, reason = pick_mode(load(name), None)
    assert chosen == mode and why in reason


def test_pick_mode_prefers_the_flag() -> None:
    assert pick_mode(load("macos-arm64.json"), "local") == ("local", "--mode")


def test_pick_mode_from_a_gpu_without_config() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.config.values = {}
    chosen, reason = pick_mode(facts, None)
    assert chosen == "local" and "GPU" in reason


# --- exit codes, selection, crashes and timeouts ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode", "plain", "strict"),
    [
        ("linux-h100-vllm020.json", "local", 0, 0),  # only the advisory server warning
        ("linux-t4.json", "local", 0, 1),
        ("linux-4080.json", "local", 0, 1),
        ("linux-v100.json", "local", 1, 1),
        ("macos-arm64.json", "api", 0, 0),  # nothing to warn about
        ("linux-nogpu.json", "remote", 1, 1),  # no server URL anywhere: remote mode has nothing to use
    ],
)
def test_strict_turns_warnings_into_exit_1(name: str, mode: str, plain: int, strict: int) -> None:
    assert replay(name, mode).exit_code == plain
    assert replay(name, mode, strict=True).exit_code == strict


def test_select_by_id_and_prefix() -> None:
    everything = checks.all_checks()
    ids = lambda cs: [c.id for c in cs]  # noqa: E731
    assert ids(checks.select(everything, ["gpu"], [])) == ["gpu.compute", "gpu.memory", "gpu.free", "gpu.driver"]
    assert ids(checks.select(everything, ["gpu.memory"], [])) == ["gpu.memory"]
    assert ids(checks.select(everything, ["port"], [])) == ["port"]
    assert ids(checks.select(everything, ["stack", "port"], ["stack.python"])) == [
        "stack.tokenizer",
        "stack.vllm",
        "stack.torch",
        "stack.mistral_common",
        "port",
    ]
    skipped = ids(checks.select(everything, [], ["gpu", "network"]))
    assert not any(i.startswith(("gpu.", "network.")) for i in skipped)
    assert "platform.verdict" in skipped and "server" in skipped
    assert ids(checks.select(everything, [], [])) == ids(everything)


@pytest.mark.parametrize(
    ("only", "skip"), [(["nosuchcheck"], []), ([], ["nosuchcheck"]), (["gp"], []), (["gpu.mem"], [])]
)
def test_select_rejects_unknown_names(only: list[str], skip: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown check"):
        checks.select(checks.all_checks(), only, skip)


def test_doctor_turns_an_unknown_check_into_a_usage_error() -> None:
    with pytest.raises(UsageError, match="nosuchcheck"):
        replay("linux-h100-vllm020.json", "local", only=["nosuchcheck"])


def test_doctor_only_runs_the_selection() -> None:
    run = replay("linux-3060-12gb.json", "local", only=["gpu"], skip=["gpu.memory"])
    assert [r.id for r in run.results] == ["gpu.compute", "gpu.free", "gpu.driver"]
    assert run.exit_code == 0  # the failing gpu.memory was skipped
    run = replay("linux-3060-12gb.json", "local", only=["gpu.memory"])
    assert [r.id for r in run.results] == ["gpu.memory"] and run.exit_code == 1


@pytest.fixture
def temporary_check():  # type: ignore[no-untyped-def]
    """Register checks for one test and remove them afterwards, whatever happens."""
    registry = checks.all_checks()
    added: list[Check] = []

    def add(check: Check) -> Check:
        registry.append(check)
        added.append(check)
        return check

    yield add
    for check in added:
        registry.remove(check)


def test_a_check_that_raises_becomes_crashed(temporary_check) -> None:  # type: ignore[no-untyped-def]
    def boom(facts: Facts, mode: str) -> Outcome:
        raise KeyError("delay_ms")

    temporary_check(Check("zz_test.boom", "Exploding check", "config", {"local": REQUIRED}, (), boom))
    run = replay("linux-h100-vllm020.json", "local")
    result = by_id(run)["zz_test.boom"]
    assert result.status is Status.CRASHED
    assert "KeyError" in result.summary and "delay_ms" in result.summary
    assert result.counts_as_failure
    assert run.exit_code == 1
    # every other check still ran
    assert by_id(run)["config.delay"].status is OK


def test_the_temporary_check_is_gone_afterwards() -> None:
    assert not any(c.id.startswith("zz_test.") for c in checks.all_checks())


def test_an_advisory_crash_never_fails_a_ready_machine(temporary_check) -> None:  # type: ignore[no-untyped-def]
    def boom(facts: Facts, mode: str) -> Outcome:
        raise RuntimeError("oops")

    temporary_check(Check("zz_test.soft", "Soft crash", "config", {"local": "advisory"}, (), boom))
    assert replay("linux-h100-vllm020.json", "local", only=["zz_test", "gpu"]).exit_code == 0
    assert replay("linux-h100-vllm020.json", "local", only=["zz_test", "gpu"], strict=True).exit_code == 0


def test_a_timed_out_probe_makes_its_checks_report_timeout() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.probes = [
        p if p.name != "pyenv" else ProbeInfo("pyenv", 9000.0, "timeout", "no answer within 9 s") for p in facts.probes
    ]
    results, code = evaluate(facts, "local")
    for cid in (
        "stack.tokenizer",
        "stack.python",
        "stack.vllm",
        "stack.torch",
        "stack.mistral_common",
        "gpu.compute",
        "gpu.driver",
    ):
        assert results[cid].status is Status.TIMEOUT, cid
        assert "pyenv" in results[cid].summary and "no answer within 9 s" in results[cid].summary
    # checks that do not read the target Python are unaffected
    assert results["gpu.memory"].status is OK
    assert results["platform.verdict"].status is OK
    assert code == 1


def test_a_timed_out_gpu_probe_stops_at_the_verdict() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.probes = [
        p if p.name != "gpu" else ProbeInfo("gpu", 6000.0, "timeout", "no answer within 6 s") for p in facts.probes
    ]
    results, code = evaluate(facts, "local")
    assert results["platform.verdict"].status is Status.TIMEOUT
    assert results["gpu.memory"].status in (Status.TIMEOUT, SKIP)
    assert results["gpu.memory"].status is not OK
    assert code == 1


def test_a_crashed_probe_makes_its_checks_report_crashed() -> None:
    facts = load("linux-h100-vllm020.json")
    facts.probes.append(ProbeInfo("client", 2.0, "crashed", "ImportError: boom"))
    facts.probes = [p for p in facts.probes if not (p.name == "client" and p.status == "ok")]
    results, _ = evaluate(facts, "local")
    assert results["client.websockets"].status is Status.CRASHED
    assert "ImportError: boom" in results["client.websockets"].summary


def test_doctor_reads_a_whole_json_document_as_facts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from echopanel_setup.report import to_document

    run = replay("linux-4090-vllm073-tf455.json", "local")
    doc = write(to_document(run), tmp_path / "doc.json")
    again = doctor.run(Options(), mode="local", facts_file=str(doc))
    assert [(r.id, r.status) for r in again.results] == [(r.id, r.status) for r in run.results]
    assert again.facts == run.facts


def test_missing_config_on_a_machine_without_a_gpu_points_to_remote_or_api() -> None:
    from echopanel_setup import checks as registry

    facts = load("linux-nogpu.json")
    facts.config.exists, facts.config.values = False, {}
    (result,) = registry.run(facts, "local", [c for c in registry.all_checks() if c.id == "config.values"])
    assert result.status is registry.Status.WARN
    assert result.fix is not None and any("--mode api" in cmd for cmd in result.fix.commands)


def test_print_order_does_not_depend_on_which_check_module_was_imported_first() -> None:
    """install vllm imports checks.gpu before anything asks for all checks; doctor's order must not change."""
    import subprocess
    import sys

    order = "from echopanel_setup.checks import all_checks; print([c.id for c in all_checks()])"
    plain = subprocess.run([sys.executable, "-c", order], capture_output=True, text=True, check=True).stdout
    gpu_first = subprocess.run(
        [sys.executable, "-c", "import echopanel_setup.checks.gpu; " + order],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert plain == gpu_first and plain.startswith("['platform.")
