"""Atomic writes: a stage killed while writing leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` (same directory: the rename is atomic) that
    replaces ``path`` when the block ends, and is removed if the block raises.

    ``suffix`` keeps a file type that a writer reads from the name (soundfile: ".wav").

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "text"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("utt1 HELLO\\n")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('utt1 HELLO\\n', ['text'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
