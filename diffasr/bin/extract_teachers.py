#!/usr/bin/env python3
"""Cache the clean-target teacher of a data dir for a training config (model_conf teacher_weight).

    python -m diffasr.bin.extract_teachers --config conf/tuning/train_diffusion_whisper.yaml \\
        --data_dir data/dev --output_dir dump/teacher_cache/<fingerprint>/dev --nj 2 --with_others true

The teacher of an example is the config's Whisper encoder, complete and frozen, on the
example's target source alone, placed as in the mixture (``mixture.jsonl``: source, offset,
gain); ``--with_others true`` also caches every interferer's (for feature follows on a
validation set).  ``--print_fingerprint`` prints the teacher's name and exits.
"""

import argparse
import logging
import sys

import yaml

from diffasr.espnet2.teacher import TEACHER_KEYS, TeacherCacheError, extract_teachers, teacher_fingerprint
from espnet2.utils.types import str2bool


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="ASR training config with encoder: whisper")
    parser.add_argument("--data_dir", help="Kaldi data dir with wav.scp and mixture.jsonl (stage 1)")
    parser.add_argument("--output_dir", help="where teacher.{ark,scp} (teacher_others.*) and meta.json go")
    parser.add_argument("--nj", type=int, default=1, help="parallel processes (one thread each)")
    parser.add_argument("--with_others", type=str2bool, default=False,
                        help="also cache each interferer's teacher (feature follows on a validation set)")
    parser.add_argument("--print_fingerprint", action="store_true", help="print the fingerprint and exit")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if config.get("encoder") != "whisper":
        sys.exit(f"{args.config}: encoder is {config.get('encoder')!r}; the teacher is a Whisper encoder's")
    encoder_conf = config.get("encoder_conf") or {}
    if args.print_fingerprint:
        print(teacher_fingerprint(**{k: v for k, v in encoder_conf.items() if k in TEACHER_KEYS}))
        return
    if not args.data_dir or not args.output_dir:
        sys.exit("--data_dir and --output_dir are required")
    try:
        extract_teachers(encoder_conf, args.data_dir, args.output_dir, nj=args.nj, with_others=args.with_others)
    except (TeacherCacheError, FileNotFoundError) as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
