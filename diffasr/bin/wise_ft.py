#!/usr/bin/env python3
"""Interpolate a trained system's Whisper weights with Whisper's own (WiSE-FT,
``diffasr.espnet2.wise_ft``): real speech read nearer to zero-shot Whisper, no training.

    python -m diffasr.bin.wise_ft --asr_exp exp/asr_ar_whisper --model valid.loss.ave_2best.pth \\
        --finetuned_share 0.5 --output exp/asr_ar_whisper/wise0.5.valid.loss.ave_2best.pth

then decode it as any model file of the experiment (``asr.sh --inference_model``).
"""

import argparse
import logging
import sys

from diffasr.espnet2.wise_ft import PARTS, wise_ft_experiment


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_exp", required=True, help="the trained experiment dir (its config.yaml)")
    parser.add_argument("--model", default="valid.loss.ave.pth", help="its model file, in --asr_exp")
    parser.add_argument("--finetuned_share", type=float, required=True,
                        help="weight of the trained system's Whisper weights (1: as trained, 0: Whisper's)")
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=sorted(PARTS),
                        help="Whisper's parts to interpolate (the others stay as trained)")
    parser.add_argument("--output", required=True, help="the interpolated model file to write")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        wise_ft_experiment(args.asr_exp, args.model, args.finetuned_share, args.output, args.parts)
    except (ValueError, FileNotFoundError) as e:  # bad input: the message names the file
        sys.exit(str(e))


if __name__ == "__main__":
    main()
