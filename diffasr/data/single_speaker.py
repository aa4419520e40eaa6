"""Single-speaker ASR data dirs: stage 1 of egs/librispeech/asr1 (no mixtures, no enrollment).

Real corpus: one data dir per LibriSpeech subset, named as ESPnet names them
(train-clean-100 -> data/train_clean_100) and in ESPnet's format: wav.scp points at
the flac files, text keeps LibriSpeech's transcripts (already upper-case words with
apostrophes; `normalize_transcript` leaves them as they are), and the speaker of
utt2spk is the reader-chapter, as in Kaldi's and ESPnet's data_prep.sh.

Embedded default: the flagship recipe's synthetic voices and sentences
(`embedded.build_pool`), written under the same set names so that run.sh is the
same for both. train_clean_100 and dev_clean are the pool's train and dev voices;
the test voices' utterances alternate between test_clean (as synthesized) and
test_other (the same voices under synthesized noise at 5-15 dB SNR), a harder set in
the role of LibriSpeech's "other".
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from diffasr.data.corpus import (TMP_NAME, SourceUtt, corpus_stats, group_by_speaker, parallel_map,
                                 swap_into_place, write_source_set)
from diffasr.data.embedded import Scale, build_pool
from diffasr.data.librispeech import scan_subset
from diffasr.data.mixing import SAMPLE_RATE, colored_noise, gain_for_ratio, power, read_audio
from diffasr.datadir import validate_data_dir

LIBRISPEECH_SUBSETS = ("train-clean-100", "dev-clean", "test-clean", "test-other")
EMBEDDED_SETS = tuple(s.replace("-", "_") for s in LIBRISPEECH_SUBSETS)
TEST_OTHER_SNR_DB = (5.0, 15.0)

Sets = Dict[str, Dict[str, SourceUtt]]


def set_name(subset: str) -> str:
    """ESPnet's data dir name of a LibriSpeech subset: train-clean-100 -> train_clean_100."""
    return subset.replace("-", "_")


def librispeech_sets(root: os.PathLike, subsets: Sequence[str] = LIBRISPEECH_SUBSETS) -> Sets:
    """Every utterance of each subset (checked by `scan_subset`), speaker = reader-chapter."""
    sets: Sets = {}
    for subset in subsets:
        sources = scan_subset(root, subset)
        sets[set_name(subset)] = {utt: dataclasses.replace(s, spk=utt.rsplit("-", 1)[0])
                                  for utt, s in sources.items()}
    return sets


def embedded_sets(corpus_dir: os.PathLike, scale: Scale, seed: int, nj: int,
                  text_file: Optional[os.PathLike] = None) -> Tuple[Sets, Dict[str, float]]:
    """The embedded pool as (sets, SNR in dB of each test_other utterance)."""
    pool = build_pool(corpus_dir, scale, seed, nj, text_file)
    clean: Dict[str, SourceUtt] = {}
    other: Dict[str, SourceUtt] = {}
    for utts in group_by_speaker(pool["test"]).values():
        for index, utt in enumerate(utts):
            (clean if index % 2 == 0 else other)[utt] = pool["test"][utt]
    rng = np.random.default_rng([seed, 7])
    snr_db = {utt: float(rng.uniform(*TEST_OTHER_SNR_DB)) for utt in sorted(other)}
    sets = {"train_clean_100": pool["train"], "dev_clean": pool["dev"], "test_clean": clean, "test_other": other}
    return sets, snr_db


def _add_noise(task: Tuple[SourceUtt, float, int, str, str]) -> SourceUtt:
    """Write one utterance under synthesized noise; returns it pointing at its final path."""
    source, snr_db, seed, write_dir, final_dir = task
    speech = read_audio(source.path)
    noise, _ = colored_noise(len(speech), np.random.default_rng(seed))
    noisy = speech + gain_for_ratio(power(speech), power(noise), snr_db) * noise
    peak = float(np.max(np.abs(noisy)))
    if peak > 0.99:  # the same rule as the mixtures: scale down, never clip
        noisy *= 0.99 / peak
    name = f"{source.utt}.wav"
    sf.write(os.path.join(write_dir, name), noisy, SAMPLE_RATE, subtype="PCM_16")
    return dataclasses.replace(source, path=os.path.join(final_dir, name))


def write_sets(output_dir: os.PathLike, sets: Sets, noisy: Optional[Dict[str, Dict[str, float]]] = None,
               seed: int = 0, nj: int = 1) -> Dict[str, dict]:
    """Write every set atomically (all or nothing, as the mixture sets); returns corpus statistics.

    noisy: {set: {utt: SNR dB}}: those sets get their audio rendered under noise into
    <output_dir>/<set>/wav/.
    """
    output_dir = Path(output_dir).resolve()
    tmp_root = output_dir / TMP_NAME
    shutil.rmtree(tmp_root, ignore_errors=True)
    try:
        for name, sources in sets.items():
            if noisy and name in noisy:
                wav_dir = tmp_root / name / "wav"
                wav_dir.mkdir(parents=True)
                tasks = [(sources[utt], snr, seed + index, str(wav_dir), str(output_dir / name / "wav"))
                         for index, (utt, snr) in enumerate(sorted(noisy[name].items()))]
                sources = {s.utt: s for s in parallel_map(_add_noise, tasks, {}, nj, f"noise for {name}")}
            write_source_set(tmp_root / name, sources)
            validate_data_dir(tmp_root / name, check_paths=False)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    swap_into_place(output_dir, tmp_root, list(sets))
    return corpus_stats(output_dir, list(sets))
