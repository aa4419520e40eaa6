#!/usr/bin/env python3
"""Stage 1: build the target-speaker data dirs (train dev test test_clean sources_*).

Without --librispeech_root, the embedded corpus is synthesized offline from Debian
packages (espeak-ng, flite, fortunes, wordnet-base), with test_heldout: clean speech of
voices that no scale trains or tests on. With it, the same mixing is
applied to LibriSpeech (optionally following LibriMix metadata and WHAM!-style noise).

  python -m diffasr.bin.prepare_target_speaker_data --output_dir data --corpus_dir downloads/embedded \\
      --scale tiny --mix_setting each_target --seed 1 --nj 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from diffasr.data import DataPrepError
from diffasr.data.corpus import (HELDOUT_SET, SPLITS, build_data_dirs, format_stats, is_done, plan_heldout,
                                 plan_mixtures, write_done)
from diffasr.data.embedded import add_corpus_arguments, build_heldout_pool, build_pool, get_scale, marker_options
from diffasr.data.librispeech import list_noise_files, prepare_librispeech
from diffasr.data.mixing import MIX_SETTINGS
from diffasr.datadir import DataDirError

log = logging.getLogger("prepare_target_speaker_data")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--mix_setting", default="each_target",
                        help="who is the target and at what levels (diffasr.data.mixing.MIX_SETTINGS): "
                        "each_target (two talkers, each the target in turn, SIR -10..10 dB, 10 %% "
                        "target-absent examples), default (the louder talker is the target, SIR 0..10 dB), "
                        "hard (SIR -20..5 dB)")
    parser.add_argument("--librimix_metadata", default=None,
                        help="LibriMix metadata CSV dir: mixtures follow its pairs and gains")
    parser.add_argument("--noise_root", default=None, help="dir of noise wavs (e.g. WHAM!); default: synthesized")
    parser.add_argument("--train_mixtures", type=int, default=None,
                        help="embedded corpus: this many training mixtures instead of the scale's, "
                        "drawn from the same clean sources (dev and test unchanged)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s prepare_target_speaker_data: %(message)s")
    start = time.time()
    try:
        scale = get_scale(args.scale)
        if args.train_mixtures is not None:
            if args.train_mixtures < 1:
                raise DataPrepError(f"--train_mixtures must be >= 1, got {args.train_mixtures}")
            scale = dataclasses.replace(scale, mixtures=(args.train_mixtures, *scale.mixtures[1:]))
        if args.mix_setting not in MIX_SETTINGS:
            raise DataPrepError(f"unknown --mix_setting '{args.mix_setting}'; "
                                f"valid settings: {', '.join(MIX_SETTINGS)}")
        setting = MIX_SETTINGS[args.mix_setting]
        options = marker_options(args, ("output_dir", "corpus_dir", "text_file", "librispeech_root",
                                        "librimix_metadata", "noise_root"),
                                 ("corpus_dir", "scale", "text_file", "train_mixtures"))
        if args.train_mixtures is None:  # the marker of a run without it stays as it was
            options.pop("train_mixtures", None)
        output_dir = Path(args.output_dir)
        # (an embedded corpus built before test_heldout existed is built again: its other
        # sets come out the same)
        wants_heldout = not args.librispeech_root and scale.heldout[0] > 0
        if is_done(output_dir, options) and (output_dir / HELDOUT_SET).is_dir() == wants_heldout:
            log.info(f"{output_dir}: complete for these options, nothing to do")
            stats = json.loads((output_dir / "corpus_stats.json").read_text())
        else:
            output_dir.mkdir(parents=True, exist_ok=True)
            heldout = None
            if args.librispeech_root:
                log.info(f"LibriSpeech corpus from {args.librispeech_root}")
                sources, plans = prepare_librispeech(args.librispeech_root, setting, args.seed,
                                                     args.librimix_metadata, args.noise_root)
            else:
                log.info(f"embedded corpus, scale {args.scale}, pool in {args.corpus_dir}")
                sources = build_pool(args.corpus_dir, scale, args.seed, args.nj, args.text_file)
                noise_files = list_noise_files(args.noise_root) if args.noise_root else []
                plans = {split: plan_mixtures(sources[split], n, setting, np.random.default_rng([args.seed, i]),
                                              noise_files, split)
                         for i, (split, n) in enumerate(zip(SPLITS, scale.mixtures))}
                if wants_heldout:  # drawn after everything else, from its own stream
                    heldout_sources = build_heldout_pool(args.corpus_dir, scale, args.seed, args.nj, args.text_file)
                    heldout = (heldout_sources, plan_heldout(heldout_sources,
                                                             np.random.default_rng([args.seed, len(SPLITS)])))
            stats = build_data_dirs(output_dir, sources, plans, args.nj, heldout)
            write_done(output_dir, options, stats)
    except (DataPrepError, DataDirError, OSError) as e:
        print(f"prepare_target_speaker_data.py: error: {e}", file=sys.stderr)
        return 1
    total_hours = sum(s["hours"] for s in stats.values())
    speakers = sum(stats[f"sources_{s}"]["speakers"] for s in SPLITS)
    print(format_stats(stats))
    print(f"corpus: {total_hours:.2f} hours, {speakers} speakers, mixtures "
          + ", ".join(f"{s} {stats[s]['utterances']}" for s in SPLITS)
          + f" ({time.time() - start:.1f} s); see {output_dir}/corpus_stats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
