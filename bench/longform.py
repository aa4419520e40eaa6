#!/usr/bin/env python3
"""Long-form benchmark: one long recording against the same utterances decoded one by one.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/longform.py --model exp/asr_diffusion_whisper \\
        --inference_model valid.loss.ave_2best.pth --data_dir data/test \\
        --minutes 20 --output_dir exp/longform/asr_diffusion_whisper_test

The recording is the test utterances of one target speaker (the one with most
utterances; mixtures with their interferers when ``data_dir`` is a mixture set),
cycled in order until ``--minutes`` is reached, with pauses of 0.8-1.6 s between
them.  The same enrollment (the first utterance's) serves both decodes.

Figures (each run in its own process so that peak RSS is its own):
  - per-utterance: the utterances decoded at their known boundaries, batched as the
    long-form path batches segments (at most ``--batch_size`` and 40 padded seconds,
    shortest first): WER, RTFx;
  - long-form: ``transcribe_long`` on the recording (silero-vad, segments in
    batches): WER, RTFx (VAD included), peak RSS; and the same on a 1-min recording.
Both WERs are over the whole repeated reference, words as ``words_with_confidence``
writes them (upper case), so the ratio compares like with like.
Written: ``longform.json``, ``longform.md`` (the table, also printed).
"""

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from diffasr.datadir import read_kv
from diffasr.longform import plan_batches

RATE = 16000
MAX_BATCH_SECONDS = 40.0


def build_recording(data_dir: Path, minutes: float, out_wav: Path, seed: int = 0):
    """Cycle one speaker's utterances (with pauses) to ``minutes``; returns the utterance
    order, the enrollment path and the speaker."""
    wavs, texts, utt2spk = (read_kv(data_dir / n) for n in ("wav.scp", "text", "utt2spk"))
    enroll = read_kv(data_dir / "enroll.scp") if (data_dir / "enroll.scp").is_file() else {}
    speakers = sorted(set(utt2spk.values()), key=lambda s: (-list(utt2spk.values()).count(s), s))
    speaker = speakers[0]
    utts = sorted(u for u, s in utt2spk.items() if s == speaker)
    rng = np.random.default_rng(seed)
    order, total = [], 0.0
    with sf.SoundFile(str(out_wav), "w", samplerate=RATE, channels=1, subtype="PCM_16") as out:
        while total < minutes * 60:
            for utt in utts:
                samples, rate = sf.read(wavs[utt], dtype="float32")
                if rate != RATE:
                    raise ValueError(f"{wavs[utt]}: {rate} Hz, the benchmark builds {RATE} Hz recordings")
                pause = np.zeros(int(rng.uniform(0.8, 1.6) * RATE), dtype=np.float32)
                out.write(np.concatenate([samples, pause]))
                order.append(utt)
                total += (len(samples) + len(pause)) / RATE
                if total >= minutes * 60:
                    break
    return order, texts, wavs, enroll.get(utts[0]) or wavs[utts[0]], speaker, total


def load_asr(args):
    from diffasr.api import TargetSpeakerASR, load_decode_config

    return TargetSpeakerASR(args.model, inference_model=args.inference_model,
                            **load_decode_config(args.decode_config))


def words(recognition) -> str:
    from diffasr.scoring.uncertainty import words_with_confidence

    return " ".join(w for w, _ in words_with_confidence(recognition.tokens, recognition.confidences))


def run_per_utterance(args) -> dict:
    """Decode each distinct utterance once at its known boundaries."""
    job = json.loads(Path(args.job).read_text())
    asr = load_asr(args)
    enrolled = asr.enroll(job["enrollment"]) if asr.takes_enrollment else None
    distinct = sorted(set(job["order"]))
    audio = {u: sf.read(job["wavs"][u], dtype="float32")[0] for u in distinct}
    started = time.perf_counter()
    hyps = {}
    # The same batching as the long-form path (count and padded seconds, shortest first).
    for chosen in plan_batches([len(audio[u]) / RATE for u in distinct], args.batch_size, MAX_BATCH_SECONDS):
        batch = [distinct[i] for i in chosen]
        for utt, result in zip(batch, asr.decode([audio[u] for u in batch], enrolled, batch)):
            hyps[utt] = words(result)
    seconds = time.perf_counter() - started
    audio_seconds = sum(len(a) for a in audio.values()) / RATE
    return dict(hyps=hyps, rtfx=audio_seconds / seconds, audio_seconds=audio_seconds,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_long_form(args, wav: str) -> dict:
    job = json.loads(Path(args.job).read_text())
    asr = load_asr(args)
    enrolled = asr.enroll(job["enrollment"]) if asr.takes_enrollment else None
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = asr.transcribe_long(wav, enrolled=enrolled, batch_size=args.batch_size, progress=True,
                                 max_batch_seconds=MAX_BATCH_SECONDS)
    return dict(text=result.text, rtfx=result.rtfx, audio_seconds=result.audio_seconds,
                segments=len(result.segments), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                rss_after_load_mb=rss_loaded)


def child(args, what: str, out: Path) -> dict:
    """Run one measurement in a fresh process (its own peak RSS)."""
    cmd = [sys.executable, __file__, "--child", what, "--job", str(out.parent / "job.json"),
           "--model", args.model, "--inference_model", args.inference_model,
           "--batch_size", str(args.batch_size), "--output_dir", str(args.output_dir)]
    if args.decode_config:
        cmd += ["--decode_config", args.decode_config]
    subprocess.run(cmd + ["--child_out", str(out)], check=True)
    return json.loads(out.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="experiment dir or packed zip")
    parser.add_argument("--inference_model", default="valid.loss.ave.pth")
    parser.add_argument("--decode_config", default=None)
    parser.add_argument("--data_dir", type=Path, default=Path("data/test"))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--short_minutes", type=float, default=1.0, help="the RSS reference recording")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--child", choices=("utterances", "long", "short"), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--child_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.child:
        job = json.loads(Path(args.job).read_text())
        result = (run_per_utterance(args) if args.child == "utterances"
                  else run_long_form(args, job["long_wav" if args.child == "long" else "short_wav"]))
        Path(args.child_out).write_text(json.dumps(result))
        return 0

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    order, texts, wavs, enrollment, speaker, seconds = build_recording(args.data_dir, args.minutes, out / "long.wav")
    short_order, *_ = build_recording(args.data_dir, args.short_minutes, out / "short.wav")
    job = dict(order=order, wavs={u: wavs[u] for u in set(order)}, enrollment=enrollment,
               long_wav=str(out / "long.wav"), short_wav=str(out / "short.wav"))
    (out / "job.json").write_text(json.dumps(job))
    reference = " ".join(texts[u] for u in order)
    (out / "reference.txt").write_text(reference + "\n")

    per_utt = child(args, "utterances", out / "utterances.json")
    long_form = child(args, "long", out / "long.json")
    short = child(args, "short", out / "short.json")
    per_utt_text = " ".join(per_utt["hyps"][u] for u in order)
    (out / "hyp_utterances.txt").write_text(per_utt_text + "\n")
    (out / "hyp_long.txt").write_text(long_form["text"] + "\n")
    wer_utt = 100 * jiwer.wer(reference, per_utt_text)
    wer_long = 100 * jiwer.wer(reference, long_form["text"])
    figures = dict(
        model=args.model, data_dir=str(args.data_dir), speaker=speaker, utterances=len(order),
        distinct_utterances=len(set(order)), recording_minutes=round(seconds / 60, 2),
        segments=long_form["segments"],
        wer_per_utterance=round(wer_utt, 2), wer_long_form=round(wer_long, 2),
        wer_ratio=round(wer_long / max(wer_utt, 1e-9), 3),
        rtfx_per_utterance=round(per_utt["rtfx"], 2), rtfx_long_form=round(long_form["rtfx"], 2),
        rtfx_ratio=round(long_form["rtfx"] / per_utt["rtfx"], 3),
        peak_rss_mb_long=round(long_form["peak_rss_mb"]), peak_rss_mb_short=round(short["peak_rss_mb"]),
        rss_ratio=round(long_form["peak_rss_mb"] / short["peak_rss_mb"], 3),
        short_minutes=args.short_minutes, short_utterances=len(short_order),
    )
    (out / "longform.json").write_text(json.dumps(figures, indent=2) + "\n")
    rows = [
        ("WER per utterance (known boundaries)", f"{wer_utt:.2f} %"),
        (f"WER long-form ({figures['recording_minutes']} min, {figures['segments']} VAD segments)", f"{wer_long:.2f} %"),
        ("WER ratio (target <= 1.1)", f"{figures['wer_ratio']:.3f}"),
        ("RTFx per utterance / long-form", f"{per_utt['rtfx']:.2f} / {long_form['rtfx']:.2f}"),
        ("RTFx ratio (target >= 0.8)", f"{figures['rtfx_ratio']:.3f}"),
        (f"peak RSS {args.short_minutes:g}-min / long recording", f"{short['peak_rss_mb']:.0f} / {long_form['peak_rss_mb']:.0f} MB"),
        ("peak RSS ratio (target <= 1.2)", f"{figures['rss_ratio']:.3f}"),
    ]
    table = [f"Long-form: {args.model} on {args.data_dir} (speaker {speaker}, "
             f"{len(order)} utterances, {len(set(order))} distinct)", "",
             "| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    (out / "longform.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
