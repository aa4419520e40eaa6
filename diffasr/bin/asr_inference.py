#!/usr/bin/env python3
"""Decode with a model trained by ``diffasr.bin.asr_train``.

``model: diffusion`` decodes with the masked-diffusion sampler, ``model: espnet`` with
ESPnet's joint CTC/attention beam search and ``model: maskctc`` with ESPnet's Mask-CTC
inference.  Writes, sorted by utterance, into ``--output_dir``:

- ``text``                 ``<utt> WORDS``
- ``token``                ``<utt> tokens``
- ``timing``               ``<utt> <decode_wall_seconds> <audio_seconds>``
- ``word_confidence.ctm``  ``<utt> 1 <word_index> 1 <WORD> <confidence>``
- ``remasked``             ``<utt> <tokens re-denoised> <canvas length>`` (deliberation only)
- ``token_uncertainty``    ``<utt> <index> <TOKEN> <probability> <entropy> <flips>`` (diffusion
                           sampler: commit probability, predictive entropy in nats, and how
                           often the position's prediction changed before it was committed)

A diffusion model decodes in one of three modes (``--decode_mode``): ``diffusion`` (denoise
a fully masked canvas), ``deliberation`` (mask part of a first-pass hypothesis, from
``--deliberation_hyp`` or the model's own CTC greedy path, and denoise it again) or
``ctc_greedy`` (the first pass alone).
"""

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import kaldiio
import numpy as np
import torch
import yaml
from typeguard import typechecked

import diffasr.espnet2  # noqa: F401  (first: it drops ESPnet's flash-attn import notice)
from espnet2.asr.maskctc_model import MaskCTCInference, MaskCTCModel
from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
from espnet2.legacy.nets.beam_search import BeamSearch
from espnet2.legacy.nets.scorers.ctc import CTCPrefixScorer
from espnet2.legacy.nets.scorers.length_bonus import LengthBonus
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none

from diffasr.espnet2.model import CANVAS_MODES, DiffusionASRModel
from diffasr.espnet2.task import (
    DEFAULT_MAX_AUDIO_SECONDS,
    ENROLL_EMBED,
    ENROLL_SPEECH,
    DiffASRTask,
    build_text_tokenizer,
    build_token_id_converter,
)
from diffasr.diffusion.sampler import DELIBERATION_MASKING, REMASKING
from diffasr.scoring.uncertainty import words_with_confidence

DECODE_MODES = ("diffusion", "deliberation", "ctc_greedy")
HYPOTHESIS_TYPES = ("text", "token")


@dataclass
class Recognition:
    """One decoded utterance: text, its tokens and each token's confidence."""

    text: str
    tokens: List[str]
    token_ids: List[int]
    confidences: List[float]
    entropies: Optional[List[float]] = None  # diffusion sampler: entropy at commit (nats)
    flips: Optional[List[int]] = None  # diffusion sampler: prediction changes before commit
    num_remasked: Optional[int] = None  # deliberation: tokens re-denoised
    canvas_length: Optional[int] = None  # deliberation: canvas positions


def check_checkpoint_matches(model: torch.nn.Module, model_file: str) -> None:
    """ESPnet loads checkpoints non-strictly; refuse one that leaves parameters untrained."""
    # ESPnet has just read the file; memory-map it so that only the keys are read again.
    saved = set(torch.load(model_file, map_location="cpu", weights_only=True, mmap=True))
    missing = sorted(set(model.state_dict()) - saved)
    if missing:
        raise ValueError(
            f"{model_file} lacks {len(missing)} parameters of the model its config builds "
            f"(e.g. {missing[:3]}); it was trained with another version of the model code"
        )


class Speech2Text:
    """Batch speech (+ enrollment embedding) to text, tokens and token confidences.

    >>> s2t = Speech2Text("exp/asr/config.yaml", "exp/asr/valid.loss.best.pth", steps=8)  # doctest: +SKIP
    >>> results = s2t(speech, speech_lengths, enroll_embed)  # doctest: +SKIP
    >>> results[0].text, results[0].confidences  # doctest: +SKIP
    """

    @typechecked
    def __init__(
        self,
        asr_train_config: str,
        asr_model_file: Optional[str] = None,
        device: str = "cpu",
        dtype: str = "float32",
        bpemodel: Optional[str] = None,
        token_type: Optional[str] = None,
        # masked diffusion
        steps: int = 8,
        block_length: Optional[int] = None,
        remasking: str = "low_confidence",
        threshold: Optional[float] = None,
        temperature: float = 0.0,
        canvas: Optional[str] = None,
        canvas_length: Optional[int] = None,
        canvas_margin: Optional[int] = None,
        # ESPnet joint CTC/attention beam search
        beam_size: int = 10,
        ctc_weight: float = 0.3,
        penalty: float = 0.0,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        # ESPnet Mask-CTC
        maskctc_n_iterations: int = 10,
        maskctc_threshold_probability: float = 0.99,
        # diffusion models: mode and deliberation
        decode_mode: str = "diffusion",
        deliberation_hyp: Optional[str] = None,
        deliberation_hyp_type: str = "text",
        masking: str = "random",
        mask_ratio: float = 0.3,
        deliberation_threshold: Optional[float] = None,
        confidence_temperature: float = 1.0,
        num_chunks: int = 1,
        seed: int = 0,
        max_audio_seconds: Optional[float] = None,
    ):
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if masking not in DELIBERATION_MASKING:
            raise ValueError(f"masking must be one of {DELIBERATION_MASKING}, got {masking!r}")
        if masking == "confidence_guided" and deliberation_threshold is None:
            raise ValueError("masking: confidence_guided needs deliberation_threshold")
        if deliberation_hyp_type not in HYPOTHESIS_TYPES:
            raise ValueError(f"deliberation_hyp_type must be one of {HYPOTHESIS_TYPES}, got {deliberation_hyp_type!r}")
        model, train_args = DiffASRTask.build_model_from_file(asr_train_config, asr_model_file, device)
        if asr_model_file is not None:
            check_checkpoint_matches(model, asr_model_file)
        if decode_mode != "diffusion" and not isinstance(model, DiffusionASRModel):
            raise ValueError(f"decode_mode {decode_mode} needs a diffusion model; {asr_train_config} "
                             f"has model: {getattr(train_args, 'model', '?')}")
        self.model = model.to(dtype=getattr(torch, dtype)).eval()
        self.device = device
        self.converter = build_token_id_converter(model.token_list)
        token_type = token_type or train_args.token_type
        bpemodel = bpemodel or getattr(train_args, "bpemodel", None)
        if token_type == "bpe" and bpemodel is None:
            raise ValueError("token_type bpe needs --bpemodel (none in the training config)")
        self.tokenizer = build_text_tokenizer(token_type, bpemodel)
        self.diffusion_options = dict(
            steps=steps, block_length=block_length, remasking=remasking,
            threshold=threshold, temperature=temperature,
            canvas=canvas, canvas_length=canvas_length, canvas_margin=canvas_margin,
        )
        self.decode_mode = decode_mode
        self.deliberation_options = dict(
            steps=steps, masking=masking, mask_ratio=mask_ratio, threshold=deliberation_threshold,
            confidence_temperature=confidence_temperature, num_chunks=num_chunks,
            canvas_margin=canvas_margin,
        )
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.hypotheses = None
        if decode_mode == "deliberation" and deliberation_hyp not in (None, "ctc"):
            self.hypotheses = self.read_hypotheses(deliberation_hyp, deliberation_hyp_type)
        frontend_conf = getattr(train_args, "frontend_conf", None) or {}
        self.fs = int(frontend_conf.get("fs", 16000)) if isinstance(frontend_conf, dict) else 16000
        if max_audio_seconds is None:
            max_audio_seconds = getattr(train_args, "max_audio_seconds", DEFAULT_MAX_AUDIO_SECONDS)
        # An encoder with a position table (Whisper's 30 s) sets a hard limit of its own.
        self.max_audio_seconds = min(max_audio_seconds, getattr(model.encoder, "max_seconds", float("inf")))
        self.maxlenratio, self.minlenratio = maxlenratio, minlenratio
        self.beam_search, self.maskctc = None, None
        if isinstance(model, MaskCTCModel):
            self.maskctc = MaskCTCInference(model, maskctc_n_iterations, maskctc_threshold_probability)
        elif not isinstance(model, DiffusionASRModel):
            self.beam_search = self._build_beam_search(beam_size, ctc_weight, penalty, dtype)

    def _build_beam_search(self, beam_size: int, ctc_weight: float, penalty: float, dtype: str):
        model = self.model
        if model.ctc is None and ctc_weight > 0.0:
            logging.info(f"ctc_weight {ctc_weight} ignored: this model has no CTC head")
            ctc_weight = 0.0
        scorers = dict(decoder=model.decoder, length_bonus=LengthBonus(len(model.token_list)))
        weights = dict(decoder=1.0 - ctc_weight, length_bonus=penalty)
        if ctc_weight > 0.0:
            scorers["ctc"] = CTCPrefixScorer(ctc=model.ctc, eos=model.eos)
            weights["ctc"] = ctc_weight
        search = BeamSearch(
            beam_size=beam_size, weights=weights, scorers=scorers, sos=model.sos, eos=model.eos,
            vocab_size=len(model.token_list), token_list=model.token_list,
            pre_beam_score_key=None if ctc_weight == 1.0 else "full",
        )
        search.__class__ = BatchBeamSearch  # every scorer above is batch-capable
        return search.to(device=self.device, dtype=getattr(torch, dtype)).eval()

    def read_hypotheses(self, path: str, hyp_type: str = "text") -> Dict[str, List[int]]:
        """First-pass hypotheses ``<utt> WORDS`` (or ``<utt> pieces`` for ``token``) as token ids.

        A piece outside the model's token list is an error naming the utterance and line.
        """
        vocabulary = set(self.model.token_list)
        hypotheses = {}
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.rstrip("\n").split(maxsplit=1)
                if not fields:
                    continue
                utt, words = fields[0], fields[1] if len(fields) > 1 else ""
                if utt in hypotheses:
                    raise ValueError(f"{path}:{number}: utterance {utt} appears twice")
                pieces = self.tokenizer.text2tokens(words) if hyp_type == "text" else words.split()
                unknown = [p for p in pieces if p not in vocabulary]
                if unknown:
                    raise ValueError(
                        f"{path}:{number}: the hypothesis of utterance {utt} has tokens outside the "
                        f"model's token list: {unknown[:5]}"
                    )
                hypotheses[utt] = self.converter.tokens2ids(pieces)
        return hypotheses

    def _hypotheses_for(self, keys: Optional[Sequence[str]]) -> Optional[List[List[int]]]:
        if self.hypotheses is None:
            return None  # the model's own CTC greedy path
        if keys is None:
            raise ValueError("deliberating an external hypothesis file needs the utterance keys")
        missing = [k for k in keys if k not in self.hypotheses]
        if missing:
            raise ValueError(f"the deliberation hypothesis file has no line for utterance {missing[0]}")
        for key in keys:
            if len(self.hypotheses[key]) > self.model.max_hypothesis_length:
                raise ValueError(
                    f"the hypothesis of utterance {key} has {len(self.hypotheses[key])} tokens, more "
                    f"than the decoder's {self.model.max_hypothesis_length} positions"
                )
        return [self.hypotheses[k] for k in keys]

    def check_duration(self, speech_lengths: torch.Tensor, keys: Optional[Sequence[str]] = None) -> None:
        """Refuse audio longer than the model's limit (``max_audio_seconds``, Whisper's 30 s)."""
        if self.max_audio_seconds is None:
            return
        seconds = speech_lengths.float() / self.fs
        too_long = (seconds > self.max_audio_seconds).nonzero()
        if too_long.numel() > 0:
            index = int(too_long[0])
            who = f"utterance {keys[index]}" if keys else "the audio"
            raise ValueError(
                f"{who} lasts {float(seconds[index]):.1f} s, longer than this model's maximum of "
                f"{self.max_audio_seconds:g} s (max_audio_seconds in its config.yaml, or the "
                "encoder's position table); cut it into shorter segments first: long-form "
                "segmentation is not supported yet"
            )

    @torch.no_grad()
    def __call__(
        self,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor] = None,
        enroll_embed: Optional[torch.Tensor] = None,
        keys: Optional[Sequence[str]] = None,
        enroll_speech: Optional[torch.Tensor] = None,
        enroll_speech_lengths: Optional[torch.Tensor] = None,
    ) -> List[Recognition]:
        """Decode a batch: speech [B, T] (or [T]), lengths [B], and the enrollment:
        its embedding ``enroll_embed`` [B, E] and/or audio ``enroll_speech`` [B, T'].

        ``keys`` (utterance ids) name utterances in errors and select external
        deliberation hypotheses.
        """
        if speech.dim() == 1:
            speech = speech.unsqueeze(0)
        if speech_lengths is None:
            speech_lengths = torch.full((speech.size(0),), speech.size(1), dtype=torch.long)
        if enroll_embed is not None and enroll_embed.dim() == 1:
            enroll_embed = enroll_embed.unsqueeze(0)
        if enroll_speech is not None and enroll_speech.dim() == 1:
            enroll_speech = enroll_speech.unsqueeze(0)
        self.check_duration(speech_lengths, keys)
        dtype = next(self.model.parameters()).dtype
        speech = speech.to(self.device, dtype=dtype)
        speech_lengths = speech_lengths.to(self.device)
        enrollment = {}
        if enroll_embed is not None:
            enrollment[ENROLL_EMBED] = enroll_embed.to(self.device, dtype=dtype)
        if enroll_speech is not None:
            if enroll_speech_lengths is None:
                enroll_speech_lengths = torch.full((enroll_speech.size(0),), enroll_speech.size(1), dtype=torch.long)
            self.check_duration(enroll_speech_lengths, keys)
            enrollment[ENROLL_SPEECH] = enroll_speech.to(self.device, dtype=dtype)
            enrollment[ENROLL_SPEECH + "_lengths"] = enroll_speech_lengths.to(self.device)

        if not isinstance(self.model, DiffusionASRModel):
            ids, confidences = self._espnet_decode(speech, speech_lengths, enrollment)
            return [self._result(i, c) for i, c in zip(ids, confidences)]
        if self.decode_mode == "ctc_greedy":
            ids, confidences = self.model.ctc_greedy_decode(speech, speech_lengths, enrollment)
            return [self._result(i, c) for i, c in zip(ids, confidences)]
        if self.decode_mode == "diffusion":
            ids, confidences, out = self.model.diffusion_decode(
                speech, speech_lengths, enrollment, **self.diffusion_options
            )
            return self._sampler_results(ids, confidences, out)
        ids, confidences, out = self.model.deliberation_decode(
            speech, speech_lengths, enrollment, hypotheses=self._hypotheses_for(keys),
            generator=self.generator, **self.deliberation_options,
        )
        results = self._sampler_results(ids, confidences, out)
        remasked = out.is_remasked.sum(dim=1).tolist()
        for b, result in enumerate(results):
            result.num_remasked, result.canvas_length = int(remasked[b]), int(out.canvas_lengths[b])
        return results

    def _sampler_results(self, ids, confidences, out) -> List[Recognition]:
        """Recognitions with the sampler's per-token entropy and flips."""
        results = []
        for b, positions in enumerate(out.kept_positions):
            results.append(self._result(
                ids[b], confidences[b],
                entropies=out.entropy[b, positions].tolist(), flips=out.flips[b, positions].tolist(),
            ))
        return results

    def _espnet_decode(self, speech, speech_lengths, enrollment) -> Tuple[List[List[int]], List[List[float]]]:
        encoder_out, encoder_out_lens = self.model.encode_conditioned(speech, speech_lengths, **enrollment)
        all_ids, all_confidences = [], []
        for b in range(encoder_out.size(0)):
            frames = encoder_out[b, : encoder_out_lens[b]]
            if self.maskctc is not None:
                ids = self.maskctc(frames).yseq[1:-1].tolist()  # drop the <mask> guards
            else:
                best = self.beam_search(
                    x=frames, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio
                )[0]
                ids = best.yseq[1:-1].tolist()  # drop <sos> and <eos>
            all_ids.append(ids)
            all_confidences.append(self._teacher_forced_confidence(frames, ids))
        return all_ids, all_confidences

    def _teacher_forced_confidence(self, frames: torch.Tensor, ids: List[int]) -> List[float]:
        """Decoder probability of each hypothesis token given the hypothesis context.

        AR decoder: given the left context; Mask-CTC's MLM: given all other tokens.
        """
        if not ids:
            return []
        hyp = torch.tensor([ids], device=frames.device)
        if self.maskctc is not None:
            ys_in, targets = hyp, hyp
        else:
            ys_in = torch.nn.functional.pad(hyp, (1, 0), value=self.model.sos)[:, :-1]
            targets = hyp
        logits, _ = self.model.decoder(
            frames.unsqueeze(0), torch.tensor([frames.size(0)], device=frames.device),
            ys_in, torch.tensor([ys_in.size(1)], device=frames.device),
        )
        probs = logits.float().softmax(dim=-1).gather(-1, targets.unsqueeze(-1))
        return probs.view(-1).tolist()

    def _result(self, ids: List[int], confidences: List[float], entropies: Optional[List[float]] = None,
                flips: Optional[List[int]] = None) -> Recognition:
        specials = {"<blank>", "<mask>", "<sos/eos>"}
        keep = [
            k for k, i in enumerate(ids)
            if 0 <= i < len(self.model.token_list) and self.model.token_list[i] not in specials
        ]
        kept_ids = [ids[k] for k in keep]
        tokens = self.converter.ids2tokens(kept_ids)
        return Recognition(
            text=self.tokenizer.tokens2text(tokens),
            tokens=list(tokens),
            token_ids=kept_ids,
            confidences=[confidences[k] for k in keep],
            entropies=None if entropies is None else [entropies[k] for k in keep],
            flips=None if flips is None else [int(flips[k]) for k in keep],
        )


def rotation_partners(utts: Sequence[str], utt2spk: str) -> Dict[str, str]:
    """For each utterance, another utterance by a different speaker whose enrollment it gets.

    Utterances are sorted; utterance ``i`` takes the first utterance from ``i + n // 2``
    onwards (cyclically) whose speaker differs: a deterministic "wrong speaker" control
    for target-speaker decoding.
    """
    speakers = {}
    with open(utt2spk, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{utt2spk}:{number}: expected '<utt> <spk>', got {line!r}")
            speakers[fields[0]] = fields[1]
    utts = sorted(utts)
    missing = [u for u in utts if u not in speakers]
    if missing:
        raise ValueError(f"{utt2spk} has no speaker for utterance {missing[0]!r}")
    n = len(utts)
    partners = {}
    for i, utt in enumerate(utts):
        for k in range(n):
            other = utts[(i + n // 2 + k) % n]
            if speakers[other] != speakers[utt]:
                partners[utt] = other
                break
        else:
            raise ValueError(f"every utterance has speaker {speakers[utt]!r}; cannot rotate enrollments")
    return partners


class RotatedEnrollment:
    """Replaces a batch's enrollment (embedding and/or audio) by its rotation partners'."""

    def __init__(self, data_path_and_name_and_type: Sequence[Tuple[str, str, str]], utt2spk: str):
        from espnet2.fileio.sound_scp import SoundScpReader

        sources = {name: (path, kind) for path, name, kind in data_path_and_name_and_type}
        self.readers = {}
        for name in (ENROLL_EMBED, ENROLL_SPEECH):
            if name in sources:
                path, kind = sources[name]
                self.readers[name] = SoundScpReader(path, dtype="float32") if kind == "sound" else kaldiio.load_scp(path)
        if not self.readers or utt2spk is None:
            raise ValueError("--enrollment_override rotate needs an enroll_embed or enroll_speech data "
                             "option and --utt2spk")
        with open(sources["speech"][0], encoding="utf-8") as f:
            utts = [line.split(maxsplit=1)[0] for line in f if line.strip()]
        self.partners = rotation_partners(utts, utt2spk)

    def __call__(self, keys: Sequence[str], batch: Dict[str, torch.Tensor]) -> None:
        others = [self.partners[k] for k in keys]
        if ENROLL_EMBED in self.readers:
            batch[ENROLL_EMBED] = torch.from_numpy(np.stack([np.asarray(self.readers[ENROLL_EMBED][o]) for o in others]))
        if ENROLL_SPEECH in self.readers:
            reader = self.readers[ENROLL_SPEECH]
            audio = [np.asarray(reader[o][1] if isinstance(reader[o], tuple) else reader[o], dtype=np.float32)
                     for o in others]
            lengths = torch.tensor([len(a) for a in audio])
            padded = torch.zeros(len(audio), int(lengths.max()), *audio[0].shape[1:])
            for b, a in enumerate(audio):
                padded[b, : len(a)] = torch.from_numpy(a)
            batch[ENROLL_SPEECH], batch[ENROLL_SPEECH + "_lengths"] = padded, lengths


def inference(
    output_dir: str,
    data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
    asr_train_config: str,
    asr_model_file: Optional[str],
    key_file: Optional[str] = None,
    batch_size: int = 1,
    ngpu: int = 0,
    dtype: str = "float32",
    num_workers: int = 0,
    seed: int = 0,
    fs: int = 16000,
    enrollment_override: Optional[str] = None,
    utt2spk: Optional[str] = None,
    long_form: bool = False,
    **decode_options,
) -> None:
    """Decode every utterance of the data options and write the output files."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    set_all_random_seed(seed)
    device = "cuda" if ngpu > 0 else "cpu"
    speech2text = Speech2Text(
        asr_train_config, asr_model_file, device=device, dtype=dtype, seed=seed, **decode_options
    )
    if long_form:
        if enrollment_override is not None:
            raise ValueError("--long_form does not take --enrollment_override")
        results = long_form_inference(speech2text, data_path_and_name_and_type, key_file, batch_size,
                                      Path(output_dir))
        write_outputs(Path(output_dir), results)
        logging.info(f"wrote {len(results)} recordings to {output_dir}")
        return

    override = None
    if enrollment_override == "rotate":
        override = RotatedEnrollment(data_path_and_name_and_type, utt2spk)
    elif enrollment_override is not None:
        raise ValueError(f"--enrollment_override must be 'rotate' or none, got {enrollment_override!r}")

    train_args = load_train_args(asr_train_config)
    loader = DiffASRTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype=dtype,
        batch_size=batch_size,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=DiffASRTask.build_preprocess_fn(train_args, False),
        collate_fn=DiffASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=False,
        inference=True,
    )

    results: Dict[str, Tuple[Recognition, float, float]] = {}
    started = time.perf_counter()
    for keys, batch in loader:
        if override is not None:
            override(keys, batch)
        batch = to_device(batch, device)
        tic = time.perf_counter()
        recognitions = speech2text(batch["speech"], batch["speech_lengths"], batch.get(ENROLL_EMBED), keys,
                                   batch.get(ENROLL_SPEECH), batch.get(ENROLL_SPEECH + "_lengths"))
        share = (time.perf_counter() - tic) / len(keys)  # batch time split evenly
        for key, recognition, samples in zip(keys, recognitions, batch["speech_lengths"].tolist()):
            results[key] = (recognition, share, samples / fs)
        logging.info(f"decoded {len(results)} utterances ({time.perf_counter() - started:.1f} s); "
                     f"{keys[0]}: {recognitions[0].text}")
    write_outputs(Path(output_dir), results)
    logging.info(f"wrote {len(results)} utterances to {output_dir}")


def long_form_inference(speech2text: Speech2Text, data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
                        key_file: Optional[str], batch_size: int,
                        output_dir: Path) -> Dict[str, Tuple[Recognition, float, float]]:
    """Each recording split by silero-vad and decoded in segments (``diffasr.longform``);
    one Recognition per recording, and ``words.ctm`` with times from its start."""
    from diffasr import longform
    from diffasr.datadir import read_kv

    sources = {name: (path, kind) for path, name, kind in data_path_and_name_and_type}
    path, kind = sources.get("speech", (None, None))
    if kind != "sound":
        raise ValueError(f"--long_form reads the recordings themselves (speech of type sound, a wav.scp); "
                         f"got {path},speech,{kind}")
    if speech2text.hypotheses is not None:
        raise ValueError("--long_form cannot deliberate an external transcript: its words are not split "
                         "at the recording's pauses")
    wavs = read_kv(path)
    keys = list(read_kv(key_file)) if key_file else list(wavs)
    embeds = kaldiio.load_scp(sources[ENROLL_EMBED][0]) if ENROLL_EMBED in sources else None
    enroll_wavs = read_kv(sources[ENROLL_SPEECH][0]) if ENROLL_SPEECH in sources else None
    if enroll_wavs is not None and sources[ENROLL_SPEECH][1] != "sound":
        raise ValueError("--long_form takes the enrollment audio (enroll.scp, type sound)")
    vad = longform.SpeechActivity()
    options = longform.VADOptions(max_segment=min(longform.VADOptions.max_segment, speech2text.max_audio_seconds))
    results = {}
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "words.ctm").open("w", encoding="utf-8") as ctm:
        for key in keys:
            if key not in wavs:
                raise ValueError(f"{key_file}: utterance {key} is not in {path}")
            enrollment = None
            if embeds is not None or enroll_wavs is not None:
                audio = None
                if enroll_wavs is not None:
                    audio = longform.read_span(enroll_wavs[key], 0, None)
                enrollment = longform.prepare_enrollment(speech2text.model, embeds[key] if embeds else None, audio)
            result = longform.transcribe_long(
                wavs[key], lambda segments: longform.decode_segments(speech2text, segments, enrollment),
                vad, options, batch_size=batch_size, what=f"{wavs[key]} (utterance {key})",
            )
            segments = [s for s in result.segments if s.tokens]
            tokens = [t for s in segments for t in s.tokens]
            recognition = Recognition(
                text=" ".join(s.text for s in segments), tokens=tokens,
                token_ids=speech2text.converter.tokens2ids(tokens),
                confidences=[c for s in segments for c in s.token_confidences],
            )
            results[key] = (recognition, result.decode_seconds, result.audio_seconds)
            ctm.writelines(line + "\n" for line in result.ctm(key))
            logging.info(f"{key}: {result.audio_seconds:.1f} s in {len(result.segments)} segments, "
                         f"RTFx {result.rtfx:.1f}: {recognition.text[:80]}")
    return results


def load_train_args(asr_train_config: str) -> argparse.Namespace:
    """The training options (token list, tokenizer, frontend) saved as config.yaml."""
    with open(asr_train_config, encoding="utf-8") as f:
        return argparse.Namespace(**yaml.safe_load(f))


def write_outputs(output_dir: Path, results: Dict[str, Tuple[Recognition, float, float]]) -> None:
    """Write text, token, timing, word_confidence.ctm (and remasked), sorted by utterance."""
    output_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted(results)
    if any(results[k][0].entropies is not None for k in keys):
        with (output_dir / "token_uncertainty").open("w", encoding="utf-8") as uncertainty:
            for key in keys:
                recognition = results[key][0]
                for index, token in enumerate(recognition.tokens):
                    uncertainty.write(
                        f"{key} {index} {token} {recognition.confidences[index]:.6f} "
                        f"{recognition.entropies[index]:.6f} {recognition.flips[index]}\n"
                    )
    if any(results[k][0].num_remasked is not None for k in keys):
        with (output_dir / "remasked").open("w", encoding="utf-8") as remasked:
            for key in keys:
                recognition = results[key][0]
                remasked.write(f"{key} {recognition.num_remasked} {recognition.canvas_length}\n")
    with (output_dir / "text").open("w", encoding="utf-8") as text, \
            (output_dir / "token").open("w", encoding="utf-8") as token, \
            (output_dir / "timing").open("w", encoding="utf-8") as timing, \
            (output_dir / "word_confidence.ctm").open("w", encoding="utf-8") as ctm:
        for key in keys:
            recognition, seconds, audio_seconds = results[key]
            text.write(f"{key} {recognition.text}".rstrip() + "\n")
            token.write(f"{key} {' '.join(recognition.tokens)}".rstrip() + "\n")
            timing.write(f"{key} {seconds:.6f} {audio_seconds:.3f}\n")
            words = words_with_confidence(recognition.tokens, recognition.confidences)
            for index, (word, confidence) in enumerate(words):
                ctm.write(f"{key} 1 {index} 1 {word} {confidence:.6f}\n")


def get_parser() -> config_argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="diffasr decoding (diffusion sampler, ESPnet beam search, Mask-CTC)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", help="logging level")
    parser.add_argument("--output_dir", required=True, help="where text, token, timing, ctm go")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--num_workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per batch")
    parser.add_argument("--fs", type=int, default=16000, help="sample rate, for audio seconds")

    group = parser.add_argument_group("Input data")
    group.add_argument("--data_path_and_name_and_type", type=str2triple_str, required=True,
                       action="append", help="e.g. data/test/wav.scp,speech,sound (repeatable)")
    group.add_argument("--key_file", type=str_or_none, help="decode only these utterances")
    group.add_argument("--enrollment_override", type=str_or_none, default=None, choices=["rotate", None],
                       help="rotate: decode with another speaker's enrollment (embedding and audio)")
    group.add_argument("--utt2spk", type=str_or_none, default=None, help="for --enrollment_override")
    group.add_argument("--long_form", type=str2bool, default=False,
                       help="split each recording at its pauses (silero-vad) and decode the segments; "
                       "also writes words.ctm with times")

    group = parser.add_argument_group("Model")
    group.add_argument("--asr_train_config", required=True, help="config.yaml of the experiment")
    group.add_argument("--asr_model_file", type=str_or_none, help="model .pth file")
    group.add_argument("--bpemodel", type=str_or_none, help="default: from the training config")
    group.add_argument("--token_type", type=str_or_none, help="default: from the training config")

    group = parser.add_argument_group("Masked diffusion (model: diffusion)")
    group.add_argument("--steps", type=int, default=8, help="denoising steps")
    group.add_argument("--block_length", type=int, default=None, help="semi-AR block size")
    group.add_argument("--remasking", default="low_confidence", choices=list(REMASKING))
    group.add_argument("--threshold", type=float, default=None, help="commit all above this probability")
    group.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    group.add_argument("--canvas", type=str_or_none, default=None, choices=list(CANVAS_MODES) + [None],
                       help="default: as trained")
    group.add_argument("--canvas_length", type=int, default=None, help="fixed length / dynamic maximum")
    group.add_argument("--canvas_margin", type=int, default=None, help="dynamic canvas margin")

    group.add_argument("--decode_mode", default="diffusion", choices=list(DECODE_MODES),
                       help="diffusion: from a masked canvas; deliberation: revise a first pass; "
                       "ctc_greedy: the first pass alone")
    group.add_argument("--max_audio_seconds", type=float, default=None,
                       help="refuse longer audio (default: max_audio_seconds of the training config)")

    group = parser.add_argument_group("Deliberation (decode_mode: deliberation)")
    group.add_argument("--deliberation_hyp", type=str_or_none, default=None,
                       help="first-pass hypotheses '<utt> WORDS' (e.g. an AR decode dir's text); "
                       "none or 'ctc': this model's CTC greedy path")
    group.add_argument("--deliberation_hyp_type", default="text", choices=list(HYPOTHESIS_TYPES),
                       help="text: words, tokenized with the model's BPE; token: model pieces")
    group.add_argument("--masking", default="random", choices=list(DELIBERATION_MASKING))
    group.add_argument("--mask_ratio", type=float, default=0.3,
                       help="share of the canvas masked (random, low_confidence)")
    group.add_argument("--deliberation_threshold", type=float, default=None,
                       help="confidence_guided: mask tokens whose calibrated confidence is below")
    group.add_argument("--confidence_temperature", type=float, default=1.0,
                       help="calibration of the hypothesis scores: sigmoid(logit(p) / T)")
    group.add_argument("--num_chunks", type=int, default=1, help="semi-AR deliberation chunks")

    group = parser.add_argument_group("Beam search (model: espnet)")
    group.add_argument("--beam_size", type=int, default=10)
    group.add_argument("--ctc_weight", type=float, default=0.3)
    group.add_argument("--penalty", type=float, default=0.0, help="length bonus")
    group.add_argument("--maxlenratio", type=float, default=0.0)
    group.add_argument("--minlenratio", type=float, default=0.0)

    group = parser.add_argument_group("Mask-CTC (model: maskctc)")
    group.add_argument("--maskctc_n_iterations", type=int, default=10)
    group.add_argument("--maskctc_threshold_probability", type=float, default=0.99)
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    logging.basicConfig(
        level=kwargs.pop("log_level"),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logging.info(" ".join(sys.argv))
    inference(**kwargs)


if __name__ == "__main__":
    main()
