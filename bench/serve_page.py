#!/usr/bin/env python3
"""The served page in a real browser: its weight, and the time from upload to words.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/serve_page.py --model exp/asr_diffusion_whisper \\
        --inference_model valid.loss.ave_2best.pth --data_dir data/test --max_utts 10 \\
        --output_dir results/serve_page

The server is started as its own process on a free 127.0.0.1 port (or ``--url`` names
one already running); headless Chromium (Debian ``chromium`` + ``chromium-driver``,
driven by Selenium) opens ``/``.  Each mixture's speaker is enrolled once through the
page (its first enrollment file), then each mixture is transcribed twice, alternating
the order: through the page (from the click on Transcribe to the words shown) and
through the API alone (``POST /v1/transcribe`` with the same speaker id, by httpx).
Also measured: the page's weight (HTML + JS + CSS as the browser loaded them) and
every request it made (all must be to the server's own origin).  Written:
``serve_page.json``, ``serve_page.md`` and ``screenshot.png`` (the last result).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlsplit

import httpx
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, wait_healthy  # noqa: E402  (a sibling benchmark's server helpers)

from diffasr.datadir import read_kv  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # tools/install.sh (apt)


def browser(width: int = 1100, height: int = 1500):
    """Headless Chromium, with a fake microphone (a tone) that needs no permission prompt."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    # A path to the driver keeps Selenium Manager from trying to download one.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver, condition, timeout: float = 120.0, what: str = "the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, f"waited {timeout} s for {what}")


def open_page(driver, url: str) -> None:
    driver.get(url + "/")
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true' "
                                                "|| !document.getElementById('error').hidden"), 60, "the page to load")


def error_text(driver) -> Optional[str]:
    box = driver.find_element("id", "error")
    return box.text if box.is_displayed() else None


def enroll(driver, name: str, path: Path) -> str:
    """Enroll through the form; the new speaker's id, or raises with the page's error."""
    def listed(d):  # one script: the list is re-rendered while the page reloads it
        return d.execute_script("return [...document.querySelectorAll('#speakers li')].map(e => e.dataset.id);")

    count = len(listed(driver))
    driver.find_element("id", "enroll-name").clear()
    driver.find_element("id", "enroll-name").send_keys(name)
    driver.find_element("id", "enroll-file").send_keys(str(Path(path).resolve()))
    driver.find_element("id", "enroll-submit").click()
    wait_for(driver, lambda d: len(listed(d)) > count or error_text(d), what="the enrollment")
    if error_text(driver):
        raise RuntimeError(error_text(driver))
    return listed(driver)[-1]


def transcribe(driver, speaker_id: str, path: Path, timeout: float = 300.0) -> dict:
    """Transcribe through the form: the words shown, and the seconds from the click to the
    words on the page as the page timed them (``seconds``; the WebDriver's polling is not in
    it) and as seen from here (``polled_seconds``)."""
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "speaker")).select_by_value(speaker_id)
    driver.find_element("id", "audio-file").send_keys(str(Path(path).resolve()))
    driver.execute_script("document.getElementById('result').hidden = true; "
                          "document.getElementById('words').replaceChildren();")
    started = time.perf_counter()
    driver.find_element("id", "transcribe-submit").click()
    wait_for(driver, lambda d: d.find_element("id", "result").is_displayed() or error_text(d), timeout,
             "the transcript")
    polled = time.perf_counter() - started
    if error_text(driver):
        raise RuntimeError(error_text(driver))
    seconds = driver.execute_script("return window.diffasrPage.timing.wordsShownSeconds")
    words = [dict(word=w.text, confidence=float(w.get_attribute("data-confidence")), band=w.get_attribute("class"))
             for w in driver.find_elements("css selector", "#words .word")]
    return dict(seconds=seconds, polled_seconds=polled, words=words)


def page_requests(driver) -> List[Dict]:
    """Every resource the page loaded (navigation included): URL, type and decoded size."""
    return driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map(e => ({url: e.name, type: e.initiatorType || 'navigation', bytes: e.decodedBodySize}));")


def page_weight(driver, url: str) -> dict:
    requests = page_requests(driver)
    origin = urlsplit(url).netloc
    foreign = [r["url"] for r in requests if urlsplit(r["url"]).scheme in ("http", "https")
               and urlsplit(r["url"]).netloc != origin]
    files = {urlsplit(r["url"]).path: r["bytes"] for r in requests
             if r["type"] in ("navigation", "link", "script", "css")}
    return dict(bytes=sum(files.values()), files=files, foreign_requests=foreign)


def api_seconds(url: str, speaker_id: str, path: Path) -> float:
    started = time.perf_counter()
    answer = httpx.post(f"{url}/v1/transcribe", data=dict(speaker_id=speaker_id),
                        files=dict(audio=(Path(path).name, Path(path).read_bytes(), "audio/wav")), timeout=600)
    seconds = time.perf_counter() - started
    answer.raise_for_status()
    return seconds


def start_server(model: str, inference_model: str, output_dir: Path):
    """``diffasr.bin.serve`` on a free loopback port, with a new speaker store: (process, url)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "diffasr.bin.serve", "--model", model, "--inference_model", inference_model,
         "--port", str(port), "--db", str(Path(tempfile.mkdtemp()) / "speakers.db"), "--log_level", "WARNING"],
        stdout=open(output_dir / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return process, url


def markdown(report: dict) -> str:
    lines = ["# The served page in headless Chromium", "",
             f"`bench/serve_page.py`, model `{report['model']}`, {len(report['utts'])} mixtures of "
             f"`{report['data_dir']}` (mean {report['mean_audio_seconds']:.2f} s)", "",
             "| measure | value |", "|---|---:|",
             f"| page weight (HTML + JS + CSS) | {report['page']['bytes'] / 1024:.1f} kB |",
             f"| requests to other origins | {len(report['page']['foreign_requests'])} |",
             f"| click to words on the page (timed by the page), median | {report['page_seconds_median']:.3f} s |",
             f"| the same seen through WebDriver polling, median | {report['page_polled_seconds_median']:.3f} s |",
             f"| the API call alone, median | {report['api_seconds_median']:.3f} s |",
             f"| page / API | {report['page_over_api']:.2f} |", "",
             "| utt | audio (s) | page (s) | API (s) | words |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {u['utt']} | {u['audio_seconds']:.2f} | {u['page_seconds']:.3f} | {u['api_seconds']:.3f} | "
              f"{u['words']} |" for u in report["utts"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="stage-8 zip or experiment dir (the server is started here)")
    parser.add_argument("--inference_model", default="valid.loss.ave.pth")
    parser.add_argument("--url", help="a running server instead of --model")
    parser.add_argument("--data_dir", type=Path, required=True, help="wav.scp, utt2spk and enroll.scp")
    parser.add_argument("--max_utts", type=int, default=10)
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if (args.model is None) == (args.url is None):
        parser.error("give exactly one of --model and --url")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    wav, utt2spk = read_kv(args.data_dir / "wav.scp"), read_kv(args.data_dir / "utt2spk")
    enroll_scp = read_kv(args.data_dir / "enroll.scp")
    utts = sorted(wav)[: args.max_utts]
    server, url = (None, args.url) if args.url else start_server(args.model, args.inference_model, args.output_dir)
    driver = browser()
    try:
        open_page(driver, url)
        page = page_weight(driver, url)
        speakers, rows = {}, []
        for index, utt in enumerate(utts):
            spk = utt2spk[utt]
            if spk not in speakers:
                speakers[spk] = enroll(driver, spk, Path(enroll_scp[utt]))
            if index % 2:  # alternate which goes first, so neither always meets a warm cache
                api = api_seconds(url, speakers[spk], Path(wav[utt]))
                shown = transcribe(driver, speakers[spk], Path(wav[utt]))
            else:
                shown = transcribe(driver, speakers[spk], Path(wav[utt]))
                api = api_seconds(url, speakers[spk], Path(wav[utt]))
            rows.append(dict(utt=utt, audio_seconds=soundfile.info(wav[utt]).duration, page_seconds=shown["seconds"],
                             page_polled_seconds=shown["polled_seconds"], api_seconds=api,
                             words=len(shown["words"])))
            print(json.dumps(rows[-1]), flush=True)
        driver.save_screenshot(str(args.output_dir / "screenshot.png"))
    finally:
        driver.quit()
        if server is not None:
            server.terminate()
            server.wait(120)
    page_median = statistics.median(r["page_seconds"] for r in rows)
    api_median = statistics.median(r["api_seconds"] for r in rows)
    polled_median = statistics.median(r["page_polled_seconds"] for r in rows)
    report = dict(model=str(args.model or args.url), data_dir=str(args.data_dir), page=page,
                  utts=rows, mean_audio_seconds=statistics.mean(r["audio_seconds"] for r in rows),
                  page_seconds_median=page_median, page_polled_seconds_median=polled_median,
                  api_seconds_median=api_median,
                  page_over_api=page_median / api_median)
    (args.output_dir / "serve_page.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output_dir / "serve_page.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
