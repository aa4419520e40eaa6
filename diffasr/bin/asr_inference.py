#!/usr/bin/env python3
"""Stage 6: decode a data set with a model trained by ``diffasr.bin.asr_train``.

Argument parsing only. The work is ``diffasr.inference.decode_set.inference``, whose
docstring lists the output files; the model families and decode modes are described
in ``diffasr.inference.speech2text``.
"""

import argparse
import logging
import sys

import diffasr.espnet2  # noqa: F401  (first: it drops ESPnet's flash-attn import notice)
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none

from diffasr.inference.decode_set import inference
from diffasr.inference.options import add_arguments, pop_decode_options


def get_parser() -> config_argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="diffasr decoding (diffusion sampler, ESPnet beam search, Mask-CTC)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", help="logging level")
    parser.add_argument("--output_dir", required=True, help="where text, token, timing, ctm go")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU")
    parser.add_argument("--num_workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per batch")

    group = parser.add_argument_group("Input data")
    group.add_argument("--data_path_and_name_and_type", type=str2triple_str, required=True,
                       action="append", help="e.g. data/test/wav.scp,speech,sound (repeatable)")
    group.add_argument("--key_file", type=str_or_none, help="decode only these utterances")
    group.add_argument("--enrollment_override", type=str_or_none, default=None, choices=["rotate", "swap", None],
                       help="rotate: decode with another speaker's enrollment (embedding and audio); swap: with "
                       "the enrollment of the mixture's other talker (its example in the set)")
    group.add_argument("--utt2spk", type=str_or_none, default=None, help="for --enrollment_override")
    group.add_argument("--presence_gate", type=str_or_none, default=None,
                       help="the speaker encoder's presence.yaml (stage 4): utterances whose enrolled voice "
                       "it does not find get an empty hypothesis, undecoded")
    group.add_argument("--window_embed", type=str_or_none, default=None,
                       help="the set's window_embed.scp (stage 4) for --presence_gate; needs enroll_embed "
                       "among the data options")
    group.add_argument("--long_form", type=str2bool, default=False,
                       help="split each recording at its pauses (silero-vad) and decode the segments; "
                       "also writes words.ctm with times")

    group = parser.add_argument_group("Model")
    group.add_argument("--asr_train_config", required=True, help="config.yaml of the experiment")
    group.add_argument("--asr_model_file", type=str_or_none, help="model .pth file")
    add_arguments(parser)  # the decode options, from their one declaration
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    config = kwargs.pop("config", None)
    logging.basicConfig(
        level=kwargs.pop("log_level"),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logging.info(" ".join(sys.argv))
    inference(options=pop_decode_options(kwargs, config), **kwargs)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # bad input: the message names the file (and line)
        logging.error("%s", e)
        sys.exit(1)
