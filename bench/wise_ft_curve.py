#!/usr/bin/env python3
"""Real speech against selection as a trained system's Whisper weights move back toward
Whisper's own (WiSE-FT, ``diffasr.espnet2.wise_ft``; issue #36).

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/wise_ft_curve.py --exp exp/asr_ar_whisper --model valid.loss.ave_2best.pth \\
        --decode_config conf/decode/decode_ar_beam1.yaml --shares 1.0 0.75 0.5 0.25 0.0 --parts encoder \\
        --sets data/test_real data/test_clean data/test --output_dir exp/asr_ar_whisper/wise_ft

For each share of the trained weights (1: the system as trained, 0: Whisper's weights under
the trained modules), given to the named parts by the decode options ``wise_ft_encoder`` /
``wise_ft_decoder`` over the decode config, each set is decoded in batches and scored by
``diffasr.scoring.score`` (sclite): WER, and on a target-speaker set the follow rate.
Writes ``wise_ft.md`` (also printed), ``.json`` and ``.png``.
"""

import argparse
import json
import logging
from pathlib import Path

import torch

from diffasr.api import load_decode_config
from diffasr.espnet2.builder import read_config
from diffasr.espnet2.wise_ft import PARTS
from diffasr.inference import inference
from diffasr.inference.distillation import decode_inputs
from diffasr.inference.options import DecodeOptions
from diffasr.scoring.score import score


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--model", default="valid.loss.ave.pth", help="the trained model file, in --exp")
    parser.add_argument("--decode_config", type=Path, required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25, 0.0])
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=sorted(PARTS),
                        help="Whisper's parts interpolated (the others stay as trained)")
    parser.add_argument("--sets", type=Path, nargs="+",
                        default=[Path("data/test_real"), Path("data/test_clean"), Path("data/test")])
    parser.add_argument("--output_dir", type=Path, default=None)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    out = args.output_dir or args.exp / "wise_ft"
    config = read_config(args.exp / "config.yaml")
    decode_config = load_decode_config(args.decode_config)
    rows = []
    for share in args.shares:
        options = DecodeOptions.from_flat({**decode_config, **{f"wise_ft_{part}": share for part in args.parts}},
                                          str(args.decode_config))
        row = {"share": share}
        for data_dir in args.sets:
            decode_dir = out / f"wise{share:g}" / data_dir.name
            inference(str(decode_dir), decode_inputs(data_dir, config), str(args.exp / "config.yaml"),
                      str(args.exp / args.model), options=options, batch_size=args.batch_size)
            metrics = score(data_dir, decode_dir)
            row[f"{data_dir.name} WER"] = metrics.get("wer")
            row[f"{data_dir.name} follows"] = metrics.get("follows")
        rows.append(row)
        logging.info("%s", row)
    names = [k for k in rows[0] if k != "share" and any(r[k] is not None for r in rows)]
    cell = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"{args.exp.name} ({args.model}), {args.decode_config.stem}, Whisper's {' and '.join(args.parts)} "
             "interpolated: WER and selection (%)", "",
             "| share of the trained weights | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    lines += [f"| {r['share']:g} | " + " | ".join(cell(r[n]) for n in names) + " |" for r in rows]
    (out / "wise_ft.md").write_text("\n".join(lines) + "\n")
    (out / "wise_ft.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        ax.plot([r["share"] for r in rows], [r[name] for r in rows], marker="o", label=name,
                linestyle="-" if name.endswith("WER") else "--")
    ax.set_xlabel("share of the trained weights (0: Whisper's, 1: as trained)")
    ax.set_ylabel("%")
    ax.set_title(f"{args.exp.name}: WiSE-FT, {args.decode_config.stem}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "wise_ft.png", dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
