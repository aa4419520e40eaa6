"""Plain-torch masked-diffusion core (LLaDA-style): canvas, forward masking, loss, sampler.

Deliberately free of ESPnet imports so it can be tested and reused on its own.
"""

from diffasr.diffusion.canvas import CanvasPolicy, build_canvas, canvas_lengths_from_predicted, check_schedule
from diffasr.diffusion.masking import commit_drafts, forward_mask
from diffasr.diffusion.options import DeliberationOptions, DiffusionOptions
from diffasr.diffusion.loss import scaled_loss, scaled_masked_cross_entropy
from diffasr.diffusion.sampler import (
    Generators,
    SamplerOutput,
    best_candidates,
    clone_generator,
    deliberate,
    generate,
    hypothesis_confidence,
    num_transfer_tokens,
)

__all__ = [
    "CanvasPolicy",
    "DeliberationOptions",
    "DiffusionOptions",
    "Generators",
    "SamplerOutput",
    "best_candidates",
    "build_canvas",
    "canvas_lengths_from_predicted",
    "check_schedule",
    "clone_generator",
    "commit_drafts",
    "deliberate",
    "forward_mask",
    "generate",
    "hypothesis_confidence",
    "num_transfer_tokens",
    "scaled_loss",
    "scaled_masked_cross_entropy",
]
