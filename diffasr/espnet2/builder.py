"""Build a diffasr model from its training options, importing only the classes it uses.

ESPnet's ``ASRTask`` registers every frontend, encoder and decoder it has, and importing
``espnet2.tasks.asr`` loads them all (about 8 s on a 2-core machine, with self-supervised
frontends and Hugging Face decoders no diffasr model uses).  Decoding needs only the
classes that one ``config.yaml`` names, so the registry here maps a name to a module path
and imports it when a model asks for it; a name it does not list is looked up in ESPnet's
full registry (the heavy import, once).  ``DiffASRTask`` (training) builds its ESPnet
``ClassChoices`` from the same table and builds models through ``build_model``.
"""

import argparse
import importlib
import logging
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

import torch
import yaml

from diffasr.espnet2.wise_ft import wise_ft as interpolate_with_whisper
from diffasr.whisper.tokenizer import END as WHISPER_END
from diffasr.whisper.tokenizer import TOKEN_TYPE as WHISPER_TOKEN_TYPE

DEFAULT_MAX_AUDIO_SECONDS = 40.0
CTC_UNITS = ("tokens", "chars", "bpe")
# Renamed model_conf keys, old name -> what to say: a config (a trained experiment's
# config.yaml too) that still has the old name is refused with the new one.
RENAMED_MODEL_CONF = dict(
    canvas_margin="canvas_margin was renamed canvas_train_margin (the training margin); "
                  "the decode margin is canvas_decode_margin",
)
DIFFUSION_DECODERS = ("diffusion", "whisper_diffusion")

# kind -> name -> "module:Class".  diffasr's own classes, and the ESPnet classes that
# diffasr's configs use (their names as ESPnet's ASR task registers them).
DIFFASR_CLASSES = {
    "model": {
        "espnet": "diffasr.espnet2.target_speaker:TargetSpeakerESPnetModel",
        "maskctc": "diffasr.espnet2.target_speaker:TargetSpeakerMaskCTCModel",
        "diffusion": "diffasr.espnet2.model:DiffusionASRModel",
    },
    "encoder": {"whisper": "diffasr.espnet2.whisper_encoder:WhisperEncoder"},
    "decoder": {
        "diffusion": "diffasr.espnet2.decoder:DiffusionTransformerDecoder",
        "whisper_diffusion": "diffasr.espnet2.whisper_decoder:WhisperDiffusionDecoder",
        "whisper_ar": "diffasr.espnet2.whisper_decoder:WhisperARDecoder",
    },
    "spk_conditioner": {
        "film": "diffasr.espnet2.conditioning:FiLMConditioner",
        "prepend": "diffasr.espnet2.conditioning:PrependConditioner",
    },
}
ESPNET_CLASSES = {
    "frontend": {"default": "espnet2.asr.frontend.default:DefaultFrontend"},
    "specaug": {"specaug": "espnet2.asr.specaug.specaug:SpecAug"},
    "normalize": {"global_mvn": "espnet2.layers.global_mvn:GlobalMVN",
                  "utterance_mvn": "espnet2.layers.utterance_mvn:UtteranceMVN"},
    "encoder": {"conformer": "espnet2.asr.encoder.conformer_encoder:ConformerEncoder",
                "transformer": "espnet2.asr.encoder.transformer_encoder:TransformerEncoder"},
    "decoder": {"transformer": "espnet2.asr.decoder.transformer_decoder:TransformerDecoder",
                "mlm": "espnet2.asr.decoder.mlm_decoder:MLMDecoder"},
}


def _import(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def class_of(kind: str, name: str):
    """The class registered as ``name`` for ``kind`` (model, encoder, decoder, ...)."""
    path = DIFFASR_CLASSES.get(kind, {}).get(name) or ESPNET_CLASSES.get(kind, {}).get(name)
    if path is not None:
        return _import(path)
    if kind == "spk_conditioner":
        raise ValueError(f"spk_conditioner must be one of {sorted(DIFFASR_CLASSES[kind])} or none, got {name!r}")
    from espnet2.tasks import asr as espnet_asr  # every ESPnet class: only for names not listed above

    return getattr(espnet_asr, f"{kind}_choices").get_class(name)


def choice(args: argparse.Namespace, name: str) -> Optional[str]:
    """The chosen class name, with YAML's ``none``/``null`` spelled out as None."""
    value = getattr(args, name, None)
    if isinstance(value, str) and value.lower() in ("none", "null", "nil"):
        return None
    return value


def build_token_id_converter(token_list):
    """ESPnet's token/id converter; Whisper's byte-level BPE has no ``<unk>`` (every byte
    sequence has pieces), so its end token stands in as the never-used unknown symbol."""
    from espnet2.text.token_id_converter import TokenIDConverter

    token_list = list(token_list)
    unk = "<unk>" if "<unk>" in token_list else WHISPER_END
    return TokenIDConverter(token_list=token_list, unk_symbol=unk)


def build_text_tokenizer(token_type: str, bpemodel=None):
    """ESPnet's tokenizer for a token type, or Whisper's for ``whisper_en``."""
    if token_type == WHISPER_TOKEN_TYPE:
        from diffasr.whisper.tokenizer import WhisperTextTokenizer

        return WhisperTextTokenizer()
    from espnet2.text.build_tokenizer import build_tokenizer

    return build_tokenizer(token_type=token_type, bpemodel=bpemodel)


def read_token_list(args: argparse.Namespace) -> list:
    """The token list of ``args.token_list`` (a file or a list); a file's is stored back
    into ``args`` as a list, so that config.yaml carries it (a portable model)."""
    if isinstance(args.token_list, str):
        with open(args.token_list, encoding="utf-8") as f:
            token_list = [line.rstrip("\n") for line in f]
        args.token_list = list(token_list)
    elif isinstance(args.token_list, (tuple, list)):
        token_list = list(args.token_list)
    else:
        raise RuntimeError("token_list must be a file path or a list")
    return token_list


def build_encoder_stack(args: argparse.Namespace) -> dict:
    """Frontend, SpecAugment, normalisation, pre-encoder, encoder and post-encoder."""
    if args.input_size is None:
        frontend = class_of("frontend", args.frontend)(**args.frontend_conf)
        input_size = frontend.output_size()
    else:
        args.frontend, args.frontend_conf = None, {}
        frontend, input_size = None, args.input_size
    modules = {}
    for kind in ("specaug", "normalize"):
        name = choice(args, kind)
        modules[kind] = None if name is None else class_of(kind, name)(**getattr(args, f"{kind}_conf"))
    preencoder = None
    if choice(args, "preencoder") is not None:
        preencoder = class_of("preencoder", args.preencoder)(**args.preencoder_conf)
        input_size = preencoder.output_size()
    encoder = class_of("encoder", args.encoder)(input_size=input_size, **args.encoder_conf)
    postencoder = None
    if choice(args, "postencoder") is not None:
        postencoder = class_of("postencoder", args.postencoder)(input_size=encoder.output_size(),
                                                                **args.postencoder_conf)
    return dict(frontend=frontend, specaug=modules["specaug"], normalize=modules["normalize"],
                preencoder=preencoder, encoder=encoder, postencoder=postencoder)


def build_model(args: argparse.Namespace, source: str = "model_conf") -> torch.nn.Module:
    """The model that the training options ``args`` describe (ESPnet's ``build_model``);
    ``source`` names their ``model_conf`` in an error."""
    from espnet2.asr.ctc import CTC

    renamed = [key for key in RENAMED_MODEL_CONF if key in args.model_conf]
    if renamed:
        raise ValueError(f"{source}: {RENAMED_MODEL_CONF[renamed[0]]}")
    token_list = read_token_list(args)
    vocab_size = len(token_list)
    logging.info(f"Vocabulary size: {vocab_size}")
    model_name = choice(args, "model") or "espnet"
    decoder_name = choice(args, "decoder")
    if (model_name == "diffusion") != (decoder_name in DIFFUSION_DECODERS):
        raise ValueError(f"model: diffusion goes with decoder: {' or '.join(DIFFUSION_DECODERS)} "
                         f"and only with it; got model: {model_name}, decoder: {decoder_name}")
    if model_name == "maskctc":
        # ESPnet's Mask-CTC appends its own <mask>; hide ours so the symbol is not
        # duplicated.  <mask> follows every piece, so text ids do not move.
        sym_mask = args.model_conf.get("sym_mask", "<mask>")
        token_list = [t for t in token_list if t != sym_mask]
        vocab_size = len(token_list)

    # 1. Frontend, SpecAugment, normalisation, pre-encoder, encoder, post-encoder
    stack = build_encoder_stack(args)
    size = stack["encoder"].output_size()
    if stack["postencoder"] is not None:
        size = stack["postencoder"].output_size()

    # 2. Speaker conditioner of an enrollment embedding
    conditioner = None
    conditioner_name = choice(args, "spk_conditioner")
    if conditioner_name is not None:
        conditioner = class_of("spk_conditioner", conditioner_name)(
            encoder_output_size=size, **(getattr(args, "spk_conditioner_conf", None) or {}))

    # 3. Decoder and CTC head (over tokens, or over characters for a large token list)
    decoder = None
    if decoder_name is not None:
        decoder = class_of("decoder", decoder_name)(vocab_size=vocab_size, encoder_output_size=size,
                                                    **args.decoder_conf)
    model_conf = dict(args.model_conf)
    model_conf.pop("spk_conditioner", None)
    extra = dict(spk_conditioner=conditioner, joint_network=None)
    ctc_units = model_conf.pop("ctc_units", "tokens")
    if ctc_units not in CTC_UNITS:
        raise ValueError(f"model_conf ctc_units must be one of {CTC_UNITS}, got {ctc_units!r}")
    ctc_size = vocab_size
    if ctc_units == "chars":
        if model_name not in ("diffusion", "espnet") or args.token_type != WHISPER_TOKEN_TYPE:
            raise ValueError("model_conf ctc_units: chars is for model: diffusion or espnet with "
                             f"token_type: {WHISPER_TOKEN_TYPE}")
        from diffasr.espnet2.ctc_units import CharacterUnits

        extra["ctc_units"] = CharacterUnits(token_list, build_text_tokenizer(args.token_type))
        ctc_size = len(extra["ctc_units"])
    elif ctc_units == "bpe":
        if model_name not in ("diffusion", "espnet") or args.token_type != WHISPER_TOKEN_TYPE:
            raise ValueError("model_conf ctc_units: bpe is for model: diffusion or espnet with "
                             f"token_type: {WHISPER_TOKEN_TYPE}")
        from diffasr.espnet2.ctc_units import SubwordUnits

        extra["ctc_units"] = SubwordUnits(getattr(args, "bpemodel", None) or "", build_text_tokenizer(args.token_type))
        ctc_size = len(extra["ctc_units"])
    ctc = CTC(odim=ctc_size, encoder_output_size=size, **args.ctc_conf)

    # 4. The model (modules built above win over same-named model_conf entries)
    model = class_of("model", model_name)(vocab_size=vocab_size, token_list=token_list, decoder=decoder,
                                          ctc=ctc, **stack, **extra, **model_conf)
    if getattr(args, "init", None) is not None:
        from espnet2.torch_utils.initialize import initialize

        initialize(model, args.init)
    return model


def read_config(config_file: Union[str, Path]) -> dict:
    """An experiment's ``config.yaml`` as a dict, read with libyaml's parser where PyYAML
    has it: a Whisper system's config holds its 51,865-token list, which the pure-Python
    parser takes over a second to read."""
    with open(config_file, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def build_model_from_file(config_file: Union[str, Path, None], model_file: Union[str, Path, None] = None,
                          device: str = "cpu", wise_ft: Optional[Mapping[str, float]] = None
                          ) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """The trained model of an experiment: its ``config.yaml`` (default: beside
    ``model_file``) built by ``build_model``, then the weights of ``model_file`` loaded, as
    ESPnet's ``AbsTask.build_model_from_file`` does; a checkpoint missing parameters is refused.

    ``wise_ft``: {Whisper part: trained share} (``diffasr.espnet2.wise_ft``): those parts of
    the checkpoint are interpolated with the Whisper weights ``build_model`` loaded before it
    (Whisper as released: a training run's ``--init_param`` is not applied here)."""
    if config_file is None:
        if model_file is None:
            raise ValueError("give a config file, a model file or both")
        config_file = Path(model_file).parent / "config.yaml"
    logging.info(f"config file: {config_file}, model file: {model_file}")
    args = argparse.Namespace(**read_config(config_file))
    if wise_ft and model_file is None:
        raise ValueError("WiSE-FT interpolates a trained model file with Whisper's weights: give the model file")
    wise_ft = dict(wise_ft or {})
    if "decoder" in wise_ft and not (getattr(args, "decoder_conf", None) or {}).get("pretrained", True):
        # Its parameters have Whisper's names but were never Whisper's: nothing to go back to.
        logging.info(f"wise_ft_decoder ignored: {config_file} has decoder_conf pretrained: false")
        del wise_ft["decoder"]
    if model_file is not None:
        args.init = None  # the checkpoint overwrites whatever an initialisation would set
    model = build_model(args, f"{config_file}: model_conf").to(device)
    if model_file is not None:
        state = torch.load(model_file, map_location=device, weights_only=True)
        if wise_ft:
            state, counts = interpolate_with_whisper(state, model.state_dict(), wise_ft)
            for part, n in counts.items():
                if n:
                    logging.info(f"WiSE-FT: {n} entries of Whisper's {part} at {wise_ft[part]:g} x {model_file} "
                                 f"+ {1 - wise_ft[part]:g} x Whisper's")
                else:  # as ctc_weight for a model without a CTC head (e.g. a conformer system: no Whisper)
                    logging.info(f"wise_ft_{part} ignored: {model_file} has no Whisper {part} weights")
        # Non-strict as ESPnet's (extra keys of older versions pass), but a checkpoint that
        # leaves parameters untrained is refused.
        missing = sorted(model.load_state_dict(state, strict=False).missing_keys)
        if missing:
            raise ValueError(f"{model_file} lacks {len(missing)} parameters of the model its config builds "
                             f"(e.g. {missing[:3]}); it was trained with another version of the model code")
    return model, args
