"""Speaker verification evaluation: trials, cosine scores, EER/minDCF, RESULTS.md, plot."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from diffasr.datadir import read_kv
from diffasr.fileio import write_text_atomic
from diffasr.audio import read_listed
from diffasr.speaker.data import SpeakerDataError
from diffasr.speaker.metrics import (compute_eer, compute_min_dcf, cosine_scores, make_trials,
                                     read_trials, trial_scores, write_trials)

logger = logging.getLogger(__name__)

P_TARGET = 0.01


def set_name(data_dir: os.PathLike) -> str:
    return Path(data_dir).resolve().name


def trials_for(data_dir: os.PathLike, trials_dir: os.PathLike, max_per_class: int = 2000,
               reuse: bool = False):
    """The trial list of a data dir, written to trials_dir/<set>.trials.

    With `reuse`, an existing file is read back (the benchmark scores the very trials
    stage 3's evaluation scored); otherwise it is (re)built deterministically.
    """
    path = Path(trials_dir) / f"{set_name(data_dir)}.trials"
    if reuse and path.is_file():
        return read_trials(path), path
    utt2spk = read_kv(Path(data_dir) / "utt2spk")
    trials = make_trials(utt2spk, max_per_class, seed=0, where=str(data_dir))
    write_trials(path, trials)
    return trials, path


def embed_trial_utts(embed_fn, data_dir: os.PathLike, trials, sample_rate: int = 16000):
    """utt -> embedding for every utterance that appears in the trials.

    `embed_fn(wav samples, wav path)` returns a vector."""
    wav_scp = read_kv(Path(data_dir) / "wav.scp")
    needed = sorted({u for a, b, _ in trials for u in (a, b)})
    out = {}
    for utt in needed:
        if utt not in wav_scp:
            raise SpeakerDataError(f"{Path(data_dir) / 'wav.scp'}: trial utterance '{utt}' is missing")
        wav = read_listed(wav_scp[utt], utt, sample_rate, "audio", Path(data_dir) / "wav.scp")
        out[utt] = embed_fn(wav, wav_scp[utt])
    return out


def score_set(trials, embeddings) -> Dict[str, object]:
    tgt, non = cosine_scores(trials, embeddings)
    eer, eer_threshold = compute_eer(tgt, non)
    min_dcf, _ = compute_min_dcf(tgt, non, p_target=P_TARGET)
    return {"eer": eer, "eer_threshold": eer_threshold, "min_dcf": min_dcf,
            "num_target": len(tgt), "num_nontarget": len(non), "target_scores": tgt,
            "nontarget_scores": non}


def write_scores(path: os.PathLike, trials, embeddings) -> None:
    """`<enroll utt> <test utt> <cosine score> target|nontarget` per trial."""
    path = Path(path)
    lines = [f"{a} {b} {score:.6f} {'target' if t else 'nontarget'}\n"
             for (a, b, t), score in zip(trials, trial_scores(trials, embeddings))]
    write_text_atomic(path, "".join(lines))


def plot_score_distributions(results: Dict[str, Dict[str, object]], path: os.PathLike) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        bins = np.linspace(-1, 1, 61)
        ax.hist(r["nontarget_scores"], bins=bins, alpha=0.6, label="non-target", density=True)
        ax.hist(r["target_scores"], bins=bins, alpha=0.6, label="target", density=True)
        ax.axvline(r["eer_threshold"], color="k", linestyle="--", linewidth=1,
                   label="EER threshold")
        ax.set_title(f"{name}: EER {100 * r['eer']:.2f}%")
        ax.set_xlabel("cosine score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results_md(path: os.PathLike, results: Dict[str, Dict[str, object]], model_dir,
                     command: str, train_info: Optional[dict] = None) -> None:
    lines = [f"# Speaker verification: {Path(model_dir).name}", ""]
    if train_info:
        lines += [f"- objective: {train_info.get('loss')}, epochs: {train_info.get('epochs')}, "
                  f"embedding dim: {train_info.get('embedding_dim')}, train speakers: "
                  f"{train_info.get('num_speakers')}, training time: "
                  f"{train_info.get('train_seconds')} s", ""]
    lines += ["Cosine scoring on balanced trials (trials/<set>.trials). minDCF: P_target=0.01, "
              "C_miss=C_fa=1, normalised.", "",
              "| set | EER (%) | minDCF | #trials | #target | #non-target |",
              "|---|---|---|---|---|---|"]
    for name, r in results.items():
        n = r["num_target"] + r["num_nontarget"]
        lines.append(f"| {name} | {100 * r['eer']:.2f} | {r['min_dcf']:.4f} | {n} | "
                     f"{r['num_target']} | {r['num_nontarget']} |")
    lines += ["", "Score distributions: score_distribution.png", "", "Command:", "",
              f"    {command}", ""]
    write_text_atomic(path, "\n".join(lines))
