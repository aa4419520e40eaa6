"""Enrolled speakers in SQLite: one row per speaker, written in one transaction.

An enrollment is stored as the model takes it (speaker embedding and/or the
frozen encoder frames), so a request naming a speaker id runs no speaker encoder.
Rows carry the model's fingerprint: a server restarted with another model refuses
speakers enrolled for the old one instead of feeding it foreign embeddings.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from diffasr.espnet2.enrollment import Enrollment

SCHEMA = """
CREATE TABLE IF NOT EXISTS speakers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    seconds REAL NOT NULL,
    embed BLOB, embed_shape TEXT,
    speech BLOB, speech_shape TEXT
)
"""


class UnknownSpeaker(KeyError):
    pass


class WrongModel(ValueError):
    pass


def _blob(tensor: Optional[torch.Tensor]):
    if tensor is None:
        return None, None
    array = tensor.detach().cpu().numpy().astype(np.float32)
    return array.tobytes(), ",".join(map(str, array.shape))


def _tensor(blob: Optional[bytes], shape: Optional[str]) -> Optional[torch.Tensor]:
    if blob is None:
        return None
    dims = tuple(int(d) for d in shape.split(",")) if shape else ()
    return torch.from_numpy(np.frombuffer(blob, dtype=np.float32).reshape(dims).copy())


class SpeakerStore:
    """Speakers of one model in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: Path, model_fingerprint: str):
        self.path, self.model = Path(path), model_fingerprint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for a writer
        self._db.execute("PRAGMA synchronous=FULL")  # a committed speaker survives a power cut
        with self._db:
            self._db.execute(SCHEMA)

    def add(self, name: str, enrollment: Enrollment, seconds: float) -> str:
        speaker_id = uuid.uuid4().hex
        # stored as one utterance's tensors: embed [E], speech [F, D] frames (or [T] audio)
        embed, embed_shape = _blob(None if enrollment.embed is None else enrollment.embed[0])
        speech, speech_shape = _blob(None if enrollment.speech is None else enrollment.speech[0])
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO speakers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (speaker_id, name, self.model, time.time(), seconds, embed, embed_shape, speech, speech_shape),
            )
        return speaker_id

    def get(self, speaker_id: str) -> Enrollment:
        with self._lock:
            row = self._db.execute(
                "SELECT model, embed, embed_shape, speech, speech_shape FROM speakers WHERE id = ?",
                (speaker_id,),
            ).fetchone()
        if row is None:
            raise UnknownSpeaker(speaker_id)
        if row[0] != self.model:
            raise WrongModel(f"speaker {speaker_id} was enrolled for another model ({row[0]}); "
                             f"enroll them again for this one ({self.model})")
        return Enrollment.of_one(embed=_tensor(row[1], row[2]), speech=_tensor(row[3], row[4]))

    def list(self) -> List[Dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, model, created, seconds FROM speakers ORDER BY created").fetchall()
        return [dict(id=r[0], name=r[1], model=r[2], created=r[3], enrollment_seconds=r[4]) for r in rows]

    def delete(self, speaker_id: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM speakers WHERE id = ?", (speaker_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
