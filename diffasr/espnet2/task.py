"""``DiffASRTask``: ESPnet's ASR task with a masked-diffusion model and speaker input.

ESPnet's registries are extended, never patched: ``model`` gains ``diffusion`` (next to
``espnet`` and ``maskctc``), ``decoder`` gains ``diffusion``, and a new
``spk_conditioner`` choice (``film``, ``prepend`` or ``none``) is added.  The optional
data name ``enroll_embed`` carries one float vector per utterance
(``<dir>/enroll_embed.scp,enroll_embed,kaldi_ark``); ESPnet baselines ignore it.
"""

import argparse
import logging
from typing import Tuple

from typeguard import typechecked

from espnet2.asr.ctc import CTC
from espnet2.tasks import asr as espnet_asr
from espnet2.tasks.asr import ASRTask
from espnet2.torch_utils.initialize import initialize
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices

from diffasr.espnet2.conditioning import (
    AbsSpeakerConditioner,
    FiLMConditioner,
    PrependConditioner,
)
from diffasr.espnet2.decoder import DiffusionTransformerDecoder
from diffasr.espnet2.model import DiffusionASRModel

ENROLL_EMBED = "enroll_embed"
DEFAULT_MAX_AUDIO_SECONDS = 40.0

model_choices = ClassChoices(
    "model",
    classes=dict(espnet_asr.model_choices.classes, diffusion=DiffusionASRModel),
    type_check=AbsESPnetModel,
    default="diffusion",
)
decoder_choices = ClassChoices(
    "decoder",
    classes=dict(espnet_asr.decoder_choices.classes, diffusion=DiffusionTransformerDecoder),
    type_check=espnet_asr.AbsDecoder,
    default=None,
    optional=True,
)
spk_conditioner_choices = ClassChoices(
    "spk_conditioner",
    classes=dict(film=FiLMConditioner, prepend=PrependConditioner),
    type_check=AbsSpeakerConditioner,
    default=None,
    optional=True,
)


def _choice(args: argparse.Namespace, name: str):
    """The chosen class name, with YAML's ``none``/``null`` spelled out as None."""
    value = getattr(args, name, None)
    if isinstance(value, str) and value.lower() in ("none", "null", "nil"):
        return None
    return value


def _replace(choices_list, replacement: ClassChoices):
    return [replacement if c.name == replacement.name else c for c in choices_list]


class DiffASRTask(ASRTask):
    """ASR task whose ``build_model`` also knows the diffusion model and its conditioner."""

    class_choices_list = _replace(
        _replace(ASRTask.class_choices_list, model_choices), decoder_choices
    ) + [spk_conditioner_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="diffasr")
        # Saved in config.yaml, so decoding and the API know the limit of a trained model.
        group.add_argument(
            "--max_audio_seconds", type=float, default=DEFAULT_MAX_AUDIO_SECONDS,
            help="longest audio the model is meant to decode; longer input is refused "
            "(one canvas holds at most canvas_length tokens, and segmentation is not built yet)",
        )

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return tuple(super().optional_data_names(train, inference)) + (ENROLL_EMBED,)

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        model_name = _choice(args, "model") or "espnet"
        if model_name != "diffusion":
            # Baselines are ESPnet's own models, built by ESPnet; enroll_embed reaches
            # their forward(**kwargs) and is ignored.
            if _choice(args, "decoder") == "diffusion":
                raise ValueError(f"decoder: diffusion needs model: diffusion, not {model_name}")
            if _choice(args, "spk_conditioner") is not None:
                logging.warning(f"spk_conditioner is ignored by model: {model_name}")
            if model_name == "maskctc":
                # ESPnet's Mask-CTC appends its own <mask>; hide ours so the symbol is not
                # duplicated.  <mask> follows every piece, so text ids do not move.
                token_list = cls._read_token_list(args)
                sym_mask = args.model_conf.get("sym_mask", "<mask>")
                args = argparse.Namespace(**vars(args))
                args.token_list = [t for t in token_list if t != sym_mask]
            return super().build_model(args)
        if _choice(args, "decoder") != "diffusion":
            raise ValueError(
                f"model: diffusion needs decoder: diffusion, got {getattr(args, 'decoder', None)}"
            )
        token_list = cls._read_token_list(args)
        vocab_size = len(token_list)
        logging.info(f"Vocabulary size: {vocab_size}")

        # 1. Frontend, SpecAugment, normalisation, pre-encoder, encoder, post-encoder
        stack = cls._build_encoder_stack(args)
        size = stack["encoder"].output_size()
        if stack["postencoder"] is not None:
            size = stack["postencoder"].output_size()

        # 2. Speaker conditioner on the encoder output
        conditioner = None
        conditioner_name = _choice(args, "spk_conditioner")
        if conditioner_name is not None:
            conditioner_class = spk_conditioner_choices.get_class(conditioner_name)
            conditioner = conditioner_class(
                encoder_output_size=size, **getattr(args, "spk_conditioner_conf", {})
            )

        # 3. Diffusion decoder and CTC head
        decoder = DiffusionTransformerDecoder(
            vocab_size=vocab_size, encoder_output_size=size, **args.decoder_conf
        )
        ctc = CTC(odim=vocab_size, encoder_output_size=size, **args.ctc_conf)

        # 4. The model (modules built above win over same-named model_conf entries)
        model_conf = {
            k: v for k, v in args.model_conf.items() if k not in ("joint_network", "spk_conditioner")
        }
        model = DiffusionASRModel(
            vocab_size=vocab_size,
            token_list=token_list,
            decoder=decoder,
            ctc=ctc,
            spk_conditioner=conditioner,
            **stack,
            **model_conf,
        )
        if args.init is not None:
            initialize(model, args.init)
        return model

    @classmethod
    def _read_token_list(cls, args: argparse.Namespace) -> list:
        if isinstance(args.token_list, str):
            with open(args.token_list, encoding="utf-8") as f:
                token_list = [line.rstrip() for line in f]
            args.token_list = list(token_list)  # stored in config.yaml: portable model
        elif isinstance(args.token_list, (tuple, list)):
            token_list = list(args.token_list)
        else:
            raise RuntimeError("token_list must be a file path or a list")
        return token_list

    @classmethod
    def _build_encoder_stack(cls, args: argparse.Namespace) -> dict:
        """ESPnet's input side, from ESPnet's own registries."""
        if args.input_size is None:
            frontend = espnet_asr.frontend_choices.get_class(args.frontend)(**args.frontend_conf)
            input_size = frontend.output_size()
        else:
            args.frontend, args.frontend_conf = None, {}
            frontend, input_size = None, args.input_size
        specaug = None
        if _choice(args, "specaug") is not None:
            specaug = espnet_asr.specaug_choices.get_class(args.specaug)(**args.specaug_conf)
        normalize = None
        if _choice(args, "normalize") is not None:
            normalize = espnet_asr.normalize_choices.get_class(args.normalize)(
                **args.normalize_conf
            )
        preencoder = None
        if _choice(args, "preencoder") is not None:
            preencoder = espnet_asr.preencoder_choices.get_class(args.preencoder)(
                **args.preencoder_conf
            )
            input_size = preencoder.output_size()
        encoder = espnet_asr.encoder_choices.get_class(args.encoder)(
            input_size=input_size, **args.encoder_conf
        )
        postencoder = None
        if _choice(args, "postencoder") is not None:
            postencoder = espnet_asr.postencoder_choices.get_class(args.postencoder)(
                input_size=encoder.output_size(), **args.postencoder_conf
            )
        return dict(
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            preencoder=preencoder,
            encoder=encoder,
            postencoder=postencoder,
        )
