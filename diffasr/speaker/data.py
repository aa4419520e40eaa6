"""Training data for the speaker encoder: speakers of a source data dir, random crops.

Batches are P speakers x K utterances (`speakers_per_batch` x `utts_per_speaker`), so a
batch always holds positives for the triplet objective; AAM uses the same batches.
The crop positions of epoch e come from a generator seeded with (seed, e): a resumed
run draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from diffasr.audio import AudioError, listed_frames, read_listed
from diffasr.datadir import read_kv

logger = logging.getLogger(__name__)

# Bad speaker data, its message naming the list file (and line, utterance): a list's own
# faults, and its audio's (``diffasr.audio`` reads every file).
SpeakerDataError = AudioError


class SpeakerSet:
    """Utterances of a source data dir (`wav.scp`, `utt2spk`), grouped by speaker.

    With `min_utts_per_speaker=2`, speakers with a single utterance are dropped with a
    warning that names them (they cannot form a positive pair); `excluded` lists them.
    """

    def __init__(self, data_dir: os.PathLike, sample_rate: int, min_utts_per_speaker: int = 2):
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        for name in ("wav.scp", "utt2spk"):
            if not (self.data_dir / name).is_file():
                raise SpeakerDataError(f"{self.data_dir / name}: required file is missing")
        self.wav_scp = read_kv(self.data_dir / "wav.scp")
        utt2spk = read_kv(self.data_dir / "utt2spk")
        missing = sorted(set(utt2spk) - set(self.wav_scp))
        if missing:
            raise SpeakerDataError(f"{self.data_dir / 'utt2spk'}: utterance '{missing[0]}' "
                                   f"is not in wav.scp ({len(missing)} such)")
        spk2utts: Dict[str, List[str]] = {}
        for utt in sorted(utt2spk):
            spk2utts.setdefault(utt2spk[utt], []).append(utt)
        self.excluded: List[str] = []
        for spk, utts in sorted(spk2utts.items()):
            if len(utts) < min_utts_per_speaker:
                logger.warning("%s: speaker '%s' has %d utterance(s) (%s); it cannot form a "
                               "positive pair and is excluded from training", self.data_dir, spk,
                               len(utts), " ".join(utts))
                self.excluded.append(spk)
                del spk2utts[spk]
        if len(spk2utts) < 2:
            raise SpeakerDataError(f"{self.data_dir}: need at least two speakers with "
                                   f">= {min_utts_per_speaker} utterances, found {len(spk2utts)}")
        self.speakers = sorted(spk2utts)
        self.spk2utts = spk2utts
        self.utt2spk = {u: s for s, us in spk2utts.items() for u in us}
        # Reading every header up front fails early, naming the bad utterance and file.
        self.frames = {u: listed_frames(self.wav_scp[u], u, sample_rate, "audio",
                                       self.data_dir / "wav.scp") for u in sorted(self.utt2spk)}

    @property
    def num_utts(self) -> int:
        return len(self.utt2spk)

    def read(self, utt: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return read_listed(self.wav_scp[utt], utt, self.sample_rate, "audio",
                          self.data_dir / "wav.scp", start=start, stop=stop)

    def crop(self, utt: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """A random `n_samples` window; shorter utterances are repeated to fill it."""
        total = self.frames[utt]
        if total >= n_samples:
            start = int(rng.integers(0, total - n_samples + 1))
            return self.read(utt, start, start + n_samples)
        return np.resize(self.read(utt), n_samples)  # np.resize repeats the signal

    def epoch_batches(self, rng: np.random.Generator, speakers_per_batch: int,
                      utts_per_speaker: int, num_batches: int) -> List[List[Tuple[str, int]]]:
        """`num_batches` lists of (utt, speaker index), P speakers x K utterances each."""
        batches = []
        n_spk = min(speakers_per_batch, len(self.speakers))
        for _ in range(num_batches):
            batch = []
            for s in sorted(rng.choice(len(self.speakers), size=n_spk, replace=False).tolist()):
                utts = self.spk2utts[self.speakers[s]]
                picks = rng.choice(len(utts), size=utts_per_speaker,
                                   replace=len(utts) < utts_per_speaker)
                batch.extend((utts[i], s) for i in picks.tolist())
            batches.append(batch)
        return batches
