"""Target-speaker mixing: target + interferers + noise, LibriMix conventions.

Levels: the target is loudness-normalised to a LUFS value (ITU-R BS.1770 via
pyloudnorm, as LibriMix does); each interferer is scaled to a drawn
target-to-interferer ratio and the noise to a drawn signal-to-noise ratio, both
measured as mean power of the target over mean power of the other source, each
over its own samples. The mixture spans all sources ("max" mode: the target at
0, interferers at an offset). If the mix exceeds MAX_AMP, the mixture and all its
sources are scaled down together (LibriMix's clipping rule) and the recorded
gains are the final ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import resample_poly

from diffasr.data import DataPrepError

SAMPLE_RATE = 16000
MAX_AMP = 0.9  # LibriMix's ceiling after clipping renormalisation


@dataclass(frozen=True)
class MixSetting:
    """Ranges the mixing draws from (uniform). sir_db: target over each interferer;
    snr_db: target over noise; target_lufs: LibriMix's source loudness range.

    every_talker_target: each talker of a mixture is the target once (the same audio,
    that talker's enrollment and transcript), so that loudness says nothing about whom
    to transcribe; with a symmetric sir_db the target is the quieter talker half the time.
    absent_share: target-absent examples per present one: a mixture with the enrollment
    of a voice that is not in it and an empty transcript.
    """
    sir_db: Tuple[float, float]
    snr_db: Tuple[float, float]
    n_interferers: Tuple[int, int] = (1, 2)
    target_lufs: Tuple[float, float] = (-33.0, -25.0)
    every_talker_target: bool = False
    absent_share: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.absent_share < 1.0:
            raise ValueError(f"absent_share must be in [0, 1), got {self.absent_share}")


MIX_SETTINGS: Dict[str, MixSetting] = {
    # Two talkers, each the target in turn, at -10..+10 dB of each other (Libri2Mix-style
    # target-speaker lists), and 10 % target-absent pairs: the enrollment decides.
    "each_target": MixSetting(sir_db=(-10.0, 10.0), snr_db=(5.0, 20.0), n_interferers=(1, 1),
                              every_talker_target=True, absent_share=0.1),
    # Moderate overlap: the target is the loudest speaker.
    "default": MixSetting(sir_db=(0.0, 10.0), snr_db=(5.0, 20.0)),
    # The project brief's -20..5 dB: interferers may be far louder than the target.
    "hard": MixSetting(sir_db=(-20.0, 5.0), snr_db=(0.0, 10.0)),
}


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def ratio_db(reference: np.ndarray, other: np.ndarray) -> float:
    """10 log10 of mean power ratio (the SIR/SNR definition used throughout)."""
    return 10.0 * math.log10(power(reference) / power(other))


def gain_for_ratio(reference_power: float, source_power: float, ratio: float) -> float:
    """Gain on a source so that reference_power / (gain^2 source_power) is `ratio` dB."""
    return math.sqrt(reference_power / (source_power * 10.0 ** (ratio / 10.0)))


_METER = pyloudnorm.Meter(SAMPLE_RATE)


def loudness_gain(audio: np.ndarray, target_lufs: float, path: str) -> float:
    """Gain that brings `audio` to `target_lufs` integrated loudness."""
    if len(audio) < int(0.4 * SAMPLE_RATE):  # one BS.1770 gating block
        raise DataPrepError(f"{path}: too short for loudness measurement ({len(audio)} samples)")
    lufs = _METER.integrated_loudness(audio.astype(np.float64))
    if not math.isfinite(lufs):
        raise DataPrepError(f"{path}: audio is silent")
    return 10.0 ** ((target_lufs - lufs) / 20.0)


def read_audio(path: str, what: str = "audio") -> np.ndarray:
    """Mono float32 at 16 kHz; a corrupt, empty or unreadable file is an error naming it."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad files
        raise DataPrepError(f"{path}: cannot read {what}: {e}") from None
    if audio.shape[0] == 0:
        raise DataPrepError(f"{path}: {what} file is empty")
    audio = audio[:, 0]  # WHAM! noise is stereo: first channel
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return audio


def colored_noise(length: int, rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, float]]:
    """Unit-power noise with a random 1/f^beta spectrum (white..brown) and slow
    amplitude modulation, like a fan, traffic or a crowd swelling. Returns the
    noise and its parameters."""
    beta = float(rng.uniform(0.0, 2.0))
    mod_hz = float(rng.uniform(0.1, 4.0))
    mod_depth = float(rng.uniform(0.0, 0.6))
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1.0 / SAMPLE_RATE)
    spectrum *= np.maximum(freqs, 20.0) ** (-beta / 2.0)  # flat below 20 Hz: no DC drift
    noise = np.fft.irfft(spectrum, n=length)
    t = np.arange(length) / SAMPLE_RATE
    noise *= 1.0 + mod_depth * np.sin(2 * np.pi * mod_hz * t + rng.uniform(0, 2 * np.pi))
    noise /= math.sqrt(power(noise))
    return noise.astype(np.float32), {"beta": round(beta, 4), "mod_hz": round(mod_hz, 4),
                                      "mod_depth": round(mod_depth, 4)}


def fit_length(audio: np.ndarray, length: int, start: int) -> np.ndarray:
    """`length` samples of `audio` from `start`, looping a file that is too short."""
    if len(audio) < start + length:
        audio = np.tile(audio, math.ceil((start + length) / len(audio)))
    return audio[start:start + length]


def mixture_length(target_len: int, interferers: Sequence[Tuple[int, int]]) -> int:
    """Samples spanned by the target (at 0) and (length, offset) interferers."""
    return max([target_len] + [n + off for n, off in interferers])


def mix(target: np.ndarray, target_gain: float, interferers: Sequence[Tuple[np.ndarray, int, float]],
        noise: Optional[np.ndarray], noise_gain: float) -> Tuple[np.ndarray, np.ndarray, float]:
    """Sum the scaled sources; apply the clipping rule.

    interferers: (audio, offset, gain). noise: already mixture length, or None.
    Returns (mixture, target as mixed, clip scale); multiply every gain by the
    clip scale to get the gains actually in the mixture.
    """
    length = mixture_length(len(target), [(len(a), off) for a, off, _ in interferers])
    mixture = np.zeros(length, dtype=np.float64)
    clean = np.zeros(length, dtype=np.float64)
    clean[:len(target)] = target_gain * target
    mixture += clean
    for audio, offset, gain in interferers:
        mixture[offset:offset + len(audio)] += gain * audio
    if noise is not None:
        mixture += noise_gain * noise
    # The clean target is written too, so it must not clip either.
    peak = max(float(np.max(np.abs(mixture))), float(np.max(np.abs(clean))))
    scale = MAX_AMP / peak if peak > MAX_AMP else 1.0
    return (mixture * scale).astype(np.float32), (clean * scale).astype(np.float32), scale
