"""The embedded default corpus: synthetic speakers reading Debian text, offline.

Clean utterances are synthesized once into a pool under the corpus dir (file
names hash the voice and the text, so a cached file is never stale) and reused as
targets, interferers and enrollment; sources_<split> lists the whole pool.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import soundfile as sf

from diffasr.data import DataPrepError
from diffasr.data.corpus import SPLITS, SourceUtt, parallel_map
from diffasr.data.text import debian_sentences, partition_sentences, read_text_file
from diffasr.data.voices import SAMPLE_RATE, VOICES, Voice, assign_splits, synthesize
from diffasr.fileio import atomic_path


@dataclass(frozen=True)
class Scale:
    """Corpus size. Tuples are (train, dev, test).

    extra_train_utts_per_speaker: more training utterances per speaker, whose sentences
    are drawn after the held-out splits' so that a larger scale keeps the dev and test
    sets of the scale it extends, utterance for utterance (results compare across scales).
    heldout: (voices, utterances per voice) of ``test_heldout``, clean speech of voices
    that no scale assigns to any split (see ``heldout_voices``).
    """
    speakers: Tuple[int, int, int]
    utts_per_speaker: Tuple[int, int, int]  # clean pool (= sources_<split>) per speaker
    mixtures: Tuple[int, int, int]
    extra_train_utts_per_speaker: int = 0
    heldout: Tuple[int, int] = (0, 0)

    def sentences(self) -> int:
        """How many sentences the splits read (build_pool draws them first, in this order)."""
        return (sum(n * u for n, u in zip(self.speakers, self.utts_per_speaker))
                + self.speakers[0] * self.extra_train_utts_per_speaker)


SCALES: Dict[str, Scale] = {
    # CI: seconds. Three held-out speakers per split, so that a two-talker mixture has a
    # voice left for a target-absent example.
    "tiny": Scale(speakers=(8, 3, 3), utts_per_speaker=(6, 6, 6), mixtures=(12, 4, 4), heldout=(4, 2)),
    # Demo: a few minutes on 2 cores. 120 training voices (selection has to generalise to
    # voices never heard), 24 clean utterances each for the speaker encoder; mixtures
    # count the mixture audio: with each talker the target in turn (mix setting
    # each_target) 1,000 training mixtures give 2,000 examples + 200 target-absent ones.
    "default": Scale(speakers=(120, 12, 12), utts_per_speaker=(24, 24, 24), mixtures=(1000, 100, 100),
                     heldout=(16, 10)),
    # The default's dev and test with ten times its training data (200 utterances per
    # voice, 10,000 mixtures): whether selection is limited by updates or by examples.
    "large": Scale(speakers=(120, 12, 12), utts_per_speaker=(24, 24, 24), mixtures=(10000, 100, 100),
                   extra_train_utts_per_speaker=176, heldout=(16, 10)),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise DataPrepError(f"unknown --scale '{name}'; valid scales: {', '.join(SCALES)}")
    return SCALES[name]


def _pool_path(corpus_dir: Path, voice: Voice, text: str) -> Path:
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    return corpus_dir / "wav" / voice.spk / f"{voice.spk}-{voice.key()}-{digest}.wav"


def _valid_wav(path: Path) -> int:
    """Samples in a readable 16 kHz mono wav, 0 if it is missing or broken."""
    try:
        info = sf.info(str(path))
    except Exception:  # missing or corrupt cache file: synthesize again
        return 0
    return info.frames if info.samplerate == SAMPLE_RATE and info.channels == 1 else 0


def _synthesize_job(job: Tuple[Voice, str, str]) -> int:
    """Synthesize one pool file unless a valid one exists; returns its samples."""
    voice, text, path = job
    frames = _valid_wav(Path(path))
    if frames:
        return frames
    audio = synthesize(voice, text)
    with atomic_path(path, suffix=".wav") as tmp:  # never a half-written pool file
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16")
    return len(audio)


def build_pool(corpus_dir: os.PathLike, scale: Scale, seed: int, nj: int,
               text_file: Optional[os.PathLike] = None) -> Dict[str, Dict[str, SourceUtt]]:
    """Synthesize (or reuse) the clean utterances of every split's speakers.

    Sentences are disjoint across splits and unique within the corpus.
    """
    corpus_dir = Path(corpus_dir).resolve()
    rng = np.random.default_rng(seed)
    voices = assign_splits(VOICES, *scale.speakers)
    counts = [len(voices[s]) * n for s, n in zip(SPLITS, scale.utts_per_speaker)]
    extra = len(voices["train"]) * scale.extra_train_utts_per_speaker
    text_sources = _text_sources(text_file)
    *split_sentences, extra_sentences = partition_sentences(text_sources, counts + [extra], rng)
    sentences = dict(zip(SPLITS, split_sentences))
    sentences["train"] = sentences["train"] + extra_sentences
    per_speaker = (scale.utts_per_speaker[0] + scale.extra_train_utts_per_speaker, *scale.utts_per_speaker[1:])
    jobs: List[Tuple[Voice, str, str]] = []
    meta: List[Tuple[str, str, Voice, str]] = []  # split, utt, voice, text
    for split, per_spk in zip(SPLITS, per_speaker):
        texts = iter(sentences[split])
        for voice in voices[split]:
            for index in range(per_spk):
                text = next(texts)
                jobs.append((voice, text, str(_pool_path(corpus_dir, voice, text))))
                meta.append((split, f"{voice.spk}-{index:04d}", voice, text))
    frames = parallel_map(_synthesize_job, jobs, {}, nj, "synthesizing")
    pool: Dict[str, Dict[str, SourceUtt]] = {s: {} for s in SPLITS}
    for (split, utt, voice, text), (_, _, path), n in zip(meta, jobs, frames):
        pool[split][utt] = SourceUtt(utt, voice.spk, path, text, n)
    return pool


def _text_sources(text_file: Optional[os.PathLike]) -> Dict[str, List[str]]:
    return {"text_file": read_text_file(text_file)} if text_file is not None else debian_sentences()


def heldout_voices(count: int) -> List[Voice]:
    """``count`` voices of the pool that no scale gives to any split (those after the
    most voices a scale assigns), evenly spaced over them, as ``assign_splits`` spaces
    the held-out splits' voices."""
    first = max(sum(s.speakers) for s in SCALES.values())
    unused = VOICES[first:]
    if count > len(unused):
        raise DataPrepError(f"{count} held-out voices requested, only {len(unused)} voices are in no split")
    return [unused[int((k + 1) * len(unused) / count) - 1] for k in range(count)]


def build_heldout_pool(corpus_dir: os.PathLike, scale: Scale, seed: int, nj: int,
                       text_file: Optional[os.PathLike] = None) -> Dict[str, SourceUtt]:
    """Synthesize (or reuse) the clean utterances of ``test_heldout`` (``corpus.HELDOUT_SET``):
    ``scale.heldout`` voices that no scale trains or tests on, reading sentences that no
    scale reads.

    The sentences come from the same blend as ``build_pool``'s (same seed), after the
    most that any scale draws, so the other sets are untouched and a model trained at any
    scale never read them. A user text file too short for that gives sentences after this
    scale's own instead.
    """
    n_voices, per_voice = scale.heldout
    if not n_voices:
        return {}
    text_sources = _text_sources(text_file)
    needed = n_voices * per_voice
    available = sum(len(v) for v in text_sources.values())
    most = max(s.sentences() for s in SCALES.values())
    offset = max(scale.sentences(), min(most, available - needed))
    sentences = iter(partition_sentences(text_sources, [offset, needed], np.random.default_rng(seed))[1])
    corpus_dir = Path(corpus_dir).resolve()
    jobs, meta = [], []
    for voice in heldout_voices(n_voices):
        for index in range(per_voice):
            text = next(sentences)
            jobs.append((voice, text, str(_pool_path(corpus_dir, voice, text))))
            meta.append((f"{voice.spk}-{index:04d}", voice.spk, text))
    frames = parallel_map(_synthesize_job, jobs, {}, nj, "synthesizing held-out voices")
    return {utt: SourceUtt(utt, spk, path, text, n) for (utt, spk, text), (_, _, path), n in zip(meta, jobs, frames)}



# ---- the options every stage-1 entry point shares (prepare_target_speaker_data, prepare_single_speaker_data)
def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the data dirs go and where the audio comes from: the embedded corpus or LibriSpeech."""
    parser.add_argument("--output_dir", default="data", help="where the data dirs are written")
    parser.add_argument("--corpus_dir", default="downloads/embedded",
                        help="cache of synthesized clean utterances (embedded corpus)")
    parser.add_argument("--scale", default="default", help=f"embedded corpus size: {', '.join(SCALES)}")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random draw")
    parser.add_argument("--nj", type=int, default=2, help="parallel processes")
    parser.add_argument("--text_file", default=None,
                        help="sentences for the embedded corpus, one per line (default: Debian text packages)")
    parser.add_argument("--librispeech_root", default=None,
                        help="LibriSpeech root: build from it instead of the embedded corpus")


def marker_options(args: argparse.Namespace, paths: Iterable[str], embedded_only: Iterable[str],
                   real_only: Iterable[str] = ()) -> dict:
    """What determines the outputs, for the rerun marker: every option but --nj, paths
    absolute, and without the options of the corpus not used."""
    opts = {k: v for k, v in vars(args).items() if k != "nj"}
    for key in paths:
        if opts[key]:
            opts[key] = str(Path(opts[key]).resolve())
    for key in (embedded_only if args.librispeech_root else real_only):
        opts.pop(key)
    return opts
