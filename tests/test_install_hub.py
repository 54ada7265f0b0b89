"""install/hub.py in-process: the real huggingface_hub against the loopback Hub stand-in.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import; in this process the tests set the
values it derived from them (`constants.ENDPOINT`, `constants.HF_HUB_OFFLINE`), which is what the variables
do in a fresh process (the CLI tests in test_install_voxtral.py use the variables themselves).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from echopanel_setup.errors import ExternalError
from echopanel_setup.install import hub as hub_mod

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "hub"))
from hub_server import REPO, HubStandIn  # noqa: E402

NEEDED = ["consolidated.safetensors", "params.json", "tekken.json"]


def point_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What HF_ENDPOINT=endpoint sets up when huggingface_hub is imported."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    hub_mod._session_defaults()  # a fresh client: it reads the proxy variables when it is made


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    with HubStandIn() as h:
        point_at(h.endpoint, monkeypatch)
        yield h


def _error(**kw: object) -> str:
    with pytest.raises(ExternalError) as info:
        hub_mod.resolve(REPO, str(kw.get("revision", "main")), NEEDED)
    return str(info.value)


def test_resolve_gives_the_commit_and_each_files_size_and_hash(hub: HubStandIn) -> None:
    remote = hub_mod.resolve(REPO, "main", NEEDED)
    assert remote.commit == hub.commit and remote.endpoint == hub.endpoint and not remote.gated
    big, params = remote.files["consolidated.safetensors"], remote.files["params.json"]
    assert (
        big.size == hub.files[big.name].content.size
        and big.sha256 == hub.files[big.name].content.sha256
        and big.git_sha1 is None
    )
    assert params.sha256 is None and params.git_sha1 == hub.files["params.json"].content.git_sha1
    assert big.etag == big.sha256 and params.etag == params.git_sha1
    # One model-info call for the commit, one paths-info call at that commit for exactly the three files.
    calls = [(h.method, h.path) for h in hub.hits if h.path.startswith("/api/models/")]
    assert calls == [
        ("GET", f"/api/models/{REPO}/revision/main"),
        ("POST", f"/api/models/{REPO}/paths-info/{hub.commit}"),
    ]


def test_locate_sends_the_token_to_the_hub_only(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    lfs = hub_mod.locate(REPO, hub.commit, "consolidated.safetensors")
    assert lfs.url.startswith(hub.cdn) and "authorization" not in lfs.headers
    assert (
        lfs.etag == hub.files["consolidated.safetensors"].content.sha256
        and lfs.size == hub.files["consolidated.safetensors"].content.size
    )
    regular = hub_mod.locate(REPO, hub.commit, "params.json")
    assert regular.url.startswith(hub.endpoint) and regular.headers["authorization"] == "Bearer hf_secret"
    assert regular.headers["Accept-Encoding"] == "identity"


def test_private_repo_without_a_token_points_at_the_token(hub: HubStandIn) -> None:
    hub.faults.private = True
    message = _error()
    assert "not found" in message and "token" in message and "no token is set" in message


def test_unknown_repo(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.faults.unknown_repo = True
    monkeypatch.setenv("HF_TOKEN", "hf_any")
    message = _error()
    assert f"{REPO} not found on {hub.endpoint}" in message and "HF_TOKEN is set" in message


def test_gated_without_licence(hub: HubStandIn) -> None:
    hub.faults.gated = True
    assert f"accept its licence at {hub.endpoint}/{REPO}" in _error()


def test_no_server(hub: HubStandIn) -> None:
    hub.stop()
    message = _error()
    assert "connection refused" in message and hub.endpoint in message


def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    point_at("http://hub.invalid", monkeypatch)
    assert "cannot resolve hub.invalid (DNS)" in _error()


def test_proxy_from_the_environment_is_used_and_named(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    assert hub_mod.proxy_for(hub.endpoint) == dead
    message = _error()
    assert f"the proxy {dead} failed" in message
    assert hub.hits == []  # nothing went around the proxy


def test_proxy_credentials_never_reach_the_message(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:s3cret@127.0.0.1:{port}")
    message = _error()
    assert f"the proxy http://***@127.0.0.1:{port} failed" in message
    assert "s3cret" not in message and "alice" not in message


def test_no_proxy_bypasses_it(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert hub_mod.proxy_for(hub.endpoint) is None


def test_offline_mode_forbids_the_network(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_mod.offline()
    assert "HF_HUB_OFFLINE=1" in _error()
    assert hub.hits == []


def test_transient_errors_are_the_retryable_ones(hub: HubStandIn) -> None:
    import httpx2
    from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled

    assert hub_mod.transient(httpx2.ReadTimeout("stalled"))
    assert hub_mod.transient(httpx2.RemoteProtocolError("peer closed"))
    assert not hub_mod.transient(OfflineModeIsEnabled("offline"))
    hub.faults.gated = True
    with pytest.raises(GatedRepoError) as info:
        hub_mod.locate(REPO, hub.commit, "tekken.json")
    assert not hub_mod.transient(info.value)
