#!/usr/bin/env python3
"""Sort a Kaldi-style data dir and keep only utterances present in every file.

Usage: utils/fix_data_dir.py DATA_DIR
"""
import sys

from diffasr.datadir import DataDirError, fix_data_dir

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        kept, dropped = fix_data_dir(sys.argv[1])
    except DataDirError as e:
        sys.exit(f"fix_data_dir.py: {e}")
    print(f"fix_data_dir.py: {sys.argv[1]}: kept {kept} utterances, dropped {dropped}")
