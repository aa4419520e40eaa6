"""``DiffASRTask``: ESPnet's ASR task with a masked-diffusion model and speaker input.

ESPnet's registries are extended, never patched:

- ``model``: ``diffusion`` is added; ``espnet`` and ``maskctc`` are ESPnet's models with
  the enrollment routed into the encoder (``diffasr.espnet2.target_speaker``);
- ``encoder``: ``whisper`` is the frozen Whisper encoder with a trainable adapter built
  from offline weights (ESPnet's own ``whisper`` entry downloads by model name);
- ``decoder``: ``diffusion`` (small bidirectional transformer), ``whisper_diffusion``
  and ``whisper_ar`` (Whisper's decoder as mask predictor or AR decoder);
- ``spk_conditioner``: ``film`` or ``prepend`` of an enrollment embedding, or none.

Optional data names: ``enroll_embed`` (one float vector per utterance,
``<dir>/enroll_embed.scp,enroll_embed,kaldi_ark``) and ``enroll_speech`` (the enrollment
audio, ``<dir>/enroll.scp,enroll_speech,sound``, or its cached frozen-encoder frames as
``kaldi_ark``); in training ``text_distill`` (the AR system's outputs, tokenized like ``text``:
``diffasr.espnet2.distillation``).  ``token_type: whisper_en`` is Whisper's tokenizer
(``diffasr.whisper.tokenizer``).

The model itself is built by ``diffasr.espnet2.builder``, which decoding uses without
this module (importing ESPnet's ASR task loads every class it registers).
"""

import argparse
import logging
import os
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from typeguard import typechecked

from espnet2.tasks import asr as espnet_asr
from espnet2.tasks.asr import ASRTask
from espnet2.text.cleaner import TextCleaner
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.trainer import Trainer

from diffasr.datadir import TARGET_ACTIVITY, read_kv
from diffasr.espnet2 import builder
from diffasr.espnet2.builder import DIFFASR_CLASSES, build_token_id_converter, choice, class_of
from diffasr.espnet2.conditioning import AbsSpeakerConditioner
from diffasr.espnet2.distillation import TEXT_DISTILL, check_distillation, data_part, tokens_part
from diffasr.espnet2.encoder_cache import check_cache
from diffasr.espnet2.enrollment import DATA_NAMES, ENROLL_SPEECH
from diffasr.espnet2.empty_transcripts import build_streaming_iterator
from diffasr.espnet2.teacher import DATA_NAMES as TEACHER_DATA_NAMES
from diffasr.espnet2.teacher import check_teacher_cache
from diffasr.espnet2.wise_ft import PRETRAINED_PARAMETERS  # Whisper's own weights (--pretrained_lr_scale)
from diffasr.whisper.tokenizer import TOKEN_TYPE as WHISPER_TOKEN_TYPE
from diffasr.whisper.tokenizer import WhisperTextTokenizer

# The parameters that bring the enrollment in (--enrollment_lr_scale).
ENROLLMENT_PARAMETERS = ("encoder.conditioning.", "encoder.segment", "spk_conditioner.")
# The target-speaker activity detector among them (--detector_lr_scale): a transformer from
# scratch, which the transforms' 50x would throw off.
DETECTOR_PARAMETERS = ("encoder.conditioning.detector.",)
# The heads trained from scratch on the encoder output (--head_lr_scale): CTC's projection
# and the length head, which at the pretrained weights' rate stay on CTC's blank plateau.
HEAD_PARAMETERS = ("ctc.", "length_predictor.")


def _own(kind: str) -> dict:
    """diffasr's classes of one kind (builder.DIFFASR_CLASSES), imported."""
    return {name: class_of(kind, name) for name in DIFFASR_CLASSES[kind]}


model_choices = ClassChoices(
    "model",
    classes=dict(espnet_asr.model_choices.classes, **_own("model")),
    type_check=AbsESPnetModel,
    default="diffusion",
)
encoder_choices = ClassChoices(
    "encoder",
    classes=dict(espnet_asr.encoder_choices.classes, **_own("encoder")),
    type_check=espnet_asr.AbsEncoder,
    default="conformer",
)
decoder_choices = ClassChoices(
    "decoder",
    classes=dict(espnet_asr.decoder_choices.classes, **_own("decoder")),
    type_check=espnet_asr.AbsDecoder,
    default=None,
    optional=True,
)
spk_conditioner_choices = ClassChoices(
    "spk_conditioner",
    classes=_own("spk_conditioner"),
    type_check=AbsSpeakerConditioner,
    default=None,
    optional=True,
)


def _replace(choices_list, replacement: ClassChoices):
    return [replacement if c.name == replacement.name else c for c in choices_list]


class ResumableTrainer(Trainer):
    """ESPnet's trainer, resuming whatever a killed job left behind.

    At the end of an epoch ESPnet writes ``checkpoint.pth``, then ``<epoch>epoch.pth``,
    both in place.  A job killed during the first write leaves a checkpoint that would
    stop every rerun: it is set aside (``checkpoint.pth.unreadable``) and training starts
    again, with a warning.  A job killed during the second leaves the epoch's model cut
    short (averaging would fail on it): it is written again from the checkpoint.
    """

    @staticmethod
    def resume(checkpoint, model, reporter, *args, **kwargs):
        # torch.save writes a zip whose directory comes last: a cut-short file has none.
        if not zipfile.is_zipfile(checkpoint):
            aside = Path(checkpoint).with_name(Path(checkpoint).name + ".unreadable")
            os.replace(checkpoint, aside)
            logging.warning(f"{checkpoint} is incomplete: the run was stopped while saving it. It is "
                            f"kept as {aside}; training starts again from the first epoch")
            return
        Trainer.resume(checkpoint, model, reporter, *args, **kwargs)
        epoch = reporter.get_epoch()
        last = Path(checkpoint).with_name(f"{epoch}epoch.pth")
        if epoch > 0 and not (last.is_file() and zipfile.is_zipfile(last)):
            torch.save(model.state_dict(), last)  # the model now holds exactly that epoch's weights
            logging.warning(f"{last} was cut short (the run was stopped while saving it): "
                            f"written again from {checkpoint}")


class DiffASRTask(ASRTask):
    """ASR task that builds every model with diffasr's registries (see the module docstring)."""

    trainer = ResumableTrainer

    class_choices_list = _replace(
        _replace(_replace(ASRTask.class_choices_list, model_choices), encoder_choices), decoder_choices
    ) + [spk_conditioner_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="diffasr")
        # Saved in config.yaml, so decoding and the API know the limit of a trained model.
        group.add_argument(
            "--max_audio_seconds", type=float, default=builder.DEFAULT_MAX_AUDIO_SECONDS,
            help="longest audio the model is meant to decode; longer input is refused "
            "(one canvas holds at most canvas_length tokens, and segmentation is not built yet)",
        )
        group.add_argument(
            "--enrollment_lr_scale", type=float, default=1.0,
            help="learning rate of the modules that bring in the enrollment (encoder_conf enrollment's "
            "conditioning and segment embeddings, spk_conditioner) over that of the rest: they start "
            "at the identity and have far to go (DiCoW trains its transforms at 100x)",
        )
        group.add_argument(
            "--detector_lr_scale", type=float, default=None,
            help="learning rate of frame_transform's activity detector (conditioning_conf "
            "detector_layers > 0) over that of the rest (default: --enrollment_lr_scale)",
        )
        group.add_argument(
            "--head_lr_scale", type=float, default=1.0,
            help="learning rate of the heads trained from scratch on the encoder output (the CTC "
            "head, the length head) over that of the rest",
        )
        group.add_argument(
            "--pretrained_lr_scale", type=float, default=1.0,
            help="learning rate of Whisper's own weights (the encoder's trainable layers, a Whisper "
            "decoder) over that of the modules that start from scratch (adapter, heads, enrollment): "
            "below 1 keeps them nearer what Whisper knew",
        )

    @classmethod
    def build_streaming_iterator(cls, data_path_and_name_and_type, preprocess_fn, collate_fn,
                                 key_file=None, batch_size=1, dtype=np.float32, num_workers=1,
                                 allow_variable_data_keys=False, ngpu=0, inference=False, mode=None,
                                 multi_task_dataset=False):
        """ESPnet's, but a target-absent example's empty transcript is read (diffasr.espnet2.empty_transcripts)."""
        if multi_task_dataset:
            raise ValueError("diffasr has no multi-task datasets")
        return build_streaming_iterator(cls, data_path_and_name_and_type, preprocess_fn, collate_fn, key_file,
                                        batch_size, dtype, num_workers, allow_variable_data_keys, ngpu,
                                        inference)

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module):
        """ESPnet's optimizer, with ``--enrollment_lr_scale`` times the learning rate for the
        enrollment's modules (``ENROLLMENT_PARAMETERS``), ``--detector_lr_scale`` times it for
        the activity detector (``DETECTOR_PARAMETERS``) and ``--head_lr_scale`` times it for
        the heads on the encoder output (``HEAD_PARAMETERS``) and ``--pretrained_lr_scale``
        times it for Whisper's own weights (``PRETRAINED_PARAMETERS``); each group's rate follows
        the scheduler as a fixed share of the base rate."""
        enrollment_scale = getattr(args, "enrollment_lr_scale", 1.0)
        detector_scale = getattr(args, "detector_lr_scale", None)
        # The most specific prefixes first: the detector is part of the enrollment's modules.
        scales = (
            ("--detector_lr_scale", DETECTOR_PARAMETERS,
             enrollment_scale if detector_scale is None else detector_scale),
            ("--enrollment_lr_scale", ENROLLMENT_PARAMETERS, enrollment_scale),
            ("--head_lr_scale", HEAD_PARAMETERS, getattr(args, "head_lr_scale", 1.0)),
            ("--pretrained_lr_scale", PRETRAINED_PARAMETERS, getattr(args, "pretrained_lr_scale", 1.0)),
        )
        if all(value == 1.0 for _, _, value in scales):
            return super().build_optimizers(args, model)
        for option, _, value in scales:
            if value <= 0.0:
                raise ValueError(f"{option} must be > 0, got {value}")
        from espnet2.tasks.abs_task import optim_classes

        def scale_of(name: str) -> float:
            return next((value for _, prefixes, value in scales if name.startswith(prefixes)), 1.0)

        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        for option, prefixes, value in scales[1:]:
            if value != 1.0 and not any(name.startswith(prefixes) for name, _ in trainable):
                raise ValueError(f"{option} is set but the model has no trainable {' or '.join(prefixes)} "
                                 "parameters")
        by_scale = {}
        for name, parameter in trainable:
            by_scale.setdefault(scale_of(name), []).append(parameter)
        conf = dict(args.optim_conf)
        lr = conf.pop("lr", 1e-3)
        groups = [dict(params=params, lr=lr * s) for s, params in by_scale.items()]
        return [optim_classes[args.optim](groups, lr=lr, **conf)]

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        cls.check_encoder_caches(args)
        super().main_worker(args)

    @classmethod
    def check_encoder_caches(cls, args: argparse.Namespace) -> None:
        """Refuse cached encoder frames from another frozen encoder or another set, teachers made
        from other mixtures, and AR outputs in other tokens, of other data or lacking an utterance."""
        for option in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
            entries = getattr(args, option, None) or []
            texts = [path for path, name, _ in entries if name == "text"]
            for path, name, kind in entries:
                if name in ("speech", ENROLL_SPEECH) and kind == "kaldi_ark":
                    if choice(args, "encoder") != "whisper":
                        raise ValueError(f"{path}: cached encoder frames need encoder: whisper, "
                                         f"the config has encoder: {choice(args, 'encoder')}")
                    keys = read_kv(texts[0], allow_empty_value=True).keys() if texts else None
                    check_cache(path, args.encoder_conf, keys, texts[0] if texts else "")
                if name in TEACHER_DATA_NAMES:
                    # the data dir is the text's: a teacher made from other mixtures is refused
                    data_dir = Path(texts[0]).parent if texts else None
                    keys = read_kv(texts[0], allow_empty_value=True).keys() if texts else None
                    check_teacher_cache(path, args.encoder_conf, data_dir, keys)
                if name == TEXT_DISTILL and texts:
                    # what training knows of what made them: the tokens, and the data (the text's dir)
                    expected = dict(tokens=tokens_part(args.token_type, args.token_list),
                                    data=data_part(Path(texts[0]).parent))
                    check_distillation(path, expected, read_kv(texts[0], allow_empty_value=True), texts[0])

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        # training targets: stage 1's labels (model_conf activity_weight), the teachers (teacher_weight),
        # the AR system's outputs (distill_share)
        extra = () if inference else (TARGET_ACTIVITY,) + TEACHER_DATA_NAMES + (TEXT_DISTILL,)
        return tuple(super().optional_data_names(train, inference)) + DATA_NAMES + extra

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        preprocessor = cls._text_preprocessor(args, train)
        if preprocessor is not None:
            # ESPnet tokenizes its auxiliary texts as it does text: so are the AR system's outputs
            preprocessor.aux_task_names = list(preprocessor.aux_task_names or []) + [TEXT_DISTILL]
        return preprocessor

    @classmethod
    def _text_preprocessor(cls, args: argparse.Namespace, train: bool):
        if getattr(args, "token_type", None) != WHISPER_TOKEN_TYPE:
            return super().build_preprocess_fn(args, train)
        # ESPnet's whisper_en tokenizer needs an openai-whisper older than the one that
        # ships its tokenizer offline: build the preprocessor without text handling, then
        # give it Whisper's tokenizer over the token list.
        text_free = argparse.Namespace(**vars(args))
        text_free.token_type = None
        preprocessor = super().build_preprocess_fn(text_free, train)
        if preprocessor is None:
            return None
        preprocessor.text_cleaner = TextCleaner(None)
        preprocessor.tokenizer = WhisperTextTokenizer()
        preprocessor.token_id_converter = build_token_id_converter(builder.read_token_list(args))
        return preprocessor

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        return builder.build_model(args)
