"""Decode a data dir with Whisper zero-shot, as released: the reference a trained system must not fall below.

Example (stage 6 with --zero_shot_sets):
  python -m diffasr.bin.zero_shot_decode --data_dir data/test_real \
      --decode_dir exp/whisper_tiny.en_zeroshot/decode_beam5/test_real --beam_size 5
"""

import argparse
import logging
from typing import Optional, Sequence

import torch

from diffasr.whisper.zero_shot import decode_data_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="a data dir with wav.scp (16 kHz mono)")
    parser.add_argument("--decode_dir", required=True, help="where text and timing are written")
    parser.add_argument("--beam_size", type=int, default=5, help="1: greedy; more: openai-whisper's beam search")
    parser.add_argument("--whisper_model", default="tiny.en")
    parser.add_argument("--num_threads", type=int, default=1)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.num_threads)
    decode_data_dir(args.data_dir, args.decode_dir, args.beam_size, args.whisper_model)
    logging.info("wrote %s/text", args.decode_dir)


if __name__ == "__main__":
    main()
