"""What a stage consumed, so that a rerun notices inputs changed since its outputs were written.

A record (JSON, beside the outputs) holds the sha256 of each input file and the git commit of
the code. ``changed`` compares the files now with the record; the commit is kept for the
reader, not compared (a code change alone does not make data stale).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from diffasr.fileio import write_text_atomic


def sha256(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(root: os.PathLike) -> str:
    """HEAD of the repository at ``root`` (``-modified`` if the tree differs), or ``unknown``."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--"]).returncode != 0
    return head.stdout.strip() + ("-modified" if dirty else "")


def fingerprint(files: Sequence[os.PathLike]) -> Dict[str, str]:
    return {str(f): sha256(f) for f in files}


def record(marker: os.PathLike, files: Sequence[os.PathLike], root: os.PathLike = ".") -> None:
    write_text_atomic(marker, json.dumps({"git_commit": git_commit(root), "inputs": fingerprint(files)},
                                         indent=1, sort_keys=True) + "\n")


def changed(marker: os.PathLike, files: Sequence[os.PathLike]) -> Optional[List[str]]:
    """The inputs that differ from the record (added, removed or edited); None without a record."""
    try:
        recorded = json.loads(Path(marker).read_text(encoding="utf-8"))["inputs"]
    except (OSError, ValueError, KeyError):
        return None
    now = fingerprint(files)
    return sorted(f for f in set(now) | set(recorded) if now.get(f) != recorded.get(f))


def write_provenance(path: os.PathLike, config: os.PathLike, model: os.PathLike, root: os.PathLike = ".") -> None:
    """What made a packed model: the code's commit and the hashes of its config and weights."""
    write_text_atomic(path, json.dumps({"git_commit": git_commit(root), "config_sha256": sha256(config),
                                        "model_file": Path(model).name, "model_sha256": sha256(model)}) + "\n")
