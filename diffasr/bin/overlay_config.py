#!/usr/bin/env python3
"""Write a config with an overlay's section merged in (asr.sh --overlay).

    python -m diffasr.bin.overlay_config --config conf/tuning/train_ar_whisper.yaml \\
        --overlay conf/tiny.yaml --output dump/configs/overlay/train_ar_whisper_tiny.yaml
"""

import argparse
import sys

from diffasr.overlay import SPEAKER, OverlayError, write_overlaid


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the real config (training or speaker)")
    parser.add_argument("--overlay", required=True, help="the overlay, one section per kind of config")
    parser.add_argument("--output", required=True, help="where the overlaid config is written")
    parser.add_argument("--kind", choices=["train", SPEAKER], default="train",
                        help="train: the section named by the config's encoder; speaker: the 'speaker' section")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        write_overlaid(args.config, args.overlay, args.output, args.kind)
    except OverlayError as e:
        sys.exit(f"overlay_config: {e}")


if __name__ == "__main__":
    main()
