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

from diffasr.espnet2.model import CANVAS_MODES
from diffasr.diffusion.sampler import DELIBERATION_MASKING, REMASKING
from diffasr.inference.decode_set import inference
from diffasr.inference.speech2text import DECODE_MODES, HYPOTHESIS_TYPES


def get_parser() -> config_argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="diffasr decoding (diffusion sampler, ESPnet beam search, Mask-CTC)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", help="logging level")
    parser.add_argument("--output_dir", required=True, help="where text, token, timing, ctm go")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--num_workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per batch")
    parser.add_argument("--fs", type=int, default=16000, help="sample rate, for audio seconds")

    group = parser.add_argument_group("Input data")
    group.add_argument("--data_path_and_name_and_type", type=str2triple_str, required=True,
                       action="append", help="e.g. data/test/wav.scp,speech,sound (repeatable)")
    group.add_argument("--key_file", type=str_or_none, help="decode only these utterances")
    group.add_argument("--enrollment_override", type=str_or_none, default=None, choices=["rotate", None],
                       help="rotate: decode with another speaker's enrollment (embedding and audio)")
    group.add_argument("--utt2spk", type=str_or_none, default=None, help="for --enrollment_override")
    group.add_argument("--long_form", type=str2bool, default=False,
                       help="split each recording at its pauses (silero-vad) and decode the segments; "
                       "also writes words.ctm with times")

    group = parser.add_argument_group("Model")
    group.add_argument("--asr_train_config", required=True, help="config.yaml of the experiment")
    group.add_argument("--asr_model_file", type=str_or_none, help="model .pth file")
    group.add_argument("--bpemodel", type=str_or_none, help="default: from the training config")
    group.add_argument("--token_type", type=str_or_none, help="default: from the training config")

    group = parser.add_argument_group("Masked diffusion (model: diffusion)")
    group.add_argument("--steps", type=int, default=8, help="denoising steps")
    group.add_argument("--block_length", type=int, default=None, help="semi-AR block size")
    group.add_argument("--remasking", default="low_confidence", choices=list(REMASKING))
    group.add_argument("--threshold", type=float, default=None, help="commit all above this probability")
    group.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    group.add_argument("--canvas", type=str_or_none, default=None, choices=list(CANVAS_MODES) + [None],
                       help="default: as trained")
    group.add_argument("--canvas_length", type=int, default=None, help="fixed length / dynamic maximum")
    group.add_argument("--canvas_margin", type=int, default=None, help="dynamic canvas margin")

    group.add_argument("--decode_mode", default="diffusion", choices=list(DECODE_MODES),
                       help="diffusion: from a masked canvas; deliberation: revise a first pass; "
                       "ctc_greedy: the first pass alone")
    group.add_argument("--max_audio_seconds", type=float, default=None,
                       help="refuse longer audio (default: max_audio_seconds of the training config)")

    group = parser.add_argument_group("Deliberation (decode_mode: deliberation)")
    group.add_argument("--deliberation_hyp", type=str_or_none, default=None,
                       help="first-pass hypotheses '<utt> WORDS' (e.g. an AR decode dir's text); "
                       "none or 'ctc': this model's CTC greedy path")
    group.add_argument("--deliberation_hyp_type", default="text", choices=list(HYPOTHESIS_TYPES),
                       help="text: words, tokenized with the model's BPE; token: model pieces")
    group.add_argument("--masking", default="random", choices=list(DELIBERATION_MASKING))
    group.add_argument("--mask_ratio", type=float, default=0.3,
                       help="share of the canvas masked (random, low_confidence)")
    group.add_argument("--deliberation_threshold", type=float, default=None,
                       help="confidence_guided: mask tokens whose calibrated confidence is below")
    group.add_argument("--confidence_temperature", type=float, default=1.0,
                       help="calibration of the hypothesis scores: sigmoid(logit(p) / T)")
    group.add_argument("--num_chunks", type=int, default=1, help="semi-AR deliberation chunks")

    group = parser.add_argument_group("Beam search (model: espnet)")
    group.add_argument("--beam_size", type=int, default=10)
    group.add_argument("--ctc_weight", type=float, default=0.3)
    group.add_argument("--penalty", type=float, default=0.0, help="length bonus")
    group.add_argument("--maxlenratio", type=float, default=0.0)
    group.add_argument("--minlenratio", type=float, default=0.0)

    group = parser.add_argument_group("Mask-CTC (model: maskctc)")
    group.add_argument("--maskctc_n_iterations", type=int, default=10)
    group.add_argument("--maskctc_threshold_probability", type=float, default=0.99)
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    logging.basicConfig(
        level=kwargs.pop("log_level"),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logging.info(" ".join(sys.argv))
    inference(**kwargs)


if __name__ == "__main__":
    main()
