#!/usr/bin/env python3
"""Stage 3: train the ECAPA-TDNN speaker encoder (SpeechBrain) on clean source utterances.

    python -m diffasr.bin.spk_train --config conf/spk/ecapa_aam.yaml \
        --train_dir data/sources_train --valid_dir data/sources_dev \
        --output_dir exp/spk_ecapa_aam [--resume true]

Writes output_dir/{model.pt,config.yaml,train_info.json,tensorboard/,checkpoints/}; logs go to
stderr (the recipe launcher keeps them in output_dir/train.log).
"""

import argparse
import logging
import shlex
import sys
from pathlib import Path

from diffasr.datadir import DataDirError
from diffasr.speaker.data import SpeakerDataError
from diffasr.speaker.model import device_for, load_config
from diffasr.speaker.train import train


def str2bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{value}'")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config (conf/spk/*.yaml)")
    p.add_argument("--train_dir", required=True, help="source data dir of the training speakers")
    p.add_argument("--valid_dir", default=None, help="source data dir for the per-epoch EER")
    p.add_argument("--output_dir", required=True, help="experiment dir")
    p.add_argument("--resume", type=str2bool, default=True,
                   help="continue from output_dir/checkpoints if present; false starts over")
    p.add_argument("--max_epochs_this_run", type=int, default=None,
                   help="stop after this many epochs (for time-limited jobs); rerun to resume")
    p.add_argument("--ngpu", type=int, default=0, help="0: CPU; >= 1: the first CUDA device")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The recipe's launcher captures this output in output_dir/train.log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "python -m diffasr.bin.spk_train " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    logging.info(command)
    try:
        info = train(load_config(args.config), args.train_dir, out, valid_dir=args.valid_dir,
                     resume=args.resume, command=command,
                     max_epochs_this_run=args.max_epochs_this_run, device=device_for(args.ngpu))
    except (SpeakerDataError, DataDirError, ValueError) as e:  # ValueError: config/checkpoint mismatch
        logging.error("%s", e)
        return 1
    if not info["finished"]:
        return 0
    logging.info("done: %d epochs, %.1f s, model in %s", info["epochs"], info["train_seconds"],
                 out / "model.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
