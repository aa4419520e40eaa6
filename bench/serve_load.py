#!/usr/bin/env python3
"""Load and soak benchmark of ``diffasr.bin.serve``: N concurrent clients for T seconds.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/serve_load.py --model exp/asr_diffusion_whisper \\
        --inference_model valid.loss.ave_2best.pth --data_dir data/test \\
        --clients 1 8 --seconds 300 --output_dir exp/serve_load

The server is started as its own process on a free 127.0.0.1 port (or ``--url`` names
one already running).  Each distinct speaker of ``data_dir`` is enrolled once
(``POST /v1/speakers``, their first enrollment); then for each client count, the
clients send the mixtures of ``data_dir`` round robin (``POST /v1/transcribe`` with
the target's speaker id) until ``--seconds`` have passed or ``--max_requests`` were
sent.  Each run is bounded in count and time.

Each client count first runs ``--warmup_seconds`` unmeasured at the same load (the
batch sizes it brings set the server's working set), then the measured run.
Reported per client count: WER of the answers (jiwer, against ``text``), requests/s,
audio-seconds/s, the mean batch decoded, p50/p95/p99 latency, errors by status, and
the server's RSS (``/proc/<pid>/status``): idle before the warm-up, at the start of
the measured run, its maximum (sampled every 2 s) and at the end, with the growth
end/start.  Written: ``serve_load.json``,
``serve_load.md`` (the table, also printed), ``latency.png``.
"""

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import httpx
import jiwer
import numpy as np

from diffasr.datadir import read_kv
from diffasr.serve.app import ServeOptions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_rss_mb(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def sample_rss(pid: Optional[int], timeline: list, stop: threading.Event, every: float = 2.0) -> None:
    """(seconds since start, RSS MB) of the server every ``every`` seconds until ``stop``."""
    started = time.monotonic()
    while pid is not None and not stop.is_set():
        timeline.append((time.monotonic() - started, server_rss_mb(pid)))
        stop.wait(every)


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "diffasr.bin.serve", "--model", args.model, "--inference_model",
           args.inference_model, "--port", str(port), "--db", str(args.output_dir / "speakers.db"),
           "--log_level", "WARNING", "--max_batch", str(args.max_batch), "--max_wait_ms", str(args.max_wait_ms),
           "--max_concurrent", str(max(args.clients) + 1)]
    if args.decode_config:
        cmd += ["--decode_config", args.decode_config]
    log = open(args.output_dir / "server.log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: Optional[subprocess.Popen], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it answered")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/health did not answer in {timeout:.0f} s")


async def client_loop(client: httpx.AsyncClient, url: str, items: List[dict], offset: int, stride: int,
                      deadline: float, budget: List[int], records: List[dict], headers: Dict[str, str]):
    index = offset
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        item = items[index % len(items)]
        index += stride
        sent = time.monotonic()
        try:
            response = await client.post(
                f"{url}/v1/transcribe", headers=headers,
                files={"audio": ("mixture.wav", item["audio"], "audio/wav")},
                data={"speaker_id": item["speaker_id"]} if item["speaker_id"] else {},
            )
            status, body = response.status_code, response.json() if response.status_code == 200 else {}
        except httpx.HTTPError as e:
            status, body = f"transport:{type(e).__name__}", {}
        records.append(dict(utt=item["utt"], sent=sent, latency=time.monotonic() - sent, status=status,
                            audio_seconds=item["seconds"], text=body.get("text")))


async def run_load(url: str, items: List[dict], clients: int, seconds: float, max_requests: int,
                   headers: Dict[str, str]) -> List[dict]:
    records: List[dict] = []
    budget = [max_requests]
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:
        await asyncio.gather(*(client_loop(client, url, items, k, clients, deadline, budget, records, headers)
                               for k in range(clients)))
    return records


def summarise(records: List[dict], texts: Dict[str, str], clients: int, wall: float,
              rss_start: Optional[float], rss_end: Optional[float]) -> dict:
    ok = [r for r in records if r["status"] == 200]
    latencies = np.array([r["latency"] for r in ok]) if ok else np.array([np.nan])
    refs = [texts[r["utt"]] for r in ok]
    hyps = [r["text"] or "" for r in ok]
    return dict(
        clients=clients, requests=len(records), ok=len(ok),
        errors={str(k): v for k, v in Counter(r["status"] for r in records if r["status"] != 200).items()},
        server_errors=sum(1 for r in records if isinstance(r["status"], int) and r["status"] >= 500),
        wer=round(100 * jiwer.wer(refs, hyps), 2) if ok else None,
        wall_seconds=round(wall, 1), requests_per_second=round(len(ok) / wall, 3),
        audio_seconds_per_second=round(sum(r["audio_seconds"] for r in ok) / wall, 3),
        p50=round(float(np.percentile(latencies, 50)), 3), p95=round(float(np.percentile(latencies, 95)), 3),
        p99=round(float(np.percentile(latencies, 99)), 3),
        rss_start_mb=None if rss_start is None else round(rss_start, 1),
        rss_end_mb=None if rss_end is None else round(rss_end, 1),
        rss_growth_percent=None if rss_start is None else round(100 * (rss_end / rss_start - 1), 2),
    )


def plot(runs: Dict[int, List[dict]], timelines: Dict[int, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (over_time, histogram, memory) = plt.subplots(1, 3, figsize=(15, 4))
    for clients, records in runs.items():
        ok = [r for r in records if r["status"] == 200]
        if not ok:
            continue
        t0 = min(r["sent"] for r in ok)
        over_time.plot([r["sent"] - t0 for r in ok], [r["latency"] for r in ok], ".", ms=3,
                       label=f"{clients} client{'s' if clients > 1 else ''}")
        histogram.hist([r["latency"] for r in ok], bins=30, alpha=0.6, label=f"{clients} clients")
    over_time.set(xlabel="request sent (s)", ylabel="latency (s)", title="latency over the run")
    histogram.set(xlabel="latency (s)", ylabel="requests", title="latency distribution")
    for clients, timeline in timelines.items():
        if timeline:
            memory.plot([t for t, _ in timeline], [r for _, r in timeline], label=f"{clients} clients")
    memory.set(xlabel="time in the measured run (s)", ylabel="server RSS (MB)", title="server memory")
    for axes in (over_time, histogram, memory):
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="experiment dir or packed zip (to start a server)")
    parser.add_argument("--inference_model", default="valid.loss.ave.pth")
    parser.add_argument("--decode_config", default=None)
    parser.add_argument("--url", default=None, help="use this running server instead of starting one")
    parser.add_argument("--data_dir", type=Path, default=Path("data/test"))
    parser.add_argument("--max_utts", type=int, default=100, help="mixtures sent round robin")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=60.0, help="per client count")
    parser.add_argument("--max_requests", type=int, default=10000, help="per client count")
    parser.add_argument("--warmup_seconds", type=float, default=20.0,
                        help="load at each client count before its measured run (RSS baseline after it)")
    parser.add_argument("--max_batch", type=int, default=ServeOptions.max_batch)
    parser.add_argument("--max_wait_ms", type=float, default=ServeOptions.max_wait_ms)
    parser.add_argument("--api_key", default=None)
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.url and not args.model:
        parser.error("give --model (a server is started) or --url")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}

    process, url = None, args.url
    if url is None:
        url = f"http://127.0.0.1:{free_port()}"
        process = start_server(args, int(url.rsplit(":", 1)[1]))
    try:
        wait_healthy(url, process)
        takes_enrollment = httpx.get(f"{url}/v1/models", headers=headers).json()["data"][0]["takes_enrollment"]
        wavs, texts, utt2spk = (read_kv(args.data_dir / n) for n in ("wav.scp", "text", "utt2spk"))
        enroll = read_kv(args.data_dir / "enroll.scp") if takes_enrollment else {}
        utts = sorted(wavs)[: args.max_utts]
        speaker_ids = {}
        for utt in utts:
            speaker = utt2spk[utt]
            if takes_enrollment and speaker not in speaker_ids:
                with open(enroll[utt], "rb") as f:
                    answer = httpx.post(f"{url}/v1/speakers", headers=headers, timeout=120,
                                        files={"audio": ("enroll.wav", f.read(), "audio/wav")}, data={"name": speaker})
                answer.raise_for_status()
                speaker_ids[speaker] = answer.json()["id"]
        import soundfile as sf

        items = [dict(utt=u, audio=Path(wavs[u]).read_bytes(), speaker_id=speaker_ids.get(utt2spk[u]),
                      seconds=sf.info(wavs[u]).duration) for u in utts]
        runs, rows, timelines = {}, [], {}
        pid = process.pid if process else None
        for clients in args.clients:
            rss_idle = server_rss_mb(pid)
            if args.warmup_seconds > 0:
                asyncio.run(run_load(url, items, clients, args.warmup_seconds, args.max_requests, headers))
            before = httpx.get(f"{url}/health").json()
            rss_start = server_rss_mb(pid)
            timeline, stop = [], threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(pid, timeline, stop), daemon=True)
            sampler.start()
            started = time.monotonic()
            records = asyncio.run(run_load(url, items, clients, args.seconds, args.max_requests, headers))
            wall = time.monotonic() - started
            stop.set()
            sampler.join()
            after = httpx.get(f"{url}/health").json()
            runs[clients], timelines[clients] = records, timeline
            row = summarise(records, texts, clients, wall, rss_start, server_rss_mb(pid))
            row["rss_idle_mb"] = None if rss_idle is None else round(rss_idle, 1)
            row["rss_max_mb"] = round(max(r for _, r in timeline), 1) if timeline and pid else None
            batches = after["batches"] - before["batches"]
            row["mean_batch"] = round((after["segments_decoded"] - before["segments_decoded"]) / batches, 2) \
                if batches else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if process is not None:
            process.terminate()
            process.wait(120)
    result = dict(model=args.model or args.url, data_dir=str(args.data_dir), seconds=args.seconds,
                  max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, runs=rows,
                  # uvicorn re-raises SIGTERM after a graceful shutdown: -15 is a clean exit
                  server_exit_code=None if process is None else process.returncode)
    if len(rows) > 1 and rows[0]["audio_seconds_per_second"]:
        result["throughput_ratio"] = round(rows[-1]["audio_seconds_per_second"] / rows[0]["audio_seconds_per_second"], 3)
    (args.output_dir / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, timelines, args.output_dir / "latency.png")
    lines = [f"Serve load: {result['model']} on {args.data_dir}, {args.seconds:g} s per client count, "
             f"after {args.warmup_seconds:g} s of warm-up at the same load; max_batch {args.max_batch}, "
             f"max_wait {args.max_wait_ms:g} ms", "",
             "| clients | requests | WER % | 5xx | other errors | req/s | audio s/s | mean batch | p50 s | p95 s | p99 s "
             "| RSS idle MB | RSS start MB | RSS max MB | RSS end MB | RSS growth % (end/start) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        others = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(f"| {r['clients']} | {r['requests']} | {r['wer']} | {r['server_errors']} | {others} | "
                     f"{r['requests_per_second']} | {r['audio_seconds_per_second']} | {r['mean_batch']} | {r['p50']} | "
                     f"{r['p95']} | {r['p99']} | {r['rss_idle_mb']} | {r['rss_start_mb']} | {r['rss_max_mb']} | "
                     f"{r['rss_end_mb']} | {r['rss_growth_percent']} |")
    if "throughput_ratio" in result:
        lines += ["", f"Throughput (audio s/s) at {rows[-1]['clients']} clients / at {rows[0]['clients']}: "
                      f"{result['throughput_ratio']}"]
    (args.output_dir / "serve_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
