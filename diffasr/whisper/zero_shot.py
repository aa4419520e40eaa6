"""Whisper tiny.en zero-shot: the released model, untouched, as a reference system.

What our fine-tuned systems must not fall below on voices they never heard
(``bench/heldout_voices.py``). Whisper reads audio as it was trained to: the log-mel
padded to its 30-s window, all 1500 encoder frames, and its own decoder over the
converted weights (``diffasr.whisper.checkpoint``): greedy with a repetition guard
(``greedy``), or openai-whisper's beam search. The text is normalised as the corpus's
transcripts are (``normalize_hypothesis``: upper case, no punctuation, numbers spelled
out), so that sclite counts words, not Whisper's casing and punctuation.

    whisper = ZeroShotWhisper(beam_size=1)
    whisper.transcribe(audio)  # 16 kHz mono float32 -> "HELLO WORLD"
"""

import re
from typing import List

import numpy as np
import torch

from diffasr.data.text import normalize_transcript
from diffasr.whisper.tokenizer import END, NO_TIMESTAMPS, START, WhisperTextTokenizer, whisper_vocabulary

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30  # Whisper's input window (its position table)


def greedy(decoder, frames: torch.Tensor, max_tokens: int = 96) -> List[int]:
    """Whisper's greedy decoding from <|startoftranscript|><|notimestamps|>, stopping on
    <|endoftext|> or on a 4-gram repeated a fourth time; returns the text's token ids.

    decoder: openai-whisper's ``TextDecoder``; frames: [1, T, D] encoder output.
    """
    vocabulary = whisper_vocabulary()
    tokens = [vocabulary.index(START), vocabulary.index(NO_TIMESTAMPS)]
    end = vocabulary.index(END)
    prompt = len(tokens)
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = decoder(torch.tensor([tokens]), frames)[0, -1]
            logits[end + 1:] = -float("inf")  # no special or timestamp tokens in the text
            token = int(logits.argmax())
            if token == end:
                break
            tokens.append(token)
            text = tokens[prompt:]
            if len(text) >= 16 and sum(text[i: i + 4] == text[-4:] for i in range(len(text) - 3)) > 3:
                break
    return tokens[prompt:]


def window_mel(speech: torch.Tensor) -> torch.Tensor:
    """[80, 3000] log-mel of one utterance ([samples], 16 kHz) padded to Whisper's 30-s window."""
    from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

    return pad_or_trim(log_mel_spectrogram(speech, padding=N_SAMPLES)[:, :N_FRAMES], N_FRAMES)


def window_frames(encoder, speech: torch.Tensor) -> torch.Tensor:
    """All 1500 frames [1, 1500, D] of Whisper's ``AudioEncoder`` over the 30-s padded window
    (what Whisper's decoder was trained on)."""
    with torch.no_grad():
        return encoder(window_mel(speech)[None])


def normalize_hypothesis(text: str) -> str:
    """``normalize_transcript`` word by word: a word it cannot spell out stays as written
    (upper case, punctuation dropped) and costs one error, where the whole sentence would
    have been refused (a transcript with "3.5" is unusable, a hypothesis still has words).

    >>> normalize_hypothesis("In 1887, the C1 language (21 words) wasn't used.")
    "IN ONE THOUSAND EIGHT HUNDRED AND EIGHTY SEVEN THE C1 LANGUAGE TWENTY ONE WORDS WASN'T USED"
    """
    words = (normalize_transcript(raw) or re.sub(r"[^A-Z0-9']", "", raw.upper()).strip("'") for raw in text.split())
    return " ".join(w for w in words if w)


class ZeroShotWhisper:
    """Whisper tiny.en as released; ``transcribe`` gives a normalised transcript.

    beam_size 1: ``greedy`` (with its repetition guard); more: openai-whisper's beam search
    (temperature 0, no timestamps), as faster-whisper decodes by default with 5.
    """

    def __init__(self, name: str = "tiny.en", beam_size: int = 1, device: str = "cpu"):
        from diffasr.whisper.checkpoint import load_whisper

        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.model = load_whisper(name, device=device).eval()
        self.beam_size = beam_size
        self.device = device
        self.tokenizer = WhisperTextTokenizer()

    def transcribe(self, audio: np.ndarray) -> str:
        """Normalised transcript of one utterance (16 kHz mono samples, at most 30 s)."""
        seconds = len(audio) / SAMPLE_RATE
        if seconds > WINDOW_SECONDS:
            raise ValueError(f"{seconds:.1f} s of audio; Whisper reads at most {WINDOW_SECONDS} s at once")
        speech = torch.as_tensor(np.asarray(audio, dtype=np.float32), device=self.device)
        if self.beam_size == 1:
            ids = greedy(self.model.decoder, window_frames(self.model.encoder, speech))
            text = self.tokenizer.tokens2text(self.tokenizer.vocabulary[i] for i in ids)
        else:
            import whisper

            options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False,
                                              beam_size=self.beam_size)
            with torch.no_grad():
                text = whisper.decode(self.model, window_mel(speech), options).text
        return normalize_hypothesis(text)


def decode_data_dir(data_dir, decode_dir, beam_size: int = 5, name: str = "tiny.en") -> None:
    """Whisper ``name`` zero-shot over every utterance of a data dir: ``text`` and ``timing``
    in ``decode_dir``, laid out as stage 6 writes a trained system's (``diffasr.bin.score``
    scores it, RESULTS.md lists it)."""
    import time
    from pathlib import Path

    from tqdm import tqdm

    from diffasr.audio import read_listed
    from diffasr.datadir import read_kv, write_kv

    data_dir, decode_dir = Path(data_dir), Path(decode_dir)
    whisper = ZeroShotWhisper(name, beam_size=beam_size)
    hyps, timing = {}, {}
    wav_scp = data_dir / "wav.scp"
    for utt, path in tqdm(read_kv(wav_scp).items(), desc=f"whisper {name} beam {beam_size}", leave=False):
        audio = read_listed(path, utt, SAMPLE_RATE, source=wav_scp)
        start = time.perf_counter()
        hyps[utt] = whisper.transcribe(audio)
        timing[utt] = f"{time.perf_counter() - start:.4f} {len(audio) / SAMPLE_RATE:.4f}"
    decode_dir.mkdir(parents=True, exist_ok=True)
    write_kv(decode_dir / "text", hyps)  # an empty hypothesis stays as a bare key
    write_kv(decode_dir / "timing", timing)
