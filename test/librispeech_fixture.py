"""A tiny corpus laid out exactly like LibriSpeech, shared by the stage-1 and recipe tests."""

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import soundfile as sf

# The subsets the target-speaker mixtures read (speakers disjoint across them), and
# test-other, which the single-speaker recipe (egs/librispeech/asr1) also scores.
# Three speakers a subset: a two-talker mixture leaves one for a target-absent example.
SUBSETS: Dict[str, Sequence[str]] = {"train-clean-100": ("19", "26", "32"), "dev-clean": ("84", "174", "251"),
                                     "test-clean": ("61", "121", "237")}
ALL_SUBSETS: Dict[str, Sequence[str]] = {**SUBSETS, "test-other": ("700", "831")}
WORDS = "ALPHA BRAVO CHARLIE DELTA ECHO FOXTROT GOLF HOTEL INDIA JULIET".split()


def _speech_like(rng, seconds=1.2, f0=120.0):
    """A harmonic tone with a syllable-rate envelope: enough for loudness metering."""
    t = np.arange(int(seconds * 16000)) / 16000
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.3 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))) / 2.3).astype(np.float32)


def make_librispeech(root: Path, subsets: Dict[str, Sequence[str]] = SUBSETS) -> Path:
    """<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac + <spk>-<chapter>.trans.txt."""
    rng = np.random.default_rng(0)
    for subset, speakers in subsets.items():
        for s, spk in enumerate(speakers):
            for chapter in ("100", "200")[:2 if subset.startswith("train") else 1]:
                chapter_dir = root / subset / spk / chapter
                chapter_dir.mkdir(parents=True)
                lines = []
                for i in range(3):
                    utt = f"{spk}-{chapter}-{i:04d}"
                    sf.write(chapter_dir / f"{utt}.flac", _speech_like(rng, 1.0 + 0.2 * i, 90 + 40 * s),
                             16000, subtype="PCM_16")
                    lines.append(f"{utt} {' '.join(rng.choice(WORDS, 5))}\n")
                (chapter_dir / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return root
