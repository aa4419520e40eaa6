#!/usr/bin/env python3
"""Speaker verification EER/minDCF of a trained encoder on held-out speakers.

    python -m diffasr.bin.spk_eval --model_dir exp/spk_ecapa_aam \
        --data_dirs data/sources_dev data/sources_test --output_dir exp/spk_ecapa_aam

Writes output_dir/trials/<set>.trials, output_dir/scores/<set>.scores,
output_dir/RESULTS.md and output_dir/score_distribution.png.
"""

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from diffasr.datadir import DataDirError
from diffasr.speaker.data import SpeakerDataError
from diffasr.speaker.evaluate import (embed_trial_utts, plot_score_distributions, score_set,
                                      set_name, trials_for, write_results_md, write_scores)
from diffasr.speaker.model import device_for, load_trained_encoder


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="stage-3 experiment dir")
    p.add_argument("--data_dirs", nargs="+", required=True, help="source data dirs to evaluate on")
    p.add_argument("--output_dir", default=None, help="defaults to model_dir")
    p.add_argument("--max_trials", type=int, default=2000, help="per class (target / non-target)")
    p.add_argument("--ngpu", type=int, default=0, help="0: CPU; >= 1: the first CUDA device")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output_dir or args.model_dir)
    command = "python -m diffasr.bin.spk_eval " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        encoder, conf = load_trained_encoder(args.model_dir, device_for(args.ngpu))
        results = {}
        for data_dir in args.data_dirs:
            name = set_name(data_dir)
            trials, trials_path = trials_for(data_dir, out / "trials", args.max_trials)
            embeddings = embed_trial_utts(lambda wav, _path: encoder.embed(wav), data_dir, trials,
                                          conf["sample_rate"])
            (out / "scores").mkdir(parents=True, exist_ok=True)
            write_scores(out / "scores" / f"{name}.scores", trials, embeddings)
            results[name] = score_set(trials, embeddings)
            logging.info("%s: EER %.2f%%, minDCF %.4f over %d trials (%s)", name,
                         100 * results[name]["eer"], results[name]["min_dcf"], len(trials), trials_path)
    except (SpeakerDataError, DataDirError, FileNotFoundError, ValueError) as e:
        logging.error("%s", e)
        return 1
    info_path = Path(args.model_dir) / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    write_results_md(out / "RESULTS.md", results, args.model_dir, command, info)
    plot_score_distributions(results, out / "score_distribution.png")
    logging.info("wrote %s and %s", out / "RESULTS.md", out / "score_distribution.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
