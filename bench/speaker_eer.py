#!/usr/bin/env python3
"""Peer benchmark: our ECAPA-TDNN vs resemblyzer's pretrained VoiceEncoder on the same trials.

    python bench/speaker_eer.py --model_dir exp/spk_ecapa_aam --data_dirs data/sources_test \
        [--output bench/results/speaker_eer.csv]

Trials come from <model_dir>/trials/<set>.trials (written by diffasr.bin.spk_eval) or are
built the same deterministic way. Both systems use cosine scoring. resemblyzer runs on CPU
with its own preprocessing (volume normalisation, VAD trimming); its weights ship in the wheel.
Prints one table and writes a CSV with EER, minDCF, #trials, embedding dim, embedding time
and our encoder's training time (<model_dir>/train_info.json).
"""

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from diffasr.speaker.evaluate import embed_trial_utts, score_set, set_name, trials_for
from diffasr.speaker.model import load_trained_encoder


def resemblyzer_embedder():
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(wav, path):
        trimmed = preprocess_wav(wav, source_sr=16000)
        # VAD can trim a short, quiet utterance to almost nothing; keep the raw signal then
        if len(trimmed) < 16000 // 4:
            trimmed = wav / max(np.abs(wav).max(), 1e-6)
        return encoder.embed_utterance(trimmed)

    return embed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="stage-3 experiment dir of our encoder")
    p.add_argument("--data_dirs", nargs="+", required=True, help="source data dirs (held-out speakers)")
    p.add_argument("--output", default="bench/results/speaker_eer.csv", help="CSV to write")
    p.add_argument("--max_trials", type=int, default=2000, help="per class, if trials are built here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")

    ours, conf = load_trained_encoder(args.model_dir)
    info_path = Path(args.model_dir) / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    systems = {
        f"diffasr ECAPA ({info.get('loss', conf['loss'])})": (lambda wav, _p: ours.embed(wav),
                                                              info.get("train_seconds")),
        "resemblyzer VoiceEncoder (pretrained)": (resemblyzer_embedder(), None),
    }
    rows = []
    for data_dir in args.data_dirs:
        trials, trials_path = trials_for(data_dir, Path(args.model_dir) / "trials",
                                         args.max_trials, reuse=True)
        logging.info("%s: %d trials from %s", set_name(data_dir), len(trials), trials_path)
        for system, (embed, train_seconds) in systems.items():
            start = time.time()
            embeddings = embed_trial_utts(embed, data_dir, trials, conf["sample_rate"])
            seconds = time.time() - start
            r = score_set(trials, embeddings)
            rows.append({"set": set_name(data_dir), "system": system,
                         "eer_percent": round(100 * r["eer"], 2), "min_dcf": round(r["min_dcf"], 4),
                         "num_trials": len(trials),
                         "embedding_dim": len(next(iter(embeddings.values()))),
                         "embed_seconds": round(seconds, 1),
                         "train_seconds": train_seconds if train_seconds is not None else ""})

    header = ["set", "system", "eer_percent", "min_dcf", "num_trials", "embedding_dim",
              "embed_seconds", "train_seconds"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[h]).ljust(w) for h, w in zip(header, widths)))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
