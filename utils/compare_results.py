#!/usr/bin/env python3
"""Do two RESULTS.md files hold the same rows, apart from timings (RTFx)?

    utils/compare_results.py exp_a/RESULTS.md exp_b/RESULTS.md

Exits 0 when they do; otherwise prints the differing rows (unified diff) and exits 1.
Used to check that another job launcher (tools/slurm/) or a refactoring leaves a
recipe's results unchanged.
"""

import difflib
import sys
from pathlib import Path

from diffasr.scoring.results import rows_without_timings


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit(__doc__)
    a, b = (rows_without_timings(Path(p).read_text(encoding="utf-8")) for p in argv)
    if not a:
        sys.exit(f"compare_results.py: {argv[0]} has no result rows")
    if a == b:
        print(f"{len(a)} rows identical apart from timings")
        return 0
    sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(a, b, argv[0], argv[1], lineterm=""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
