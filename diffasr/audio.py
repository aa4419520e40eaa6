"""Checks and conversions of audio given by users (uploads, recordings).

Every refusal is a ``ValueError`` whose message names the input; ``AudioError``
adds the HTTP status a server answers with.
"""

from __future__ import annotations

import io
import math
import os
import struct
from typing import List, Tuple, Union

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """Audio that cannot be used; ``status`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_finite(samples: np.ndarray, what: str, offset_seconds: float = 0.0, rate: int = 16000) -> None:
    """Refuse NaN/inf samples (they decode to silence or garbage without a word)."""
    bad = ~np.isfinite(samples)
    if bad.any():
        at = offset_seconds + int(np.argmax(bad)) / rate
        raise AudioError(f"{what} has {int(bad.sum())} NaN/inf samples (the first at {at:.2f} s)")


SILENT_PEAK = 1e-4  # below this (about -80 dBFS) a recording holds no voice to learn


def check_enrollment(samples: np.ndarray, what: str, rate: int, min_seconds: float,
                     max_seconds: float) -> np.ndarray:
    """The enrollment as the model reads it, checked once where it enters: NaN/inf, silent
    and shorter than ``min_seconds`` are refused, naming ``what``; longer than
    ``max_seconds`` is cut to its first ``max_seconds`` with a warning."""
    import logging

    check_finite(samples, what, rate=rate)
    seconds = samples.size / rate
    if seconds < min_seconds:
        raise AudioError(f"{what} lasts {seconds:.2f} s; give at least {min_seconds:g} s of the target "
                         "speaker alone")
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak < SILENT_PEAK:
        raise AudioError(f"{what} is silent (peak {peak:.1e}); give a recording of the target speaker alone")
    if seconds > max_seconds:
        logging.getLogger(__name__).warning(
            f"{what} lasts {seconds:.1f} s; the model reads at most {max_seconds:g} s of an enrollment: "
            f"using its first {max_seconds:g} s")
        samples = samples[: int(max_seconds * rate)]
    return samples


def wav_truncation(head: bytes, size: int) -> str:
    """Why a RIFF/WAVE file of ``size`` bytes starting with ``head`` is incomplete ('' if
    it is not a WAV or is whole).  libsndfile reads a truncated WAV without complaint."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return ""
    little = head[:4] == b"RIFF"
    position = 12
    while position + 8 <= len(head):
        chunk, length = head[position:position + 4], struct.unpack("<I" if little else ">I", head[position + 4:position + 8])[0]
        if chunk == b"data":
            available = size - (position + 8)
            if length != 0xFFFFFFFF and length > available:  # 0xFFFFFFFF: streamed, size unknown
                return (f"truncated WAV: its header announces {length} bytes of samples, "
                        f"the file holds {max(available, 0)}")
            return ""
        position += 8 + length + (length & 1)
    if position + 8 > size:
        return "truncated WAV: the file ends before its data chunk"
    return ""


def check_wav_file(path: Union[str, os.PathLike]) -> None:
    """Refuse a WAV file cut short (a header that announces more samples than there are)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    reason = wav_truncation(head, os.path.getsize(path))
    if reason:
        raise AudioError(f"{path}: {reason}")


def decode_upload(data: bytes, rate: int, what: str) -> Tuple[np.ndarray, List[str]]:
    """Mono float32 samples at ``rate`` of an uploaded file, and the conversions made.

    Stereo is down-mixed (channel mean) and other rates are resampled (polyphase), each
    said in the returned notes; empty, truncated, non-audio and NaN/inf input is refused.
    """
    if not data:
        raise AudioError(f"{what} is empty (0 bytes)")
    reason = wav_truncation(data[:4096], len(data))
    if reason:
        raise AudioError(f"{what}: {reason}")
    try:
        samples, source_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError
        raise AudioError(f"{what} is not audio that libsndfile reads (WAV, FLAC, OGG...): {e}", 415) from None
    if samples.shape[0] == 0:
        raise AudioError(f"{what} holds no samples")
    notes = []
    if samples.shape[1] > 1:
        notes.append(f"{what}: {samples.shape[1]} channels down-mixed to mono (channel mean)")
    samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    check_finite(samples, what, rate=source_rate)
    if source_rate != rate:
        from scipy.signal import resample_poly

        gcd = math.gcd(int(source_rate), int(rate))
        samples = resample_poly(samples, rate // gcd, source_rate // gcd).astype(np.float32)
        notes.append(f"{what}: resampled from {source_rate} Hz to {rate} Hz")
    return np.ascontiguousarray(samples, dtype=np.float32), notes
