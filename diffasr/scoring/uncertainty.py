"""Word-confidence quality: does the decoder's confidence tell right words from wrong ones?

Labels come from sclite's alignment (a hypothesis word is correct when aligned as C;
substitutions and insertions are errors). Metrics:
- NCE, normalised cross entropy (NIST; Siu, Gish & Richardson 1997): information the
  confidences add over the prior word accuracy; 1 is perfect, <= 0 no better than prior.
- AUROC of detecting errors (errors are the positive class, low confidence the score),
  from the Mann-Whitney U statistic.
- ECE, expected calibration error over equal-width confidence bins.
- Temperature scaling (Guo et al. 2017) on the logit of the confidence, fitted on a dev
  set by minimising the negative log-likelihood of the labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from diffasr.scoring.sclite import ScoringError
from diffasr.whisper.tokenizer import is_byte_level, is_control_token, pieces_text

# Confidences are clipped away from 0 and 1 so that logs and logits stay finite.
EPS = 1e-6
WORD_BOUNDARIES = ("\u2581", "\u0120")  # word-initial markers: SentencePiece's, GPT-2/Whisper's


def words_with_confidence(tokens: Sequence[str], confidences: Sequence[float]) -> List[Tuple[str, float]]:
    """Group SentencePiece or Whisper pieces (or ``<space>``-separated characters) into words.

    A word's confidence is the lowest confidence among its pieces.  Words are upper case,
    as the transcripts (Whisper's pieces are lower case).

    >>> words_with_confidence(["\u2581HE", "LLO", "\u2581W", "ORLD"], [0.9, 0.5, 0.8, 0.7])
    [('HELLO', 0.5), ('WORLD', 0.7)]
    >>> words_with_confidence(["\u0120don", "'t", "\u0120stop"], [0.9, 0.4, 0.8])
    [("DON'T", 0.4), ('STOP', 0.8)]

    ``<unk>`` is a word of its own, written as SentencePiece decodes it (``\u2047``):

    >>> words_with_confidence(["\u2581NO", "<unk>"], [0.9, 0.3])
    [('NO', 0.9), ('\u2047', 0.3)]

    Whisper's pieces are bytes, decoded as the tokenizer's ``tokens2text`` decodes them, and
    control tokens (``<|...|>``) carry no text:

    >>> words_with_confidence(["\u0120p", "\u00c3\u00a9", "ace"], [0.9, 0.4, 0.8])
    [('PÉACE', 0.4)]

    >>> words_with_confidence(["<|startoftranscript|>", "\u0120yes"], [0.2, 0.9])
    [('YES', 0.9)]
    """
    # Whisper's pieces are GPT-2 bytes: a word's text is its bytes decoded (``\u00c3\u00a9`` is é)
    byte_level = any(t.startswith("\u0120") for t in tokens) and is_byte_level(tokens)
    groups: List[Tuple[Optional[List[str]], float]] = []  # each word's pieces (None: <unk>), lowest confidence
    open_word = False
    for token, confidence in zip(tokens, confidences):
        if is_control_token(token):
            continue
        if token == "<unk>":
            groups.append((None, confidence))
            open_word = False
            continue
        if token.startswith(WORD_BOUNDARIES) or token == "<space>" or not open_word:
            groups.append(([], 1.0))
            open_word = True
        pieces, lowest = groups[-1]
        groups[-1] = (pieces + [token], min(lowest, confidence))
    words: List[Tuple[str, float]] = []
    for pieces, lowest in groups:
        if pieces is None:
            text = "\u2047"  # as SentencePiece decodes <unk>
        elif byte_level:
            text = pieces_text(pieces)
        else:
            text = "".join(pieces).replace("<space>", "")
            for boundary in WORD_BOUNDARIES:
                text = text.replace(boundary, "")
        words.extend((word.upper(), lowest) for word in text.split())
    return words


def read_token_signals(path: os.PathLike, hyps: Mapping[str, str]) -> Dict[str, Dict[str, List[float]]]:
    """Per-word sampler signals from ``token_uncertainty`` (``<utt> <i> <TOKEN> <p> <entropy> <flips>``).

    A word takes the largest entropy and the most flips among its pieces.  Returns
    ``utt -> {"entropy": [...], "flips": [...]}`` aligned with the hypothesis words.
    """
    rows: Dict[str, List[Tuple[int, str, float, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise ScoringError(f"{path}:{lineno}: expected '<utt> <index> <TOKEN> <probability> "
                                   f"<entropy> <flips>', got {len(fields)} fields")
            try:
                rows.setdefault(fields[0], []).append(
                    (int(fields[1]), fields[2], float(fields[4]), float(fields[5])))
            except ValueError:
                raise ScoringError(f"{path}:{lineno}: index, entropy or flips is not a number") from None
    signals = {}
    for utt, hyp in hyps.items():
        entries = sorted(rows.get(utt, []))
        tokens = [t for _, t, _, _ in entries]
        # Grouping takes the lowest value of a word's pieces, so negate to get the largest.
        entropy = words_with_confidence(tokens, [-e for _, _, e, _ in entries])
        flips = words_with_confidence(tokens, [-n for _, _, _, n in entries])
        if [w.upper() for w, _ in entropy] != [w.upper() for w in hyp.split()]:
            raise ScoringError(f"{path}: pieces of utterance '{utt}' do not spell its hypothesis ({hyp!r})")
        signals[utt] = {"entropy": [-v for _, v in entropy], "flips": [-v for _, v in flips]}
    return signals


def read_word_confidences(ctm_path: os.PathLike, hyps: Mapping[str, str],
                          left_out: Collection[str] = ()) -> Dict[str, List[float]]:
    """Per-utterance word confidences from `<utt> 1 <word_index> 1 <WORD> <confidence>` lines.

    Words are ordered by index and must spell the utterance's hypothesis in `hyps`
    (case-insensitively); any mismatch is an error naming the file and line or utterance.
    Lines of the ``left_out`` utterances (the target-absent examples, which scoring leaves
    out of `hyps`) are skipped.
    """
    left_out = set(left_out)
    by_utt: Dict[str, List[Tuple[int, str, float, int]]] = {}
    with open(ctm_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            where = f"{ctm_path}:{lineno}"
            if len(fields) != 6:
                raise ScoringError(f"{where}: expected '<utt> 1 <word_index> 1 <WORD> "
                                   f"<confidence>', got {len(fields)} fields")
            utt, _, index, _, word, conf = fields
            if utt in left_out:
                continue
            if utt not in hyps:
                raise ScoringError(f"{where}: utterance '{utt}' has no hypothesis")
            try:
                index_value, conf_value = int(float(index)), float(conf)
            except ValueError:
                raise ScoringError(f"{where}: word index or confidence is not a number") from None
            if not 0.0 <= conf_value <= 1.0:
                raise ScoringError(f"{where}: confidence {conf_value} is outside [0, 1]")
            by_utt.setdefault(utt, []).append((index_value, word, conf_value, lineno))
    confidences: Dict[str, List[float]] = {}
    for utt, hyp in hyps.items():
        entries = sorted(by_utt.get(utt, []))
        words = [w.upper() for _, w, _, _ in entries]
        if words != [w.upper() for w in hyp.split()]:
            raise ScoringError(f"{ctm_path}: words of utterance '{utt}' ({' '.join(words)!r}) "
                               f"do not match its hypothesis ({hyp!r})")
        confidences[utt] = [c for _, _, c, _ in entries]
    return confidences


def gather(confidences: Mapping[str, Sequence[float]], correct: Mapping[str, Sequence[bool]]
           ) -> Tuple[np.ndarray, np.ndarray]:
    """Flatten per-utterance confidences and labels into two aligned arrays."""
    conf: List[float] = []
    labels: List[bool] = []
    for utt, values in confidences.items():
        if len(values) != len(correct[utt]):
            raise ScoringError(f"utterance '{utt}': {len(values)} confidences for "
                               f"{len(correct[utt])} aligned hypothesis words")
        conf.extend(values)
        labels.extend(correct[utt])
    return np.asarray(conf, dtype=float), np.asarray(labels, dtype=bool)


def nce(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Normalised cross entropy; NaN when all words are right or all wrong (no prior entropy)."""
    confidence = np.clip(confidence, EPS, 1 - EPS)
    n, n_correct = len(correct), int(correct.sum())
    if n == 0 or n_correct in (0, n):
        return float("nan")
    p = n_correct / n
    h_prior = -(n_correct * np.log2(p) + (n - n_correct) * np.log2(1 - p))
    h_conf = -(np.log2(confidence[correct]).sum() + np.log2(1 - confidence[~correct]).sum())
    return float((h_prior - h_conf) / h_prior)


def auroc_error_detection(confidence: np.ndarray, correct: np.ndarray) -> float:
    """P(an error gets lower confidence than a correct word), ties counted half; NaN if one
    class is empty."""
    errors, rights = confidence[~correct], confidence[correct]
    if len(errors) == 0 or len(rights) == 0:
        return float("nan")
    # U of the "error score" (1 - confidence) of errors against that of correct words.
    from scipy.stats import mannwhitneyu  # scipy is imported where used: decoding needs only words_with_confidence

    u_stat = mannwhitneyu(1 - errors, 1 - rights, alternative="two-sided").statistic
    return float(u_stat / (len(errors) * len(rights)))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean confidence, accuracy) per equal-width bin over [0, 1].

    Bin i holds [i/n, (i+1)/n); the last bin also holds 1. Empty bins have NaN means.
    """
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    which = np.digitize(confidence, inner_edges)
    count = np.bincount(which, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct.astype(float), minlength=n_bins) / count
    return count, mean_conf, accuracy


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (bin share) * |accuracy - mean confidence|."""
    if len(confidence) == 0:
        return float("nan")
    count, mean_conf, accuracy = reliability_bins(confidence, correct, n_bins)
    filled = count > 0
    return float(np.sum(count[filled] / count.sum() * np.abs(accuracy[filled] - mean_conf[filled])))


def apply_temperature(confidence: np.ndarray, temperature: float) -> np.ndarray:
    from scipy.special import expit, logit

    return expit(logit(np.clip(confidence, EPS, 1 - EPS)) / temperature)


def fit_temperature(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of `correct` under sigmoid(logit(conf) / T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logit

    if len(correct) == 0 or correct.all() or not correct.any():
        raise ValueError("temperature fitting needs both correct and incorrect words")
    z = logit(np.clip(confidence, EPS, 1 - EPS))
    y = correct.astype(float)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        # -[y log sigmoid(s) + (1 - y) log sigmoid(-s)], computed stably.
        return float(np.sum(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1 - y)))

    # Search log T so that T stays positive; T in [e^-5, e^5] covers any sane calibration.
    best = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(best.x))


def confidence_metrics(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
                       ) -> Dict[str, Optional[float]]:
    def finite(x: float) -> Optional[float]:
        return None if np.isnan(x) else round(float(x), 6)

    return {"nce": finite(nce(confidence, correct)),
            "auroc": finite(auroc_error_detection(confidence, correct)),
            "ece": finite(ece(confidence, correct, n_bins)),
            "n_words": int(len(correct)),
            "word_accuracy": finite(correct.mean()) if len(correct) else None}


def plot_reliability(path: os.PathLike, curves: Mapping[str, Tuple[np.ndarray, np.ndarray]],
                     n_bins: int = 10, title: str = "") -> None:
    """Reliability diagram: per-bin accuracy against mean confidence, one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for name, (confidence, correct) in curves.items():
        count, mean_conf, accuracy = reliability_bins(confidence, correct, n_bins)
        filled = count > 0
        label = f"{name} (ECE {ece(confidence, correct, n_bins):.3f})"
        ax.plot(mean_conf[filled], accuracy[filled], marker="o", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("word confidence")
    ax.set_ylabel("word accuracy")
    ax.set_title(title or "reliability diagram")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
