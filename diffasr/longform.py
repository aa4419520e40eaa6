"""Long recordings: silero-vad segmentation, batched decoding, one merged transcript.

With a trained experiment::

    from diffasr.api import TargetSpeakerASR
    asr = TargetSpeakerASR("exp/asr_diffusion_whisper")
    result = asr.transcribe_long("meeting.wav", enrollment="alice.wav")
    result.text, result.words[0]
    # ('HELLO WORLD ...', Word(word='HELLO', start=12.43, end=12.71, confidence=0.93))

The recording is read in blocks (``soundfile.blocks``) to compute silero-vad's
speech probability of every 32 ms window; then only the speech segments are read
back, a batch at a time, so memory does not grow with the recording.  Over-long
speech regions are split at their quietest window.  Silero's own
``get_speech_timestamps`` needs the whole waveform in memory and splits an
over-long region at its last pause, not its quietest point, so the segmentation
from the window probabilities is written here.

Word times inside a segment are the segment's speech span shared among its words
by length (characters + 1): the diffusion decoder emits no alignment.  They locate
a word to within its segment, not to the frame.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

from diffasr.audio import CheckedAudio
from diffasr.scoring.uncertainty import words_with_confidence

logger = logging.getLogger(__name__)

VAD_RATE = 16000
VAD_WINDOW = 512  # samples silero-vad takes per call at 16 kHz (32 ms)
WINDOW_SECONDS = VAD_WINDOW / VAD_RATE

# A checked recording (``diffasr.audio.read_audio``), or samples already checked; a plain
# path is read as it is (the tests' VAD alone).
Source = Union[CheckedAudio, np.ndarray, str, os.PathLike]


@dataclass
class VADOptions:
    """Segmentation options (seconds unless said)."""

    threshold: float = 0.5  # speech starts at this speech probability ...
    neg_threshold: float = 0.35  # ... and ends when it stays below this one
    min_silence: float = 0.3  # a pause shorter than this does not end a segment
    min_speech: float = 0.25  # shorter speech regions are dropped
    pad: float = 0.1  # kept around each region (never past the middle of a pause)
    max_segment: float = 20.0  # longer regions are split at their quietest window
    block: float = 30.0  # seconds read from the file at a time

    def __post_init__(self):
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise ValueError(f"VAD thresholds need 0 < neg_threshold <= threshold < 1, got "
                             f"{self.neg_threshold} / {self.threshold}")
        if self.max_segment < 1.0:
            raise ValueError(f"max_segment must be at least 1 s, got {self.max_segment}")
        if min(self.min_silence, self.min_speech, self.pad) < 0 or self.block <= 0:
            raise ValueError("VAD durations must be non-negative and block positive")


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the recording
    end: float
    confidence: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: List[Word] = field(default_factory=list)
    tokens: List[str] = field(default_factory=list)
    token_confidences: List[float] = field(default_factory=list)


@dataclass
class LongFormResult:
    text: str
    words: List[Word]
    segments: List[Segment]
    audio_seconds: float
    decode_seconds: float
    segmented: bool = True  # split at its pauses by silero-vad (False: decoded whole)

    @property
    def rtfx(self) -> float:
        """Seconds of audio per second of processing (VAD, encoder and decoding)."""
        return self.audio_seconds / max(self.decode_seconds, 1e-9)

    def ctm(self, name: str, channel: str = "1") -> List[str]:
        """CTM lines ``<name> <channel> <start> <duration> <WORD> <confidence>``."""
        return [f"{name} {channel} {w.start:.3f} {w.end - w.start:.3f} {w.word} {w.confidence:.4f}"
                for w in self.words]


# ---------------------------------------------------------------------- reading
def iter_blocks(source: Source, block_samples: int) -> Iterator[np.ndarray]:
    """Float32 blocks of a mono recording (a file is read block by block)."""
    if isinstance(source, CheckedAudio):
        yield from source.blocks(block_samples)
        return
    if isinstance(source, np.ndarray):
        for start in range(0, len(source), block_samples):
            yield source[start:start + block_samples]
        return
    for block in sf.blocks(str(source), blocksize=block_samples, dtype="float32", always_2d=True):
        yield block[:, 0]


def read_span(source: Source, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of a recording (of a file only those are read)."""
    if isinstance(source, CheckedAudio):
        return source.span(start, stop)
    if isinstance(source, np.ndarray):
        return source[start:stop]
    return sf.read(str(source), start=start, stop=stop, dtype="float32", always_2d=True)[0][:, 0]


# ---------------------------------------------------------------------- VAD
class SpeechActivity:
    """silero-vad speech probability and RMS level of every 32 ms window of a recording.

    Uses silero's ONNX export through onnxruntime: the weights ship in the PyPI wheel,
    and it runs ~4x faster than the TorchScript one on one CPU core.
    """

    def __init__(self):
        import threading

        from silero_vad import load_silero_vad

        self.model = load_silero_vad(onnx=True)
        self._lock = threading.Lock()  # the model carries state from window to window

    def __call__(self, blocks: Iterator[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, int]:
        """Per-window probabilities, RMS levels, and the number of samples read (checked
        samples: ``diffasr.audio``)."""
        with self._lock:
            return self._run(blocks)

    def _run(self, blocks: Iterator[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, int]:
        import torch

        self.model.reset_states()
        probabilities, levels = [], []
        carry = np.zeros(0, dtype=np.float32)
        total = 0
        for block in blocks:
            total += len(block)
            samples = np.concatenate([carry, block]) if carry.size else block
            usable = len(samples) // VAD_WINDOW * VAD_WINDOW
            windows = samples[:usable].reshape(-1, VAD_WINDOW)
            carry = samples[usable:]
            for window in windows:
                probabilities.append(float(self.model(torch.from_numpy(window).unsqueeze(0), VAD_RATE)))
            levels.append(np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1)))
        if carry.size:  # the last partial window, zero-padded as silero pads
            window = np.pad(carry, (0, VAD_WINDOW - carry.size))
            probabilities.append(float(self.model(torch.from_numpy(window).unsqueeze(0), VAD_RATE)))
            levels.append(np.sqrt(np.mean(carry.astype(np.float64) ** 2, keepdims=True)))
        return (np.asarray(probabilities, dtype=np.float32),
                np.concatenate(levels) if levels else np.zeros(0), total)


def speech_regions(probabilities: np.ndarray, options: VADOptions) -> List[Tuple[int, int]]:
    """Speech regions as [start, end) window indices (hysteresis between the thresholds)."""
    min_silence = max(1, round(options.min_silence / WINDOW_SECONDS))
    regions, start, silence_start = [], None, None
    for index, p in enumerate(probabilities):
        if p >= options.threshold:
            if start is None:
                start = index
            silence_start = None
        elif start is not None and p < options.neg_threshold:
            if silence_start is None:
                silence_start = index
            if index + 1 - silence_start >= min_silence:
                regions.append((start, silence_start))
                start, silence_start = None, None
    if start is not None:
        regions.append((start, len(probabilities) if silence_start is None else silence_start))
    min_speech = options.min_speech / WINDOW_SECONDS
    return [(s, e) for s, e in regions if e - s >= min_speech]


def split_at_quietest(start: int, end: int, levels: np.ndarray, max_windows: int) -> List[Tuple[int, int]]:
    """Split [start, end) into pieces of at most ``max_windows``, each cut at the quietest
    window (lowest RMS) among the cuts that leave both pieces within the maximum (in a
    region over twice the maximum: among those that leave both a quarter or more)."""
    if end - start <= max_windows:
        return [(start, end)]
    length = end - start
    # Prefer cuts that make the first piece fit; fall back to the middle half of the region.
    low, high = max(start + length // 4, end - max_windows), min(end - length // 4, start + max_windows)
    if low >= high:
        low, high = start + length // 4, end - length // 4
    cut = low + int(np.argmin(levels[low:high]))
    return split_at_quietest(start, cut, levels, max_windows) + split_at_quietest(cut, end, levels, max_windows)


def segment(probabilities: np.ndarray, levels: np.ndarray, total_samples: int,
            options: VADOptions) -> List[Tuple[float, float]]:
    """Speech segments (start, end) in seconds: regions padded, over-long ones split."""
    regions = speech_regions(probabilities, options)
    max_windows = max(1, int(options.max_segment / WINDOW_SECONDS))
    pieces = [p for s, e in regions for p in split_at_quietest(s, e, levels, max_windows)]
    total = total_samples / VAD_RATE
    pad = options.pad
    segments = []
    for index, (s, e) in enumerate(pieces):
        start, end = s * WINDOW_SECONDS, min(e * WINDOW_SECONDS, total)
        # Pad into a pause, but never past its middle (a cut inside a region gets no pad).
        before = pieces[index - 1][1] * WINDOW_SECONDS if index > 0 else -math.inf
        after = pieces[index + 1][0] * WINDOW_SECONDS if index + 1 < len(pieces) else math.inf
        start = max(0.0, start - min(pad, max(0.0, (start - before) / 2)))
        end = min(total, end + min(pad, max(0.0, (after - end) / 2)))
        end = min(end, start + options.max_segment)
        segments.append((round(start, 3), round(end, 3)))
    return segments


# ---------------------------------------------------------------------- batches
def decode_segments(speech2text, segments: List[np.ndarray],
                    enrollment: Union[None, "Enrollment", List["Enrollment"]] = None,
                    names: Optional[List[str]] = None, options=None) -> list:
    """Decode sample arrays as one padded batch (``Speech2Text``), with one enrollment (of
    one utterance, ``diffasr.espnet2.enrollment.prepare``) for all or one per segment (the
    server batches several speakers together), and ``options`` (a ``DecodeOptions``;
    default: the Speech2Text's own)."""
    import torch

    from diffasr.espnet2.enrollment import NO_ENROLLMENT, Enrollment

    batch = len(segments)
    lengths = torch.tensor([len(s) for s in segments])
    speech = torch.zeros(batch, int(lengths.max()))
    for i, samples in enumerate(segments):
        speech[i, : len(samples)] = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    batched = NO_ENROLLMENT
    if enrollment is not None:
        batched = Enrollment.stack(enrollment if isinstance(enrollment, list) else [enrollment] * batch, names)
    return speech2text(speech, lengths, batched, names, options=options)


# ---------------------------------------------------------------------- words
def timed_words(tokens: Sequence[str], confidences: Sequence[float], start: float, end: float) -> List[Word]:
    """Words of one segment, the segment's span shared among them by length."""
    words = words_with_confidence(list(tokens), list(confidences))
    if not words:
        return []
    weights = np.array([len(w) + 1 for w, _ in words], dtype=np.float64)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    return [Word(w, round(float(edges[i]), 3), round(float(edges[i + 1]), 3), float(c))
            for i, (w, c) in enumerate(words)]


# ---------------------------------------------------------------------- decoding
DecodeBatch = Callable[[List[np.ndarray]], list]  # segments -> Recognition-like results


def plan_batches(durations: Sequence[float], batch_size: int, max_batch_seconds: float) -> List[List[int]]:
    """Segment indices in batches, shortest first (similar lengths waste less padding),
    each of at most ``batch_size`` segments and ``max_batch_seconds`` padded seconds
    (a single segment longer than that is a batch of its own)."""
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    batches: List[List[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        if current is not None and len(current) < batch_size \
                and (len(current) + 1) * durations[index] <= max_batch_seconds:
            current.append(index)
        else:
            batches.append([index])
    return batches


def transcribe_long(
    source: Source,
    decode_batch: DecodeBatch,
    vad: Optional[SpeechActivity] = None,
    options: Optional[VADOptions] = None,
    batch_size: int = 8,
    what: Optional[str] = None,
    progress: bool = False,
    whole: bool = False,
    max_batch_seconds: float = 40.0,
) -> LongFormResult:
    """Segment ``source`` (a checked 16 kHz recording, or samples) and decode its speech segments.

    The driver is ``TargetSpeakerASR.transcribe_long``: it checks the recording (once, in
    ``diffasr.audio``) and bounds ``options.max_segment`` by the model's maximum.
    ``decode_batch`` turns a list of sample arrays into results with ``tokens`` and
    ``confidences`` (``Speech2Text`` outputs); it carries the enrollment and options.
    A batch holds at most ``batch_size`` segments and ``max_batch_seconds`` of padded
    audio (segments x the longest): the decoder's memory grows with the padded batch,
    so a recording with long segments peaks no higher than one with short ones.
    ``whole``: decode it as one segment, without VAD (it fits the model).
    """
    import time

    options = options or VADOptions()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    what = what or getattr(source, "name", "the recording")
    started = time.perf_counter()
    if whole:
        if isinstance(source, CheckedAudio):
            source = source.samples()
        total, segments_s = len(source), [(0.0, len(source) / VAD_RATE)]
    else:
        vad = vad or SpeechActivity()
        probabilities, levels, total = vad(iter_blocks(source, int(options.block * VAD_RATE)))
        segments_s = segment(probabilities, levels, total, options)
        logger.info(f"{what}: {total / VAD_RATE:.1f} s, {len(segments_s)} speech segments")
        if not segments_s:
            logger.warning(f"{what}: no speech found; the transcript is empty")
    results = [None] * len(segments_s)
    batches = plan_batches([e - s for s, e in segments_s], batch_size, max_batch_seconds)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="segments", unit="batch")
    for chosen in batches:
        audio = [read_span(source, round(segments_s[i][0] * VAD_RATE), round(segments_s[i][1] * VAD_RATE))
                 for i in chosen]
        for i, recognition in zip(chosen, decode_batch(audio)):
            results[i] = recognition
    segments = []
    for (start, end), recognition in zip(segments_s, results):
        words = timed_words(recognition.tokens, recognition.confidences, start, end)
        segments.append(Segment(start, end, recognition.text, words,
                                list(recognition.tokens), list(recognition.confidences)))
    words = [w for s in segments for w in s.words]
    return LongFormResult(
        text=" ".join(s.text for s in segments if s.text), words=words, segments=segments,
        audio_seconds=total / VAD_RATE, decode_seconds=time.perf_counter() - started, segmented=not whole,
    )
