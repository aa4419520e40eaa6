"""Plain-torch masked-diffusion core (LLaDA-style): canvas, forward masking, loss, sampler.

Deliberately free of ESPnet imports so it can be tested and reused on its own.
"""

from diffasr.diffusion.canvas import build_canvas, canvas_lengths_from_predicted
from diffasr.diffusion.forward import forward_mask
from diffasr.diffusion.options import DeliberationOptions, DiffusionOptions
from diffasr.diffusion.loss import scaled_loss, scaled_masked_cross_entropy
from diffasr.diffusion.sampler import (
    SamplerOutput,
    deliberate,
    generate,
    hypothesis_confidence,
    num_transfer_tokens,
)

__all__ = [
    "DeliberationOptions",
    "DiffusionOptions",
    "SamplerOutput",
    "build_canvas",
    "canvas_lengths_from_predicted",
    "deliberate",
    "forward_mask",
    "generate",
    "hypothesis_confidence",
    "num_transfer_tokens",
    "scaled_loss",
    "scaled_masked_cross_entropy",
]
