"""Write RESULTS.md from every scored decode dir (`<exp_dir>/*/decode_*/*/metrics.json`).

Example:
  python -m diffasr.bin.make_results --exp_dir exp --output exp/RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from diffasr.fileio import write_text_atomic
from diffasr.scoring.results import make_results


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", type=Path, required=True,
                        help="folder of experiments, each with decode_*/<test_set>/metrics.json")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the report (default: <exp_dir>/RESULTS.md)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    output = args.output or args.exp_dir / "RESULTS.md"
    text = make_results(args.exp_dir)
    write_text_atomic(output, text)
    logging.info("wrote %s", output)


if __name__ == "__main__":
    main()
