"""The speaker encoder: SpeechBrain Fbank -> per-utterance mean/variance norm -> ECAPA-TDNN.

The YAML config (conf/spk/*.yaml) maps onto DEFAULT_CONFIG key by key; unknown keys are
an error so a typo does not silently fall back to a default. Stage 3 saves the merged
config as `<exp>/config.yaml` next to `<exp>/model.pt`, from which stage 4 rebuilds it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import yaml
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization

DEFAULT_CONFIG: Dict[str, Any] = {
    "seed": 1234,
    "sample_rate": 16000,
    "features": {"n_mels": 80, "std_norm": True},
    "encoder": {  # keyword arguments of speechbrain's ECAPA_TDNN
        "channels": [256, 256, 256, 256, 768],
        "kernel_sizes": [5, 3, 3, 3, 1],
        "dilations": [1, 2, 3, 4, 1],
        "attention_channels": 64,
        "res2net_scale": 8,
        "se_channels": 64,
        "lin_neurons": 192,  # embedding dimension
    },
    "loss": "aam",  # aam | triplet
    "aam": {"margin": 0.2, "scale": 30.0},
    "triplet": {"margin": 1.0, "normalize": True},
    "epochs": 10,
    "speakers_per_batch": 8,
    "utts_per_speaker": 4,
    "batches_per_epoch": None,  # None: enough batches to draw each utterance about once
    "crop_seconds": 2.0,
    "augment_snr_db": None,  # [low, high]: add white noise at a random SNR to training crops
    # {share, sir_db: [low, high]}: that share of the crops gets another speaker of the batch
    # talking over it at a drawn ratio (the label unchanged; train.overlap)
    "overlap_augment": None,
    "optim": {"lr": 0.002, "weight_decay": 2.0e-5},
    "scheduler": {"pct_start": 0.15},  # OneCycleLR over all training steps
    "grad_clip": 5.0,
    "valid_max_seconds": 4.0,  # validation embeds at most this much of each utterance
    "valid_max_trials": 2000,  # per class (target / non-target)
    "num_threads": 0,  # torch threads; 0 keeps torch's default
}


def _merge(base: Dict[str, Any], override: Dict[str, Any], where: str) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in base:
            raise ValueError(f"{where}: unknown key '{key}' (known: {', '.join(base)})")
        if isinstance(base[key], dict) and key not in ("encoder",):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: '{key}' must be a mapping")
            out[key] = _merge(base[key], value, f"{where}:{key}")
        else:
            out[key] = value
    return out


def load_config(path: os.PathLike) -> Dict[str, Any]:
    """DEFAULT_CONFIG overridden by the YAML file at `path`."""
    with open(path, encoding="utf-8") as f:
        user = yaml.safe_load(f) or {}
    conf = _merge(DEFAULT_CONFIG, user, str(path))
    if conf["loss"] not in ("aam", "triplet"):
        raise ValueError(f"{path}: loss must be 'aam' or 'triplet', got '{conf['loss']}'")
    overlap = conf["overlap_augment"]
    if overlap is not None and not (isinstance(overlap, dict) and set(overlap) == {"share", "sir_db"}
                                    and 0.0 <= float(overlap["share"]) <= 1.0 and len(overlap["sir_db"]) == 2):
        raise ValueError(f"{path}: overlap_augment is {{share: 0..1, sir_db: [low, high]}}, got {overlap!r}")
    return conf


class SpeakerEncoder(torch.nn.Module):
    """Waveforms [B, T] (+ relative lengths [B]) -> embeddings [B, D].

    >>> conf = copy.deepcopy(DEFAULT_CONFIG)
    >>> enc = build_encoder(conf)
    >>> enc(torch.randn(2, 16000)).shape
    torch.Size([2, 192])
    """

    def __init__(self, sample_rate: int, n_mels: int, std_norm: bool, encoder_kwargs: Dict[str, Any]):
        super().__init__()
        self.sample_rate = sample_rate
        self.fbank = Fbank(sample_rate=sample_rate, n_mels=n_mels)
        # Per-utterance statistics (as SpeechBrain's VoxCeleb ECAPA recipe): no running
        # state to checkpoint, and a crop is normalised the same way in training and use.
        self.norm = InputNormalization(norm_type="sentence", std_norm=std_norm)
        self.ecapa = ECAPA_TDNN(input_size=n_mels, **encoder_kwargs)
        self.embedding_dim = int(encoder_kwargs.get("lin_neurons", 192))

    def forward(self, wavs: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.norm(self.fbank(wavs), lengths)
        return self.ecapa(feats, lengths).squeeze(1)

    @torch.no_grad()
    def embed(self, wav: np.ndarray) -> np.ndarray:
        """One whole utterance (float samples) -> float32 embedding [D]."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        emb = self(torch.from_numpy(np.asarray(wav, dtype=np.float32))[None].to(device))[0]
        self.train(was_training)
        return emb.cpu().numpy().astype(np.float32)


def build_encoder(conf: Dict[str, Any]) -> SpeakerEncoder:
    return SpeakerEncoder(conf["sample_rate"], conf["features"]["n_mels"],
                          conf["features"]["std_norm"], conf["encoder"])


def device_for(ngpu: int) -> torch.device:
    """cuda:0 for ngpu >= 1 (one GPU is all this small model uses), else CPU."""
    if ngpu > 0 and not torch.cuda.is_available():
        raise RuntimeError(f"--ngpu {ngpu} but CUDA is not available")
    return torch.device("cuda:0" if ngpu > 0 else "cpu")


def load_trained_encoder(model_dir: os.PathLike, device: str | torch.device = "cpu"):
    """(encoder in eval mode, config) from stage 3's `config.yaml` + `model.pt`."""
    model_dir = Path(model_dir)
    for name in ("config.yaml", "model.pt"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir / name}: missing; run stage 3 "
                                    f"(diffasr.bin.spk_train) with --output_dir {model_dir}")
    conf = load_config(model_dir / "config.yaml")
    if conf["num_threads"]:
        torch.set_num_threads(conf["num_threads"])
    encoder = build_encoder(conf)
    encoder.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu"))
    encoder.to(device).eval()
    return encoder, conf
