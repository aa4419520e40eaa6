"""The one reader of audio: every file, upload or sample array that enters diffasr is
checked here, once, and travels on as a ``CheckedAudio`` that nothing below checks again.

A source is read for a ``Role``: what it is to the caller (the mixture decoded in one
piece, a long recording, the enrollment, or a data set's audio) and the lengths that takes.
The checks, each run once per input, in this order:

========  ==================================================================================
exists    a path names a file
format    libsndfile reads it (an upload: 415 otherwise); not 0 bytes; an array: 1-D
whole     not a WAV cut short (libsndfile reads one without complaint)
channels  mono; an upload is down-mixed (said in ``notes``), a file refused (sox command)
rate      the model's; an upload is resampled (said), a file refused (sox command)
length    not empty; at least the role's minimum; over its maximum refused, or an
          enrollment cut to its first ``max_seconds``, with a warning
finite    no NaN/inf sample (the first one's time is given)
audible   an enrollment is not silent
========  ==================================================================================

Every refusal is an ``AudioError`` (a ``ValueError``) whose message starts with the
input's name, the file and its role (``the enrollment alice.wav``, ``the recording upload
'a.wav'``, ``data/test/wav.scp:2: audio of utterance 'u1' (/d/u1.wav)``), and carries the
HTTP status a server answers with.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

Source = Union[str, os.PathLike, bytes, np.ndarray]

MIN_AUDIO_SECONDS = 0.1  # below this the encoder has no frame to give
MIN_ENROLLMENT_SECONDS = 1.0  # shorter enrollments say too little about the voice
SILENT_PEAK = 1e-4  # below this (about -80 dBFS) a recording holds no voice


class AudioError(ValueError):
    """Audio that cannot be used; ``status`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Role:
    """What an input is to its caller, and the lengths that takes."""

    name: str  # mixture, recording, enrollment, audio (of a data set)
    min_seconds: float = 0.0  # shorter is refused (0: only an empty input)
    too_short: str = ""  # the refusal's advice
    max_seconds: float = math.inf  # longer is refused, or (cut) only its first max_seconds are used
    too_long: str = ""  # why the maximum, in the refusal
    status: int = 400  # the HTTP answer to an input over the maximum
    cut: bool = False
    refuse_silent: bool = False

    @classmethod
    def mixture(cls, max_seconds: float) -> "Role":
        """Audio decoded in one piece: at most the model's ``max_seconds``."""
        return cls("mixture", MIN_AUDIO_SECONDS, f"at least {MIN_AUDIO_SECONDS:g} s is needed (a truncated file?)",
                   max_seconds, f"longer than this model's maximum of {max_seconds:g} s (max_audio_seconds in "
                   "its config.yaml, or the encoder's position table); transcribe_long (the CLI, the server, "
                   "stage 6 with --long_form true) splits a longer recording at its pauses")

    @classmethod
    def recording(cls, max_seconds: float = math.inf, too_long: str = "", status: int = 400) -> "Role":
        """Audio of any length, split at its pauses (or within ``max_seconds``, a server's limit)."""
        return cls("recording", MIN_AUDIO_SECONDS, f"at least {MIN_AUDIO_SECONDS:g} s is needed (a truncated file?)",
                   max_seconds, too_long, status)

    @classmethod
    def enrollment(cls, max_seconds: float, cut: bool = True) -> "Role":
        """The target speaker alone: at least 1 s, not silent; over the model's ``max_seconds``
        its first ``max_seconds`` are used (``cut``; a data set's loader cannot cut: refused)."""
        return cls("enrollment", MIN_ENROLLMENT_SECONDS, f"give at least {MIN_ENROLLMENT_SECONDS:g} s of the target "
                   "speaker alone", max_seconds, f"longer than the {max_seconds:g} s of an enrollment that "
                   "the model reads", cut=cut, refuse_silent=True)


DATA = Role("audio")  # a data set's audio for training or embedding: any non-empty length


@dataclass(frozen=True)
class CheckedAudio:
    """Mono audio at ``rate`` that passed every check of its role.

    The samples are held (``data``) or, for a file read for long-form decoding, read again
    from ``path`` when used (the first ``frames`` of it), so that memory does not grow with
    the recording.  ``notes``: the conversions made (an upload's down-mix, resampling).
    """

    name: str  # how messages name it: the file and its role
    role: str
    rate: int
    frames: int  # the samples used (an enrollment cut to its maximum: the cut length)
    path: Optional[str] = None
    data: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    notes: Tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def samples(self) -> np.ndarray:
        """All the samples used, float32."""
        return self.span(0, self.frames)

    def span(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` (of a file only those are read)."""
        stop = min(stop, self.frames)
        if self.data is not None:
            return self.data[start:stop]
        return sf.read(self.path, start=start, stop=stop, dtype="float32", always_2d=True)[0][:, 0]

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """The samples in blocks of ``size`` (of a file read block by block)."""
        if self.data is not None:
            for start in range(0, self.frames, size):
                yield self.data[start:start + size]
            return
        for block in sf.blocks(self.path, blocksize=size, frames=self.frames, dtype="float32", always_2d=True):
            yield block[:, 0]


# ---------------------------------------------------------------------- the reader
def describe(source: Source, role: Role) -> str:
    """``the <role> <path>``, ``the <role> upload`` or (an array) ``the <role>``."""
    if isinstance(source, np.ndarray):
        return f"the {role.name}"
    if isinstance(source, (bytes, bytearray)):
        return f"the {role.name} upload"
    return f"the {role.name} {source}"


def listed(source: Optional[os.PathLike], utt: str, what: str, path: str) -> "_ListEntry":
    """How messages name an entry of a list: ``<list>:<line>: <what> of utterance '<utt>' (<path>)``
    (the line is looked up only when a message is written: a training crop reads many files)."""
    return _ListEntry(source, utt, what, path)


class _ListEntry:
    """``listed``'s name, written out (and its line looked up) by ``str`` or an f-string."""

    def __init__(self, source: Optional[os.PathLike], utt: str, what: str, path: str):
        self.source, self.utt, self.what, self.path = source, utt, what, path

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = f"{self.source}: "
            if Path(self.source).is_file():
                with open(self.source, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        if line.split(maxsplit=1)[:1] == [self.utt]:
                            where = f"{self.source}:{lineno}: "
                            break
        return f"{where}{self.what} of utterance '{self.utt}' ({self.path})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def read_audio(source: Source, role: Role, rate: int, name: Optional[str] = None, keep: bool = True,
               convert: bool = False) -> CheckedAudio:
    """``source`` (a path, an upload's bytes, or samples at ``rate``) checked once for ``role``.

    ``name``: how messages name it (default: ``describe``).  ``keep``: hold the samples;
    else (a file) they are scanned block by block and read again when used.  ``convert``:
    down-mix and resample (an upload) instead of refusing, each said in ``notes``.
    """
    name = name or describe(source, role)
    notes: List[str] = []
    if isinstance(source, np.ndarray):
        _array(name, source)
        source_rate, frames, path, opener = rate, source.size, None, None
    else:
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            path, size, head = None, len(data), data[:4096]
            opener = lambda: io.BytesIO(data)  # noqa: E731
        else:
            path = str(source)
            _exists(name, path)
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(4096)
            opener = lambda: path  # noqa: E731
        info = _readable(name, opener, size)
        _whole(name, head, size)
        notes += filter(None, [_channels(name, info.channels, path, convert),
                               _rate(name, info.samplerate, rate, path, convert)])
        source_rate, frames = info.samplerate, info.frames
    seconds = _length(name, frames / source_rate, role)  # the seconds used
    used = min(frames, round(seconds * rate)) if source_rate == rate else round(seconds * rate)
    if not keep and path is not None and not notes:  # a file as it is: scanned, read again on use
        peak = _finite(name, _file_blocks(path), rate)
        if role.refuse_silent:
            _audible(name, peak)
        return CheckedAudio(name, role.name, rate, used, path=path)
    if isinstance(source, np.ndarray):
        samples = np.asarray(source, dtype=np.float32)
    else:
        samples = sf.read(opener(), dtype="float32", always_2d=True)[0]
        samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    peak = _finite(name, [samples], source_rate)
    if role.refuse_silent:
        _audible(name, peak)
    if source_rate != rate:
        from scipy.signal import resample_poly

        gcd = math.gcd(int(source_rate), int(rate))
        samples = resample_poly(samples, rate // gcd, source_rate // gcd).astype(np.float32)
    samples = np.ascontiguousarray(samples[:used], dtype=np.float32)
    return CheckedAudio(name, role.name, rate, len(samples), path=path, data=samples, notes=tuple(notes))


def _file_blocks(path: str, size: int = 1 << 20) -> Iterator[np.ndarray]:
    for block in sf.blocks(path, blocksize=size, dtype="float32", always_2d=True):
        yield block[:, 0]


# ---------------------------------------------------------------------- the checks (each once)
def _exists(name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise AudioError(f"{name} does not exist")


def _array(name: str, samples: np.ndarray) -> None:
    if samples.ndim != 1 or samples.size == 0:
        raise AudioError(f"{name}: expected a non-empty 1-D sample array, got shape {samples.shape}")


def _readable(name: str, opener, size: int):
    """soundfile's info of a file or an upload that libsndfile reads."""
    if size == 0:
        raise AudioError(f"{name} is empty (0 bytes)")
    try:
        return sf.info(opener())
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError
        raise AudioError(f"{name}: cannot read it, not audio that libsndfile reads (WAV, FLAC, OGG...): {e}",
                         415) from None


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


def _whole(name: str, head: bytes, size: int) -> None:
    reason = wav_truncation(head, size)
    if reason:
        raise AudioError(f"{name}: {reason}")


def _channels(name: str, channels: int, path: Optional[str], convert: bool) -> Optional[str]:
    if channels == 1:
        return None
    if convert:
        return f"{name}: {channels} channels down-mixed to mono (channel mean)"
    hint = f" (down-mix with: sox {path} -c 1 out.wav)" if path else ""
    raise AudioError(f"{name} has {channels} channels; expected mono{hint}")


def _rate(name: str, source_rate: int, rate: int, path: Optional[str], convert: bool) -> Optional[str]:
    if source_rate == rate:
        return None
    if convert:
        return f"{name}: resampled from {source_rate} Hz to {rate} Hz"
    hint = f" (convert with: sox {path} -r {rate} out.wav)" if path else ""
    raise AudioError(f"{name} is {source_rate} Hz; expected {rate} Hz{hint}")


def _length(name: str, seconds: float, role: Role) -> float:
    """The seconds of the input that are used (an enrollment over its maximum: cut)."""
    if seconds == 0:
        raise AudioError(f"{name} is empty (no samples)")
    if seconds < role.min_seconds:
        raise AudioError(f"{name} lasts {seconds:.2f} s; {role.too_short}")
    if seconds > role.max_seconds:
        if not role.cut:
            raise AudioError(f"{name} lasts {seconds:.1f} s, {role.too_long}", role.status)
        logger.warning(f"{name} lasts {seconds:.1f} s; the model reads at most {role.max_seconds:g} s of an "
                       f"enrollment: using its first {role.max_seconds:g} s")
        return role.max_seconds
    return seconds


def _finite(name: str, blocks: Iterable[np.ndarray], rate: int) -> float:
    """Refuse NaN/inf samples (they decode to silence or garbage without a word); the peak."""
    offset, peak = 0, 0.0
    for block in blocks:
        bad = ~np.isfinite(block)
        if bad.any():
            at = (offset + int(np.argmax(bad))) / rate
            raise AudioError(f"{name} has {int(bad.sum())} NaN/inf samples (the first at {at:.2f} s)")
        if block.size:
            peak = max(peak, float(np.max(np.abs(block))))
        offset += len(block)
    return peak


def _audible(name: str, peak: float) -> None:
    if peak < SILENT_PEAK:
        raise AudioError(f"{name} is silent (peak {peak:.1e}); give a recording of the target speaker alone")


CHECKS = ("_exists", "_array", "_readable", "_whole", "_channels", "_rate", "_length", "_finite", "_audible")


# ---------------------------------------------------------------------- data sets
def listed_frames(path: str, utt: str, rate: int, what: str = "audio", source: Optional[os.PathLike] = None) -> int:
    """Samples in a listed file, checking what its header tells (exists, format, whole,
    channels, rate, not empty) without reading it; the samples are checked when read."""
    name = listed(source, utt, what, path)
    _exists(name, path)
    size = os.path.getsize(path)
    info = _readable(name, lambda: path, size)
    with open(path, "rb") as f:
        _whole(name, f.read(4096), size)
    _channels(name, info.channels, path, False)
    _rate(name, info.samplerate, rate, path, False)
    _length(name, info.frames / rate, DATA)
    return info.frames


def read_listed(path: str, utt: str, rate: int, what: str = "audio", source: Optional[os.PathLike] = None,
                start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """Samples ``start:stop`` of a file listed in a data set (a crop for training: only those
    are read and checked), float32 in [-1, 1]; errors name the list, line and utterance.

    >>> # read_listed("/data/a.wav", "spk1-0001", 16000, source="data/train/wav.scp").shape -> (n,)
    """
    if start == 0 and stop is None:
        return read_audio(path, DATA, rate, name=listed(source, utt, what, path)).data
    listed_frames(path, utt, rate, what, source)
    samples = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)[0][:, 0]
    _finite(listed(source, utt, what, path), [samples], rate)
    return samples
