"""Synthetic speakers of the embedded corpus: espeak-ng and flite voices.

Each speaker is a different base voice (accent / synthesiser) and variant with
its own pitch, rate and level, so that a speaker encoder has real differences to
learn. Audio is returned as 16 kHz mono float32.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from diffasr.data import DataPrepError

SAMPLE_RATE = 16000
# Bump when synthesis changes, so cached pool files are not reused.
SYNTH_VERSION = 1


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker. pitch: espeak 0-99 or flite mean F0 in Hz; rate: espeak
    words per minute or flite duration stretch; gain_db: level offset of the speaker."""
    spk: str
    engine: str  # "espeak-ng" or "flite"
    voice: str
    pitch: float
    rate: float
    gender: str
    gain_db: float = 0.0

    def key(self) -> str:
        """Stable short hash of everything that changes the audio."""
        spec = repr(sorted(asdict(self).items())) + f"v{SYNTH_VERSION}"
        return hashlib.sha1(spec.encode()).hexdigest()[:10]


def _e(i: int, voice: str, pitch: int, rate: int, gender: str, gain_db: float = 0.0) -> Voice:
    return Voice(f"syn{i:03d}", "espeak-ng", voice, pitch, rate, gender, gain_db)


def _f(i: int, voice: str, f0: int, stretch: float, gender: str, gain_db: float = 0.0) -> Voice:
    return Voice(f"syn{i:03d}", "flite", voice, f0, stretch, gender, gain_db)


# The hand-picked first 32 (ordered so that any evenly spaced subset, see assign_splits,
# mixes engines, accents and genders): 27 espeak-ng accent+variant pairs, 5 flite voices.
_CURATED: List[Voice] = [
    _e(1, "en-us+m1", 50, 165, "m"),
    _e(2, "en-gb+f2", 62, 160, "f", -2),
    _f(3, "slt", 175, 1.0, "f"),
    _e(4, "en-gb-scotland+m3", 35, 170, "m", 1),
    _e(5, "en-us+f4", 70, 150, "f"),
    _f(6, "awb", 110, 1.05, "m", -1),
    _e(7, "en-029+m7", 45, 180, "m"),
    _e(8, "en-gb-x-rp+f1", 55, 155, "f", 2),
    _e(9, "en-us-nyc+m2", 30, 175, "m"),
    _e(10, "en-gb-x-gbclan+f3", 66, 165, "f", -1),
    _f(11, "rms", 95, 1.0, "m"),
    _e(12, "en-gb-x-gbcwmd+f5", 58, 145, "f"),
    _e(13, "en+m4", 55, 150, "m", -2),
    _e(14, "en-us+klatt2", 60, 160, "m"),
    _e(15, "en-gb-scotland+f2", 75, 160, "f", 1),
    _f(16, "kal16", 105, 1.1, "m"),
    _e(17, "en-us+m6", 25, 155, "m", 2),
    _e(18, "en-029+f1", 50, 175, "f"),
    _e(19, "en-gb-x-gbcwmd+m5", 40, 160, "m"),
    _e(20, "en-us-nyc+f3", 80, 150, "f", -1),
    _e(21, "en-gb+m8", 38, 185, "m"),
    _e(22, "en-gb-x-rp+m2", 65, 140, "m", 1),
    _e(23, "en-us+klatt4", 45, 170, "f"),
    _f(24, "kal", 125, 0.95, "m", -2),
    _e(25, "en-gb-x-gbclan+m7", 20, 150, "m"),
    _e(26, "en-us+f2", 90, 165, "f", 2),
    _e(27, "en-gb-scotland+m1", 70, 190, "m"),
    _e(28, "en-029+f5", 35, 155, "f", -1),
    _e(29, "en-gb+klatt3", 50, 175, "m"),
    _e(30, "en-us+m5", 60, 135, "m"),
    _e(31, "en-gb-x-rp+f4", 45, 170, "f", 1),
    _e(32, "en-us-nyc+m3", 42, 200, "m", -1),
]

# espeak-ng's English accents and those of its voice variants that sound like a person
# (robotic, whispered and novelty variants left out). Variant names are espeak-ng's.
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc", "en")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Adam", "Alex", "Andy", "Antonio",
                 "Benjamin", "Caleb", "David", "Denis", "Diogo", "Ed", "Edward", "Gene", "Gustave",
                 "Henrique", "Hugo", "Jacky", "John", "Lee", "Marco", "Mario", "Max", "Michael",
                 "Miguel", "Mike", "Paul", "Pedro", "Quincy", "Rob", "Robert", "Zac", "norbert",
                 "sandro", "travis", "victor", "grandpa", "klatt2", "klatt3")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "Auntie", "Belinda",
                   "Linda", "Steph", "anika", "shelby", "grandma", "klatt4")
FLITE_VOICES = (("slt", "f", 150, 200), ("awb", "m", 90, 130), ("rms", "m", 80, 120),
                ("kal16", "m", 90, 130), ("kal", "m", 95, 140))  # name, gender, f0 range (Hz)


def generated_voices(count: int, first_index: int, seed: int = 20261201) -> List[Voice]:
    """``count`` more speakers: accent x variant pairs not used before, each with its own
    pitch, rate and level drawn from a fixed seed (the pool is the same on every machine);
    every eighth a flite voice at its own mean F0 and speed."""
    rng = np.random.default_rng(seed)
    used = {v.voice for v in _CURATED if v.engine == "espeak-ng"}
    # Male and female voices alternate, each drawn in its own shuffled order.
    by_gender = {}
    for gender, variants in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS)):
        pairs = [f"{accent}+{variant}" for variant in variants for accent in ACCENTS]
        pairs = [p for p in pairs if p not in used]
        by_gender[gender] = iter([pairs[i] for i in rng.permutation(len(pairs))])
    voices: List[Voice] = []
    espeak_taken = flite_taken = 0
    for index in range(first_index, first_index + count):
        if index % 8 == 0:
            name, gender, f0_lo, f0_hi = FLITE_VOICES[flite_taken % len(FLITE_VOICES)]
            flite_taken += 1
            voices.append(_f(index, name, int(rng.integers(f0_lo, f0_hi + 1)),
                             round(float(rng.uniform(0.85, 1.2)), 2), gender,
                             round(float(rng.uniform(-2, 2)), 1)))
            continue
        gender = "mf"[espeak_taken % 2]
        espeak_taken += 1
        voice = next(by_gender[gender])
        pitch = int(rng.integers(15, 60)) if gender == "m" else int(rng.integers(45, 95))
        voices.append(_e(index, voice, pitch, int(rng.integers(135, 200)), gender,
                         round(float(rng.uniform(-2, 2)), 1)))
    return voices


# 160 speakers: the curated 32, then 128 generated ones (113 espeak-ng, 15 flite).
VOICES: List[Voice] = _CURATED + generated_voices(128, len(_CURATED) + 1)


def assign_splits(voices: Sequence[Voice], n_train: int, n_dev: int, n_test: int) -> Dict[str, List[Voice]]:
    """Disjoint train/dev/test speakers from the first n_train+n_dev+n_test voices.

    Held-out speakers are evenly spaced over the list (alternately dev and test) so
    that each split gets a spread of engines and genders.
    """
    n = n_train + n_dev + n_test
    if n > len(voices):
        raise DataPrepError(f"{n} speakers requested, only {len(voices)} voices are defined")
    held = n_dev + n_test
    positions = [int((k + 1) * n / held) - 1 for k in range(held)] if held else []
    dev_pos, test_pos = [], []
    for k, pos in enumerate(positions):  # alternate; once one split is full the other takes the rest
        if (k % 2 == 0 and len(dev_pos) < n_dev) or len(test_pos) >= n_test:
            dev_pos.append(pos)
        else:
            test_pos.append(pos)
    chosen = list(voices[:n])
    return {
        "train": [v for i, v in enumerate(chosen) if i not in positions],
        "dev": [chosen[i] for i in dev_pos],
        "test": [chosen[i] for i in test_pos],
    }


def _run(cmd: List[str], what: str) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise DataPrepError(f"{cmd[0]} not found: install the Debian package {cmd[0]} ({what})") from None
    except subprocess.CalledProcessError as e:
        raise DataPrepError(f"{cmd[0]} failed for {what}: {e.stderr.decode(errors='replace').strip()}") from None


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """Speak `text` (a normalised transcript) with `voice`; 16 kHz mono float32."""
    # Lower case reads as words; upper case makes the synthesisers spell acronyms.
    spoken = text.lower()
    with tempfile.TemporaryDirectory(prefix="diffasr_tts_") as tmp:
        wav, txt = Path(tmp) / "out.wav", Path(tmp) / "in.txt"
        txt.write_text(spoken + "\n", encoding="utf-8")
        if voice.engine == "espeak-ng":
            _run(["espeak-ng", "-v", voice.voice, "-p", str(int(voice.pitch)), "-s", str(int(voice.rate)),
                  "-f", str(txt), "-w", str(wav)], f"{voice.spk} ({voice.voice})")
        elif voice.engine == "flite":
            _run(["flite", "-voice", voice.voice, "--setf", f"int_f0_target_mean={voice.pitch}",
                  "--setf", f"duration_stretch={voice.rate}", "-f", str(txt), "-o", str(wav)],
                 f"{voice.spk} ({voice.voice})")
        else:
            raise DataPrepError(f"unknown TTS engine {voice.engine!r} for {voice.spk}")
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio[:, 0]
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    # Common peak level, then the speaker's own offset.
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        raise DataPrepError(f"{voice.spk} ({voice.engine} {voice.voice}) produced silence for {text!r}")
    return (audio * (0.5 / peak) * 10 ** (voice.gain_db / 20)).astype(np.float32)
