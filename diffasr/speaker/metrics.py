"""Verification metrics and trial lists.

EER and minDCF are SpeechBrain's (speechbrain.utils.metric_stats: a trial is accepted
when its score is above the threshold). minDCF is reported normalised by the cost of
the best trivial system, min(C_miss * P_target, C_fa * (1 - P_target)), as NIST SRE and
Kaldi's compute_min_dcf.py report it; SpeechBrain returns it without that division.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from speechbrain.utils.metric_stats import EER, minDCF

from diffasr.fileio import write_text_atomic

Trial = Tuple[str, str, bool]  # (enrollment utt, test utt, same speaker)


def _tensors(target_scores, nontarget_scores) -> Tuple[torch.Tensor, torch.Tensor]:
    tgt = torch.as_tensor(np.asarray(target_scores, dtype=np.float64))
    non = torch.as_tensor(np.asarray(nontarget_scores, dtype=np.float64))
    if len(tgt) == 0 or len(non) == 0:
        raise ValueError("need at least one target and one non-target score")
    return tgt, non


def compute_eer(target_scores, nontarget_scores) -> Tuple[float, float]:
    """(EER, threshold), by SpeechBrain.

    >>> compute_eer([0.9, 0.8, 0.7, 0.3], [0.6, 0.5, 0.2, 0.1])
    (0.25, 0.5)
    """
    return EER(*_tensors(target_scores, nontarget_scores))


def compute_min_dcf(target_scores, nontarget_scores, p_target: float = 0.01,
                    c_miss: float = 1.0, c_fa: float = 1.0) -> Tuple[float, float]:
    """(normalised minDCF, threshold): SpeechBrain's minDCF over the best trivial system's cost."""
    c_min, threshold = minDCF(*_tensors(target_scores, nontarget_scores), c_miss=c_miss, c_fa=c_fa,
                              p_target=p_target)
    return c_min / min(c_miss * p_target, c_fa * (1 - p_target)), threshold


def make_trials(utt2spk: Mapping[str, str], max_per_class: int = 2000, seed: int = 0,
                where: str = "data") -> List[Trial]:
    """Balanced, deterministic trials: same-speaker pairs, and as many different-speaker pairs.

    Target pairs are all within-speaker pairs (sampled down to `max_per_class`);
    non-target pairs are drawn uniformly over cross-speaker pairs. The result is sorted.
    """
    utts = sorted(utt2spk)
    spk2utts: Dict[str, List[str]] = {}
    for u in utts:
        spk2utts.setdefault(utt2spk[u], []).append(u)
    if len(spk2utts) < 2:
        raise ValueError(f"{where}: trials need at least two speakers, found {len(spk2utts)}")
    targets = [(a, b) for us in spk2utts.values() for i, a in enumerate(us) for b in us[i + 1:]]
    if not targets:
        raise ValueError(f"{where}: no speaker has two utterances, so there is no target trial")
    rng = np.random.default_rng(seed)
    if len(targets) > max_per_class:
        keep = rng.choice(len(targets), size=max_per_class, replace=False)
        targets = [targets[i] for i in sorted(keep)]
    n_cross = (len(utts) ** 2 - sum(len(us) ** 2 for us in spk2utts.values())) // 2
    n_non = min(len(targets), n_cross)
    nontargets = set()
    while len(nontargets) < n_non:
        i, j = sorted(rng.choice(len(utts), size=2, replace=False).tolist())
        if utt2spk[utts[i]] != utt2spk[utts[j]]:
            nontargets.add((utts[i], utts[j]))
    trials = [(a, b, True) for a, b in targets] + [(a, b, False) for a, b in nontargets]
    return sorted(trials)


def write_trials(path: os.PathLike, trials: Sequence[Trial]) -> None:
    """Kaldi-style trials file: `<enroll utt> <test utt> target|nontarget`."""
    write_text_atomic(path, "".join(f"{a} {b} {'target' if t else 'nontarget'}\n" for a, b, t in trials))


def read_trials(path: os.PathLike) -> List[Trial]:
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3 or fields[2] not in ("target", "nontarget"):
                raise ValueError(f"{path}:{lineno}: expected '<utt> <utt> target|nontarget'")
            trials.append((fields[0], fields[1], fields[2] == "target"))
    return trials


def trial_scores(trials: Sequence[Trial], embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity of the two embeddings of every trial."""
    def unit(u):
        v = np.asarray(embeddings[u], dtype=np.float64)
        return v / max(np.linalg.norm(v), 1e-12)
    return np.array([float(unit(a) @ unit(b)) for a, b, _ in trials])


def cosine_scores(trials: Sequence[Trial], embeddings: Mapping[str, np.ndarray]):
    """(target scores, non-target scores) by cosine similarity."""
    scores = trial_scores(trials, embeddings)
    is_target = np.array([t for _, _, t in trials], dtype=bool)
    return scores[is_target], scores[~is_target]
