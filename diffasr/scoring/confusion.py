"""Whose words came out: speaker confusion, follow rate and target-absent behaviour.

Distances are the word edit distance divided by the length of the transcript measured
against (the WER of the hypothesis against that transcript).

- confused: the hypothesis is strictly closer to some interferer's transcript than to
  the target's;
- follows: it is strictly closer to the target's transcript than to every other
  talker's (an empty hypothesis follows no one);
- target absent (the enrolled voice is not in the mixture, mixture.jsonl target utt
  null): the hypothesis should be empty; a present target should not be emptied.
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


def follows(target_text: str, interferer_texts: List[str], hypothesis: str) -> bool:
    to_target = normalised_word_distance(target_text, hypothesis)
    return all(to_target < normalised_word_distance(text, hypothesis)
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
    n_scored = n_follows = 0
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
        n_follows += follows(ref, interferers, hyps.get(utt, ""))
    return {"rate": len(confused) / n_scored if n_scored else None,
            "follow_rate": n_follows / n_scored if n_scored else None, "n_follows": n_follows,
            "n_confused": len(confused), "n_scored": n_scored, "confused_utts": confused}


def follows_swapped(refs: Mapping[str, str], hyps: Mapping[str, str], mixture: Mapping[str, dict],
                    partners: Mapping[str, str]) -> Dict[str, object]:
    """A swap decode (each example decoded with the enrollment of ``partners[utt]``, the
    example of its mixture's other talker): the share whose hypothesis is strictly closer to
    that talker's transcript than to every other talker's, the example's own target included."""
    n_follows = 0
    for utt, ref in refs.items():
        partner_text = refs.get(partners[utt], mixture[partners[utt]]["target"]["text"])
        others = [ref] + [i["text"] for i in mixture[utt].get("interferers", [])
                          if i.get("utt") != mixture[partners[utt]]["target"]["utt"]]
        n_follows += follows(partner_text, others, hyps.get(utt, ""))
    return {"follow_rate": n_follows / len(refs) if refs else None, "n_follows": n_follows, "n_scored": len(refs)}


def target_absent_metrics(absent_utts: List[str], present_utts: List[str], hyps: Mapping[str, str]
                          ) -> Dict[str, object]:
    """How often an absent target gives an empty hypothesis, and a present one is emptied."""
    empty = lambda utts: sum(1 for u in utts if not hyps.get(u, "").split())  # noqa: E731
    return {"n_absent": len(absent_utts), "n_absent_empty": empty(absent_utts),
            "absent_empty_rate": empty(absent_utts) / len(absent_utts) if absent_utts else None,
            "n_present": len(present_utts), "n_present_emptied": empty(present_utts),
            "present_emptied_rate": empty(present_utts) / len(present_utts) if present_utts else None}


def speaker_confusion_from_files(refs: Mapping[str, str], hyps: Mapping[str, str],
                                 mixture_path: os.PathLike) -> Dict[str, object]:
    return speaker_confusion(refs, hyps, read_jsonl(Path(mixture_path)), mixture_path)
