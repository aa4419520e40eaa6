"""The forward (noising) process of masked diffusion, as in LLaDA's SFT.

Each utterance draws a time ``t ~ U(0, 1)``; every canvas position is replaced
by the mask token independently with probability ``p = (1 - eps) t + eps``
(``eps`` keeps ``p`` away from 0, where the 1/p loss weight would explode).
``time_power`` k > 1 draws ``t = u ** (1 / k)`` instead (density ``k t^(k-1)``):
more of the training at the high mask ratios that a decode of few steps starts
from (an 8-step decode's first steps fill canvases more than 7/8 masked).
"""

from typing import Optional, Tuple, Union

import torch


def forward_mask(
    canvas: torch.Tensor,
    canvas_lengths: torch.Tensor,
    mask_id: int,
    eps: float = 1e-3,
    t: Optional[Union[torch.Tensor, float]] = None,
    generator: Optional[torch.Generator] = None,
    time_power: float = 1.0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask canvas positions at a random per-utterance rate.

    Args:
        canvas: [B, L] clean canvas tokens.
        canvas_lengths: [B]; positions at or beyond are never masked.
        mask_id: the ``<mask>`` token id.
        eps: smallest masking probability.
        t: [B] (or a float for all) diffusion times in [0, 1]; drawn if None.
        generator: torch random generator for reproducibility.
        time_power: drawn times are ``u ** (1 / time_power)``, u ~ U(0, 1); 1 is LLaDA's.

    Returns:
        noisy [B, L] tokens, is_masked [B, L] bool, p [B] masking probabilities.
    """
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1], got {eps}")
    if time_power < 1.0:
        raise ValueError(f"time_power must be >= 1, got {time_power}")
    batch, length = canvas.shape
    device = canvas.device
    if t is None:
        t = torch.rand(batch, generator=generator, device=device) ** (1.0 / time_power)
    else:
        t = torch.as_tensor(t, dtype=torch.float, device=device).expand(batch)
        if ((t < 0) | (t > 1)).any():
            raise ValueError(f"t must lie in [0, 1], got {t.tolist()}")
    p = (1.0 - eps) * t + eps
    inside = torch.arange(length, device=device) < canvas_lengths.to(device)[:, None]
    draws = torch.rand(batch, length, generator=generator, device=device)
    is_masked = (draws < p[:, None]) & inside
    noisy = canvas.masked_fill(is_masked, mask_id)
    return noisy, is_masked, p
