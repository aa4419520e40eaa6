"""RESULTS.md from every `<exp_dir>/<asr_exp>/decode_<tag>/<test_set>/metrics.json`.

Layout follows ESPnet's and icefall's RESULTS.md: an environment block, one table with a
row per (experiment, decode config, test set), then per experiment the commands that made
it (`<exp>/run.sh`, which asr.sh writes into every experiment dir; it also decodes).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple


@dataclass
class ResultRow:
    exp: str
    decode: str
    test_set: str
    metrics: dict
    path: Path


def collect_metrics(exp_dir: os.PathLike) -> List[ResultRow]:
    """Every metrics.json under `exp_dir/*/decode_*/*/`, sorted by (exp, decode, test set)."""
    rows = []
    for path in sorted(Path(exp_dir).glob("*/decode_*/*/metrics.json")):
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from None
        test_dir, decode_dir, exp = path.parent, path.parent.parent, path.parent.parent.parent
        rows.append(ResultRow(exp.name, decode_dir.name[len("decode_"):], test_dir.name, metrics, path))
    return rows


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit(repo: Path) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%H %cd"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return proc.stdout.strip()


def environment_lines() -> List[str]:
    lines = [f"- date: `{datetime.datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
             f"- python version: `{platform.python_version()}`",
             f"- torch version: `{_package_version('torch')}`",
             f"- espnet version: `{_package_version('espnet')}`"]
    commit = _git_commit(Path(__file__).resolve().parent)
    if commit:
        lines.append(f"- diffasr git commit: `{commit}`")
    return lines


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _nested(metrics: dict, *keys: str):
    for key in keys:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def _word_error_share(metrics: dict, kind: str) -> Optional[float]:
    """``kind`` (sub, del, ins) errors in % of the reference words, from sclite's counts."""
    detail = metrics.get("wer_detail")
    if not isinstance(detail, dict) or kind not in detail or not detail.get("n_wrd"):
        return None
    return 100.0 * detail[kind] / detail["n_wrd"]


# (header, getter, digits); optional columns appear only when some row has a value.
Column = Tuple[str, Callable[[dict], object], int]
BASE_COLUMNS: List[Column] = [
    ("#Snt", lambda m: m.get("n_utt"), 0),
    ("#Wrd", lambda m: _nested(m, "wer_detail", "n_wrd"), 0),
    ("WER", lambda m: m.get("wer"), 2),
    # sclite's substitutions, deletions and insertions, in % of the reference words (WER = their sum)
    ("Sub", lambda m: _word_error_share(m, "sub"), 1),
    ("Del", lambda m: _word_error_share(m, "del"), 1),
    ("Ins", lambda m: _word_error_share(m, "ins"), 1),
    ("CER", lambda m: m.get("cer"), 2),
    ("RTFx", lambda m: m.get("rtfx"), 1),
]
OPTIONAL_COLUMNS: List[Column] = [
    ("Follows (%)", lambda m: m.get("follows"), 1),
    ("Follows other (%)", lambda m: m.get("follows_other"), 1),
    ("Spk. confusion (%)", lambda m: m.get("speaker_confusion"), 2),
    ("Emptied (%)", lambda m: m.get("emptied"), 1),
    ("Absent → empty (%)", lambda m: m.get("absent_empty"), 1),
    ("NCE", lambda m: _nested(m, "uncertainty", "nce"), 3),
    ("AUROC", lambda m: _nested(m, "uncertainty", "auroc"), 3),
    ("ECE", lambda m: _nested(m, "uncertainty", "ece"), 3),
    ("NCE (calibrated)", lambda m: _nested(m, "uncertainty", "calibrated", "nce"), 3),
    ("ECE (calibrated)", lambda m: _nested(m, "uncertainty", "calibrated", "ece"), 3),
    ("AUROC (entropy)", lambda m: _nested(m, "uncertainty", "auroc_entropy"), 3),
    ("AUROC (flips)", lambda m: _nested(m, "uncertainty", "auroc_flips"), 3),
]


def results_table(rows: Sequence[ResultRow]) -> List[str]:
    columns = BASE_COLUMNS + [c for c in OPTIONAL_COLUMNS
                              if any(c[1](r.metrics) is not None for r in rows)]
    header = ["exp", "decode", "test set"] + [name for name, _, _ in columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * len(columns)) + "|"]
    for row in rows:
        cells = [row.exp, row.decode, row.test_set]
        cells += [_fmt(get(row.metrics), digits) for _, get, digits in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


TIMING_COLUMNS = ("RTFx",)


def rows_without_timings(results_md: str) -> List[str]:
    r"""The result rows of a RESULTS.md text, without their timing columns: what two runs
    of the same recipe (another launcher, refactored code) must agree on.

    >>> text = "| exp | decode | test set | WER | RTFx |\n|---|---|---|---:|---:|\n| a | b | test | 1.00 | 9.9 |\n"
    >>> rows_without_timings(text)
    ['a | b | test | 1.00']
    """
    lines = [line for line in results_md.splitlines() if line.startswith("| ")]
    if not lines:
        return []
    names = [c.strip() for c in lines[0].strip("|").split("|")]
    keep = [i for i, name in enumerate(names) if name not in TIMING_COLUMNS]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(" | ".join(cells[i] for i in keep))
    return rows


def _command_block(title: str, path: Path) -> List[str]:
    return [f"- {title} (`{path.name}`):", "", "```sh", path.read_text(encoding="utf-8").strip(),
            "```", ""]


def command_lines(exp_dir: Path, rows: Sequence[ResultRow]) -> List[str]:
    """Per experiment, the command that made it (and decoded it), when recorded."""
    lines: List[str] = []
    for exp in dict.fromkeys(r.exp for r in rows):
        if (exp_dir / exp / "run.sh").is_file():
            lines += [f"### {exp}", ""] + _command_block("training", exp_dir / exp / "run.sh")
    return lines


def make_results(exp_dir: os.PathLike) -> str:
    """The text of RESULTS.md for `exp_dir`; raises FileNotFoundError if nothing is scored."""
    exp_dir = Path(exp_dir)
    rows = collect_metrics(exp_dir)
    if not rows:
        raise FileNotFoundError(f"no {exp_dir}/*/decode_*/*/metrics.json found; run stage 7 first")
    lines = ["<!-- Generated by python -m diffasr.bin.make_results; edits are overwritten -->",
             "# RESULTS", "", "## Environments", ""] + environment_lines() + [""]
    lines += ["## Results", "",
              "WER/CER in %, from sclite (score_wer/result.txt, score_cer/result.txt). "
              "RTFx: audio seconds / decoding seconds. Speaker confusion: % of utterances whose "
              "hypothesis is closer to an interferer's transcript than to the target's; Follows: % "
              "closer to the target's than to every other talker's; a _rotate decode has another test "
              "voice's enrollment, a _swap decode the mixture's other talker's (both scored against the "
              "original target), Follows other: % of a _swap decode closer to that other talker's "
              "transcript than to every other; Emptied: % of present targets "
              "given no words; Absent → empty: % of target-absent examples given no words (they are "
              "left out of WER). NCE, AUROC (error detection) and ECE rate word confidences.", ""]
    lines += results_table(rows) + [""]
    commands = command_lines(exp_dir, rows)
    if commands:
        lines += ["## Commands", ""] + commands
    return "\n".join(lines).rstrip("\n") + "\n"
