"""`smoke` over vLLM's realtime WebSocket, against a real loopback server that speaks the protocol and
checks every byte of audio it receives (tests/smoke_kit.py)."""

from __future__ import annotations

import json
import shutil
import socket
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from threading import Thread

import pytest
from conftest import Cli, run_cli, without_socks_extra
from smoke_kit import (
    VOXTRAL,
    VllmBehaviour,
    VllmHttpStandIn,
    VllmStandIn,
    close_to,
    exact,
    self_signed,
    tone_pcm,
    write_wav,
)

from echopanel_setup.errors import ExternalError
from echopanel_setup.smoke import audio, client
from echopanel_setup.url import ServerURL

CLIP = audio.bundled()


def test_bundled_clip_through_the_realtime_protocol(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm)) as server:
        code, out, err = cli("smoke", "--url", server.url, "--fast", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["passed"] and doc["route"] == "realtime" and doc["mode"] == "local"
    assert doc["model"] == VOXTRAL and doc["server"]["version"] == "0.33.0"
    assert doc["wer"]["value"] == 0.0 and doc["audio"]["synthesized"]
    assert doc["deltas"] >= 2 and doc["timings_ms"]["first_delta"] is not None and doc["rtf"] is not None
    events = server.seen.events
    assert events[:2] == ["session.update", "input_audio_buffer.commit"]
    assert set(events[2:-1]) == {"input_audio_buffer.append"} and events[-1] == "input_audio_buffer.commit"
    assert server.seen.session_updates[0] == {"type": "session.update", "model": VOXTRAL}
    assert server.seen.auth == [None, None]  # /v1/models and /v1/realtime, no key configured


@pytest.mark.slow
def test_human_report_as_a_user_runs_it() -> None:
    with VllmStandIn(exact(CLIP.pcm)) as server:
        done = run_cli("smoke", "--url", server.url.replace("http://", "ws://") + "/v1/realtime", "--fast")
    assert done.returncode == 0, done.stderr
    assert "WER:        0.0%" in done.stdout and "✓ pass" in done.stdout
    assert "vLLM 0.33.0" in done.stdout and "synthesized" in done.stdout


def test_paced_audio_arrives_like_a_live_microphone(cli: Cli, tmp_path: Path) -> None:
    pcm = tone_pcm(1.0, 16000, 1)
    write_wav(tmp_path / "one-second.wav", pcm, 16000, 1)
    with VllmStandIn(exact(pcm), VllmBehaviour(transcript="tones")) as server:
        code, out, err = cli(
            "smoke",
            "--url",
            server.url,
            "--audio",
            str(tmp_path / "one-second.wav"),
            "--expect",
            "tones",
            "--json",
        )
        spread = server.seen.append_times[-1] - server.seen.append_times[0]
    assert code == 0, err
    chunks = len(server.seen.append_times)
    assert chunks == 8  # 32000 bytes in 4096-byte chunks
    assert spread >= (chunks - 1) * 0.128 * 0.9, "chunks were sent faster than real time"
    assert json.loads(out)["fast"] is False


def test_a_44k_stereo_user_file_arrives_as_16k_mono(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "meeting.wav"
    write_wav(path, tone_pcm(1.5, 44100, 2), 44100, 2)
    with VllmStandIn(
        close_to(tone_pcm(1.5, 16000, 1, side=())), VllmBehaviour(transcript="Hello there, General.")
    ) as server:
        code, out, err = cli(
            "smoke",
            "--url",
            server.url,
            "--fast",
            "--audio",
            str(path),
            "--expect",
            "hello there general",
            "--json",
        )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["audio"]["source"] == str(path) and doc["audio"]["duration_s"] == pytest.approx(1.5, abs=0.01)
    assert doc["wer"]["value"] == 0.0


def test_a_user_file_is_read_while_it_is_sent_and_arrives_whole_in_full_chunks(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 1001)  # many blocks, none a multiple of the 4096-byte chunk
    monkeypatch.setattr(audio, "choose_resampler", lambda wanted=None: "python")  # audio.convert's filter
    frames = tone_pcm(1.0, 44100, 2)
    write_wav(tmp_path / "long.wav", frames, 44100, 2)
    read: list[int] = []
    blocks = audio._WavStream.blocks

    def counted(self: audio._WavStream):  # type: ignore[no-untyped-def]
        for block in blocks(self):
            read.append(len(block))
            yield block

    monkeypatch.setattr(audio._WavStream, "blocks", counted)
    with VllmStandIn(exact(audio.convert(frames, 44100, 2)), VllmBehaviour(transcript="tones")) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast", "--audio", str(tmp_path / "long.wav"), "--json")
    assert code == 0, err
    assert len(read) > 40 and max(read) < 4096, "the file was converted block by block, not whole"
    assert server.seen.events.count("input_audio_buffer.append") == 8  # 32000 bytes in 4096-byte chunks


def test_chunks_regroups_blocks_of_any_size() -> None:
    blocks = [b"a" * 5, b"", b"b" * 2, b"c" * 9, b"d"]
    out = list(audio.chunks(blocks, 4))
    assert b"".join(out) == b"".join(blocks) and [len(c) for c in out] == [4, 4, 4, 4, 1]


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        ("invalid_audio", "Invalid audio data", "could not decode an audio chunk"),
        ("processing_error", "CUDA error: an illegal memory access was encountered", "explain LOG"),
        ("model_not_validated", "Model not validated.", "session.update"),
    ],
)
def test_server_error_events_are_shown_verbatim_with_a_hint(cli: Cli, code: str, message: str, hint: str) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(error_after_appends=(3, code, message))) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
    assert rc == 3
    assert f"error {code}: {message}" in err and hint in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_wrong_served_model_name_is_reported_by_the_server(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(reject_model=True)) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
    assert rc == 3 and "model_not_found" in err and f"The model `{VOXTRAL}` does not exist." in err


def test_another_served_model_name_is_learned_from_v1_models(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(models=["voxtral-rt"])) as server:
        rc, out, err = cli("smoke", "--url", server.url, "--fast", "--json")
        assert server.seen.model == "voxtral-rt"
    assert rc == 0, err
    assert json.loads(out)["model"] == "voxtral-rt"


def test_a_model_the_server_does_not_serve_lists_the_served_ones(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(models=["my-voxtral-realtime", "whisper-large"])) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast", "--model", "nope")
        rc2, _, err2 = cli("smoke", "--url", server.url, "--fast")
    assert rc == 2 and "it serves: my-voxtral-realtime, whisper-large" in err
    assert rc2 == 0, err2  # of two models, the Voxtral Realtime one is picked


def test_a_non_voxtral_model_gets_a_note(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(models=["openai/whisper-large-v3"])) as server:
        rc, out, _ = cli("smoke", "--url", server.url, "--fast")
    assert rc == 0 and "does not look like Voxtral Realtime" in out


def test_dropped_connection(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(drop_after_appends=5)) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
    assert rc == 3 and "closed the WebSocket before transcription.done" in err


def test_stalled_server_times_out(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(stall=True)) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast", "--timeout", "0.5")
    assert rc == 3 and "no transcription.done within" in err and "--timeout" in err


def test_api_key_missing_wrong_and_right(cli: Cli, monkeypatch) -> None:
    secret = "s3cret-key-value"
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(api_key=secret)) as server:
        rc1, _, err1 = cli("smoke", "--url", server.url, "--fast")
        rc2, _, err2 = cli("smoke", "--url", server.url, "--fast", "--api-key", "wrong")
        monkeypatch.setenv("VLLM_API_KEY", secret)
        rc3, out3, err3 = cli("smoke", "--url", server.url, "--fast", "--json")
        assert server.seen.auth[-1] == f"Bearer {secret}"
    assert rc1 == 3 and "wants an API key (HTTP 401)" in err1
    assert rc2 == 3 and "refused the API key (HTTP 401)" in err2 and "wrong" not in err2
    assert rc3 == 0, err3
    assert secret not in out3 + err3


def test_401_on_the_websocket_handshake() -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(api_key="k")) as server:
        ws = ServerURL.parse(server.url.replace("http://", "ws://") + "/v1/realtime")
        with pytest.raises(ExternalError, match="HTTP 401"):
            client.transcribe(ws, VOXTRAL, CLIP.pcm, api_key=None, fast=True, limits=client.Limits.defaults())
        transcript = client.transcribe(ws, VOXTRAL, CLIP.pcm, api_key="k", fast=True, limits=client.Limits.defaults())
    assert transcript.text.startswith("Please call Stella")
    assert transcript.timings.overhead_s >= 0


def test_server_without_the_realtime_route(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(realtime_route=False)) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
    assert rc == 3 and "no realtime WebSocket (HTTP 403)" in err


def test_unhealthy_engine(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(health=503)) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
    assert rc == 3 and "HTTP 503" in err and "not ready" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_says_how_to_start_one(cli: Cli) -> None:
    rc, out, err = cli("smoke", "--url", f"http://127.0.0.1:{_free_port()}", "--json")
    assert rc == 3 and "is the server running?" in err and "echopanel-setup serve" in err
    assert json.loads(out)["exit_code"] == 3 and json.loads(out)["error"]["kind"] == "external"


def test_not_a_vllm_server(cli: Cli, tmp_path: Path) -> None:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(tmp_path)))
    Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        rc, _, err = cli("smoke", "--url", f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
    assert rc == 3 and "not a vLLM server" in err


def test_bad_transcript_fails_on_max_wer(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(transcript="Please call Bella, ask him for nothing.")) as server:
        rc, out, _ = cli("smoke", "--url", server.url, "--fast", "--json")
        rc_loose, _, _ = cli("smoke", "--url", server.url, "--fast", "--max-wer", "2")
    doc = json.loads(out)
    assert rc == 1 and not doc["passed"] and doc["wer"]["value"] > doc["max_wer"]
    assert rc_loose == 0


def test_url_comes_from_the_echopanel_config(cli: Cli, isolated_home: Path) -> None:
    with VllmStandIn(exact(CLIP.pcm)) as server:
        config = isolated_home / "EchoPanel.env"  # an EchoPanel .env named by --config
        config.write_text(f"ECHOPANEL_ASR_PROVIDER=voxtral_official\nVOXTRAL_VLLM_URL={server.url}\n")
        rc, out, err = cli("smoke", "--fast", "--json", "--config", str(config))
    assert rc == 0, err
    assert json.loads(out)["mode_reason"].startswith("VOXTRAL_VLLM_URL in ")


def test_nothing_to_test_and_bad_flags_are_usage_errors(cli: Cli) -> None:
    rc, _, err = cli("smoke")
    assert rc == 2 and "nothing to test" in err
    rc, _, err = cli("smoke", "--mode", "remote")
    assert rc == 2 and "--mode remote needs --url" in err
    rc, _, err = cli("smoke", "--url", "ftp://host:21")
    assert rc == 2 and "must look like http://HOST:PORT" in err
    rc, _, err = cli("smoke", "--url", "http://127.0.0.1:1", "--audio", "/nonexistent.wav")
    assert rc == 2 and "no such file" in err


@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_loopback_server_is_never_reached_through_a_proxy(cli: Cli, monkeypatch, var: str) -> None:
    """Regression: HTTP_PROXY (or a SOCKS ALL_PROXY) sent the loopback requests and the WebSocket to the
    proxy, so a running server was reported as 'cannot reach … is the server running?' (or exit 4)."""
    dead = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv(var, f"socks5://{dead}" if var == "ALL_PROXY" else f"http://{dead}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{dead}")
    with VllmStandIn(exact(CLIP.pcm)) as server:
        rc, out, err = cli("smoke", "--url", server.url.replace("127.0.0.1", "localhost"), "--fast", "--json")
    assert rc == 0, err
    assert json.loads(out)["passed"]


@without_socks_extra
def test_an_unusable_socks_proxy_for_a_remote_server_is_one_line(cli: Cli, monkeypatch) -> None:
    """Regression: ALL_PROXY=socks5://… without httpx's socks extra was an internal error (exit 4)."""
    pytest.importorskip("httpx")
    monkeypatch.setenv("ALL_PROXY", f"socks5://127.0.0.1:{_free_port()}")
    rc, _, err = cli("smoke", "--url", "http://gpu.example:8000", "--fast")
    assert rc == 2 and "proxy from your environment" in err
    assert err.count("\n") == 1 and "internal error" not in err


@pytest.mark.slow
def test_a_server_that_stops_reading_meets_one_deadline_for_the_whole_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: with no deadline around sends, smoke waited forever on a server that accepted the WebSocket and
    stopped reading (then, ~40 s later, blamed the server for the keepalive closing the socket)."""
    import threading

    monkeypatch.setattr(client, "_CLOSE_S", 0.5)  # a server that reads nothing never takes the close frame either

    five_minutes = bytes(5 * 60 * 16000 * 2)  # more than the loopback socket buffers hold
    limits = client.Limits(connect_s=2.0, session_s=1.0, done_s=1.0)
    outcome: list[BaseException | None] = []

    def go(url: str) -> None:
        try:
            client.transcribe(ServerURL.parse(url), VOXTRAL, five_minutes, api_key=None, fast=True, limits=limits)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    with VllmStandIn(exact(five_minutes), VllmBehaviour(stop_reading=True)) as server:
        worker = threading.Thread(target=go, args=(server.url,), daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "smoke still blocked on a server that stopped reading"
    assert isinstance(outcome[0], ExternalError)
    assert "stopped reading our audio" in str(outcome[0]) and "2 s deadline for the whole exchange" in str(outcome[0])


def test_the_transcript_cap_stops_the_exchange_and_is_named_as_our_memory_bound(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server repeating deltas without end must not exhaust our memory: past the cap the exchange stops, and the
    verdict says this side stopped it, on a memory bound, and why the server is at fault."""
    monkeypatch.setattr(client, "_MAX_TEXT_CHARS", 12)
    with VllmStandIn(exact(CLIP.pcm)) as server:
        with pytest.raises(ExternalError) as caught:
            client.transcribe(
                ServerURL.parse(server.url), VOXTRAL, CLIP.pcm, api_key=None, fast=True, limits=client.Limits.defaults()
            )
        code, _, err = cli("smoke", "--url", server.url, "--fast")
    said = str(caught.value)
    assert said.startswith("this side stopped the transcription after 3 deltas: the transcript passed our memory bound")
    assert "repeating text without end" in said and "explain LOG" in said
    assert code == 3 and "our memory bound of 12 characters" in err


def test_a_final_transcript_over_the_cap_is_refused_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "_MAX_TEXT_CHARS", 60)  # every delta fits; transcription.done's text does not
    with VllmStandIn(exact(CLIP.pcm)) as server, pytest.raises(ExternalError, match="our memory bound of 60"):
        client.transcribe(
            ServerURL.parse(server.url), VOXTRAL, CLIP.pcm, api_key=None, fast=True, limits=client.Limits.defaults()
        )


OOM = "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.65 GiB total capacity)"


def test_a_server_closing_because_it_ran_out_of_memory_is_named_with_the_fix(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(close_after_appends=(2, 1011, OOM))) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast")
    assert code == 3
    assert "the server closed the WebSocket after 1 delta (close code 1011: CUDA out of memory." in err
    assert "the server ran out of memory: lower --gpu-memory-utilization" in err and "--max-num-seqs" in err


def test_the_servers_keepalive_giving_up_on_us_is_told_from_a_crash(cli: Cli) -> None:
    behaviour = VllmBehaviour(close_after_appends=(2, 1011, "keepalive ping timeout"))
    with VllmStandIn(exact(CLIP.pcm), behaviour) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast")
    assert code == 3 and "(close code 1011: keepalive ping timeout): its keepalive got no answer" in err
    assert "crashed" not in err


def test_a_server_closing_for_another_reason_is_not_called_out_of_memory(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(close_after_appends=(2, 1011, "engine restarting"))) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast")
    assert code == 3 and "(close code 1011: engine restarting)" in err and "memory" not in err


@pytest.mark.parametrize("message", [OOM, "torch.OutOfMemoryError: oops", "engine OOM-killed", "MemoryError"])
def test_an_error_event_saying_out_of_memory_gets_the_memory_fix(cli: Cli, message: str) -> None:
    behaviour = VllmBehaviour(error_after_appends=(2, "processing_error", message))
    with VllmStandIn(exact(CLIP.pcm), behaviour) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast")
    assert code == 3 and f"the server sent error processing_error: {message}" in err
    assert "(the server ran out of memory: lower --gpu-memory-utilization" in err


def test_the_http_route_names_a_server_out_of_memory(cli: Cli) -> None:
    with VllmHttpStandIn(lambda pcm: OOM) as server:
        code, _, err = cli("smoke", "--url", server.url, "--http")
    assert code == 3 and "HTTP 400: stand-in: CUDA out of memory" in err and "the server ran out of memory" in err


def test_a_redirect_is_not_an_engine_that_is_not_ready(cli: Cli) -> None:
    with VllmStandIn(exact(CLIP.pcm), VllmBehaviour(health=307)) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
    assert rc == 3 and "a redirect" in err and "not ready" not in err


def test_the_server_is_asked_before_the_audio_is_decoded(cli: Cli, tmp_path: Path, monkeypatch) -> None:
    """Regression: a 2-hour WAV was decoded (minutes, gigabytes) before smoke found the server down."""

    def not_yet(*args: object) -> None:
        raise AssertionError("the audio was decoded before the server answered")

    monkeypatch.setattr(audio, "load", not_yet)
    wav = tmp_path / "long.wav"
    write_wav(wav, tone_pcm(0.1, 44100, 2), 44100, 2)
    rc, _, err = cli("smoke", "--url", f"http://127.0.0.1:{_free_port()}", "--audio", str(wav), "--expect", "x")
    assert rc == 3 and "cannot reach" in err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI makes the test certificate")
def test_a_self_signed_tls_server_is_named_as_tls_and_trusted_with_ca_cert(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a self-signed https:// server got "is the server running?"; there was no --ca-cert/--insecure,
    and SSL_CERT_FILE was ignored for a loopback server."""
    context, cert = self_signed(tmp_path)
    with VllmStandIn(exact(CLIP.pcm), ssl_context=context) as server:
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
        assert rc == 3 and "TLS handshake failed" in err and "--ca-cert" in err and "is the server running" not in err
        rc, out, err = cli("smoke", "--url", server.url, "--fast", "--ca-cert", cert)
        assert rc == 0, err
        rc, _, err = cli("smoke", "--url", server.url, "--fast", "--insecure")
        assert rc == 0, err
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        rc, _, err = cli("smoke", "--url", server.url, "--fast")
        assert rc == 0, err
    rc, _, err = cli("smoke", "--url", "https://127.0.0.1:9", "--ca-cert", cert, "--insecure")
    assert rc == 2 and "exclude each other" in err


@pytest.mark.slow
def test_full_speed_still_answers_the_servers_keepalive_while_a_long_file_converts(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: at --fast the sender never yielded to the event loop, so while the pure-Python resampler converted
    a long file no ping was answered and the server's keepalive dropped the connection ("no close frame")."""
    import functools

    import loopback_kit
    from websockets.asyncio.server import serve

    monkeypatch.setattr(loopback_kit, "serve", functools.partial(serve, ping_interval=0.05, ping_timeout=0.5))
    monkeypatch.setattr(audio, "choose_resampler", lambda wanted=None: "python")
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 2048)  # a short stretch of conversion between two chunks
    write_wav(tmp_path / "long.wav", tone_pcm(6.0, 44100, 2, tones=(300.0,), side=()), 44100, 2)
    with VllmStandIn(lambda pcm: None, VllmBehaviour(transcript="tones")) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast", "--audio", str(tmp_path / "long.wav"))
    assert code == 0, err


@pytest.mark.slow
def test_at_full_speed_a_file_is_converted_before_the_exchange_and_its_deadline(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: `--fast --audio` on a 10-minute WAV with the pure-Python resampler ran past the exchange's 40 s
    deadline (which has no room for converting at full speed). Here converting takes ~0.6 s, the deadline 0.4 s."""
    import time

    monkeypatch.setattr(client.Limits, "defaults", classmethod(lambda cls, done_s=None: cls(2.0, 0.2, 0.2)))
    monkeypatch.setattr(audio, "choose_resampler", lambda wanted=None: "python")
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 2205)  # 20 blocks, each 30 ms slower to convert
    feed = audio._PythonConverter.feed
    monkeypatch.setattr(audio._PythonConverter, "feed", lambda self, frames: (time.sleep(0.03), feed(self, frames))[1])
    write_wav(tmp_path / "a.wav", tone_pcm(1.0, 44100, 2, tones=(300.0,), side=()), 44100, 2)
    with VllmStandIn(lambda pcm: None, VllmBehaviour(transcript="tones")) as server:
        code, _, err = cli("smoke", "--url", server.url, "--fast", "--audio", str(tmp_path / "a.wav"))
    assert code == 0, err
