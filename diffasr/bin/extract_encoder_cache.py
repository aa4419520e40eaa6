#!/usr/bin/env python3
"""Cache the frozen part of a training config's encoder for a data dir (feats_type: extracted).

    python -m diffasr.bin.extract_encoder_cache --config conf/tuning/train_diffusion_whisper.yaml \\
        --data_dir data/train --output_dir dump/encoder_cache/<fingerprint>/train --nj 2

``--print_fingerprint`` prints the name of the config's frozen encoder and exits.
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from diffasr.espnet2.encoder_cache import FROZEN_KEYS, extract
from diffasr.espnet2.whisper_encoder import frozen_fingerprint


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="ASR training config with encoder: whisper")
    parser.add_argument("--data_dir", help="Kaldi data dir (wav.scp, enroll.scp)")
    parser.add_argument("--output_dir", help="where feats.{ark,scp}, enroll_feats.{ark,scp}, meta.json go")
    parser.add_argument("--nj", type=int, default=1, help="parallel processes (one thread each)")
    parser.add_argument("--print_fingerprint", action="store_true", help="print the fingerprint and exit")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if config.get("encoder") != "whisper":
        sys.exit(f"{args.config}: encoder is {config.get('encoder')!r}; only encoder: whisper has a frozen part to cache")
    encoder_conf = config.get("encoder_conf") or {}
    if args.print_fingerprint:
        print(frozen_fingerprint(**{k: v for k, v in encoder_conf.items() if k in FROZEN_KEYS}))
        return
    if not args.data_dir or not args.output_dir:
        sys.exit("--data_dir and --output_dir are required")
    # The enrollment is cached whenever the set has one, so that every config sharing this
    # frozen encoder (with or without enrollment frames) shares one cache.
    with_enrollment = (Path(args.data_dir) / "enroll.scp").is_file()
    extract(encoder_conf, args.data_dir, args.output_dir, nj=args.nj, with_enrollment=with_enrollment)


if __name__ == "__main__":
    main()
