"""The served page in headless Chromium (Debian chromium + chromium-driver, Selenium),
against a real server with the memorised tiny model: enroll, transcribe, read the words,
and every bad input shown as a sentence while nothing enrolled is lost."""

import base64
import importlib.util
import json
import socket
import time

import httpx
import numpy as np
import pytest

from conftest import REPO, TARGET_TEXT
from test_serve import RATE, Server

pytestmark = pytest.mark.integration


def _bench():
    spec = importlib.util.spec_from_file_location("serve_page", REPO / "bench/serve_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(scope="module")
def files(packed, tmp_path_factory):
    import soundfile

    root = tmp_path_factory.mktemp("page_files")
    _, mixture, enroll, _ = packed
    samples, _ = soundfile.read(mixture, dtype="float32")
    paths = dict(mixture=mixture, enroll=enroll, notes=root / "notes.txt", silent=root / "silent.wav",
                 hifi=root / "mixture_44k.wav", overlong=root / "overlong.wav", big=root / "big.wav")
    paths["notes"].write_text("not audio at all\n")
    soundfile.write(paths["silent"], np.zeros(3 * RATE, np.float32), RATE)
    from scipy.signal import resample_poly

    soundfile.write(paths["hifi"], resample_poly(samples, 441, 160).astype(np.float32), 44100)
    soundfile.write(paths["overlong"], np.tile(samples, int(25 * RATE / len(samples)) + 1), RATE)  # > 20 s, < 1 MB
    soundfile.write(paths["big"], np.tile(samples, int(40 * RATE / len(samples)) + 1), RATE)  # > 1 MB
    return paths


@pytest.fixture(scope="module")
def server(packed, tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    server = Server(packed[0], root / "speakers.db", root / "server.log", max_upload_mb=1, max_audio_seconds=20,
                    max_concurrent=1)
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def driver():
    driver = bench.browser()
    yield driver
    driver.quit()


@pytest.fixture
def page(driver, server):
    bench.open_page(driver, server.url)
    return driver


def speaker_names(driver):
    # read in one script: the list is re-rendered while the page reloads it
    return driver.execute_script(
        "return [...document.querySelectorAll('#speakers li .name')].map(e => e.textContent);")


def shown_error(driver, sentence_part):
    bench.wait_for(driver, lambda d: bench.error_text(d), 60, "an error sentence")
    text = bench.error_text(driver)
    assert sentence_part in text, text
    assert "Traceback" not in text and "File \"" not in text
    return text


def blob_text(driver, link_id):
    """The text behind a download link (a blob: URL made by the page)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch(document.getElementById('{link_id}').href).then(r => r.text()).then(done, e => done('failed: ' + e));")


def test_enroll_transcribe_and_read_the_words(page, server, files):
    weight = bench.page_weight(page, server.url)
    assert weight["foreign_requests"] == []
    assert set(weight["files"]) == {"/", "/static/page.js", "/static/page.css"}
    assert 0 < weight["bytes"] <= 200 * 1024
    speaker = bench.enroll(page, "alice", files["enroll"])
    assert "alice" in speaker_names(page)
    assert speaker in [s["id"] for s in httpx.get(f"{server.url}/v1/speakers").json()["data"]]
    shown = bench.transcribe(page, speaker, files["mixture"])
    assert [w["word"] for w in shown["words"]] == TARGET_TEXT.split()
    # each word's colour band follows its confidence and the bands /v1/models declares
    bands = httpx.get(f"{server.url}/v1/models").json()["data"][0]["confidence"]
    for w in shown["words"]:
        expected = "conf-high" if w["confidence"] >= bands["high"] else \
            "conf-low" if w["confidence"] < bands["low"] else "conf-mid"
        assert expected in w["band"].split()
    first = page.find_element("css selector", "#words .word")
    assert "confidence" in first.get_attribute("aria-label") and " s," in first.get_attribute("title")
    assert page.find_element("id", "not-found").is_displayed() is False
    # the downloads hold the same words
    answer = json.loads(blob_text(page, "download-json"))
    assert answer["text"] == TARGET_TEXT
    ctm = blob_text(page, "download-ctm").splitlines()
    assert [line.split()[4] for line in ctm] == TARGET_TEXT.split() and ctm[0].split()[1] == "1"
    assert float(ctm[0].split()[2]) == pytest.approx(answer["words"][0]["start"], abs=0.01)
    srt = blob_text(page, "download-srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt and TARGET_TEXT in srt
    # the timeline was drawn: the canvas holds more than one colour
    pixels = page.execute_script(
        "const c = document.getElementById('timeline');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((v, i) => i % 4 === 0));")
    assert len(set(pixels)) > 3
    png = base64.b64decode(page.get_screenshot_as_base64())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_files_are_sentences_and_nothing_enrolled_is_lost(page, server, files):
    bench.enroll(page, "bob", files["enroll"])
    before = speaker_names(page)
    assert "bob" in before
    with pytest.raises(RuntimeError, match="not audio that libsndfile reads"):
        bench.enroll(page, "notes", files["notes"])
    with pytest.raises(RuntimeError, match="silent"):
        bench.enroll(page, "nobody", files["silent"])
    bob = page.execute_script("return [...document.querySelectorAll('#speakers li')]"
                              ".find(e => e.querySelector('.name').textContent === 'bob').dataset.id;")
    with pytest.raises(RuntimeError, match=r"Too large: the recording upload.* lasts 2[0-9]\.\d s, over the server's limit of 20 s"):
        bench.transcribe(page, bob, files["overlong"])
    with pytest.raises(RuntimeError, match=r"Too large: the upload is \d\.\d MB, over the server's limit of 1 MB"):
        bench.transcribe(page, bob, files["big"])
    # a 44.1 kHz recording is resampled by the server, and the page says so
    shown = bench.transcribe(page, bob, files["hifi"])
    assert len(shown["words"]) > 0
    notes = [e.text for e in page.find_elements("css selector", "#notes li")]
    assert any("resampled from 44100 Hz to 16000 Hz" in n for n in notes), notes
    assert speaker_names(page) == before
    bench.open_page(page, server.url)  # and after a reload
    assert speaker_names(page) == before


def test_a_server_at_capacity_is_a_sentence(page, server, files):
    """max_concurrent=1: while a slow upload holds the only place, the page's request gets 429."""
    speaker = bench.enroll(page, "carol", files["enroll"])
    from urllib.parse import urlsplit

    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    holder = socket.create_connection((host, port))  # headers and a first byte of a body never finished
    holder.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   b"Content-Length: 100000\r\n\r\n-")
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/health").json()["in_flight"] < 1:
            assert time.monotonic() < deadline, "the slow upload never arrived"
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="The server is busy: 1 requests are already being served"):
            bench.transcribe(page, speaker, files["mixture"])
    finally:
        holder.close()
    assert "carol" in speaker_names(page)


def test_a_name_is_shown_as_text(page, files):
    name = "<img src=x onerror=alert(1)>"
    speaker = bench.enroll(page, name, files["enroll"])
    assert name in speaker_names(page)
    assert page.find_elements("css selector", "#speakers img, #speaker img") == []
    option = page.find_element("css selector", f"#speaker option[value='{speaker}']")
    assert option.text == name
    assert page.execute_script("return document.querySelectorAll('img').length") == 0


def test_every_control_is_labelled_and_reached_by_tab(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    controls = page.execute_script(
        "return [...document.querySelectorAll('input, select, button, a[href]')]"
        ".filter(e => e.offsetParent !== null).map(e => e.id);")
    unlabelled = page.execute_script(
        "return [...document.querySelectorAll('input, select')].filter(e => e.offsetParent !== null"
        " && !document.querySelector(`label[for='${e.id}']`) && !e.getAttribute('aria-label')).map(e => e.id);")
    assert unlabelled == []
    page.find_element("tag name", "body").click()
    reached = set()
    for _ in range(3 * len(controls)):
        ActionChains(page).send_keys(Keys.TAB).perform()  # to the page, not to a file input
        reached.add(page.switch_to.active_element.get_attribute("id"))
    assert set(controls) - {""} <= reached


def test_a_recording_in_the_browser_becomes_a_16_khz_wav_and_enrolls(page):
    """The fake microphone (Chromium's test tone): record, stop, enroll the recording."""
    page.find_element("id", "enroll-name").send_keys("mic")
    page.find_element("id", "enroll-record").click()
    time.sleep(2.5)
    page.find_element("id", "enroll-record").click()
    bench.wait_for(page, lambda d: "Recorded" in d.find_element("id", "enroll-status").text or bench.error_text(d),
                   30, "the recording")
    assert bench.error_text(page) is None
    header = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.diffasrPage.recorded['enroll-file'].arrayBuffer().then(b => done(Array.from(new Uint8Array(b, 0, 44))));")
    header = bytes(header)
    assert header[:4] == b"RIFF" and header[8:12] == b"WAVE"
    assert int.from_bytes(header[24:28], "little") == RATE and int.from_bytes(header[22:24], "little") == 1
    count = len(speaker_names(page))
    page.find_element("id", "enroll-submit").click()
    bench.wait_for(page, lambda d: len(speaker_names(d)) > count or bench.error_text(d), 60, "the enrollment")
    assert bench.error_text(page) is None and "mic" in speaker_names(page)


def test_the_page_benchmark_writes_its_figures(server, packed, tmp_path):
    """bench/serve_page.py against the running server, on a one-mixture data dir."""
    _, mixture, enroll, _ = packed
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"spk1-a {mixture}\n")
    (data / "utt2spk").write_text("spk1-a spk1\n")
    (data / "enroll.scp").write_text(f"spk1-a {enroll}\n")
    bench.main(["--url", server.url, "--data_dir", str(data), "--max_utts", "1", "--output_dir", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out/serve_page.json").read_text())
    (row,) = report["utts"]
    assert row["words"] == len(TARGET_TEXT.split()) and row["page_seconds"] > 0 and row["api_seconds"] > 0
    assert report["page_over_api"] == pytest.approx(row["page_seconds"] / row["api_seconds"])
    # the page's own clock runs inside the interval the WebDriver saw (seconds, not ms)
    assert 0 < row["page_seconds"] <= row["page_polled_seconds"]
    assert report["page"]["foreign_requests"] == [] and report["page"]["bytes"] > 0
    assert (tmp_path / "out/screenshot.png").read_bytes()[:4] == b"\x89PNG"
