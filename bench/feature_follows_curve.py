#!/usr/bin/env python3
"""Feature follows on the validation set per epoch, from ESPnet training logs, as a table and a plot.

    python bench/feature_follows_curve.py --log prefix=exp/asr_teacher_p1_prefix/train.log \\
        --log frame_transform=exp/asr_teacher_p1_frame_transform/train.log --output_dir results/teacher_conditioning

Each ``Nepoch results`` line of a log gives the updates so far (its train ``total_count``) and
the validation ``feature_follows`` and ``loss_teacher`` (``model_conf teacher_weight``);
writes ``feature_follows.md`` (one row per log and epoch: cumulative updates, feature
follows in %, teacher loss) and ``feature_follows.png``.
"""

import argparse
import re
from pathlib import Path
from typing import Dict, List, Tuple

RESULTS = re.compile(r"(\d+)epoch results: \[train\] (.*?)\[valid\] (.*)")


def read_checkpoint(checkpoint: Path) -> List[Tuple[int, int, float, float]]:
    """The same rows from ESPnet's ``checkpoint.pth`` (its reporter keeps every epoch's
    statistics; a resumed run's train.log holds only the epochs it ran)."""
    import torch

    stats = torch.load(checkpoint, map_location="cpu", weights_only=False)["reporter"]["stats"]
    rows = []
    for epoch in sorted(stats):
        valid = stats[epoch]["valid"]
        if "feature_follows" not in valid:
            raise SystemExit(f"{checkpoint}: epoch {epoch} has no valid feature_follows")
        rows.append((epoch, int(stats[epoch]["train"]["total_count"]), 100.0 * float(valid["feature_follows"]),
                     float(valid["loss_teacher"])))
    return rows


def read_curve(log: Path) -> List[Tuple[int, int, float, float]]:
    """(epoch, cumulative updates, feature follows %, teacher loss) per epoch of a train.log
    (or of a ``checkpoint.pth``: ``read_checkpoint``)."""
    if log.suffix == ".pth":
        return read_checkpoint(log)
    rows = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = RESULTS.search(line)
        if not match:
            continue
        train = dict(re.findall(r"(\w+)=([-\d.e+]+)", match.group(2)))
        valid = dict(re.findall(r"(\w+)=([-\d.e+]+)", match.group(3)))
        if "feature_follows" not in valid:
            raise SystemExit(f"{log}: epoch {match.group(1)} has no valid feature_follows (was model_conf "
                             "teacher_weight > 0 and the validation set's teacher_others given?)")
        updates = int(float(train["total_count"]))  # ESPnet's count of updates so far
        rows.append((int(match.group(1)), updates, 100.0 * float(valid["feature_follows"]),
                     float(valid["loss_teacher"])))
    if not rows:
        raise SystemExit(f"{log}: no 'Nepoch results' line: not an ESPnet train.log, or no epoch finished")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", action="append", required=True,
                        help="name=path of a train.log or an experiment's checkpoint.pth (repeatable)")
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    curves: Dict[str, List[Tuple[int, int, float, float]]] = {}
    for item in args.log:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--log {item!r}: expected name=path")
        curves[name] = read_curve(Path(path))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    lines = ["| run | epoch | updates | feature follows (%) | teacher loss (valid) |", "|---|---:|---:|---:|---:|"]
    for name, rows in curves.items():
        lines += [f"| {name} | {e} | {u} | {f:.1f} | {loss:.3f} |" for e, u, f, loss in rows]
    (args.output_dir / "feature_follows.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in curves.items():
        ax.plot([u for _, u, _, _ in rows], [f for _, _, f, _ in rows], marker="o", label=name)
    ax.axhline(50.0, color="grey", linestyle=":", linewidth=1, label="chance (two talkers)")
    ax.set_xlabel("updates")
    ax.set_ylabel("feature follows on dev (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output_dir / "feature_follows.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
