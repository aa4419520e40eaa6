"""Reading speaker audio with errors that name the utterance and the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from diffasr.audio import check_wav_file


class SpeakerDataError(ValueError):
    """Bad speaker data; the message names the list file, utterance and audio path."""


def _where(source: Optional[os.PathLike], utt: Optional[str] = None) -> str:
    """``<list file>:<line>: `` of the utterance (``<list file>: `` if it is not listed)."""
    if not source:
        return ""
    if utt is not None and Path(source).is_file():
        with open(source, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if line.split(maxsplit=1)[:1] == [utt]:
                    return f"{source}:{lineno}: "
    return f"{source}: "


def audio_frames(path: str, utt: str, sample_rate: int, what: str = "audio",
                 source: Optional[os.PathLike] = None) -> int:
    """Number of samples in `path`, checking it exists, is readable, mono and at `sample_rate`."""
    info = _info(path, utt, what, source)
    _check_format(info.samplerate, info.channels, info.frames, path, utt, sample_rate, what, source)
    return info.frames


def read_audio(path: str, utt: str, sample_rate: int, what: str = "audio",
               source: Optional[os.PathLike] = None, start: int = 0,
               stop: Optional[int] = None) -> np.ndarray:
    """Samples `start:stop` of a mono wav as float32 in [-1, 1].

    >>> # read_audio("/data/a.wav", "spk1-0001", 16000).shape -> (n_samples,)
    """
    _info(path, utt, what, source)  # existence/readability with a clear message
    try:
        check_wav_file(path)  # libsndfile reads a WAV cut short without complaint
        wav, sr = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, ...
        raise SpeakerDataError(f"{_where(source, utt)}cannot read {what} of utterance '{utt}' "
                               f"({path}): {e}") from None
    _check_format(sr, wav.shape[1], len(wav) if stop is None and start == 0 else None,
                  path, utt, sample_rate, what, source)
    if not np.isfinite(wav).all():
        raise SpeakerDataError(f"{_where(source, utt)}{what} of utterance '{utt}' ({path}) has "
                               f"{int((~np.isfinite(wav)).sum())} NaN/inf samples")
    return np.ascontiguousarray(wav[:, 0])


def _info(path: str, utt: str, what: str, source: Optional[os.PathLike]):
    if not Path(path).is_file():
        raise SpeakerDataError(f"{_where(source, utt)}{what} of utterance '{utt}' does not exist: {path}")
    try:
        return sf.info(path)
    except Exception as e:
        raise SpeakerDataError(f"{_where(source, utt)}cannot read {what} of utterance '{utt}' "
                               f"({path}): {e}") from None


def _check_format(sr: int, channels: int, frames: Optional[int], path: str, utt: str,
                  sample_rate: int, what: str, source: Optional[os.PathLike]) -> None:
    if sr != sample_rate:
        raise SpeakerDataError(f"{_where(source, utt)}{what} of utterance '{utt}' ({path}) is "
                               f"{sr} Hz; expected {sample_rate} Hz")
    if channels != 1:
        raise SpeakerDataError(f"{_where(source, utt)}{what} of utterance '{utt}' ({path}) has "
                               f"{channels} channels; expected mono")
    if frames == 0:
        raise SpeakerDataError(f"{_where(source, utt)}{what} of utterance '{utt}' ({path}) is empty")
