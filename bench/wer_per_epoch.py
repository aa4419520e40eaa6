#!/usr/bin/env python3
"""WER and selection against training minutes: decode every epoch checkpoint of an experiment.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/wer_per_epoch.py --exp exp/asr_diffusion_whisper \\
        --decode_config conf/decode/decode_diffusion_8step.yaml --sets data/test data/test_clean \\
        --output_dir exp/asr_diffusion_whisper/wer_per_epoch

Training minutes are read from the experiment's ``train.log`` (ESPnet's per-epoch
``time=`` of the training phase, summed). Each ``<N>epoch.pth`` still on disk is
decoded in batches with the decode config and scored by ``diffasr.bin.score``
(sclite). Where a set is a target-speaker set, the follow rate (the hypothesis is closer to
the enrolled talker than to the other one) is recorded beside the WER; on a target-absent
set, the share of empty hypotheses. Writes ``wer_per_epoch.md`` (also printed), ``.json``
and ``.png``.
"""

import argparse
import json
import logging
import re
from pathlib import Path

import torch

from diffasr.api import load_decode_config
from diffasr.espnet2.builder import read_config
from diffasr.inference import inference
from diffasr.inference.distillation import decode_inputs
from diffasr.inference.options import DecodeOptions
from diffasr.scoring.score import score

TIME = re.compile(r"(\d+)epoch results: \[train\].*?time=((?:\d+ hours?, )?(?:\d+ minutes? and )?[\d.]+ seconds)")


def epoch_minutes(train_log: Path) -> dict:
    """epoch -> cumulative training minutes, from ESPnet's per-epoch summary lines."""
    minutes, total = {}, 0.0
    for match in TIME.finditer(train_log.read_text(errors="replace")):
        text = match.group(2)
        hours = re.search(r"(\d+) hour", text)
        mins = re.search(r"(\d+) minute", text)
        secs = float(re.search(r"([\d.]+) seconds", text).group(1))
        total += (int(hours.group(1)) * 60 if hours else 0) + (int(mins.group(1)) if mins else 0) + secs / 60
        minutes[int(match.group(1))] = round(total, 2)
    return minutes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--decode_config", type=Path, required=True)
    parser.add_argument("--sets", type=Path, nargs="+", default=[Path("data/test"), Path("data/test_clean")])
    parser.add_argument("--output_dir", type=Path, default=None)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--epochs", type=int, nargs="+", default=None,
                        help="decode only these epochs' checkpoints (default: every one on disk)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    out = args.output_dir or args.exp / "wer_per_epoch"
    config = read_config(args.exp / "config.yaml")
    minutes = epoch_minutes(args.exp / "train.log")
    checkpoints = sorted(args.exp.glob("*epoch.pth"), key=lambda p: int(p.name.split("epoch")[0]))
    if args.epochs:
        checkpoints = [c for c in checkpoints if int(c.name.split("epoch")[0]) in args.epochs]
    options = DecodeOptions.from_flat(load_decode_config(args.decode_config), str(args.decode_config))
    rows = []
    for checkpoint in checkpoints:
        epoch = int(checkpoint.name.split("epoch")[0])
        row = {"epoch": epoch, "minutes": minutes.get(epoch)}
        for data_dir in args.sets:
            decode_dir = out / f"{epoch}epoch" / data_dir.name
            inference(str(decode_dir), decode_inputs(data_dir, config), str(args.exp / "config.yaml"),
                      str(checkpoint), options=options, batch_size=args.batch_size)
            metrics = score(data_dir, decode_dir)
            row[f"{data_dir.name} WER"] = metrics.get("wer")
            row[f"{data_dir.name} follows"] = metrics.get("follows")
            row[f"{data_dir.name} absent -> empty"] = metrics.get("absent_empty")
        rows.append(row)
        logging.info("%s", row)
    names = [k for k in rows[0] if k not in ("epoch", "minutes") and any(r[k] is not None for r in rows)]
    cell = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"{args.exp.name}, {args.decode_config.stem}: WER and selection (%) of each epoch's checkpoint", "",
             "| epoch | training minutes | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    lines += [f"| {r['epoch']} | {r['minutes']} | " + " | ".join(cell(r[n]) for n in names) + " |" for r in rows]
    (out / "wer_per_epoch.md").write_text("\n".join(lines) + "\n")
    (out / "wer_per_epoch.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    # Minutes only when every epoch's are known (a resumed run's log lacks the earlier ones).
    use_minutes = all(r["minutes"] is not None for r in rows)
    for name in names:
        ax.plot([r["minutes"] if use_minutes else r["epoch"] for r in rows], [r[name] for r in rows],
                marker="o", label=name, linestyle="-" if name.endswith("WER") else "--")
    ax.set_xlabel("training minutes (2 CPU cores)" if use_minutes else "epoch")
    ax.set_ylabel("%")
    ax.set_title(f"{args.exp.name}: {args.decode_config.stem}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "wer_per_epoch.png", dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
