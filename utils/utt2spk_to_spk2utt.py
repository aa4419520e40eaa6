#!/usr/bin/env python3
"""Write DATA_DIR/spk2utt from DATA_DIR/utt2spk.

Usage: utils/utt2spk_to_spk2utt.py DATA_DIR
"""
import sys

from diffasr.datadir import DataDirError, write_spk2utt

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        write_spk2utt(sys.argv[1])
    except (DataDirError, OSError) as e:
        sys.exit(f"utt2spk_to_spk2utt.py: {e}")
