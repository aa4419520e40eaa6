"""The CI size of the shipped configs: each real config with conf/tiny.yaml merged over it,
as asr.sh --overlay conf/tiny.yaml writes it (diffasr/overlay.py)."""

import tempfile
from pathlib import Path

from diffasr.overlay import SPEAKER, write_overlaid

TINY_OVERLAY = Path(__file__).resolve().parents[1] / "egs/TEMPLATE/asr1/conf/tiny.yaml"
_OUT = Path(tempfile.mkdtemp(prefix="diffasr_tiny_configs_"))


def tiny(config: Path, kind: str = "train") -> Path:
    """``<config stem>_tiny.yaml``: ``config`` at the CI size (kind ``speaker`` for stage 3's)."""
    config = Path(config)
    return write_overlaid(config, TINY_OVERLAY, _OUT / f"{config.parent.name}_{config.stem}_tiny.yaml", kind)


def tiny_speaker(config: Path) -> Path:
    return tiny(config, SPEAKER)
