#!/usr/bin/env python3
"""Record or check the inputs a stage consumed (diffasr/stage_inputs.py).

Usage: utils/stage_inputs.py record MARKER FILE...
       utils/stage_inputs.py check MARKER FILE...
check exits 0 when the files match the record, 1 when some changed (they are printed),
2 when there is no record.
"""
import sys

from diffasr.stage_inputs import changed, record

if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in ("record", "check"):
        sys.exit(__doc__)
    action, marker, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    if action == "record":
        record(marker, files)
        sys.exit(0)
    diff = changed(marker, files)
    if diff is None:
        sys.exit(2)
    if diff:
        print(" ".join(diff))
        sys.exit(1)
    sys.exit(0)
