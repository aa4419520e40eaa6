"""Speaker confusion: how often the recogniser transcribed an interferer instead of the target.

An utterance counts as confused when its hypothesis is strictly closer to some
interferer's transcript than to the target's, each distance being the word edit
distance divided by the length of the transcript it is measured against (the WER of
the hypothesis against that transcript).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping

import jiwer

from diffasr.datadir import read_jsonl
from diffasr.scoring.sclite import ScoringError


def normalised_word_distance(reference: str, hypothesis: str) -> float:
    """Word edit distance / reference length; an empty reference is 0 away only from an empty
    hypothesis (jiwer rejects empty references). Case-insensitive, like sclite."""
    if not reference.split():
        return 0.0 if not hypothesis.split() else float("inf")
    return float(jiwer.wer(reference.upper(), hypothesis.upper()))


def is_confused(target_text: str, interferer_texts: List[str], hypothesis: str) -> bool:
    to_target = normalised_word_distance(target_text, hypothesis)
    return any(normalised_word_distance(text, hypothesis) < to_target
               for text in interferer_texts if text.split())


def speaker_confusion(refs: Mapping[str, str], hyps: Mapping[str, str],
                      mixture: Mapping[str, dict], mixture_path: os.PathLike = "mixture.jsonl"
                      ) -> Dict[str, object]:
    """Share of utterances (with at least one transcribed interferer) that are confused.

    `refs`/`hyps`: utt -> words; `mixture`: utt -> mixture.jsonl record (DESIGN.md).
    Returns {"rate", "n_confused", "n_scored", "confused_utts"}; rate is None when no
    utterance has an interferer (e.g. single-speaker sets).
    """
    confused: List[str] = []
    n_scored = 0
    for utt, ref in refs.items():
        if utt not in mixture:
            raise ScoringError(f"{mixture_path}: no record for utterance '{utt}'")
        try:
            interferers = [i["text"] for i in mixture[utt].get("interferers", [])]
        except (KeyError, TypeError):
            raise ScoringError(f"{mixture_path}: record of '{utt}' has an interferer "
                               "without a 'text' field") from None
        if not any(text.split() for text in interferers):
            continue
        n_scored += 1
        if is_confused(ref, interferers, hyps.get(utt, "")):
            confused.append(utt)
    return {"rate": len(confused) / n_scored if n_scored else None,
            "n_confused": len(confused), "n_scored": n_scored, "confused_utts": confused}


def speaker_confusion_from_files(refs: Mapping[str, str], hyps: Mapping[str, str],
                                 mixture_path: os.PathLike) -> Dict[str, object]:
    return speaker_confusion(refs, hyps, read_jsonl(Path(mixture_path)), mixture_path)
