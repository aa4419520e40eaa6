#!/usr/bin/env python3
"""Where does target-speaker selection fail? The follow rate of decodes split by the
target-to-interferer ratio and by whether the target has speech of its own in the mixture.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/selection_breakdown.py --data_dir data/test \\
        --decode exp/asr_ar_whisper/decode_ar_beam1/test \\
        --decode exp/asr_diffusion_whisper/decode_diffusion_8step/test \\
        --output_dir results/selection_breakdown

The embedded mixtures place the shorter talker inside the longer one's span, so the longer
talker speaks alone for part of the mixture and the shorter one never does. A model that
transcribes the louder voice follows the target about as often as the target is the louder
talker; one that transcribes the longer voice, as often as the target is the longer one; a
model that selects by the enrollment follows it in every bin. Writes
``selection_breakdown.{md,json,png}``.
"""

import argparse
import json
import math
from pathlib import Path

import soundfile

from diffasr.datadir import read_jsonl, read_kv, target_absent_utts
from diffasr.scoring.confusion import follows

SIR_BINS = [(-10.0, -5.0), (-5.0, 0.0), (0.0, 5.0), (5.0, 10.0)]


def conditions(data_dir: Path):
    """utt -> (target over interferer in dB, whether the target is the longer talker), present
    targets with one interferer."""
    out = {}
    absent = set(target_absent_utts(data_dir))
    for utt, record in read_jsonl(data_dir / "mixture.jsonl").items():
        if utt in absent or len(record.get("interferers") or []) != 1:
            continue
        interferer = record["interferers"][0]
        longer = _duration(record["target"]) >= _duration(interferer)  # the shorter one lies inside its span
        out[utt] = (float(interferer["sir_db"]), bool(longer), record["target"]["text"], interferer["text"])
    return out


def _duration(source: dict) -> float:
    return soundfile.info(source["path"]).duration


def breakdown(data_dir: Path, decode_dir: Path):
    hyps = read_kv(decode_dir / "text", allow_empty_value=True)
    rows = {}
    for utt, (sir, longer, target_text, other_text) in conditions(data_dir).items():
        if utt not in hyps:
            raise ValueError(f"{decode_dir / 'text'}: no hypothesis for utterance '{utt}'")
        key = next(f"{lo:+.0f}..{hi:+.0f} dB" for lo, hi in SIR_BINS if lo <= sir < hi or (hi == 10.0 and sir == hi))
        for group in (key, "target longer" if longer else "target shorter", "all"):
            n, k = rows.get(group, (0, 0))
            rows[group] = (n + 1, k + int(follows(target_text, [other_text], hyps[utt])))
    return {group: {"n": n, "follows": 100.0 * k / n} for group, (n, k) in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--decode", type=Path, action="append", required=True, help="decode dir with text (repeatable)")
    p.add_argument("--output_dir", type=Path, required=True)
    args = p.parse_args()
    results = {str(d): breakdown(args.data_dir, d) for d in args.decode}
    groups = [f"{lo:+.0f}..{hi:+.0f} dB" for lo, hi in SIR_BINS] + ["target longer", "target shorter", "all"]
    lines = [f"Follow rate (%) on {args.data_dir} by target-to-interferer ratio and by whether the target "
             "is the longer talker (n in brackets).", "",
             "| decode | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for decode, rows in results.items():
        cells = [f"{rows[g]['follows']:.1f} ({rows[g]['n']})" if g in rows else "–" for g in groups]
        lines.append(f"| {decode} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "selection_breakdown.md").write_text(table, encoding="utf-8")
    (args.output_dir / "selection_breakdown.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    centres = [(lo + hi) / 2 for lo, hi in SIR_BINS]
    for decode, rows in results.items():
        ax.plot(centres, [rows.get(g, {}).get("follows", math.nan) for g in groups[:4]], "o-",
                label=Path(decode).parent.parent.name + "/" + Path(decode).parent.name)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("target-to-interferer ratio (dB)")
    ax.set_ylabel("follows (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output_dir / "selection_breakdown.png", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
