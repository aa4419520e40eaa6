"""Scoring of one decode dir: WER/CER with sclite, RTFx, speaker confusion, confidences.

Writes, all inside the decode dir (reruns overwrite exactly these):
  score_wer/{ref.trn,hyp.trn,result.txt,alignment.sgml,utt_errors.txt}
  score_cer/{ref.trn,hyp.trn,result.txt,alignment.sgml,utt_errors.txt}
  metrics.json
  reliability.png          (only when word_confidence.ctm exists)
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from diffasr.datadir import read_jsonl, read_kv, swap_partners, target_absent_utts
from diffasr.fileio import write_text_atomic
from diffasr.scoring import uncertainty
from diffasr.scoring.confusion import follows_swapped, speaker_confusion_from_files, target_absent_metrics
from diffasr.scoring.sclite import ScoringError, read_scoring_inputs, score_with_sclite, score_words_and_chars

CONFIDENCE_FILE = "word_confidence.ctm"
TOKEN_SIGNALS_FILE = "token_uncertainty"
RELIABILITY_PNG = "reliability.png"


def read_rtfx(timing_path: Path, utts: Sequence[str]) -> Dict[str, float]:
    """RTFx = total audio seconds / total decoding wall seconds, from `<utt> <wall> <audio>`."""
    wall_total = audio_total = 0.0
    known = set(utts)
    seen = set()
    for lineno, (utt, value) in enumerate(read_kv(timing_path).items(), 1):
        if utt not in known:
            raise ScoringError(f"{timing_path}:{lineno}: utterance '{utt}' is not in the reference")
        try:
            wall, audio = (float(x) for x in value.split())
        except ValueError:
            raise ScoringError(f"{timing_path}:{lineno}: expected '<utt> <decode_wall_seconds> "
                               f"<audio_seconds>'") from None
        if wall < 0 or audio < 0:
            raise ScoringError(f"{timing_path}:{lineno}: negative seconds")
        wall_total += wall
        audio_total += audio
        seen.add(utt)
    if known - seen:
        logging.warning("%s: no timing for %d utterances (e.g. '%s')", timing_path,
                        len(known - seen), sorted(known - seen)[0])
    return {"rtfx": round(audio_total / wall_total, 4) if wall_total > 0 else None,
            "decode_seconds": round(wall_total, 4), "audio_seconds": round(audio_total, 4)}


def word_labels(alignments: Mapping[str, object], hyps: Mapping[str, str]) -> Dict[str, list]:
    return {utt: alignments[utt].hyp_word_correct() for utt in hyps}


def fit_calibration(calib_data_dir: Path, calib_decode_dir: Path) -> float:
    """Temperature fitted on a dev decode dir; its sclite run goes to a scratch dir so the dev
    decode dir is left untouched."""
    refs, hyps, utt2spk = read_scoring_inputs(calib_data_dir, calib_decode_dir)
    with tempfile.TemporaryDirectory() as scratch:
        result = score_with_sclite(scratch, refs, hyps, utt2spk)
    ctm = calib_decode_dir / CONFIDENCE_FILE
    if not ctm.is_file():
        raise FileNotFoundError(f"{ctm}: calibration needs the dev set's word confidences")
    conf, correct = uncertainty.gather(
        uncertainty.read_word_confidences(ctm, hyps, left_out=target_absent_utts(calib_data_dir)),
        word_labels(result.alignments, hyps))
    try:
        return uncertainty.fit_temperature(conf, correct)
    except ValueError as e:
        raise ScoringError(f"{ctm}: cannot calibrate: {e}") from None


def score(data_dir: Path, decode_dir: Path, calib_data_dir: Optional[Path] = None,
          calib_decode_dir: Optional[Path] = None, n_bins: int = 10,
          enrollment_override: Optional[str] = None) -> dict:
    """Score `decode_dir` against `data_dir`, write metrics.json, and return the metrics.

    ``enrollment_override``: how the decode replaced the enrollments; for ``swap`` (the
    mixture's other talker's) also ``follows_other``, the share that gave that talker's words."""
    absent = target_absent_utts(data_dir)
    raw_hyps = read_kv(decode_dir / "text", allow_empty_value=True)
    metrics: dict = {"test_set": data_dir.name, "data_dir": str(data_dir), "decode_dir": str(decode_dir)}
    if absent:
        present = [u for u in read_kv(data_dir / "text", allow_empty_value=True) if u not in set(absent)]
        selection = target_absent_metrics(absent, present, raw_hyps)
        metrics["target_absent"] = selection
        metrics["absent_empty"] = (None if selection["absent_empty_rate"] is None
                                   else round(100.0 * selection["absent_empty_rate"], 4))
        if not present:  # a set of target-absent examples only: nothing for WER to count
            metrics["n_utt"] = len(absent)
            if (decode_dir / "timing").is_file():
                metrics.update(read_rtfx(decode_dir / "timing", absent))
            write_text_atomic(decode_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            return metrics
    scored = score_words_and_chars(data_dir, decode_dir)
    wer, cer, refs, hyps = scored["wer"], scored["cer"], scored["refs"], scored["hyps"]
    metrics.update({
        "n_utt": len(refs),
        "n_missing_hyp": sum(1 for u in refs if u not in raw_hyps),
        "wer": round(wer.summary.error_rate, 4),
        "cer": round(cer.summary.error_rate, 4),
        "wer_detail": wer.summary.as_dict(),
        "cer_detail": cer.summary.as_dict(),
    })

    if (decode_dir / "timing").is_file():
        # every utterance decoded counts for the speed, the target-absent ones too
        metrics.update(read_rtfx(decode_dir / "timing", list(refs) + list(absent)))
    else:
        logging.warning("%s: missing; RTFx not reported", decode_dir / "timing")

    if (data_dir / "mixture.jsonl").is_file():
        confusion = speaker_confusion_from_files(refs, hyps, data_dir / "mixture.jsonl")
        percent = lambda rate: None if rate is None else round(100.0 * rate, 4)  # noqa: E731
        metrics["speaker_confusion"] = percent(confusion["rate"])
        metrics["follows"] = percent(confusion["follow_rate"])
        # a present target given no words: what target-absent training may cost
        metrics["emptied"] = round(100.0 * sum(1 for u in refs if not hyps[u].split()) / max(1, len(refs)), 4)
        metrics["speaker_confusion_detail"] = {k: confusion[k] for k in ("n_confused", "n_follows", "n_scored")}
        if enrollment_override == "swap":
            swapped = follows_swapped(refs, hyps, read_jsonl(data_dir / "mixture.jsonl"), swap_partners(data_dir))
            metrics["follows_other"] = percent(swapped["follow_rate"])

    png = decode_dir / RELIABILITY_PNG
    ctm = decode_dir / CONFIDENCE_FILE
    if ctm.is_file():
        conf, correct = uncertainty.gather(uncertainty.read_word_confidences(ctm, hyps, left_out=absent),
                                           word_labels(wer.alignments, hyps))
        report = uncertainty.confidence_metrics(conf, correct, n_bins)
        curves = {"raw": (conf, correct)}
        if calib_decode_dir is not None:
            try:
                temperature = fit_calibration(calib_data_dir, calib_decode_dir)
            except ScoringError as e:
                # e.g. a dev decode with no word, or no error, to learn from: report it, go on
                logging.warning("no calibration for %s: %s", decode_dir, e)
                report["calibration_error"] = str(e)
            else:
                calibrated = uncertainty.apply_temperature(conf, temperature)
                report["temperature"] = round(temperature, 6)
                report["calibrated"] = uncertainty.confidence_metrics(calibrated, correct, n_bins)
                curves[f"calibrated (T={temperature:.2f})"] = (calibrated, correct)
        signals_path = decode_dir / TOKEN_SIGNALS_FILE
        if signals_path.is_file():
            # The sampler's other signals, rated the same way: less entropy / fewer flips = trusted.
            signals = uncertainty.read_token_signals(signals_path, hyps)
            labels = word_labels(wer.alignments, hyps)
            for name in ("entropy", "flips"):
                values, labels_flat = uncertainty.gather({u: [-v for v in s[name]] for u, s in signals.items()},
                                                         labels)
                auroc = uncertainty.auroc_error_detection(values, labels_flat)
                report[f"auroc_{name}"] = None if np.isnan(auroc) else round(float(auroc), 6)
        uncertainty.plot_reliability(png, curves, n_bins, title=f"{data_dir.name}: word confidence")
        report["n_bins"] = n_bins
        report["reliability_png"] = png.name
        metrics["uncertainty"] = report
    else:
        if calib_decode_dir is not None:
            logging.warning("%s: missing; no confidences to calibrate", ctm)
        if png.is_file():
            png.unlink()  # left from an earlier run that had confidences

    write_text_atomic(decode_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
