"""Stage 4: one embedding per utterance of a data dir, from its enrollment audio.

Writes `<output_dir>/<name>.{ark,scp}` with kaldiio and the same scp into
`<data_dir>/<name>.scp` (ESPnet reads it as a `kaldi_ark` input). Both are written
under temporary names and renamed, so a rerun replaces them consistently. Audio used
by several utterances (one enrollment wav for many mixtures) is embedded once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict

import kaldiio
import numpy as np

from diffasr.audio import listed_frames, read_listed
from diffasr.datadir import read_kv, write_kv
from diffasr.speaker.data import SpeakerDataError

logger = logging.getLogger(__name__)


def embed_scp(encoder, sample_rate: int, scp_path: os.PathLike) -> Dict[str, np.ndarray]:
    """utt -> float32 embedding of the audio that `scp_path` lists for it."""
    scp_path = Path(scp_path)
    if not scp_path.is_file():
        raise SpeakerDataError(f"{scp_path}: missing (stage 1 writes it)")
    utt2path = read_kv(scp_path)
    what = "enrollment audio" if scp_path.name.startswith("enroll") else "audio"
    wav_scp = scp_path.with_name("wav.scp")
    if scp_path.name != "wav.scp" and wav_scp.is_file():  # every utterance needs its enrollment
        for lineno, utt in enumerate(read_kv(wav_scp), 1):
            if utt not in utt2path:
                raise SpeakerDataError(f"{scp_path}: no {what} for utterance '{utt}' of {wav_scp}:{lineno}")
    # Check every file before spending time on the network.
    for utt, path in utt2path.items():
        listed_frames(path, utt, sample_rate, what, scp_path)
    cache: Dict[str, np.ndarray] = {}
    out = {}
    for utt, path in utt2path.items():
        if path not in cache:
            cache[path] = encoder.embed(read_listed(path, utt, sample_rate, what, scp_path))
        out[utt] = cache[path]
    logger.info("%s: %d utterances, %d distinct audio files embedded", scp_path,
                len(out), len(cache))
    return out


def write_embeddings(embeddings: Dict[str, np.ndarray], output_dir: os.PathLike,
                     data_dir: os.PathLike, name: str = "enroll_embed") -> Path:
    """kaldiio ark/scp in output_dir, scp copied to data_dir/<name>.scp; returns that scp."""
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    ark, scp = output_dir / f"{name}.ark", output_dir / f"{name}.scp"
    tmp_ark, tmp_scp = ark.with_name(ark.name + ".new"), scp.with_name(scp.name + ".new")
    with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
        for utt in sorted(embeddings):
            writer(utt, np.asarray(embeddings[utt], dtype=np.float32))
    # The scp names the ark it was written to; point it at the final name.
    entries = {}
    for utt, location in read_kv(tmp_scp).items():
        path, _, offset = location.rpartition(":")
        if Path(path) != tmp_ark:
            raise RuntimeError(f"{tmp_scp}: unexpected ark path '{path}' for '{utt}'")
        entries[utt] = f"{ark}:{offset}"
    os.replace(tmp_ark, ark)
    write_kv(scp, entries)
    tmp_scp.unlink()
    data_scp = Path(data_dir) / f"{name}.scp"
    write_kv(data_scp, entries)
    return data_scp
