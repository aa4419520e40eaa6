#!/usr/bin/env python3
"""Transcribe what an enrolled speaker says in one or more mixtures (one-off use).

    python -m diffasr.bin.transcribe \\
        --model exp/asr_diffusion_conformer/packed/asr_diffusion_conformer.zip \\
        --mixture mix1.wav [mix2.wav ...] --enrollment alice.wav \\
        [--decode_config conf/decode/decode_diffusion_8step.yaml] [--output_json out.json]

``--model`` is a stage-8 zip or an experiment dir (``exp/asr_*``).  Prints
``<mixture> <TEXT>`` per mixture.  ``--output_json`` also keeps tokens, token
confidences and word confidences (the lowest of a word's pieces).
"""

import argparse
import json
import logging
import sys

from diffasr.api import TargetSpeakerASR, load_decode_config
from diffasr.bin.asr_inference import words_with_confidence


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="stage-8 zip or experiment dir")
    parser.add_argument("--mixture", required=True, nargs="+", help="16 kHz mono wav(s) to transcribe")
    parser.add_argument("--enrollment", default=None, help="wav of the target speaker alone")
    parser.add_argument("--decode_config", default=None, help="a conf/decode/*.yaml (default: 8-step diffusion)")
    parser.add_argument("--spk_model_dir", default=None, help="speaker encoder (default: packed / exp/spk_*)")
    parser.add_argument("--inference_model", default="valid.loss.ave.pth", help="checkpoint of an experiment dir")
    parser.add_argument("--unpack_dir", default=None, help="where a zip is unpacked (default: beside it)")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU")
    parser.add_argument("--output_json", default=None, help="also write the results here")
    parser.add_argument("--log_level", default="WARNING")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    try:
        asr = TargetSpeakerASR(
            args.model, spk_model_dir=args.spk_model_dir, inference_model=args.inference_model,
            device="cuda" if args.ngpu > 0 else "cpu", unpack_dir=args.unpack_dir,
            **load_decode_config(args.decode_config),
        )
        embed = asr.embed_enrollment(args.enrollment) if args.enrollment and asr.speaker_encoder else None
        records = []
        for mixture in args.mixture:
            result = asr.transcribe(mixture, enrollment=args.enrollment, enroll_embed=embed)
            print(f"{mixture} {result.text}".rstrip(), flush=True)
            records.append({
                "mixture": mixture, "text": result.text, "tokens": result.tokens,
                "token_confidences": result.confidences,
                "words": [{"word": w, "confidence": c}
                          for w, c in words_with_confidence(result.tokens, result.confidences)],
            })
    except (ValueError, FileNotFoundError) as e:
        print(f"transcribe: {e}", file=sys.stderr)
        return 1
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
