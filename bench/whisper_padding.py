#!/usr/bin/env python3
"""How to feed Whisper's frozen encoder: the utterance's own log-mel or Whisper's 30-s padding.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/whisper_padding.py --data_dir data/test_clean --max_utts 100 \\
        --output exp/benchmark_padding/padding.md

For each way (``encoder_conf padding: none`` and ``30s``), on the same utterances:
the frozen encoder's time per utterance (what the cache and every decode pay), and the
WER of Whisper tiny.en itself, zero-shot, greedy, on those encoder frames (its own
decoder, with a repetition guard: at most 3 repeats of a 4-gram; ``diffasr.whisper.zero_shot``),
scored by sclite.
The decision it informs is recorded in docs/DESIGN.md ("Padding").
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from diffasr.datadir import read_kv, write_kv
from diffasr.espnet2.whisper_encoder import WhisperEncoder
from diffasr.scoring.sclite import score_with_sclite
from diffasr.whisper.tokenizer import WhisperTextTokenizer
from diffasr.whisper.zero_shot import greedy, window_frames


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path("data/test_clean"))
    parser.add_argument("--max_utts", type=int, default=100)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("exp/benchmark_padding/padding.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    torch.set_num_threads(args.num_threads)
    wavs = read_kv(args.data_dir / "wav.scp")
    refs = read_kv(args.data_dir / "text", allow_empty_value=True)
    utts = sorted(wavs)[: args.max_utts]
    tokenizer = WhisperTextTokenizer()
    rows = []
    for padding in ("none", "30s"):
        encoder = WhisperEncoder(padding=padding, adapter_blocks=0).eval()
        from diffasr.whisper.checkpoint import load_whisper

        decoder = load_whisper("tiny.en").decoder
        seconds, audio_seconds, hyps = [], 0.0, {}
        for utt in utts:
            audio, rate = sf.read(wavs[utt], dtype="float32")
            speech = torch.from_numpy(audio)[None]
            start = time.perf_counter()
            frames, _ = encoder.frozen(speech, torch.tensor([speech.size(1)]))
            seconds.append(time.perf_counter() - start)
            if padding == "30s":  # Whisper's decoder reads all 1500 frames of its window
                frames = window_frames(encoder.whisper, speech[0])
            audio_seconds += len(audio) / rate
            hyps[utt] = tokenizer.tokens2text([tokenizer.vocabulary[i] for i in greedy(decoder, frames)])
        out = args.output.parent / padding
        out.mkdir(parents=True, exist_ok=True)
        write_kv(out / "text", hyps)
        utt2spk = read_kv(args.data_dir / "utt2spk")
        result = score_with_sclite(out / "score_wer", {u: refs[u] for u in utts}, hyps, utt2spk)
        rows.append((padding, result.summary.error_rate, 1000 * float(np.mean(seconds)),
                     audio_seconds / sum(seconds)))
        logging.info("padding %s: WER %.2f, encoder %.1f ms per utterance", padding, rows[-1][1], rows[-1][2])
    lines = [f"Whisper tiny.en zero-shot, greedy, {len(utts)} utterances of {args.data_dir}, "
             f"{args.num_threads} CPU thread(s).", "",
             "| padding | WER | frozen encoder ms / utterance | encoder RTFx |", "|---|---:|---:|---:|"]
    lines += [f"| {p} | {w:.2f} | {ms:.1f} | {r:.1f} |" for p, w, ms, r in rows]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
