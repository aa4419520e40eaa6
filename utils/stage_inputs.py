#!/usr/bin/env python3
"""Record or check the inputs a stage consumed (diffasr/stage_inputs.py).

Usage: utils/stage_inputs.py record MARKER FILE...
       utils/stage_inputs.py check MARKER FILE...
       utils/stage_inputs.py provenance OUTPUT CONFIG MODEL   (stage 8: commit + config/model sha256)
check exits 0 when the files match the record, 1 when some changed (they are printed),
2 when there is no record.
"""
import os
import sys

from diffasr.stage_inputs import changed, record, write_provenance

if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in ("record", "check", "provenance"):
        sys.exit(__doc__)
    action, marker, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    if action == "provenance":
        # The code's repository: where this script's utils/ lives, wherever the recipe runs.
        write_provenance(marker, *files, root=os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        sys.exit(0)
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
