"""Stage 3: train the ECAPA-TDNN speaker encoder on clean source utterances.

Checkpoints (SpeechBrain Checkpointer) hold the encoder, AAM head, optimizer, LR
scheduler, epoch counter, RNG states and progress (loss/EER history, training time),
so a killed run resumes at the next epoch and, with a fixed seed, ends with the same
weights as an uninterrupted one. Outputs in output_dir: model.pt (encoder state
dict), config.yaml (merged config), train_info.json, tensorboard/.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml
from speechbrain.utils.checkpoints import Checkpointer, mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.epoch_loop import EpochCounter

from diffasr.fileio import atomic_path, write_text_atomic
from diffasr.speaker.data import SpeakerSet
from diffasr.speaker.losses import AAMHead, batch_hard_triplet_loss
from diffasr.speaker.metrics import compute_eer, cosine_scores, make_trials
from diffasr.speaker.model import build_encoder

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class TrainingState:
    """RNG states, per-epoch history and accumulated training seconds, checkpointed."""

    def __init__(self):
        self.history: List[Dict[str, Any]] = []
        self.train_seconds = 0.0

    @mark_as_saver
    def _save(self, path):
        torch.save({"history": self.history, "train_seconds": self.train_seconds,
                    "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate()}, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=True):
        state = torch.load(path, weights_only=False)
        self.history, self.train_seconds = state["history"], state["train_seconds"]
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])


def _collate(speaker_set: SpeakerSet, batch, n_samples: int, rng: np.random.Generator):
    wavs = np.stack([speaker_set.crop(utt, n_samples, rng) for utt, _ in batch])
    labels = torch.tensor([s for _, s in batch], dtype=torch.long)
    return torch.from_numpy(wavs), labels


def overlap(wavs: torch.Tensor, labels: torch.Tensor, share: float, sir_db, rng: np.random.Generator) -> torch.Tensor:
    """A ``share`` of the crops with another speaker's crop of the batch added at a drawn
    target-to-interferer ratio (``sir_db`` [low, high], mean powers), the label unchanged: the
    embedding learns to name the voice it is given also when someone else talks over it, as
    the mixtures the presence gate reads do. (SpeechBrain 1.x has no babble augmentation.)"""
    out = wavs.clone()
    for i in np.flatnonzero(rng.random(len(wavs)) < share):
        others = np.flatnonzero((labels != labels[i]).numpy())
        if others.size == 0:
            continue
        j = int(others[rng.integers(others.size)])
        target_power, other_power = wavs[i].pow(2).mean(), wavs[j].pow(2).mean()
        if other_power <= 0:
            continue
        sir = float(rng.uniform(*sir_db))
        out[i] = wavs[i] + wavs[j] * torch.sqrt(target_power / (other_power * 10.0 ** (sir / 10.0)))
    peak = out.abs().amax(dim=1, keepdim=True).clamp(min=1.0)  # no clipping: scale a loud sum down
    return out / peak


@torch.no_grad()
def validation_eer(encoder, valid_set: SpeakerSet, conf: Dict[str, Any]) -> float:
    """EER of cosine scoring on balanced trials over the validation speakers."""
    encoder.eval()
    max_samples = int(conf["valid_max_seconds"] * conf["sample_rate"])
    embeddings = {u: encoder.embed(valid_set.read(u, 0, min(valid_set.frames[u], max_samples)))
                  for u in sorted(valid_set.utt2spk)}
    encoder.train()
    trials = make_trials(valid_set.utt2spk, conf["valid_max_trials"], seed=0,
                         where=str(valid_set.data_dir))
    return compute_eer(*cosine_scores(trials, embeddings))[0]


COMPLETE = "COMPLETE"  # written into a checkpoint dir once every file of it is saved


def drop_incomplete_checkpoints(ckpt_dir: Path) -> None:
    """Remove checkpoints a killed run left half-saved (SpeechBrain writes CKPT.yaml first,
    then the parameter files), so that resuming never loads one of them."""
    for path in sorted(ckpt_dir.glob("CKPT*")):
        if path.is_dir() and not (path / COMPLETE).is_file():
            logger.warning("removing %s: the run was stopped while saving it", path)
            shutil.rmtree(path)


def train(conf: Dict[str, Any], train_dir: os.PathLike, output_dir: os.PathLike,
          valid_dir: Optional[os.PathLike] = None, resume: bool = True,
          command: Optional[str] = None, max_epochs_this_run: Optional[int] = None,
          device: str | torch.device = "cpu") -> Dict[str, Any]:
    """Train per `conf` (see model.DEFAULT_CONFIG); returns the train_info dict.

    `max_epochs_this_run` stops after that many epochs of this call (a job with a time
    limit); the next call resumes from the checkpoint. model.pt etc. are written only
    once all `conf["epochs"]` are done.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if conf["num_threads"]:
        torch.set_num_threads(conf["num_threads"])
    ckpt_dir = output_dir / "checkpoints"
    if not resume and ckpt_dir.exists():
        logger.info("--resume false: removing old checkpoints in %s", ckpt_dir)
        shutil.rmtree(ckpt_dir)

    train_set = SpeakerSet(train_dir, conf["sample_rate"])
    valid_set = SpeakerSet(valid_dir, conf["sample_rate"]) if valid_dir else None
    logger.info("train: %d speakers, %d utterances (%d speakers excluded)",
                len(train_set.speakers), train_set.num_utts, len(train_set.excluded))

    torch.manual_seed(conf["seed"])
    encoder = build_encoder(conf)
    head = (AAMHead(encoder.embedding_dim, len(train_set.speakers), **conf["aam"])
            if conf["loss"] == "aam" else None)
    encoder.to(device)
    if head is not None:
        head.to(device)
    params = list(encoder.parameters()) + (list(head.parameters()) if head else [])
    optimizer = torch.optim.Adam(params, lr=conf["optim"]["lr"],
                                 weight_decay=conf["optim"]["weight_decay"])
    batch_size = min(conf["speakers_per_batch"], len(train_set.speakers)) * conf["utts_per_speaker"]
    batches_per_epoch = conf["batches_per_epoch"] or max(1, math.ceil(train_set.num_utts / batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=conf["optim"]["lr"], total_steps=conf["epochs"] * batches_per_epoch,
        pct_start=conf["scheduler"]["pct_start"])
    epoch_counter = EpochCounter(conf["epochs"])
    state = TrainingState()
    recoverables = {"encoder": encoder, "optimizer": optimizer, "scheduler": scheduler,
                    "epoch_counter": epoch_counter, "state": state}
    if head is not None:
        recoverables["head"] = head
    checkpointer = Checkpointer(ckpt_dir, recoverables=recoverables)
    drop_incomplete_checkpoints(ckpt_dir)
    if checkpointer.recover_if_possible() is not None:
        logger.info("resumed from %s after epoch %d", ckpt_dir, epoch_counter.current)
        if scheduler.total_steps != conf["epochs"] * batches_per_epoch:
            raise ValueError(f"{ckpt_dir}: the checkpoint was made with a different number of "
                             f"epochs or batches per epoch; rerun with --resume false")

    from torch.utils.tensorboard import SummaryWriter  # imported late: slow import
    writer = SummaryWriter(str(output_dir / "tensorboard"))
    n_samples = int(conf["crop_seconds"] * conf["sample_rate"])
    add_noise = None
    if conf["augment_snr_db"]:
        from speechbrain.augment.time_domain import AddNoise
        low, high = conf["augment_snr_db"]
        add_noise = AddNoise(snr_low=low, snr_high=high)  # white noise without a noise csv
    encoder.train()
    epochs_run = 0
    for epoch in epoch_counter:
        if max_epochs_this_run is not None and epochs_run >= max_epochs_this_run:
            epoch_counter.current -= 1  # EpochCounter already advanced past the last saved epoch
            break
        epochs_run += 1
        start = time.time()
        rng = np.random.default_rng([conf["seed"], epoch])
        losses = []
        for step, batch in enumerate(train_set.epoch_batches(
                rng, conf["speakers_per_batch"], conf["utts_per_speaker"], batches_per_epoch)):
            wavs, labels = _collate(train_set, batch, n_samples, rng)
            if conf["overlap_augment"]:
                wavs = overlap(wavs, labels, conf["overlap_augment"]["share"], conf["overlap_augment"]["sir_db"], rng)
            wavs, labels = wavs.to(device), labels.to(device)
            if add_noise is not None:
                wavs = add_noise(wavs, torch.ones(len(wavs), device=device))
            embeddings = encoder(wavs)
            if head is not None:
                loss = head(embeddings, labels)
            else:
                loss = batch_hard_triplet_loss(embeddings, labels, **conf["triplet"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, conf["grad_clip"])
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            writer.add_scalar("train/loss_step", loss.item(), (epoch - 1) * batches_per_epoch + step)
        record = {"epoch": epoch, "loss": float(np.mean(losses)),
                  "lr": scheduler.get_last_lr()[0]}
        if valid_set is not None:
            record["valid_eer"] = validation_eer(encoder, valid_set, conf)
        state.train_seconds += time.time() - start
        state.history.append(record)
        writer.add_scalar("train/loss", record["loss"], epoch)
        writer.add_scalar("train/lr", record["lr"], epoch)
        if "valid_eer" in record:
            writer.add_scalar("valid/eer", record["valid_eer"], epoch)
        writer.flush()
        saved = checkpointer.save_checkpoint(meta=record)
        write_text_atomic(saved.path / COMPLETE, f"epoch {epoch}\n")
        checkpointer.delete_checkpoints(num_to_keep=2)
        logger.info("epoch %d/%d: loss %.4f, lr %.2e%s, %.1fs", epoch, conf["epochs"],
                    record["loss"], record["lr"],
                    f", valid EER {100 * record['valid_eer']:.2f}%" if "valid_eer" in record else "",
                    time.time() - start)
    writer.close()
    if epoch_counter.current < conf["epochs"]:
        logger.info("stopped after epoch %d of %d; rerun to resume", epoch_counter.current,
                    conf["epochs"])
        return {"epochs": epoch_counter.current, "train_seconds": state.train_seconds,
                "history": state.history, "finished": False}

    _atomic_torch_save({k: v.cpu() for k, v in encoder.state_dict().items()}, output_dir / "model.pt")
    write_text_atomic(output_dir / "config.yaml", yaml.safe_dump(conf, sort_keys=False))
    info = {
        "command": command or " ".join(sys.argv),
        "loss": conf["loss"],
        "epochs": epoch_counter.current,
        "train_seconds": round(state.train_seconds, 1),
        "embedding_dim": encoder.embedding_dim,
        "num_parameters": sum(p.numel() for p in encoder.parameters()),
        "num_speakers": len(train_set.speakers),
        "num_utterances": train_set.num_utts,
        "excluded_speakers": train_set.excluded,
        "history": state.history,
        "finished": True,
    }
    write_text_atomic(output_dir / "train_info.json", json.dumps(info, indent=2) + "\n")
    return info


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
