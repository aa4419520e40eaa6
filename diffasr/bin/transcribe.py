#!/usr/bin/env python3
"""Transcribe what an enrolled speaker says in one or more recordings (one-off use).

    python -m diffasr.bin.transcribe \\
        --model exp/asr_diffusion_whisper/packed/asr_diffusion_whisper.zip \\
        --mixture meeting.wav [more.wav ...] --enrollment alice.wav \\
        [--decode_config conf/decode/decode_diffusion_8step.yaml] \\
        [--output_json out.json] [--output_ctm out.ctm]

``--model`` is a stage-8 zip or an experiment dir (``exp/asr_*``).  Prints
``<recording> <TEXT>`` per recording.  A recording longer than the model's maximum
(or any, with ``--long_form``) is split at its pauses by silero-vad and decoded
segment by segment (``diffasr.longform``); a recording without speech gives an
empty transcript and a log line.  ``--output_json`` keeps segments, tokens and
words with times and confidences (the lowest of a word's pieces); ``--output_ctm``
writes the words as CTM with times from the start of each recording.
"""

import argparse
import json
import logging
import sys

from dataclasses import asdict
from pathlib import Path

from diffasr.speaker import GATE_CHOICES, add_presence_argument



def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="stage-8 zip or experiment dir")
    parser.add_argument("--mixture", required=True, nargs="+", help="16 kHz mono wav(s) to transcribe")
    parser.add_argument("--enrollment", default=None, help="wav of the target speaker alone")
    parser.add_argument("--decode_config", default=None, help="a conf/decode/*.yaml (default: 8-step diffusion)")
    parser.add_argument("--spk_model_dir", default=None, help="speaker encoder (default: packed / exp/spk_*)")
    parser.add_argument("--inference_model", default="valid.loss.ave.pth", help="checkpoint of an experiment dir")
    add_presence_argument(parser)
    parser.add_argument("--unpack_dir", default=None, help="where a zip is unpacked (default: beside it)")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU")
    parser.add_argument("--long_form", action="store_true",
                        help="segment every recording with silero-vad (default: only those over the "
                             "model's maximum duration)")
    parser.add_argument("--batch_size", type=int, default=8, help="segments decoded together")
    parser.add_argument("--output_json", default=None, help="also write the results here")
    parser.add_argument("--output_ctm", default=None, help="words with times (CTM, seconds)")
    parser.add_argument("--log_level", default="WARNING")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)  # before the heavy imports: --help answers at once
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    from diffasr.api import TargetSpeakerASR, load_decode_config

    try:
        asr = TargetSpeakerASR(
            args.model, spk_model_dir=args.spk_model_dir, inference_model=args.inference_model,
            presence_gate=GATE_CHOICES[args.presence_gate],
            device="cuda" if args.ngpu > 0 else "cpu", unpack_dir=args.unpack_dir,
            **load_decode_config(args.decode_config),
        )
        # Each file is checked once, where it is read (asr.enroll, asr.read); for a model that
        # takes no enrollment, a bad one is still an error.
        enrolled = asr.enroll(args.enrollment) if args.enrollment and asr.takes_enrollment else None
        if args.enrollment and not asr.takes_enrollment:
            asr.read(args.enrollment, "enrollment")
            logging.warning("this model takes no speaker input: the enrollment is ignored")
        records, ctm = [], []
        for mixture in args.mixture:
            recording = asr.read(mixture, "recording")
            result = asr.transcribe_long(recording, enrolled=enrolled, batch_size=args.batch_size,
                                         whole=False if args.long_form else None, progress=True)
            print(f"{mixture} {result.text}".rstrip(), flush=True)
            if enrolled is not None and not result.text:
                logging.warning(f"{mixture}: the enrolled speaker was not found (empty transcript)")
            records.append({
                "mixture": mixture, "text": result.text, "long_form": result.segmented,
                "target_found": bool(result.text) if enrolled is not None else None,
                "audio_seconds": result.audio_seconds, "rtfx": round(result.rtfx, 2),
                "words": [asdict(w) for w in result.words],
                "segments": [asdict(s) for s in result.segments],
            })
            ctm += result.ctm(Path(mixture).stem)
    except (ValueError, FileNotFoundError) as e:
        print(f"transcribe: {e}", file=sys.stderr)
        return 1
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    if args.output_ctm:
        with open(args.output_ctm, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in ctm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
