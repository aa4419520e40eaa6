"""Decode options of the masked-diffusion sampler, declared once.

Each decode mode of a diffusion model has one dataclass; the model's decode methods,
``Speech2Text``, the API, the stage-6 command line (generated from these fields by
``diffasr.inference.options``) and ``conf/decode/*.yaml`` (whose keys are these field
names) all read this declaration.  ``help`` and ``choices`` in a field's metadata are
the command line's.
"""

from dataclasses import dataclass, field
from typing import Optional, Sequence

from diffasr.diffusion.canvas import CANVAS_MODES

REMASKING = ("low_confidence", "random")
END_COMMITS = ("any", "last")
DELIBERATION_MASKING = ("random", "low_confidence", "confidence_guided")
HYPOTHESIS_TYPES = ("text", "token")


def option(default, help: str, choices: Optional[Sequence] = None):
    """A dataclass field with the command line's help text (and allowed values)."""
    return field(default=default, metadata=dict(help=help, choices=choices))


def check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


@dataclass
class SamplerOptions:
    """What every sampler mode shares."""

    steps: int = option(8, "denoising steps (deliberation: in all, over its chunks)")
    # model_conf's canvas_train_margin is the training canvas's; this is the decode's, over
    # the model's default (model_conf canvas_decode_margin, else the training margin)
    canvas_decode_margin: Optional[int] = option(
        None, "end-filled positions after the transcript at inference (default: the model's "
        "canvas_decode_margin, else its canvas_train_margin)")

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.canvas_decode_margin is not None and self.canvas_decode_margin < 0:
            raise ValueError(f"canvas_decode_margin must be >= 0, got {self.canvas_decode_margin}")


@dataclass
class DiffusionOptions(SamplerOptions):
    """``decode_mode: diffusion``: denoise a fully masked canvas (LLaDA's reverse process)."""

    block_length: Optional[int] = option(None, "semi-autoregressive block size (none: one block)")
    remasking: str = option("low_confidence", "which predictions stay masked at a step", REMASKING)
    threshold: Optional[float] = option(None, "commit every prediction at or above this probability")
    temperature: float = option(0.0, "0: greedy, else Gumbel-max sampling")
    canvas: Optional[str] = option(None, "canvas sizing (default: as trained)", CANVAS_MODES)
    canvas_length: Optional[int] = option(None, "fixed canvas length / dynamic maximum (default: as trained)")
    # last: LLaDA's low-confidence remasking otherwise commits the confident end fill first and
    # cuts the transcript short (recipe README "Training for the canvas": 49.4 -> 45.6 % on the demo's model)
    end_commit: str = option("last", "when predictions of the end token are committed: any (by score, like "
                             "every token) or last (after every other prediction of the block)", END_COMMITS)
    candidates: int = option(1, "canvas lengths decoded in one batch around the estimate (L-1..L+1 for 3); "
                             "the one the model scores highest is kept")

    def __post_init__(self):
        super().__post_init__()
        check_choice("remasking", self.remasking, REMASKING)
        check_choice("end_commit", self.end_commit, END_COMMITS)
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.canvas is not None:
            check_choice("canvas", self.canvas, CANVAS_MODES)
        if self.canvas_length is not None and self.canvas_length < 1:
            raise ValueError(f"canvas_length must be >= 1, got {self.canvas_length}")
        if self.block_length is not None and self.block_length < 1:
            raise ValueError(f"block_length must be >= 1, got {self.block_length}")


@dataclass
class DeliberationOptions(SamplerOptions):
    """``decode_mode: deliberation``: mask part of a first-pass hypothesis and denoise it again."""

    deliberation_hyp: Optional[str] = option(
        None, "first-pass hypotheses '<utt> WORDS' (e.g. an AR decode dir's text); "
        "none or 'ctc': this model's CTC greedy path")
    deliberation_hyp_type: str = option("text", "text: words, tokenized with the model's tokenizer; "
                                        "token: model pieces", HYPOTHESIS_TYPES)
    masking: str = option("random", "which hypothesis tokens are masked", DELIBERATION_MASKING)
    mask_ratio: float = option(0.3, "share of the canvas masked (random, low_confidence)")
    deliberation_threshold: Optional[float] = option(
        None, "confidence_guided: mask the tokens whose calibrated confidence is below")
    confidence_temperature: float = option(1.0, "calibration of the hypothesis scores: sigmoid(logit(p) / T)")
    num_chunks: int = option(1, "semi-autoregressive deliberation chunks")

    def __post_init__(self):
        super().__post_init__()
        check_choice("masking", self.masking, DELIBERATION_MASKING)
        check_choice("deliberation_hyp_type", self.deliberation_hyp_type, HYPOTHESIS_TYPES)
        if self.masking == "confidence_guided" and self.deliberation_threshold is None:
            raise ValueError("masking: confidence_guided needs deliberation_threshold")
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {self.mask_ratio}")
        if self.confidence_temperature <= 0:
            raise ValueError(f"confidence_temperature must be > 0, got {self.confidence_temperature}")

    @property
    def external_hypotheses(self) -> bool:
        """True when the first pass is a file, not this model's CTC greedy path."""
        return self.deliberation_hyp not in (None, "ctc")
