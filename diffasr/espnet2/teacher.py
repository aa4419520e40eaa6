"""The clean-target teacher: what the encoder should output if only the enrolled voice spoke.

Selection learned from ~10 transcript tokens per example settles on "transcribe the louder
talker".  A dense signal does not: the frozen, complete Whisper encoder (every block and
``ln_post``) run on the *target source alone*, placed in the mixture's timeline at its
recorded offset and gain, gives a [T, D] picture of the wanted output, frame by frame.  The
conditioned encoder is trained to reproduce it from the mixture and the enrollment
(``model_conf teacher_weight``; DistilHuBERT / RobustDistiller match a frozen teacher's
hidden states from a noisy input the same way).  A target-absent example's teacher is the
encoder's output on silence of the mixture's length.

This module holds the two sides of that value:

- the cache (``extract_teachers``, ``check_teacher_cache``): per data dir, kaldiio
  ``teacher.{ark,scp}`` (the target's teacher of each example) and, for a validation set,
  ``teacher_others.{ark,scp}`` (every interferer's teacher, side by side: [T, K * D], a
  missing interferer's block all zeros), with ``meta.json`` naming the teacher encoder
  and the data it was made from, written last;
- the loss and the selection figure (``teacher_distance``, ``feature_follows``): an
  example *follows* when its output is nearer (mean squared error over its frames) to
  its target's teacher than to every interferer's.
"""

import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from diffasr.datadir import read_jsonl, read_kv
from diffasr.espnet2.encoder_cache import run_parts

logger = logging.getLogger(__name__)

TEACHER = "teacher"                 # data name: the target's teacher [T, D]
TEACHER_OTHERS = "teacher_others"   # data name: the interferers' teachers [T, K * D]
DATA_NAMES = (TEACHER, TEACHER_OTHERS)
FORMS = ("mse", "l1_cosine")
META = "meta.json"
SAMPLE_RATE = 16000
# The encoder options that shape the teacher (the complete frozen encoder: no trainable part).
TEACHER_KEYS = ("whisper_model", "padding")


class TeacherCacheError(ValueError):
    """A teacher cache that does not fit the encoder or the data it is used with."""


def teacher_fingerprint(whisper_model: str = "tiny.en", padding: str = "none", **_) -> str:
    """Names the teacher encoder: Whisper's every block and ``ln_post``, frozen."""
    from diffasr.espnet2.whisper_encoder import frozen_fingerprint

    return frozen_fingerprint(whisper_model, padding, frozen_layers=None)


def _digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- loss
def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def teacher_distance(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor,
                     form: str = "mse") -> torch.Tensor:
    """Per-example distance [B] of ``student`` [B, T, D] from ``teacher`` [B, T, D] over
    each example's first ``lengths`` frames: the mean over frames of

    - ``mse``: the squared error averaged over the D features;
    - ``l1_cosine``: DistilHuBERT's L1 (averaged over features) minus log sigmoid of the
      frames' cosine similarity.
    """
    if form not in FORMS:
        raise ValueError(f"model_conf teacher_form must be one of {FORMS}, got {form!r}")
    student, teacher = student.float(), teacher.float()
    if form == "mse":
        per_frame = (student - teacher).pow(2).mean(dim=-1)
    else:
        cosine = torch.nn.functional.cosine_similarity(student, teacher, dim=-1)
        per_frame = (student - teacher).abs().mean(dim=-1) - torch.nn.functional.logsigmoid(cosine)
    inside = _frame_mask(lengths, student.size(1)).to(per_frame.dtype)
    return (per_frame * inside).sum(dim=1) / inside.sum(dim=1).clamp(min=1.0)


def split_others(others: torch.Tensor, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``teacher_others`` [B, T, K * D] as [B, K, T, D] and which of the K are there [B, K]
    (a missing interferer's block is all zeros: a real teacher frame never is)."""
    batch, frames, total = others.shape
    if total % width:
        raise ValueError(f"{TEACHER_OTHERS} has {total} features per frame, not a multiple of the "
                         f"encoder's {width}: it was made for another encoder")
    blocks = others.reshape(batch, frames, total // width, width).permute(0, 2, 1, 3)
    return blocks, blocks.abs().flatten(2).sum(dim=-1) > 0


def feature_follows(student: torch.Tensor, teacher: torch.Tensor, others: torch.Tensor,
                    lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Whether each example's output follows its target: (follows [B] bool, scored [B] bool).

    ``others`` is ``teacher_others`` [B, T, K * D].  An example is scored when it has at
    least one interferer; it follows when its mean squared error to its target's teacher
    is below that to every interferer's.
    """
    blocks, present = split_others(others, student.size(-1))
    to_target = teacher_distance(student, teacher, lengths)
    to_others = torch.stack([teacher_distance(student, blocks[:, k], lengths) for k in range(blocks.size(1))], 1)
    nearer = (to_target[:, None] < to_others) | ~present
    return nearer.all(dim=1) & present.any(dim=1), present.any(dim=1)


# ---------------------------------------------------------------------------- cache
def _placement(record: dict, role: str, utt: str, meta_path: Path, length: int) -> Optional[Tuple[str, int, float]]:
    """(source path, offset, gain) of one talker of a mixture.jsonl record, checked against
    the mixture; None for a target-absent example's target."""
    if role == "target" and record["target"].get("utt") is None:
        return None
    talker = record["target"] if role == "target" else record["interferers"][int(role)]
    where = f"{meta_path}: example '{utt}'"
    path, offset, gain = talker.get("path"), talker.get("offset_samples"), talker.get("gain")
    if not path or not Path(path).is_file():
        raise TeacherCacheError(f"{where}: the source of its {'target' if role == 'target' else 'interferer'} "
                                f"'{talker.get('utt')}' ({path}) is missing: run stage 1 again")
    if offset is None or gain is None or offset < 0 or not math.isfinite(gain) or gain < 0:
        raise TeacherCacheError(f"{where}: talker '{talker.get('utt')}' has offset {offset} and gain {gain}; "
                                "both must be recorded, >= 0 and finite")
    import soundfile as sf

    samples = sf.info(path).frames
    if offset + samples > length:
        raise TeacherCacheError(f"{where}: talker '{talker.get('utt')}' ({path}, {samples} samples at offset "
                                f"{offset}) does not fit the mixture's {length} samples: mixture.jsonl does not "
                                "describe this mixture")
    return str(path), int(offset), float(gain)


def placed_source(path: str, offset: int, gain: float, length: int) -> np.ndarray:
    """The source as it is in the mixture: ``gain`` times its audio at ``offset``, in
    ``length`` samples of silence."""
    from diffasr.audio import read_listed

    out = np.zeros(length, dtype=np.float32)
    if path:
        audio = read_listed(path, Path(path).stem, SAMPLE_RATE, "teacher source")
        out[offset:offset + len(audio)] = gain * audio
    return out


def _encode_part(args) -> List[Tuple[tuple, str]]:
    """One worker: the teacher of each of its placements, into its own ark."""
    encoder_conf, placements, ark, threads = args
    torch.set_num_threads(threads)
    import kaldiio

    from diffasr.espnet2.whisper_encoder import WhisperEncoder

    encoder = WhisperEncoder(**{k: v for k, v in encoder_conf.items() if k in TEACHER_KEYS},
                             frozen_layers=None, adapter_blocks=0)
    with kaldiio.WriteHelper(f"ark,scp:{ark},{ark}.scp") as writer:
        for index, (path, offset, gain, length) in enumerate(placements):
            audio = torch.from_numpy(placed_source(path, offset, gain, length))
            frames, lengths = encoder.frozen(audio[None], torch.tensor([length]), "teacher source")
            writer(f"p{index}", frames[0, : int(lengths[0])].numpy().astype(np.float32))
    locations = read_kv(f"{ark}.scp")
    os.remove(f"{ark}.scp")
    return [(placement, locations[f"p{index}"]) for index, placement in enumerate(placements)]


def _sources(data_dir: Path) -> Dict[str, Path]:
    return {"mixture.jsonl": data_dir / "mixture.jsonl", "wav.scp": data_dir / "wav.scp"}


def extract_teachers(encoder_conf: dict, data_dir: os.PathLike, output_dir: os.PathLike, nj: int = 1,
                     with_others: bool = False) -> Path:
    """Write the teacher cache of a data dir (skipped when an up-to-date one exists).

    Every example of ``wav.scp`` needs its ``mixture.jsonl`` record (stage 1 writes both).
    Nothing in ``output_dir`` is touched until the new cache is complete.
    """
    import kaldiio
    import soundfile as sf

    data_dir, output_dir = Path(data_dir), Path(output_dir)
    for source in _sources(data_dir).values():
        if not source.is_file():
            raise FileNotFoundError(f"{source}: missing (stage 1 writes it; the teacher needs each example's "
                                    "clean target, its offset and gain)")
    teacher_conf = {k: v for k, v in encoder_conf.items() if k in TEACHER_KEYS}
    wanted = dict(fingerprint=teacher_fingerprint(**teacher_conf), teacher=dict(teacher_conf, layers="all"),
                  data_dir=str(data_dir.resolve()), with_others=with_others,
                  sources={name: _digest(p) for name, p in _sources(data_dir).items()})
    meta_path = output_dir / META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            logger.info(f"{output_dir}: teacher cache up to date ({meta['num_utterances']} examples)")
            return output_dir
        logger.info(f"{output_dir}: teacher cache is stale (other encoder or data), extracting again")

    records_path = data_dir / "mixture.jsonl"
    records, wavs = read_jsonl(records_path), read_kv(data_dir / "wav.scp")
    missing = [u for u in wavs if u not in records]
    if missing:
        raise TeacherCacheError(f"{records_path}: no record for example '{missing[0]}' of {data_dir / 'wav.scp'}")
    # Each example's talkers as placements (source, offset, gain, mixture length); a
    # mixture's examples share them (each talker is the target of one example).
    roles: Dict[str, Tuple[tuple, List[tuple]]] = {}
    for utt in sorted(wavs):
        record, length = records[utt], sf.info(wavs[utt]).frames
        target = _placement(record, "target", utt, records_path, length)
        target = (*target, length) if target is not None else ("", 0, 0.0, length)  # silence
        others = [(*_placement(record, str(k), utt, records_path, length), length)
                  for k in range(len(record.get("interferers", [])))] if with_others else []
        roles[utt] = (target, others)
    unique = sorted({p for target, others in roles.values() for p in [target, *others]})

    work = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    parts = [unique[i::nj] for i in range(nj) if unique[i::nj]]
    jobs = [(teacher_conf, part, str((work / f"placements.{i}.ark").resolve()), 1) for i, part in enumerate(parts)]
    location_of: Dict[tuple, str] = run_parts(_encode_part, jobs)
    final = lambda location: location.replace(str(work.resolve()), str(output_dir.resolve()))  # noqa: E731
    with open(work / f"{TEACHER}.scp", "w", encoding="utf-8") as f:
        for utt, (target, _) in roles.items():
            f.write(f"{utt} {final(location_of[target])}\n")
    if with_others:
        width = max(len(others) for _, others in roles.values())
        ark = (work / f"{TEACHER_OTHERS}.ark").resolve()  # the scp names it where it will be (final())
        with kaldiio.WriteHelper(f"ark,scp:{ark},{work / TEACHER_OTHERS}.scp") as writer:
            for utt, (target, others) in roles.items():
                frames = kaldiio.load_mat(location_of[target])
                blocks = [kaldiio.load_mat(location_of[p]) for p in others]
                blocks += [np.zeros_like(frames)] * (width - len(blocks))
                writer(utt, np.concatenate(blocks, axis=1) if blocks else frames[:, :0])
        scp = work / f"{TEACHER_OTHERS}.scp"
        scp.write_text(final(scp.read_text()))
    meta = dict(wanted, num_utterances=len(roles), num_placements=len(unique),
                seconds=round(time.perf_counter() - started, 1))
    (work / META).write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(output_dir, ignore_errors=True)
    os.replace(work, output_dir)
    logger.info(f"wrote {output_dir}: {len(roles)} examples, {len(unique)} distinct talkers encoded "
                f"in {meta['seconds']} s")
    return output_dir


def check_teacher_cache(scp: os.PathLike, encoder_conf: dict, data_dir: Optional[os.PathLike] = None,
                        keys: Optional[Iterable[str]] = None) -> None:
    """Refuse a teacher cache from another encoder or another data dir, an incomplete one,
    or one lacking ``keys``; the error names both sides."""
    scp = Path(scp)
    meta_path = scp.parent / META
    if not meta_path.is_file():
        raise TeacherCacheError(f"{scp}: no {META} beside it: not a complete teacher cache "
                                "(python -m diffasr.bin.extract_teachers writes one)")
    meta = json.loads(meta_path.read_text())
    teacher_conf = {k: v for k, v in encoder_conf.items() if k in TEACHER_KEYS}
    expected = teacher_fingerprint(**teacher_conf)
    if meta.get("fingerprint") != expected:
        raise TeacherCacheError(f"{scp}: made by the encoder {meta.get('teacher')} (fingerprint "
                                f"{meta.get('fingerprint')}); this config's teacher is {dict(teacher_conf, layers='all')} "
                                f"(fingerprint {expected}): extract it again")
    if data_dir is not None:
        data_dir = Path(data_dir)
        current = {name: _digest(p) for name, p in _sources(data_dir).items() if p.is_file()}
        if meta.get("sources") != current:
            raise TeacherCacheError(f"{scp}: made from {meta.get('data_dir')} ({meta.get('sources')}); "
                                    f"the data here is {data_dir.resolve()} ({current}): extract it again")
    if keys is not None:
        cached = set(read_kv(scp))
        absent = [k for k in keys if k not in cached]
        if absent:
            raise TeacherCacheError(f"{scp}: no teacher for {len(absent)} examples, e.g. {absent[0]!r}: "
                                    "the cache was made for another set")
