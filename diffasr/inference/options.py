"""Every decode option, declared once: one dataclass per model family or decode mode.

The diffusion modes' options are ``diffasr.diffusion.options`` (the plain-torch core's);
the ESPnet baselines' and the recognizer's are here.  ``DecodeOptions`` groups them;
``add_arguments`` generates the stage-6 command line from the fields, and
``DecodeOptions.from_flat`` reads the flat mapping that the command line, a
``conf/decode/*.yaml`` file or an API call gives, refusing a key that no dataclass
declares (and an option's old name, ``RENAMED``, with its new one).
"""

import argparse
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from diffasr.diffusion.options import DeliberationOptions, DiffusionOptions, SamplerOptions, option

DECODE_MODES = ("diffusion", "deliberation", "ctc_greedy")
DTYPES = ("float16", "float32", "float64")
# Renamed decode options, old name -> (new name, what it is): the old name is refused with the new one.
RENAMED = dict(canvas_margin=("canvas_decode_margin", "the decode margin; model_conf canvas_train_margin "
                              "is the training one"))


def renamed_message(old: str) -> str:
    new, what = RENAMED[old]
    return f"decode option {old!r} was renamed {new!r} ({what})"


@dataclass
class RecognizerOptions:
    """What every model family shares."""

    decode_mode: str = option("diffusion", "diffusion models: diffusion (from a masked canvas), "
                              "deliberation (revise a first pass) or ctc_greedy (the first pass alone)",
                              DECODE_MODES)
    dtype: str = option("float32", "model precision", DTYPES)
    bpemodel: Optional[str] = option(None, "SentencePiece model (default: from the training config)")
    token_type: Optional[str] = option(None, "token type (default: from the training config)")
    max_audio_seconds: Optional[float] = option(
        None, "refuse longer audio (default: max_audio_seconds of the training config)")
    seed: int = option(0, "random seed (random remasking and masking, sampling)")
    wise_ft_encoder: Optional[float] = option(
        None, "WiSE-FT: the trained share of Whisper's encoder weights, the rest Whisper's own "
        "(diffasr.espnet2.wise_ft; none: as trained)")
    wise_ft_decoder: Optional[float] = option(
        None, "WiSE-FT: the same for a Whisper decoder's weights (none: as trained)")

    def wise_ft(self) -> Dict[str, float]:
        """{Whisper part: trained share} for ``build_model_from_file``."""
        return {part: share for part, share in (("encoder", self.wise_ft_encoder), ("decoder", self.wise_ft_decoder))
                if share is not None}

    def __post_init__(self):
        if self.decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {self.decode_mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("wise_ft_encoder", "wise_ft_decoder"):
            share = getattr(self, name)
            if share is not None and not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (the trained share), got {share}")


@dataclass
class BeamSearchOptions:
    """``model: espnet``: ESPnet's joint CTC/attention beam search."""

    beam_size: int = option(10, "beam size (1: greedy)")
    ctc_weight: float = option(0.3, "CTC prefix score weight (ignored without a CTC head)")
    penalty: float = option(0.0, "length bonus")
    maxlenratio: float = option(0.0, "maximum output length / input frames (0: the input length)")
    minlenratio: float = option(0.0, "minimum output length / input frames")


@dataclass
class MaskCTCOptions:
    """``model: maskctc``: ESPnet's Mask-CTC inference."""

    maskctc_n_iterations: int = option(10, "refinement iterations")
    maskctc_threshold_probability: float = option(0.99, "CTC tokens kept below this probability are masked")


# The groups of DecodeOptions, in command-line order, with their titles.
GROUPS = dict(
    recognizer=(RecognizerOptions, "Recognizer"),
    sampler=(SamplerOptions, "Masked-diffusion sampler (decode_mode: diffusion and deliberation)"),
    diffusion=(DiffusionOptions, "Masked diffusion (decode_mode: diffusion)"),
    deliberation=(DeliberationOptions, "Deliberation (decode_mode: deliberation)"),
    beam_search=(BeamSearchOptions, "Beam search (model: espnet)"),
    maskctc=(MaskCTCOptions, "Mask-CTC (model: maskctc)"),
)


def own_fields(cls) -> list:
    """The fields a dataclass declares itself (not those of a dataclass base)."""
    inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                 for f in dataclasses.fields(base)}
    return [f for f in dataclasses.fields(cls) if f.name not in inherited]


def option_names() -> Dict[str, type]:
    """Every decode option name and the dataclass that declares it."""
    return {f.name: cls for cls, _ in GROUPS.values() for f in own_fields(cls)}


@dataclass
class DecodeOptions:
    """All decode options of one Speech2Text."""

    recognizer: RecognizerOptions = field(default_factory=RecognizerOptions)
    diffusion: DiffusionOptions = field(default_factory=DiffusionOptions)
    deliberation: DeliberationOptions = field(default_factory=DeliberationOptions)
    beam_search: BeamSearchOptions = field(default_factory=BeamSearchOptions)
    maskctc: MaskCTCOptions = field(default_factory=MaskCTCOptions)

    @classmethod
    def from_flat(cls, options: Mapping[str, Any], source: str = "decode options") -> "DecodeOptions":
        """From ``{name: value}`` (a decode YAML, the command line, API keywords).

        A name that no dataclass declares is an error naming ``source`` and the
        closest declared names (an old name: the new one); the sampler's shared options
        (``steps``, ``canvas_decode_margin``) go to both diffusion modes.
        """
        renamed = [k for k in options if k in RENAMED]
        if renamed:
            raise ValueError(f"{source}: {renamed_message(renamed[0])}")
        names = option_names()
        unknown = [k for k in options if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=3)
            raise ValueError(f"{source}: unknown decode option {unknown[0]!r}"
                             + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                             + "; the options are declared in diffasr.inference.options and "
                             "diffasr.diffusion.options")
        groups = {}
        for name, (group_cls, _) in GROUPS.items():
            if name == "sampler":
                continue
            keys = {f.name for f in dataclasses.fields(group_cls)}
            try:
                groups[name] = group_cls(**{k: v for k, v in options.items() if k in keys})
            except (TypeError, ValueError) as e:
                raise ValueError(f"{source}: {e}") from None
        return cls(**groups)

    def flat(self) -> Dict[str, Any]:
        """The inverse of ``from_flat``."""
        out = {}
        for name in ("recognizer", "diffusion", "deliberation", "beam_search", "maskctc"):
            out.update(dataclasses.asdict(getattr(self, name)))
        return out


def _argument_type(annotation):
    """argparse type of a field: Optional[X] also takes 'none' on the command line."""
    from espnet2.utils.types import float_or_none, int_or_none, str_or_none

    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    if not inner:
        return annotation
    return {int: int_or_none, float: float_or_none, str: str_or_none}[inner[0]]


class RenamedOption(argparse.Action):
    """An old option name on the command line: an error that gives the new one."""

    def __call__(self, parser, namespace, values, option_string=None):
        new, what = RENAMED[self.dest]
        parser.error(f"{option_string} was renamed --{new} ({what})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options generated from the dataclasses, one group each; the old
    names (``RENAMED``), hidden, so that they are refused with their new ones."""
    for cls, title in GROUPS.values():
        group = parser.add_argument_group(title)
        hints = typing.get_type_hints(cls)
        for f in own_fields(cls):
            kwargs = dict(type=_argument_type(hints[f.name]), default=f.default, help=f.metadata["help"])
            if f.metadata.get("choices"):
                kwargs["choices"] = list(f.metadata["choices"]) + ([None] if f.default is None else [])
            group.add_argument(f"--{f.name}", **kwargs)
    for old in RENAMED:
        parser.add_argument(f"--{old}", action=RenamedOption, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def pop_decode_options(arguments: Dict[str, Any], config: Optional[str] = None) -> DecodeOptions:
    """Take the decode options out of parsed arguments (``vars(args)``).  An old option
    name among them came from ``config``, the ``--config`` file (on the command line
    ``RenamedOption`` refuses it), and is refused naming that file."""
    renamed = [k for k in RENAMED if k in arguments]
    if renamed:
        raise ValueError(f"{config}: {renamed_message(renamed[0])}")
    names = option_names()
    return DecodeOptions.from_flat({k: arguments.pop(k) for k in list(arguments) if k in names},
                                   "command line")
