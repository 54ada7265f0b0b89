"""ServerURL: every form a user types, the sentences for the ones that cannot work, and no secret in any of them."""

from __future__ import annotations

import pytest

from echopanel_setup.errors import UsageError
from echopanel_setup.url import ServerURL, is_loopback, normalise_echopanel, redact


@pytest.mark.parametrize(
    ("text", "http_base", "ws_url", "port"),
    [
        ("http://gpu:8000", "http://gpu:8000", "ws://gpu:8000/v1/realtime", 8000),
        ("  http://gpu:8000/  ", "http://gpu:8000", "ws://gpu:8000/v1/realtime", 8000),
        ("ws://gpu:8000/v1/realtime", "http://gpu:8000", "ws://gpu:8000/v1/realtime", 8000),
        ("http://gpu:8000/v1/audio/transcriptions", "http://gpu:8000", "ws://gpu:8000/v1/realtime", 8000),
        (
            "https://asr.example.com/vllm/",
            "https://asr.example.com/vllm",
            "wss://asr.example.com/vllm/v1/realtime",
            443,
        ),
        ("wss://asr.example.com/v1", "https://asr.example.com", "wss://asr.example.com/v1/realtime", 443),
        ("http://[::1]:8000/", "http://[::1]:8000", "ws://[::1]:8000/v1/realtime", 8000),
        ("HTTP://GPU.Example:8000", "http://gpu.example:8000", "ws://gpu.example:8000/v1/realtime", 8000),
    ],
)
def test_parse_forms(text: str, http_base: str, ws_url: str, port: int) -> None:
    url = ServerURL.parse(text)
    assert (url.http_base, url.ws_url, url.port, str(url), url.display) == (
        http_base,
        ws_url,
        port,
        http_base,
        http_base,
    )
    assert url.url("/health") == f"{http_base}/health"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "gpu:8000",
            "--url 'gpu:8000' must look like http://HOST:PORT (or ws://HOST:PORT/v1/realtime); did you mean http://gpu:8000?",
        ),
        ("ftp://gpu", "--url 'ftp://gpu' must look like http://HOST:PORT (or ws://HOST:PORT/v1/realtime)"),
        ("http://", "--url 'http://' must look like http://HOST:PORT (or ws://HOST:PORT/v1/realtime)"),
        (
            "http://gpu:99999",
            "--url 'http://gpu:99999' has no valid port or address (write http://HOST:PORT, the port 1-65535)",
        ),
        ("http://gpu:0", "--url 'http://gpu:0': port 0 is not a port a server listens on (use 1-65535)"),
        (
            "http://my host:8000",
            "--url 'http://my host:8000': 'my host' is not a host name or IP address (write http://HOST:PORT)",
        ),
        (  # a label over 63 characters made the resolver's idna codec raise UnicodeError: exit 4 in smoke and watch
            f"http://{'a' * 64}.lan:8000",
            f"--url 'http://{'a' * 64}.lan:8000': {'a' * 64 + '.lan'!r} is not a host name or IP address (write "
            "http://HOST:PORT)",
        ),
        (
            "http://gpu:8000/?token=s3cret",
            "--url 'http://gpu:8000/?…' must not carry a query (?…) or fragment (#…): vLLM's routes take none",
        ),
    ],
)
def test_parse_refuses_with_one_sentence(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        ServerURL.parse(text)
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def test_the_sentence_names_what_was_given() -> None:
    with pytest.raises(UsageError, match=r"^VOXTRAL_VLLM_URL='gpu:1' must look like"):
        ServerURL.parse("gpu:1", what="VOXTRAL_VLLM_URL")
    with pytest.raises(UsageError, match=r"^--server 'gpu:1' must look like"):
        ServerURL.parse("gpu:1", what="--server")


def test_credentials_are_used_never_shown() -> None:
    url = ServerURL.parse("https://alice:p%40ss@gpu.example:8443/vllm/v1")
    assert url.basic_auth == ("alice", "p@ss")
    for shown in (str(url), url.display, url.http_base, url.ws_url, repr(url), url.url("/health")):
        assert "alice" not in shown and "p@ss" not in shown and "p%40ss" not in shown, shown
    assert ServerURL.parse("http://gpu:1").basic_auth is None
    with pytest.raises(UsageError) as caught:
        ServerURL.parse("http://alice:hunter2@my host:1")
    assert "hunter2" not in str(caught.value) and "alice" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        ServerURL.parse_echopanel("http://alice:hunter2@gpu")
    assert (
        str(caught.value)
        == "VOXTRAL_VLLM_URL='http://***@gpu' has no port (vLLM's port here is 8001): use http://gpu:8001"
    )


def test_redact() -> None:
    assert redact("http://proxy:3128") == "http://proxy:3128"
    assert redact("http://u:p@proxy:3128") == "http://***@proxy:3128"
    assert redact("http://u@proxy") == "http://***@proxy"
    assert redact("https://h/file?X-Amz-Signature=abc#frag") == "https://h/file?…"


def test_loopback() -> None:
    for text in (
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "http://127.1.2.3:1",
        "http://[::1]:8000",
        "http://0.0.0.0:8000",
        "ws://LOCALHOST:1",
    ):
        assert ServerURL.parse(text).is_loopback and is_loopback(text), text
    for text in ("http://gpu-host:8000", "http://10.0.0.5:8000", "http://[::1", "http://127.example:1", "not a url"):
        assert not is_loopback(text), text


def test_with_port() -> None:
    url = ServerURL.parse("http://gpu").with_port(8001)
    assert (str(url), url.port, url.explicit_port) == ("http://gpu:8001", 8001, 8001)


@pytest.mark.parametrize(
    "text", ["http://localhost:8000", "http://localhost:8000/", "https://gpu.example.com:443", "http://[::1]:8000"]
)
def test_echopanel_form_accepts(text: str) -> None:
    assert ServerURL.parse_echopanel(text).prefix == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "http://gpu-host:8000/v1/realtime",
            "VOXTRAL_VLLM_URL='http://gpu-host:8000/v1/realtime' must have no path "
            "(EchoPanel adds /health and /v1/… itself): use http://gpu-host:8000",
        ),
        (
            "http://gpu-host",
            "VOXTRAL_VLLM_URL='http://gpu-host' has no port (vLLM's port here is 8001): use http://gpu-host:8001",
        ),
        ("ws://gpu-host:8000", "VOXTRAL_VLLM_URL='ws://gpu-host:8000' must look like http://HOST:PORT"),
        (
            "gpu-host:8000",
            "VOXTRAL_VLLM_URL='gpu-host:8000' must look like http://HOST:PORT; did you mean http://gpu-host:8000?",
        ),
        ("http://:8000", "VOXTRAL_VLLM_URL='http://:8000' must look like http://HOST:PORT"),
        (
            "http://gpu-host:8000?x=1",
            "VOXTRAL_VLLM_URL='http://gpu-host:8000?…' must not carry a query (?…) or fragment (#…): "
            "vLLM's routes take none",
        ),
    ],
)
def test_echopanel_form_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        ServerURL.parse_echopanel(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "dropped"),
    [
        ("http://gpu:8001", None),
        ("http://gpu:8001/", "/"),
        ("http://gpu:8001/v1", "/v1"),
        ("http://gpu:8001/v1/", "/v1/"),
    ],
)
def test_normalise_echopanel(text: str, dropped: str | None) -> None:
    url, note = normalise_echopanel(text)
    assert str(url) == "http://gpu:8001"
    if dropped is None:
        assert note is None
    else:
        assert note == (
            f"VOXTRAL_VLLM_URL: dropped {dropped!r} from the URL "
            "(EchoPanel adds /v1/… itself; with it every request is a 404)"
        )


@pytest.mark.parametrize(
    "text", ["http://gpu:8001/v1/realtime", "http://gpu:8001/api", "https://gpu/v1", "ws://gpu:8001"]
)
def test_normalise_echopanel_refuses_other_paths_and_schemes(text: str) -> None:
    with pytest.raises(UsageError):
        normalise_echopanel(text, what="--url")


def test_values_compare_and_hash() -> None:
    assert ServerURL.parse("ws://gpu:1/v1/realtime") == ServerURL.parse("http://gpu:1/")
    assert len({ServerURL.parse("http://gpu:1"), ServerURL.parse("http://gpu:1/v1")}) == 1


def test_scrub_cuts_every_url_in_free_text_to_host_and_path() -> None:
    from echopanel_setup.url import scrub

    text = (
        "429 Client Error: Too Many Requests for url: https://cdn-lfs.hf.co/repos/ab/cd?X-Amz-Signature=s3cr3t&"
        "Expires=1767225600 (via socks5://alice:pw@proxy:1080)"
    )
    assert (
        scrub(text)
        == "429 Client Error: Too Many Requests for url: https://cdn-lfs.hf.co/repos/ab/cd (via socks5://proxy:1080)"
    )
    assert scrub("no url, just words?") == "no url, just words?"


def test_same_server_reads_this_machine_spelled_two_ways_as_one() -> None:
    ours = ServerURL.parse("http://127.0.0.1:8001")
    for same in ("http://localhost:8001", "http://[::1]:8001/", "ws://127.0.0.1:8001/v1/realtime"):
        assert ours.same_server(ServerURL.parse(same)), same
    for other in ("http://localhost:8002", "https://localhost:8001", "http://gpu-box:8001", "http://localhost:8001/x"):
        assert not ours.same_server(ServerURL.parse(other)), other
