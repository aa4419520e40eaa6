r"""Stage 7: score one decode dir (WER/CER with sclite, RTFx, speaker confusion, confidences).

Argument parsing only: the work is ``diffasr.scoring.score.score``.

Writes, all inside the decode dir (reruns overwrite exactly these):
  score_wer/{ref.trn,hyp.trn,result.txt,alignment.sgml,utt_errors.txt}
  score_cer/{ref.trn,hyp.trn,result.txt,alignment.sgml,utt_errors.txt}
  metrics.json
  reliability.png          (only when word_confidence.ctm exists)

Example:
  python -m diffasr.bin.score --data_dir data/test \
      --decode_dir exp/asr_x/decode_diffusion_steps16/test \
      --calib_data_dir data/dev --calib_decode_dir exp/asr_x/decode_diffusion_steps16/dev
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from diffasr.scoring.score import score


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True,
                        help="reference data dir (text, utt2spk, optional mixture.jsonl)")
    parser.add_argument("--decode_dir", type=Path, required=True,
                        help="decode dir holding text, token, timing, optional word_confidence.ctm")
    parser.add_argument("--calib_decode_dir", type=Path, default=None,
                        help="dev decode dir whose word confidences fit the temperature")
    parser.add_argument("--calib_data_dir", type=Path, default=None,
                        help="reference data dir of --calib_decode_dir")
    parser.add_argument("--enrollment_override", choices=["rotate", "swap"], default=None,
                        help="the decode's enrollments were replaced (asr_inference's option): swap also "
                        "reports Follows other (the mixture's other talker's words)")
    parser.add_argument("--n_bins", type=int, default=10,
                        help="equal-width confidence bins for ECE and the reliability diagram")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    if (args.calib_decode_dir is None) != (args.calib_data_dir is None):
        sys.exit("score.py: --calib_decode_dir and --calib_data_dir go together")
    if args.n_bins < 1:
        sys.exit("score.py: --n_bins must be at least 1")
    metrics = score(args.data_dir, args.decode_dir, args.calib_data_dir, args.calib_decode_dir,
                    args.n_bins, args.enrollment_override)
    summary = f"{metrics['test_set']}:"
    if "wer" in metrics:
        summary += f" WER {metrics['wer']:.2f} CER {metrics['cer']:.2f}"
    if metrics.get("follows") is not None:
        summary += f" follows {metrics['follows']:.1f}%"
    if metrics.get("follows_other") is not None:
        summary += f" follows the other talker {metrics['follows_other']:.1f}%"
    if metrics.get("absent_empty") is not None:
        summary += f" target absent -> empty {metrics['absent_empty']:.1f}%"
    if metrics.get("rtfx") is not None:
        summary += f" RTFx {metrics['rtfx']:.1f}"
    if metrics.get("speaker_confusion") is not None:
        summary += f" speaker confusion {metrics['speaker_confusion']:.2f}%"
    if "uncertainty" in metrics and metrics["uncertainty"]["nce"] is not None:
        summary += f" NCE {metrics['uncertainty']['nce']:.3f}"
    logging.info("%s (%s)", summary, args.decode_dir / "metrics.json")


if __name__ == "__main__":
    main()
