#!/usr/bin/env python3
"""Split a Kaldi scp into N contiguous key lists: OUT_DIR/keys.{1..N}.scp.

Usage: utils/split_scp.py SCP OUT_DIR N
Contiguous splits keep each speaker's utterances together, as Kaldi's split_scp.pl does.
"""
import sys
from pathlib import Path

from diffasr.datadir import read_kv, write_kv

if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    scp, out_dir, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    table = read_kv(scp)
    if not 1 <= n <= len(table):
        sys.exit(f"split_scp.py: cannot split {len(table)} lines of {scp} into {n} parts")
    keys = list(table)
    for i in range(n):
        part = keys[i * len(keys) // n:(i + 1) * len(keys) // n]
        write_kv(out_dir / f"keys.{i + 1}.scp", {k: table[k] for k in part})
