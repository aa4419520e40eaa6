"""A cache of frozen-encoder outputs, so a CPU epoch costs only the trainable part.

ESPnet's ``feats_type: extracted`` convention: each set gets kaldiio ``feats.{ark,scp}``
(the frozen part's frames of every mixture) and ``enroll_feats.{ark,scp}`` (of every
enrollment utterance; audio shared by several mixtures is encoded once), which the
training reads as ``speech`` and ``enroll_speech`` with type ``kaldi_ark``.
``meta.json`` records the frozen encoder's fingerprint and the utterances, and is
written last: a cache without it is incomplete.  ``check_cache`` refuses a cache that
does not match its encoder or lacks utterances of the set it is used for.
"""

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import kaldiio
import numpy as np
import torch

from diffasr.datadir import read_kv
from diffasr.audio import read_listed

logger = logging.getLogger(__name__)

META = "meta.json"
SAMPLE_RATE = 16000


class EncoderCacheError(ValueError):
    """A cache that does not fit the encoder or the set it is used with."""


def _digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _encode_part(args) -> List[Tuple[str, str]]:
    """One worker: encode its utterances into its own ark; returns (key, location) pairs."""
    encoder_conf, items, ark, scp_source, what, threads = args
    torch.set_num_threads(threads)
    from diffasr.espnet2.whisper_encoder import WhisperEncoder

    encoder = WhisperEncoder(**{k: v for k, v in encoder_conf.items() if k in FROZEN_KEYS})
    with kaldiio.WriteHelper(f"ark,scp:{ark},{ark}.scp") as writer:
        for index, (utt, path) in enumerate(items):
            audio = torch.from_numpy(read_listed(path, utt, SAMPLE_RATE, what, scp_source))
            frames, lengths = encoder.frozen(audio[None], torch.tensor([audio.numel()]))
            writer(f"f{index}", frames[0, : int(lengths[0])].numpy().astype(np.float32))
    locations = read_kv(f"{ark}.scp")
    os.remove(f"{ark}.scp")
    return [(path, locations[f"f{index}"]) for index, (_, path) in enumerate(items)]


def run_parts(encode_part, jobs) -> dict:
    """The (key, ark location) pairs of every job of ``encode_part``, in spawned processes when
    there are several (each job writes its own ark)."""
    if len(jobs) == 1:
        return dict(encode_part(jobs[0]))
    location_of = {}
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        for pairs in pool.map(encode_part, jobs):
            location_of.update(pairs)
    return location_of


# The encoder options that shape the frozen part (the rest is trainable and irrelevant here).
FROZEN_KEYS = ("whisper_model", "padding", "frozen_layers")


def extract(encoder_conf: dict, data_dir: os.PathLike, output_dir: os.PathLike, nj: int = 1,
            with_enrollment: bool = True) -> Path:
    """Write the cache of a data dir (skipped when an up-to-date one exists); returns output_dir."""
    from diffasr.espnet2.whisper_encoder import frozen_fingerprint

    data_dir, output_dir = Path(data_dir), Path(output_dir)
    frozen_conf = {k: v for k, v in encoder_conf.items() if k in FROZEN_KEYS}
    fingerprint = frozen_fingerprint(**frozen_conf)
    sources = {"feats": data_dir / "wav.scp"}
    if with_enrollment:
        sources["enroll_feats"] = data_dir / "enroll.scp"
    for source in sources.values():
        if not source.is_file():
            raise FileNotFoundError(f"{source}: missing (stage 1 writes it)")
    wanted = dict(fingerprint=fingerprint, frozen=frozen_conf,
                  sources={name: {"path": str(p.resolve()), "md5": _digest(p)} for name, p in sources.items()})
    meta_path = output_dir / META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            logger.info(f"{output_dir}: cache up to date ({meta['num_utterances']} utterances)")
            return output_dir
        logger.info(f"{output_dir}: cache is stale (other encoder or data), extracting again")

    work = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    counts = {}
    for name, source in sources.items():
        utt2path = read_kv(source)
        what = "enrollment audio" if name == "enroll_feats" else "audio"
        first_utt = {}
        for utt, path in sorted(utt2path.items()):
            first_utt.setdefault(path, utt)  # shared enrollment audio is encoded once
        unique = sorted(first_utt.items(), key=lambda item: item[1])
        parts = [unique[i::nj] for i in range(nj) if unique[i::nj]]
        jobs = [(frozen_conf, [(utt, path) for path, utt in part], str((work / f"{name}.{i}.ark").resolve()),
                 str(source), what, 1) for i, part in enumerate(parts)]
        location_of: Dict[str, str] = run_parts(_encode_part, jobs)
        entries = {utt: location_of[path] for utt, path in utt2path.items()}
        with open(work / f"{name}.scp", "w", encoding="utf-8") as f:
            for utt in sorted(entries):
                # Point at the final dir: the tmp dir is renamed below.
                f.write(f"{utt} {entries[utt].replace(str(work.resolve()), str(output_dir.resolve()))}\n")
        counts[name] = (len(entries), len(unique))
        logger.info(f"{source}: {len(entries)} utterances, {len(unique)} distinct files encoded")
    meta = dict(wanted, num_utterances=counts["feats"][0], seconds=round(time.perf_counter() - started, 1),
                keys_md5=hashlib.md5("\n".join(sorted(read_kv(sources["feats"]))).encode()).hexdigest())
    (work / META).write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(output_dir, ignore_errors=True)
    os.replace(work, output_dir)
    logger.info(f"wrote {output_dir} in {meta['seconds']} s")
    return output_dir


def check_cache(scp: os.PathLike, encoder_conf: dict, keys: Optional[Iterable[str]] = None,
                keys_source: str = "") -> None:
    """Refuse a cache from another frozen encoder, an incomplete one, or one lacking ``keys``."""
    from diffasr.espnet2.whisper_encoder import frozen_fingerprint

    scp = Path(scp)
    meta_path = scp.parent / META
    if not meta_path.is_file():
        raise EncoderCacheError(f"{scp}: no {META} beside it: not a complete encoder cache "
                                "(python -m diffasr.bin.extract_encoder_cache writes one)")
    meta = json.loads(meta_path.read_text())
    expected = frozen_fingerprint(**{k: v for k, v in encoder_conf.items() if k in FROZEN_KEYS})
    if meta.get("fingerprint") != expected:
        raise EncoderCacheError(
            f"{scp}: written by another frozen encoder ({meta.get('frozen')}, fingerprint "
            f"{meta.get('fingerprint')}); this config needs fingerprint {expected}: extract it again"
        )
    if keys is not None:
        cached = set(read_kv(scp))
        missing = [k for k in keys if k not in cached]
        if missing:
            raise EncoderCacheError(f"{scp}: no frames for {len(missing)} utterances of {keys_source}, "
                                    f"e.g. {missing[0]!r}: the cache was made for another set")
