"""Is the enrolled voice in the mixture at all? A speaker-verification gate before recognition.

A target-speaker recogniser asked for a voice that is not in the mixture still writes someone's
words: it has learnt to transcribe *a* talker, and the demo models answer a target-absent
enrollment with nothing in 0 % of cases. The stage-3 speaker encoder answers the question
directly. The mixture is cut into overlapping windows and each window is embedded; the
presence score is the highest cosine similarity of a window with the enrollment's embedding
(a talker who is present has some window in which its voice dominates, or is alone). A
threshold chosen on a dev set with target-absent examples turns the score into a decision:
as many absent examples caught as the allowed share of present targets lost permits.

The gate is a value (``PresenceGate``: windowing and threshold), saved by stage 4 as
``presence.yaml`` in the speaker encoder's dir and read by decoding, the API and the server.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import yaml

PRESENCE_FILE = "presence.yaml"
WINDOW_EMBED = "window_embed"  # <data_dir>/window_embed.scp: [N, D] per mixture; .yaml: their windows


@dataclass(frozen=True)
class PresenceGate:
    """window_seconds/hop_seconds: how the mixture is cut before embedding; threshold: the
    lowest presence score (cosine) at which the target counts as present."""
    threshold: float
    window_seconds: float = 1.5
    hop_seconds: float = 0.5

    def __post_init__(self):
        if not (self.window_seconds > 0 and self.hop_seconds > 0):
            raise ValueError(f"presence gate: window_seconds and hop_seconds must be > 0, got "
                             f"{self.window_seconds} and {self.hop_seconds}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"presence gate: threshold is a cosine in [-1, 1], got {self.threshold}")

    def present(self, score: float) -> bool:
        return score >= self.threshold

    def save(self, path: os.PathLike, figures: Optional[Dict[str, float]] = None) -> None:
        record = dict(asdict(self), dev=figures or {})
        tmp = Path(str(path) + ".new")
        tmp.write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: os.PathLike) -> "PresenceGate":
        path = Path(path)
        if path.is_dir():
            path = path / PRESENCE_FILE
        try:
            record = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing; stage 4 chooses the presence threshold on the "
                                    "dev set (diffasr.bin.spk_presence)") from None
        record.pop("dev", None)
        try:
            return cls(**record)
        except TypeError as e:
            raise ValueError(f"{path}: {e}") from None


def windows(samples: np.ndarray, sample_rate: int, window_seconds: float, hop_seconds: float) -> np.ndarray:
    """[N, W] overlapping windows covering ``samples`` (the last one ends at its end; audio
    shorter than a window is one window of its own length)."""
    width, hop = int(round(window_seconds * sample_rate)), int(round(hop_seconds * sample_rate))
    if samples.size <= width:
        return samples[None]
    starts = list(range(0, samples.size - width + 1, hop))
    if starts[-1] + width < samples.size:
        starts.append(samples.size - width)
    return np.stack([samples[s:s + width] for s in starts])


def window_embeddings(encoder, samples: np.ndarray, sample_rate: int, window_seconds: float,
                      hop_seconds: float, batch_size: int = 64) -> np.ndarray:
    """[N, D] L2-normalised speaker embeddings of the windows of one recording."""
    import torch  # here: the command-line parsers import this module for add_argument

    cut = windows(np.asarray(samples, dtype=np.float32), sample_rate, window_seconds, hop_seconds)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(cut), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(cut[start:start + batch_size])).to(device)
            out.append(torch.nn.functional.normalize(encoder(batch), dim=-1).cpu())
    encoder.train(was_training)
    return torch.cat(out).numpy().astype(np.float32)


def presence_score(window_embeds: np.ndarray, enroll_embed: np.ndarray) -> float:
    """Highest cosine similarity of a window with the enrollment embedding."""
    enroll = np.asarray(enroll_embed, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(enroll))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("presence score: the enrollment embedding is zero or not finite")
    return float(np.max(np.asarray(window_embeds, dtype=np.float32) @ (enroll / norm)))


class PresenceCheck:
    """The gate with the speaker encoder that embeds what it checks (audio in hand: the API
    and the server; the recipe's decoding reads stage 4's window embeddings instead)."""

    def __init__(self, gate: PresenceGate, encoder, sample_rate: int):
        self.gate, self.encoder, self.sample_rate = gate, encoder, sample_rate

    def score(self, samples: np.ndarray, enroll_embed: np.ndarray) -> float:
        return presence_score(window_embeddings(self.encoder, samples, self.sample_rate, self.gate.window_seconds,
                                                self.gate.hop_seconds), enroll_embed)


def choose_threshold(present: Sequence[float], absent: Sequence[float],
                     max_lost: float = 0.03) -> Dict[str, float]:
    """The highest threshold that loses at most ``max_lost`` of the present targets (scores
    below it), with the shares it catches and loses on these scores."""
    present, absent = np.sort(np.asarray(present, dtype=np.float64)), np.asarray(absent, dtype=np.float64)
    if present.size == 0 or absent.size == 0:
        raise ValueError(f"choosing a presence threshold needs present and target-absent examples; "
                         f"got {present.size} and {absent.size}")
    allowed = int(math.floor(max_lost * present.size + 1e-9))  # present examples that may fall below
    # just above the allowed-th lowest present score loses exactly `allowed` of them
    threshold = float(present[min(allowed, present.size - 1)])
    return {"threshold": threshold,
            "present": int(present.size), "absent": int(absent.size),
            "present_lost": float(np.mean(present < threshold)),
            "absent_caught": float(np.mean(absent < threshold)),
            "max_lost": float(max_lost)}


def write_window_shape(data_dir: os.PathLike, window_seconds: float, hop_seconds: float) -> None:
    """Record beside ``window_embed.scp`` how its windows were cut."""
    Path(data_dir, WINDOW_EMBED + ".yaml").write_text(
        yaml.safe_dump({"window_seconds": window_seconds, "hop_seconds": hop_seconds}), encoding="utf-8")


def read_window_shape(data_dir: os.PathLike) -> Dict[str, float]:
    path = Path(data_dir, WINDOW_EMBED + ".yaml")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (diffasr.bin.spk_presence embed writes it with "
                                f"{WINDOW_EMBED}.scp)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check_window_shape(gate: PresenceGate, data_dir: os.PathLike) -> None:
    """The set's window embeddings must be cut as the gate's threshold was chosen."""
    shape = read_window_shape(data_dir)
    if (shape["window_seconds"], shape["hop_seconds"]) != (gate.window_seconds, gate.hop_seconds):
        raise ValueError(f"{Path(data_dir, WINDOW_EMBED + '.scp')}: windows of {shape['window_seconds']} s "
                         f"every {shape['hop_seconds']} s; the presence gate was chosen on "
                         f"{gate.window_seconds} s every {gate.hop_seconds} s (rerun stage 4)")
