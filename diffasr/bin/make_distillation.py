#!/usr/bin/env python3
"""Decode a training set with a trained AR experiment, for sequence-level distillation
(``model_conf distill_share``; asr.sh runs it in stage 5 for a config that sets it):

    python -m diffasr.bin.make_distillation --ar_exp exp/asr_ar_whisper --ar_model valid.loss.ave.pth \\
        --decode_config conf/decode/decode_ar_beam10.yaml --audio clean_target \\
        --data_dir data/train --output_dir dump/distill/<fingerprint>/train --nj 2 --batch_size 8

writes ``<output_dir>/text`` (the AR system's output for every utterance of the data dir: train
with ``--train_data_path_and_name_and_type <output_dir>/text,text_distill,text``) and
``meta.json`` (``diffasr.inference.distillation``).  ``--print_fingerprint`` prints the name of
the AR model, tokens and decoding (not the data) and exits.
"""

import argparse
import logging
import sys

from diffasr.espnet2.distillation import DistillationError, fingerprint
from diffasr.inference.distillation import AUDIO, expected_parts, make_distillation


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ar_exp", required=True, help="the AR experiment dir (its config.yaml and model file)")
    parser.add_argument("--ar_model", default="valid.loss.ave.pth", help="its model file, in --ar_exp")
    parser.add_argument("--decode_config", required=True, help="the decode config (e.g. decode_ar_beam10.yaml)")
    parser.add_argument("--audio", default="mixture", choices=AUDIO,
                        help="mixture: decode the examples themselves; clean_target: each target's source alone, "
                        "placed as in the mixture (mixture.jsonl)")
    parser.add_argument("--data_dir", help="the Kaldi data dir to decode (wav.scp, enrollments)")
    parser.add_argument("--output_dir", help="where text and meta.json go")
    parser.add_argument("--nj", type=int, default=1, help="parallel decoding processes")
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per batch")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU")
    parser.add_argument("--print_fingerprint", action="store_true", help="print the fingerprint and exit")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        if args.print_fingerprint:
            print(fingerprint(expected_parts(args.ar_exp, args.ar_model, args.decode_config, args.audio)))
            return
        if not args.data_dir or not args.output_dir:
            sys.exit("--data_dir and --output_dir are required")
        make_distillation(args.ar_exp, args.ar_model, args.decode_config, args.data_dir, args.output_dir,
                          audio=args.audio, nj=args.nj, batch_size=args.batch_size, ngpu=args.ngpu)
    except (DistillationError, ValueError, FileNotFoundError) as e:  # bad input: the message names the file
        sys.exit(str(e))


if __name__ == "__main__":
    main()
