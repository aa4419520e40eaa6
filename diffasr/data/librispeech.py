"""The real-corpus path: LibriSpeech sources, optional LibriMix metadata and noise dir.

LibriSpeech layout: <root>/<subset>/<SPEAKER>/<CHAPTER>/<SPEAKER>-<CHAPTER>-<NNNN>.flac
plus <SPEAKER>-<CHAPTER>.trans.txt ("<utt> <TRANSCRIPT>" lines) in each chapter.
LibriMix metadata CSVs (mixture_ID, source_1_path, source_1_gain, source_2_path,
source_2_gain, [source_3_...], noise_path, noise_gain; paths relative to the
LibriSpeech root and the noise root) fix the pairing and the gains; source_1 is the target.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from diffasr.data import DataPrepError
from diffasr.data.corpus import (SPLITS, InterfererPlan, MixturePlan, NoisePlan, SourceUtt, add_absent_roles,
                                 group_by_speaker, long_enough, plan_mixtures, talker_roles)
from diffasr.data.mixing import SAMPLE_RATE, MixSetting
from diffasr.data.text import normalize_transcript

logger = logging.getLogger(__name__)
DEFAULT_SUBSETS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
# LibriMix's names for the LibriSpeech subsets in its metadata file names.
LIBRIMIX_ALIASES = {"train-clean-100": "train-100", "train-clean-360": "train-360",
                    "dev-clean": "dev", "test-clean": "test"}
AUDIO_SUFFIXES = (".wav", ".flac")


def _audio_frames(path: Path, what: str, exact: bool = False) -> int:
    """Samples at 16 kHz of a readable audio file; corrupt or empty is an error naming it.
    ``exact``: the file itself must be 16 kHz mono (LibriSpeech's own audio, which the
    single-speaker data dirs list as it is)."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types for bad files
        raise DataPrepError(f"{path}: corrupt or unreadable {what} ({e})") from None
    if info.frames == 0:
        raise DataPrepError(f"{path}: empty {what} file")
    if exact and info.samplerate != SAMPLE_RATE:
        raise DataPrepError(f"{path}: {what} at {info.samplerate} Hz; LibriSpeech is {SAMPLE_RATE} Hz")
    if exact and info.channels != 1:
        raise DataPrepError(f"{path}: {what} with {info.channels} channels; LibriSpeech is mono")
    return int(info.frames * SAMPLE_RATE / info.samplerate)


def scan_subset(root: os.PathLike, subset: str) -> Dict[str, SourceUtt]:
    """Every utterance of one LibriSpeech subset, checked: each flac has a transcript
    line, each transcript line a flac, each chapter a trans.txt, each file is audio."""
    subset_dir = Path(root).resolve() / subset
    if not subset_dir.is_dir():
        raise DataPrepError(f"{subset_dir}: LibriSpeech subset directory not found")
    out: Dict[str, SourceUtt] = {}
    for spk_dir in sorted(p for p in subset_dir.iterdir() if p.is_dir()):
        for chapter_dir in sorted(p for p in spk_dir.iterdir() if p.is_dir()):
            trans = chapter_dir / f"{spk_dir.name}-{chapter_dir.name}.trans.txt"
            flacs = sorted(chapter_dir.glob("*.flac"))
            if not trans.is_file():
                raise DataPrepError(f"{trans}: transcript file missing for chapter {chapter_dir}")
            texts: Dict[str, Tuple[str, int]] = {}
            try:
                lines = trans.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as e:
                line = trans.read_bytes()[: e.start].count(b"\n") + 1
                raise DataPrepError(f"{trans}:{line}: not UTF-8 text ({e.reason})") from None
            for lineno, line in enumerate(lines, 1):
                utt, _, raw = line.strip().partition(" ")
                if not utt:
                    logger.warning(f"{trans}:{lineno}: empty line skipped")
                    continue
                if utt in texts:
                    raise DataPrepError(f"{trans}:{lineno}: utterance '{utt}' appears again "
                                        f"(first on line {texts[utt][1]})")
                text = normalize_transcript(raw)
                if not text:
                    raise DataPrepError(f"{trans}:{lineno}: transcript of '{utt}' is empty "
                                        "after normalisation")
                if text != " ".join(raw.split()):
                    # LibriSpeech's own lines are already normalised: this is someone's edit.
                    logger.warning(f"{trans}:{lineno}: transcript of '{utt}' normalised to "
                                   f"LibriSpeech's form: {raw!r} -> {text!r}")
                texts[utt] = (text, lineno)
            for flac in flacs:
                if flac.stem not in texts:
                    raise DataPrepError(f"{flac}: no transcript line for '{flac.stem}' in {trans}")
            for utt, (text, lineno) in texts.items():
                flac = chapter_dir / f"{utt}.flac"
                if not flac.is_file():
                    raise DataPrepError(f"{trans}:{lineno}: audio file {flac} does not exist")
                out[utt] = SourceUtt(utt, spk_dir.name, str(flac), text, _audio_frames(flac, "audio", exact=True))
    if not out:
        raise DataPrepError(f"{subset_dir}: no utterances found")
    return out


def list_noise_files(noise_root: os.PathLike) -> List[Tuple[str, int]]:
    """(path, samples at 16 kHz) of every wav/flac below noise_root, sorted."""
    noise_root = Path(noise_root).resolve()
    if not noise_root.is_dir():
        raise DataPrepError(f"{noise_root}: noise directory not found")
    files = sorted(p for p in noise_root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise DataPrepError(f"{noise_root}: no .wav or .flac noise files")
    return [(str(p), _audio_frames(p, "noise")) for p in files]


def metadata_files(metadata_dir: os.PathLike, subset: str) -> List[Path]:
    """LibriMix mixture CSVs of a subset (libri2mix_dev-clean.csv, mixture_dev_mix_both.csv...)."""
    names = {subset, LIBRIMIX_ALIASES.get(subset, subset)}
    return [p for p in sorted(Path(metadata_dir).rglob("*.csv"))
            if names & set(re.split(r"[_.]", p.name)) and not p.stem.endswith("_info")]


def plan_from_metadata(csv_paths: Sequence[Path], sources: Dict[str, SourceUtt], setting: MixSetting,
                       rng: np.random.Generator, noise_root: Optional[os.PathLike]) -> List[MixturePlan]:
    """Mixture plans following LibriMix pairs and gains (target = source_1; with
    ``setting.every_talker_target`` each source is the target of one example)."""
    by_spk = group_by_speaker(sources)
    plans: List[MixturePlan] = []
    seen = set()
    for csv_path in csv_paths:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            n_src = len([c for c in columns if re.fullmatch(r"source_\d+_path", c)])
            required = ["mixture_ID"] + [f"source_{k}_{x}" for k in range(1, n_src + 1) for x in ("path", "gain")]
            missing = [c for c in required if c not in columns]
            if n_src < 2 or missing:
                raise DataPrepError(f"{csv_path}: not a LibriMix metadata file: needs columns mixture_ID, "
                                    f"source_N_path and source_N_gain for N >= 2 (missing: "
                                    f"{', '.join(missing) or 'source_2_path'})")
            for lineno, row in enumerate(reader, 2):
                try:
                    utts = [Path(row[f"source_{k}_path"]).stem for k in range(1, n_src + 1)]
                    gains = [float(row[f"source_{k}_gain"]) for k in range(1, n_src + 1)]
                    noise_gain = float(row["noise_gain"]) if row.get("noise_gain") else None
                except (TypeError, ValueError) as e:
                    raise DataPrepError(f"{csv_path}:{lineno}: bad value ({e})") from None
                for k, utt in enumerate(utts, 1):
                    if utt not in sources:
                        raise DataPrepError(f"{csv_path}:{lineno}: source_{k}_path "
                                            f"{row[f'source_{k}_path']} is not in the LibriSpeech subset")
                spk = sources[utts[0]].spk
                utt_id = row["mixture_ID"] if row["mixture_ID"].startswith(spk + "-") else f"{spk}-{row['mixture_ID']}"
                if utt_id in seen:
                    raise DataPrepError(f"{csv_path}:{lineno}: duplicate mixture_ID {row['mixture_ID']}")
                seen.add(utt_id)
                enroll_choices = [u for u in by_spk[spk] if u != utts[0]]
                if not enroll_choices:
                    raise DataPrepError(f"{csv_path}:{lineno}: speaker {spk} has no other utterance "
                                        "for enrollment")
                enroll = long_enough(enroll_choices[int(rng.integers(len(enroll_choices)))], enroll_choices, sources)
                if noise_root is not None and row.get("noise_path"):
                    noise = NoisePlan("file", gain=noise_gain,
                                      path=str(Path(noise_root).resolve() / row["noise_path"]))
                else:  # no noise files here: synthesized noise at a drawn SNR
                    noise = NoisePlan("synthetic", snr_db=float(rng.uniform(*setting.snr_db)),
                                      seed=int(rng.integers(2 ** 31)))
                plan = MixturePlan(utt_id, utts[0], enroll,
                                   [InterfererPlan(u, 0, gain=g) for u, g in zip(utts[1:], gains[1:])],
                                   noise, target_gain=gains[0])
                if setting.every_talker_target:  # each source a target in turn, as Libri2Mix's lists
                    plan.roles = talker_roles(plan, sources, by_spk, rng, f"{csv_path}:{lineno}")
                plans.append(plan)
    add_absent_roles(plans, sources, setting.absent_share, rng, "LibriMix metadata")
    return plans


def prepare_librispeech(root: os.PathLike, setting: MixSetting, seed: int,
                        metadata_dir: Optional[os.PathLike] = None, noise_root: Optional[os.PathLike] = None,
                        subsets: Dict[str, str] = DEFAULT_SUBSETS,
                        ) -> Tuple[Dict[str, Dict[str, SourceUtt]], Dict[str, List[MixturePlan]]]:
    """Sources and mixture plans of train/dev/test from a LibriSpeech root."""
    sources = {split: scan_subset(root, subsets[split]) for split in SPLITS}
    speakers = {split: {s.spk for s in sources[split].values()} for split in SPLITS}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        shared = speakers[a] & speakers[b]
        if shared:
            raise DataPrepError(f"{root}: subsets {subsets[a]} and {subsets[b]} share speakers "
                                f"({', '.join(sorted(shared)[:5])}); speakers must be disjoint")
    noise_files = list_noise_files(noise_root) if noise_root else []
    plans: Dict[str, List[MixturePlan]] = {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, index])
        csvs = metadata_files(metadata_dir, subsets[split]) if metadata_dir else []
        if metadata_dir and not csvs:
            raise DataPrepError(f"{metadata_dir}: no LibriMix metadata CSV for {subsets[split]}")
        if csvs:
            plans[split] = plan_from_metadata(csvs, sources[split], setting, rng, noise_root)
        else:
            plans[split] = plan_mixtures(sources[split], None, setting, rng, noise_files, split)
    return sources, plans
