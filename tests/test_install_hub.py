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
from hub_server import REPO, Answer, HubStandIn  # noqa: E402

NEEDED = ["consolidated.safetensors", "params.json", "tekken.json"]


def point_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What HF_ENDPOINT=endpoint sets up when huggingface_hub is imported."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    hub_mod._session_defaults()  # a fresh client: it reads the proxy variables when it is made


@pytest.fixture(name="hub")
def hub_fixture(monkeypatch: pytest.MonkeyPatch):
    """The loopback Hub, with huggingface_hub pointed at it (test_install_fetch uses it too)."""
    with HubStandIn() as h:
        point_at(h.endpoint, monkeypatch)
        yield h


def _error(**kw: object) -> str:
    with pytest.raises(ExternalError) as info:
        hub_mod.resolve(REPO, str(kw.get("revision", "main")), NEEDED, backoff=hub_mod.Backoff(retries=0))
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


def test_metadata_calls_retry_as_huggingface_hub_does(hub: HubStandIn) -> None:
    """model_info and paths-info had no retry: one 503 or 429 from the Hub ended the install."""
    hub.faults.answers = [
        Answer("hub", "/revision/main", 503),
        Answer("hub", "/paths-info/", 429, {"Retry-After": "0"}),
    ]
    notes: list[str] = []
    fast = hub_mod.Backoff(retries=2, base_s=0.01)
    remote = hub_mod.resolve(REPO, "main", NEEDED, backoff=fast, note=notes.append)
    assert remote.commit == hub.commit and hub.faults.answers == []
    assert notes[0] == (
        f"asking the Hub for the commit: {hub.endpoint[7:]} answered 503 Service Unavailable; retry 1 of 2 in 0.01 s"
    )
    # The 429's Retry-After is kept, plus huggingface_hub's extra second, instead of the 0.01 s backoff.
    assert notes[1] == (
        f"asking the Hub for the file sizes: {hub.endpoint[7:]} answered 429 Too Many Requests, asking to wait 0 s; "
        "retry 1 of 2 in 1 s"
    )


def test_metadata_retries_give_up_with_the_hubs_answer(hub: HubStandIn) -> None:
    hub.faults.answers = [Answer("hub", "/revision/main", 503), Answer("hub", "/revision/main", 503)]
    with pytest.raises(ExternalError, match="the Hub answered 503"):
        hub_mod.resolve(REPO, "main", NEEDED, backoff=hub_mod.Backoff(retries=1, base_s=0.01))


def test_the_wait_a_server_asks_for_is_read_as_huggingface_hub_reads_it() -> None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    def answer(status: int, **headers: str) -> HfHubHTTPError:
        request = httpx2.Request("GET", "https://cdn.example/blob?X-Amz-Signature=s3cr3t&Expires=1")
        return HfHubHTTPError("failed", response=httpx2.Response(status, headers=headers, request=request))

    backoff = hub_mod.Backoff()
    assert backoff.wait(answer(429, **{"Retry-After": "30"}), 1) == 31
    assert backoff.wait(answer(429, ratelimit='"api";r=0;t=55'), 1) == 56
    assert backoff.wait(answer(503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), 3) == 4  # a date: backoff
    assert backoff.wait(answer(502), 5) == 8  # capped as huggingface_hub caps it
    assert hub_mod.transient(answer(429)) and hub_mod.transient(answer(408)) and not hub_mod.transient(answer(501))
    words = hub_mod.failure(answer(429, **{"Retry-After": "30"}))
    assert words == "cdn.example answered 429 Too Many Requests, asking to wait 30 s"


def test_a_host_is_shown_without_userinfo_or_query() -> None:
    assert hub_mod.host("https://u:pw@cdn.example:8443/blobs/x?X-Amz-Signature=s3cr3t") == "cdn.example:8443"
