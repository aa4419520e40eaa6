#!/usr/bin/env python3
"""Stage 1, ``test_real``: recordings of real people from Debian packages (diffasr/data/real_speech.py).

    python -m diffasr.bin.prepare_real_speech --output_dir data --corpus_dir downloads/real

Each utterance is an example of its own (nothing mixed in: test_clean's layout), enrolled
with another recording of the same person.  A package that is not installed stops it,
naming the package; the recipe then needs ``run.sh --skip_real true`` to go on without the set.
"""

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from diffasr.data import DataPrepError
from diffasr.data.corpus import _write_mixture_set, group_by_speaker, parallel_map, plan_heldout, render_heldout
from diffasr.data.real_speech import REAL_SET, RealSpeechMissing, real_sources
from diffasr.datadir import DataDirError, validate_data_dir

log = logging.getLogger("prepare_real_speech")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="data", help=f"where {REAL_SET}/ is written")
    parser.add_argument("--corpus_dir", default="downloads/real", help="where the utterances go as 16-kHz WAV")
    parser.add_argument("--root", default="/", help="the file-system root the packages are installed under")
    parser.add_argument("--seed", type=int, default=1, help="seed of the enrollment draw")
    parser.add_argument("--max_per_speaker", type=int, default=0,
                        help="at most this many examples of each person (0: all; the CI's tiny scale takes 2), "
                             "still enrolled from any of their recordings")
    return parser


def build_real_set(output_dir: Path, corpus_dir: Path, root: Path, seed: int, max_per_speaker: int = 0) -> int:
    """Write ``output_dir/test_real`` (replacing it whole once complete); returns its size."""
    sources = real_sources(root, corpus_dir / "wav")
    roles = plan_heldout(sources, np.random.default_rng([seed, 7]))
    if max_per_speaker > 0:
        kept = {utt for utts in group_by_speaker(sources).values() for utt in utts[:max_per_speaker]}
        roles = [role for role in roles if role.utt in kept]
    results = parallel_map(render_heldout, roles, sources, 1, f"writing {REAL_SET}")
    final = output_dir / REAL_SET
    tmp = output_dir / f".{REAL_SET}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_mixture_set(tmp, [r for r, _ in results], {r["utt"]: d for r, d in results}, final.resolve())
        validate_data_dir(tmp, check_paths=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return len(results)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s prepare_real_speech: %(message)s")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        n = build_real_set(output_dir, Path(args.corpus_dir), Path(args.root), args.seed, args.max_per_speaker)
    except (RealSpeechMissing, DataPrepError, DataDirError, ValueError, OSError) as e:
        print(f"prepare_real_speech.py: error: {e}", file=sys.stderr)
        return 1
    log.info(f"{output_dir / REAL_SET}: {n} utterances of real speech")
    return 0


if __name__ == "__main__":
    sys.exit(main())
