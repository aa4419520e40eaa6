#!/usr/bin/env python3
"""Stage 1 of single-speaker recipes (egs/librispeech/asr1): plain ASR data dirs.

With --librispeech_root: one data dir per subset in ESPnet's LibriSpeech format
(data/train_clean_100, dev_clean, test_clean, test_other). Without it: the embedded
corpus's synthetic voices under the same names (diffasr/data/single_speaker.py).

  python -m diffasr.bin.prepare_single_speaker_data --output_dir data --scale tiny --seed 1 --nj 2
  python -m diffasr.bin.prepare_single_speaker_data --output_dir data --librispeech_root /data/LibriSpeech
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

from diffasr.data import DataPrepError
from diffasr.data.corpus import format_stats, is_done, write_done
from diffasr.data.embedded import add_corpus_arguments, get_scale, marker_options
from diffasr.data.single_speaker import (EMBEDDED_SETS, LIBRISPEECH_SUBSETS, embedded_sets, librispeech_sets,
                                         set_name, write_sets)
from diffasr.datadir import DataDirError

log = logging.getLogger("prepare_single_speaker_data")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--subsets", nargs="+", default=list(LIBRISPEECH_SUBSETS),
                        help="LibriSpeech subsets to prepare (with --librispeech_root)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s prepare_single_speaker_data: %(message)s")
    start = time.time()
    names = [set_name(s) for s in args.subsets] if args.librispeech_root else list(EMBEDDED_SETS)
    try:
        options = marker_options(args, ("output_dir", "corpus_dir", "text_file", "librispeech_root"),
                                 ("corpus_dir", "scale", "text_file"), ("subsets",))
        output_dir = Path(args.output_dir)
        if is_done(output_dir, options, names):
            log.info(f"{output_dir}: complete for these options, nothing to do")
            stats = json.loads((output_dir / "corpus_stats.json").read_text())
        else:
            output_dir.mkdir(parents=True, exist_ok=True)
            if args.librispeech_root:
                log.info(f"LibriSpeech {' '.join(args.subsets)} from {args.librispeech_root}")
                stats = write_sets(output_dir, librispeech_sets(args.librispeech_root, args.subsets))
            else:
                log.info(f"embedded corpus, scale {args.scale}, pool in {args.corpus_dir}")
                sets, snr_db = embedded_sets(args.corpus_dir, get_scale(args.scale), args.seed, args.nj,
                                             args.text_file)
                stats = write_sets(output_dir, sets, {"test_other": snr_db}, args.seed, args.nj)
            write_done(output_dir, options, stats)
    except (DataPrepError, DataDirError, OSError) as e:
        print(f"prepare_single_speaker_data.py: error: {e}", file=sys.stderr)
        return 1
    print(format_stats(stats))
    print(f"corpus: {sum(s['hours'] for s in stats.values()):.2f} hours in {', '.join(names)} "
          f"({time.time() - start:.1f} s); see {output_dir}/corpus_stats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
