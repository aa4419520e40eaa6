"""The AR system's outputs on a training set, for sequence-level distillation (``model_conf distill_share``).

``make_distillation`` decodes every utterance of a data dir with a trained AR experiment
through stage 6's code (``decode_set.inference``: the experiment's model, the decode config's
options, batches of ``batch_size``), in ``nj`` processes, and writes into its output dir

- ``text``: ``<utt> WORDS`` for every utterance of ``wav.scp`` (the data name ``text_distill``);
- ``meta.json``, last: what made it (``diffasr.espnet2.distillation``: the AR model and its
  config, the tokens, the data, the decode options and the audio decoded).

A dir whose ``meta.json`` matches is kept as it is; otherwise it is made again, and nothing in
it is touched until the new one is complete.  The audio decoded (``audio``):

- ``mixture``: the example itself.  The AR system's output is a target worth learning only
  once that system follows the enrolled talker (RESULTS.md's Follows);
- ``clean_target``: the target's source alone, placed as it is in the mixture (``mixture.jsonl``,
  as the clean-target teacher is made): the AR system transcribes the right talker whatever
  its selection.  A target-absent example's clean target is silence: its line is left empty,
  undecoded (its reference is empty too).
"""

import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import yaml

from diffasr.datadir import read_jsonl, read_kv
from diffasr.espnet2.distillation import (
    META,
    check_distillation,
    data_part,
    file_digest,
    fingerprint,
    mismatch,
    read_meta,
    tokens_part,
)

logger = logging.getLogger(__name__)

AUDIO = ("mixture", "clean_target")
CONFIG = "config.yaml"


def _decode_options(decode_config: os.PathLike):
    from diffasr.inference.options import DecodeOptions

    with open(decode_config, encoding="utf-8") as f:
        return DecodeOptions.from_flat(yaml.safe_load(f) or {}, str(decode_config))


def expected_parts(ar_exp: os.PathLike, ar_model: str, decode_config: os.PathLike, audio: str,
                   data_dir: Optional[os.PathLike] = None) -> Dict[str, dict]:
    """What a distillation file made with these inputs records (``check_distillation``'s parts);
    without ``data_dir``, all but the data (``fingerprint`` names the cache dir with them)."""
    from diffasr.espnet2.builder import read_config

    if audio not in AUDIO:
        raise ValueError(f"the audio to decode must be one of {AUDIO}, got {audio!r}")
    model_file, config_file = Path(ar_exp) / ar_model, Path(ar_exp) / CONFIG
    for path in (config_file, model_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing: train the AR system first (stage 5, its config listed "
                                    "before the distilled one in --asr_configs), or name its model file")
    config = read_config(config_file)
    parts = dict(
        ar_model=dict(model=file_digest(model_file), config=file_digest(config_file),
                      model_file=str(model_file.resolve()), config_file=str(config_file.resolve())),
        tokens=tokens_part(config.get("token_type"), config["token_list"]),
        decoding=dict(options=_decode_options(decode_config).flat(), audio=audio),
    )
    if data_dir is not None:
        parts["data"] = data_part(data_dir)
    return parts


class CleanTargets:
    """Each example's target source alone, placed as in its mixture (``mixture.jsonl``): the audio
    decoded in place of the mixture (``decode_set.inference``'s ``replace_speech``)."""

    def __init__(self, data_dir: os.PathLike):
        self.records_path = Path(data_dir) / "mixture.jsonl"
        if not self.records_path.is_file():
            raise FileNotFoundError(f"{self.records_path}: missing: the clean target of an example is its source "
                                    "placed as in the mixture (stage 1 writes it); audio 'mixture' decodes the "
                                    "mixtures themselves")
        self.records = read_jsonl(self.records_path)

    def absent(self, keys: Sequence[str]) -> List[str]:
        """The examples whose target is not in the mixture (no source: silence)."""
        missing = [k for k in keys if k not in self.records]
        if missing:
            raise ValueError(f"{self.records_path}: no record for example {missing[0]!r}")
        return [k for k in keys if self.records[k]["target"].get("utt") is None]

    def __call__(self, keys: Sequence[str], speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from diffasr.espnet2.teacher import _placement, placed_source

        out = torch.zeros_like(speech)
        for b, key in enumerate(keys):
            length = int(lengths[b])
            path, offset, gain = _placement(self.records[key], "target", key, self.records_path, length)
            out[b, :length] = torch.from_numpy(placed_source(path, offset, gain, length))
        return out


def decode_inputs(data_dir: Path, config: dict) -> List[tuple]:
    """The data options that stage 6 gives a model of this config for a data dir: the audio,
    the enrollment embedding if the dir has one, the enrollment audio if the encoder reads it."""
    inputs = [(str(data_dir / "wav.scp"), "speech", "sound")]
    if (data_dir / "enroll_embed.scp").is_file():
        inputs.append((str(data_dir / "enroll_embed.scp"), "enroll_embed", "kaldi_ark"))
    if (config.get("encoder_conf") or {}).get("enrollment", "none") != "none":
        inputs.append((str(data_dir / "enroll.scp"), "enroll_speech", "sound"))
    return inputs


def _decode_part(job) -> Dict[str, str]:
    """One process: the hypotheses of the utterances of one key file."""
    from diffasr.espnet2.builder import read_config
    from diffasr.inference.decode_set import inference

    ar_exp, ar_model, decode_config, data_dir, key_file, output_dir, audio, batch_size, ngpu, threads = job
    if threads:
        torch.set_num_threads(threads)
    config_file = Path(ar_exp) / CONFIG
    inference(output_dir=str(output_dir), data_path_and_name_and_type=decode_inputs(data_dir, read_config(config_file)),
              asr_train_config=str(config_file), asr_model_file=str(Path(ar_exp) / ar_model),
              options=_decode_options(decode_config), key_file=str(key_file), batch_size=batch_size, ngpu=ngpu,
              replace_speech=CleanTargets(data_dir) if audio == "clean_target" else None)
    return read_kv(Path(output_dir) / "text", allow_empty_value=True)


def make_distillation(ar_exp: os.PathLike, ar_model: str, decode_config: os.PathLike, data_dir: os.PathLike,
                      output_dir: os.PathLike, audio: str = "mixture", nj: int = 1, batch_size: int = 1,
                      ngpu: int = 0) -> Path:
    """Write the AR system's outputs on ``data_dir`` (see the module docstring); returns ``output_dir``."""
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    expected = expected_parts(ar_exp, ar_model, decode_config, audio, data_dir)
    wav_scp = data_dir / "wav.scp"
    wavs = read_kv(wav_scp)
    keys = list(wavs)
    text = output_dir / "text"
    if (output_dir / META).is_file() and mismatch(read_meta(text), expected) is None:
        check_distillation(text, expected, keys, wav_scp)
        logger.info(f"{text}: up to date ({len(keys)} utterances of {data_dir})")
        return output_dir

    silent = CleanTargets(data_dir).absent(keys) if audio == "clean_target" else []
    decoded = [k for k in keys if k not in silent]
    work = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    nj = min(nj, len(decoded))
    jobs = []
    for i in range(nj):  # contiguous parts, in wav.scp's order (the data loader reads the files in it)
        key_file = work / f"keys.{i + 1}.scp"
        part = decoded[i * len(decoded) // nj:(i + 1) * len(decoded) // nj]
        key_file.write_text("".join(f"{k} {wavs[k]}\n" for k in part), encoding="utf-8")  # wav.scp's lines
        jobs.append((str(ar_exp), ar_model, str(decode_config), data_dir, key_file, work / f"output.{i + 1}",
                     audio, batch_size, ngpu, 1 if nj > 1 else 0))
    started = time.perf_counter()
    hypotheses: Dict[str, str] = {}
    if len(jobs) == 1:
        hypotheses.update(_decode_part(jobs[0]))
    elif jobs:
        with ProcessPoolExecutor(max_workers=nj, mp_context=multiprocessing.get_context("spawn")) as pool:
            for part in pool.map(_decode_part, jobs):
                hypotheses.update(part)
    hypotheses.update({k: "" for k in silent})
    with open(work / "text", "w", encoding="utf-8") as f:
        f.writelines(f"{k} {hypotheses[k]}".rstrip() + "\n" for k in keys)
    for i in range(nj):
        shutil.rmtree(work / f"output.{i + 1}", ignore_errors=True)
        os.remove(work / f"keys.{i + 1}.scp")
    meta = dict(expected, fingerprint=fingerprint({k: v for k, v in expected.items() if k != "data"}),
                num_decoded=len(decoded), num_target_absent=len(silent),
                seconds=round(time.perf_counter() - started, 1))
    (work / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(output_dir, ignore_errors=True)
    os.replace(work, output_dir)
    logger.info(f"wrote {text}: {len(decoded)} utterances decoded by {expected['ar_model']['model_file']}"
                + (f", {len(silent)} target-absent left empty" if silent else "") + f" in {meta['seconds']} s")
    return output_dir
