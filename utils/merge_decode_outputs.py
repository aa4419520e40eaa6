#!/usr/bin/env python3
"""Merge the per-job outputs of stage 6 into one decode dir.

Usage: utils/merge_decode_outputs.py --output_dir DECODE_DIR JOB_OUTPUT_DIR...
Utterance-keyed files (text, token, timing, ...) are concatenated and sorted;
a key that appears in two jobs is an error naming both files.
"""
import argparse
import sys
from pathlib import Path

# What diffasr.inference.decode_set writes (words.ctm: long-form decoding only).
KEYED_FILES = ("text", "token", "timing", "word_confidence.ctm", "remasked", "token_uncertainty", "words.ctm",
              "presence")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("job_dirs", type=Path, nargs="+")
    args = parser.parse_args()
    for name in KEYED_FILES:
        parts = [d / name for d in args.job_dirs if (d / name).is_file()]
        if not parts:
            continue
        if len(parts) != len(args.job_dirs):
            missing = sorted(set(args.job_dirs) - {p.parent for p in parts})
            print(f"merge_decode_outputs.py: {name} missing in {missing[0]}", file=sys.stderr)
            return 1
        lines, owner = [], {}
        for part in parts:
            for line in part.read_text(encoding="utf-8").splitlines():
                key = line.split(" ", 1)[0]
                # The CTM has one line per word, so keys repeat within a job; only across jobs is it wrong.
                if owner.setdefault(key, part) != part:
                    print(f"merge_decode_outputs.py: utterance '{key}' in both {owner[key]} and {part}",
                          file=sys.stderr)
                    return 1
                lines.append(line)
        lines.sort(key=lambda line: line.split(" ", 1)[0])  # stable: keeps CTM word order
        args.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = args.output_dir / f".{name}.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(args.output_dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
