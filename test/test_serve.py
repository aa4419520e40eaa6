"""The HTTP service as a user meets it: a real server process on a loopback port,
the memorised model, enrolment that survives a restart, and every bad input answered
with a clear 4xx while the server stays healthy."""

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from conftest import REPO, TARGET_TEXT

RATE = 16000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, db: Path, log: Path, env=None, **options):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "diffasr.bin.serve", "--model", str(model), "--port", str(self.port),
               "--db", str(db), "--log_level", "INFO"]
        for key, value in options.items():
            cmd += [f"--{key}", str(value)]
        self.log = log
        self.process = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})}, cwd=REPO)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise TimeoutError(log.read_text())

    def stop(self) -> bool:
        """SIGTERM; True when the server shut down gracefully (uvicorn re-raises the
        signal after its shutdown, so the exit status is -SIGTERM)."""
        self.process.send_signal(signal.SIGTERM)
        return self.graceful(self.process.wait(120))

    def graceful(self, status: int) -> bool:
        log = self.log.read_text()
        return status in (0, -signal.SIGTERM) and "Application shutdown complete" in log \
            and "stopped: speakers are in" in log

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=10).json()["status"] == "ok"


def wav_bytes(samples, rate=RATE, subtype="PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def audio(packed):
    _, mixture, enroll, _ = packed
    samples, _ = soundfile.read(mixture, dtype="float32")
    enrollment, _ = soundfile.read(enroll, dtype="float32")
    pause = np.zeros(RATE, np.float32)
    long = np.concatenate([samples, pause, samples, 1.5 * pause, samples, pause, samples, pause])
    return dict(mixture=wav_bytes(samples), enroll=wav_bytes(enrollment), samples=samples,
                enrollment=enrollment, long=wav_bytes(long))


@pytest.fixture(scope="module")
def server(packed, tmp_path_factory):
    zip_path = packed[0]
    root = tmp_path_factory.mktemp("serve")
    server = Server(zip_path, root / "speakers.db", root / "server.log",
                    max_upload_mb=1, max_audio_seconds=20)
    server.root, server.zip = root, zip_path
    yield server
    if server.process.poll() is None:
        server.stop()


def transcribe(server, audio_bytes, filename="mixture.wav", **data):
    files = {"audio": (filename, audio_bytes, "audio/wav")}
    if "enrollment" in data:
        files["enrollment"] = ("enroll.wav", data.pop("enrollment"), "audio/wav")
    return httpx.post(f"{server.url}/v1/transcribe", files=files, data=data, timeout=120)


def enroll(server, audio_bytes, name="alice"):
    return httpx.post(f"{server.url}/v1/speakers", files={"audio": ("e.wav", audio_bytes, "audio/wav")},
                      data={"name": name}, timeout=120)


def test_enroll_transcribe_long_form_and_restart(server, audio):
    answer = enroll(server, audio["enroll"])
    assert answer.status_code == 200, answer.text
    speaker = answer.json()["id"]
    listed = httpx.get(f"{server.url}/v1/speakers").json()["data"]
    assert [s["id"] for s in listed if s["name"] == "alice"] == [speaker]

    by_id = transcribe(server, audio["mixture"], speaker_id=speaker)
    assert by_id.status_code == 200, by_id.text
    body = by_id.json()
    assert body["text"] == TARGET_TEXT and [w["word"] for w in body["words"]] == TARGET_TEXT.split()
    assert all(0 < w["confidence"] <= 1 for w in body["words"]) and body["rtfx"] > 0
    by_audio = transcribe(server, audio["mixture"], enrollment=audio["enroll"], steps=4)
    assert by_audio.json()["text"] == TARGET_TEXT and by_audio.json()["options"] == {"steps": 4}

    # Past the model's 6 s: silero-vad segments, words at absolute times.
    long = transcribe(server, audio["long"], speaker_id=speaker).json()
    assert long["text"] == " ".join([TARGET_TEXT] * 4)
    assert len(long["segments"]) == 4 and any("silero-vad" in n for n in long["notes"])
    starts = [w["start"] for w in long["words"]]
    assert starts == sorted(starts) and starts[-1] > 6.0

    models = httpx.get(f"{server.url}/v1/models").json()["data"][0]
    assert models["takes_enrollment"] and models["sample_rate"] == RATE and "diffusion" in models["modes"]

    # Restart on the same database: the speaker is still there and still works.
    assert server.stop()
    restarted = Server(server.zip, server.root / "speakers.db", server.root / "server2.log",
                       max_upload_mb=1, max_audio_seconds=20)
    server.process, server.url = restarted.process, restarted.url
    assert speaker in [s["id"] for s in httpx.get(f"{server.url}/v1/speakers").json()["data"]]
    assert transcribe(server, audio["mixture"], speaker_id=speaker).json()["text"] == TARGET_TEXT
    other = enroll(server, audio["enroll"], "bob").json()["id"]
    assert httpx.delete(f"{server.url}/v1/speakers/{other}").json() == {"id": other, "deleted": True}
    assert httpx.delete(f"{server.url}/v1/speakers/{other}").status_code == 404


def _stereo(a):
    return wav_bytes(np.stack([a["samples"], a["samples"]], axis=1))


def _8k(a):
    return wav_bytes(a["samples"][::2], 8000)


def _nan(a):
    bad = a["samples"].copy()
    bad[100] = np.nan
    return wav_bytes(bad, subtype="FLOAT")


# (case, upload, form fields, status, words in the message)
BAD_INPUTS = [
    ("not audio", lambda a: b"<html>hello</html>" * 50, {}, 415, "not audio"),
    ("truncated WAV", lambda a: a["mixture"][:1000], {}, 400, "truncated WAV"),
    ("0-byte upload", lambda a: b"", {}, 400, "0 bytes"),
    ("NaN samples", _nan, {}, 400, "NaN/inf"),
    ("unknown speaker", lambda a: a["mixture"], {"speaker_id": "0123abc"}, 404, "no enrolled speaker 0123abc"),
    ("steps 0", lambda a: a["mixture"], {"steps": "0"}, 422, "steps must be between 1"),
    ("blocks not dividing the canvas", lambda a: a["mixture"], {"block_length": "5"}, 422,
     "does not divide the canvas length 16"),
    ("unknown mode", lambda a: a["mixture"], {"mode": "beam"}, 422, "mode must be one of"),
    ("upload over the limit", lambda a: b"\0" * (2 * 2 ** 20), {}, 413, "over the server's limit of 1 MB"),
    ("audio over the duration limit", lambda a: wav_bytes(np.zeros(25 * RATE, np.float32)), {}, 413,
     "over the server's limit of 20 s"),
    ("no enrollment at all", lambda a: a["mixture"], {"enrollment": None}, 400, "exactly one of speaker_id"),
    ("unknown form field", lambda a: a["mixture"], {"beam_size": "100000"}, 422,
     "unknown form field 'beam_size'; this endpoint accepts audio, speaker_id, enrollment, mode, steps"),
]


@pytest.mark.parametrize("case,make,fields,status,message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx_and_the_server_stays_healthy(server, audio, case, make, fields, status, message):
    fields = dict(fields)
    if "speaker_id" not in fields and fields.pop("enrollment", "given") is not None:
        fields["enrollment"] = audio["enroll"]
    answer = transcribe(server, make(audio), **fields)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert server.healthy()
    assert transcribe(server, audio["mixture"], enrollment=audio["enroll"]).json()["text"] == TARGET_TEXT


def test_resampled_and_downmixed_uploads_say_so(server, audio):
    for make, note in ((_stereo, "down-mixed to mono"), (_8k, "resampled from 8000 Hz")):
        answer = transcribe(server, make(audio), enrollment=audio["enroll"])
        assert answer.status_code == 200, answer.text
        assert any(note in n for n in answer.json()["notes"])
    assert transcribe(server, _stereo(audio), enrollment=audio["enroll"]).json()["text"] == TARGET_TEXT


def test_short_enrollment_and_path_like_filename(server, audio, tmp_path):
    short = wav_bytes(audio["enrollment"][: RATE // 2])
    answer = enroll(server, short)
    assert answer.status_code == 400 and "at least 1 s" in answer.json()["detail"]
    answer = httpx.post(f"{server.url}/v1/speakers", files={"audio": ("e.wav", audio["enroll"], "audio/wav")},
                        data={"name": "bob", "nmae": "bob"}, timeout=120)
    assert answer.status_code == 422 and "unknown form field 'nmae'; this endpoint accepts audio, name" in answer.text
    assert transcribe(server, audio["mixture"], enrollment=short).status_code == 400
    # A file name is never a path: nothing is written where it points.
    target = tmp_path / "planted.wav"
    answer = transcribe(server, audio["mixture"], filename=str(target), enrollment=audio["enroll"])
    assert answer.status_code == 200 and answer.json()["text"] == TARGET_TEXT
    answer = transcribe(server, audio["mixture"], filename="../../../../tmp/x/../evil.wav", enrollment=audio["enroll"])
    assert answer.status_code == 200
    assert not target.exists() and not Path("/tmp/evil.wav").exists()


def test_identical_requests_interleaved_with_others_get_identical_answers(packed, audio, tmp_path):
    """A server whose default decode draws its words (random remasking, temperature 5):
    each request's options go down with its call and its draws come from generators
    seeded afresh, so a request repeated amid other requests (other options, decoded in
    between or at the same time) gets the same answer; /v1/models keeps the defaults."""
    config = tmp_path / "decode.yaml"
    config.write_text("steps: 8\nremasking: random\ntemperature: 5.0\n")
    server = Server(packed[0], tmp_path / "speakers.db", tmp_path / "server.log", decode_config=config)
    try:
        def answer(**fields):
            reply = transcribe(server, audio["mixture"], enrollment=audio["enroll"], **fields)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            return {k: v for k, v in body.items() if k not in ("processing_seconds", "rtfx")}

        first = answer()
        others = [dict(steps=4), dict(mode="ctc_greedy"), dict(block_length=8), dict(steps=2)]
        assert answer(**others[0])["text"] != first["text"]  # other options, other draws
        results = {}

        def send(name, fields):
            results[name] = answer(**fields)

        threads = [threading.Thread(target=send, args=(i, fields)) for i, fields in enumerate(others)]
        threads.insert(2, threading.Thread(target=send, args=("again", {})))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert sorted(results, key=str) == [0, 1, 2, 3, "again"]
        assert results["again"] == first and answer() == first
        assert first["options"] == {} and first["text"] != TARGET_TEXT  # drawn, not the memorised words
        assert results[1]["text"] == TARGET_TEXT and results[1]["options"] == {"decode_mode": "ctc_greedy"}
        defaults = httpx.get(f"{server.url}/v1/models").json()["data"][0]["decode_defaults"]
        assert (defaults["mode"], defaults["steps"], defaults["remasking"], defaults["temperature"]) == \
            ("diffusion", 8, "random", 5.0)
        assert "canvas_decode_margin" in defaults and "canvas_margin" not in defaults  # the decode option's name
    finally:
        server.stop()


@pytest.mark.integration
def test_api_key_concurrency_limit_and_shutdown(packed, audio, tmp_path):
    server = Server(packed[0], tmp_path / "speakers.db", tmp_path / "server.log",
                    env={"DIFFASR_API_KEY": "s3cret"}, max_concurrent=1)
    try:
        assert httpx.get(f"{server.url}/v1/speakers").status_code == 401
        assert httpx.get(f"{server.url}/v1/speakers", headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.get(f"{server.url}/v1/speakers", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(f"{server.url}/health").status_code == 200  # liveness needs no key

        # A request whose upload trickles in (~1.2 s) is in flight: a second one gets 429;
        # SIGTERM then lets the first finish while new connections are turned away.
        request = httpx.Request("POST", f"{server.url}/v1/transcribe", headers={"X-API-Key": "s3cret"},
                                files={"audio": ("m.wav", audio["mixture"]), "enrollment": ("e.wav", audio["enroll"])})
        body, headers = request.read(), dict(request.headers)
        assert int(headers["content-length"]) == len(body)

        def trickle():
            for start in range(0, len(body), len(body) // 12 + 1):
                yield body[start:start + len(body) // 12 + 1]
                time.sleep(0.1)

        results = {}

        def first():
            results["first"] = httpx.post(f"{server.url}/v1/transcribe", content=trickle(), headers=headers,
                                          timeout=120)

        thread = threading.Thread(target=first)
        thread.start()
        time.sleep(0.4)
        busy = httpx.post(f"{server.url}/v1/transcribe", headers={"X-API-Key": "s3cret"}, timeout=120,
                          files={"audio": ("m.wav", audio["mixture"]), "enrollment": ("e.wav", audio["enroll"])})
        assert busy.status_code == 429 and "retry later" in busy.json()["detail"]
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(httpx.TransportError):  # the listening socket is closed
            httpx.get(f"{server.url}/health", timeout=5)
        thread.join(60)
        assert results["first"].status_code == 200 and results["first"].json()["text"] == TARGET_TEXT
        assert server.graceful(server.process.wait(60))
    finally:
        if server.process.poll() is None:
            server.process.kill()


@pytest.mark.integration
def test_load_script_runs_briefly(packed, tmp_path):
    """bench/serve_load.py against a tiny data dir: each run sends exactly --max_requests
    (the time limit is far), every one answered with the memorised words, and the figures
    agree with each other and with the table."""
    _, mixture, enroll, _ = packed
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"u1 {mixture}\nu2 {mixture}\n")
    (data / "text").write_text(f"u1 {TARGET_TEXT}\nu2 {TARGET_TEXT}\n")
    (data / "utt2spk").write_text("u1 spk0\nu2 spk0\n")
    (data / "enroll.scp").write_text(f"u1 {enroll}\nu2 {enroll}\n")
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/serve_load.py"), "--model", str(packed[0]), "--data_dir", str(data),
         "--clients", "1", "2", "--seconds", "300", "--warmup_seconds", "1", "--max_requests", "6",
         "--output_dir", str(tmp_path / "load")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    result = json.loads((tmp_path / "load/serve_load.json").read_text())
    seconds = soundfile.info(str(mixture)).duration
    assert [r["clients"] for r in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert (run["requests"], run["ok"], run["errors"], run["server_errors"], run["wer"]) == (6, 6, {}, 0, 0.0)
        wall = run["wall_seconds"]  # rounded to 0.1 s
        assert 6 / (wall + 0.05) - 1e-3 <= run["requests_per_second"] <= 6 / max(wall - 0.05, 1e-3) + 1e-3
        # each request is one mixture: audio seconds per second = requests per second x its length
        assert run["audio_seconds_per_second"] == pytest.approx(run["requests_per_second"] * seconds, rel=0.01)
        assert run["p50"] > 0 and run["rss_start_mb"] > 100  # the model is loaded
    # One client never has company: every batch is its one segment.  Two batch at most two.
    assert result["runs"][0]["mean_batch"] == 1.0 and 1.0 <= result["runs"][1]["mean_batch"] <= 2.0
    assert result["throughput_ratio"] == pytest.approx(
        result["runs"][1]["audio_seconds_per_second"] / result["runs"][0]["audio_seconds_per_second"], abs=1e-3)
    assert result["server_exit_code"] in (0, -15)
    assert (tmp_path / "load/latency.png").stat().st_size > 10000
    table = (tmp_path / "load/serve_load.md").read_text()
    assert "| 1 | 6 | 0.0 | 0 | 0 | " in table and "| 2 | 6 | 0.0 | 0 | 0 | " in table


def test_batcher_groups_by_options_across_requests_and_drains_on_stop():
    from diffasr.serve.batcher import Batcher, ShuttingDown

    calls = []

    def decode(segments, enrollments, options):
        calls.append((len(segments), dict(options), list(enrollments)))
        time.sleep(0.05)
        return [f"{e}:{len(s)}:{options.get('steps')}" for s, e in zip(segments, enrollments)]

    coming = {"yes": True}
    batcher = Batcher(decode, max_batch=3, max_wait=0.3, others_coming=lambda: coming["yes"])
    # Two "requests" (speakers a and b) with the same options, one with other options.
    first = batcher.submit([np.zeros(1), np.zeros(2)], "a", {"steps": 8})
    second = batcher.submit([np.zeros(3), np.zeros(4)], "b", {"steps": 8})
    other = batcher.submit([np.zeros(5)], "c", {"steps": 4})
    assert [f.result(10) for f in first + second + other] == ["a:1:8", "a:2:8", "b:3:8", "b:4:8", "c:5:4"]
    # The first batch took the 3 it could of steps 8 across both requests; options never mix.
    assert calls[0][:2] == (3, {"steps": 8}) and calls[0][2] == ["a", "a", "b"]
    assert sorted(c[0] for c in calls) == [1, 1, 3] and {c[1]["steps"] for c in calls if c[0] == 1} == {4, 8}
    assert batcher.batch_sizes == [c[0] for c in calls]

    # A lone request is not held back by max_wait.
    coming["yes"] = False
    started = time.monotonic()
    assert batcher.submit([np.zeros(6)], "d", {})[0].result(10) == "d:6:None"
    assert time.monotonic() - started < 0.25
    # stop() finishes what is queued and then refuses new work.
    queued = batcher.submit([np.zeros(7)] * 4, "e", {})
    batcher.stop(10)
    assert all(f.done() and f.result() == "e:7:None" for f in queued)
    with pytest.raises(ShuttingDown):
        batcher.submit([np.zeros(1)], "f", {})
