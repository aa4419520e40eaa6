#!/usr/bin/env python3
"""Validate a Kaldi-style data dir (sorted, consistent ids, files exist).

Usage: utils/validate_data_dir.py [--no-check-paths] [--require FILE ...] DATA_DIR...
Exit status 1 with a message naming the file and line on the first problem.
"""
import argparse
import sys

from diffasr.datadir import DataDirError, validate_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dirs", nargs="+")
    parser.add_argument("--require", nargs="*", default=["wav.scp", "text", "utt2spk"],
                        help="files that must exist")
    parser.add_argument("--no-check-paths", action="store_true", help="skip checking that audio files exist")
    args = parser.parse_args()
    for data_dir in args.data_dirs:
        try:
            utts = validate_data_dir(data_dir, require=args.require, check_paths=not args.no_check_paths)
        except DataDirError as e:
            print(f"validate_data_dir.py: {e}", file=sys.stderr)
            return 1
        print(f"validate_data_dir.py: {data_dir}: OK ({len(utts)} utterances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
