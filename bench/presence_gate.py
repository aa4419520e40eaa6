#!/usr/bin/env python3
"""How well does a speaker encoder tell a present target from an absent one in mixtures?

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/presence_gate.py --model_dir exp/spk_ecapa_aam --data_dir data/dev \\
        --window_seconds 1.5 4.0 --output_dir results/presence_gate

For each window length: the presence score (``diffasr.speaker.presence``: the best window's
cosine to the enrollment, both embedded by ``--model_dir``) of every example of the set,
the AUROC of present against target-absent examples, and the share of absent examples the
gate catches when its threshold loses at most 3, 5 or 10 % of the present targets. Writes
``presence_gate.{md,json}`` (the table is also printed).
"""

import argparse
import json
from pathlib import Path

from sklearn.metrics import roc_auc_score

from diffasr.datadir import read_kv, target_absent_utts
from diffasr.audio import read_listed as read_audio
from diffasr.speaker.model import load_trained_encoder
from diffasr.speaker.presence import choose_threshold, presence_score, window_embeddings

LOST = (0.03, 0.05, 0.10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", type=Path, required=True)
    p.add_argument("--data_dir", type=Path, required=True, help="a set with target-absent examples")
    p.add_argument("--window_seconds", type=float, nargs="+", default=[1.5])
    p.add_argument("--hop_seconds", type=float, default=0.5)
    p.add_argument("--output_dir", type=Path, required=True)
    args = p.parse_args()
    encoder, conf = load_trained_encoder(args.model_dir)
    rate = conf["sample_rate"]
    wavs, enrolls = read_kv(args.data_dir / "wav.scp"), read_kv(args.data_dir / "enroll.scp")
    absent = set(target_absent_utts(args.data_dir))
    enroll_embeds = {path: encoder.embed(read_audio(path, utt, rate, "enrollment audio"))
                     for utt, path in enrolls.items()}
    rows = []
    for window in args.window_seconds:
        scores = {u: presence_score(window_embeddings(encoder, read_audio(path, u, rate), rate, window,
                                                      args.hop_seconds), enroll_embeds[enrolls[u]])
                  for u, path in wavs.items()}
        present = [s for u, s in scores.items() if u not in absent]
        gone = [s for u, s in scores.items() if u in absent]
        rows.append(dict(window_seconds=window, present=len(present), absent=len(gone),
                         auroc=float(roc_auc_score([1] * len(present) + [0] * len(gone), present + gone)),
                         caught={f"{m:.2f}": choose_threshold(present, gone, m)["absent_caught"] for m in LOST}))
    lines = [f"Presence score of {args.model_dir} on {args.data_dir} (present vs target-absent examples)", "",
             "| window (s) | present / absent | AUROC | absent caught at ≤ " + " / ".join(f"{100 * m:.0f}" for m in LOST)
             + " % present lost |", "|---:|---:|---:|---|"]
    for row in rows:
        caught = " / ".join(f"{100 * c:.0f}" for c in row["caught"].values())
        lines.append(f"| {row['window_seconds']:g} | {row['present']} / {row['absent']} | {row['auroc']:.3f} | {caught} % |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "presence_gate.md").write_text(table, encoding="utf-8")
    (args.output_dir / "presence_gate.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
