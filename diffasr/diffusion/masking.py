"""The forward (noising) process of masked diffusion, as in LLaDA's SFT: which canvas positions are masked.

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


def commit_drafts(
    noisy: torch.Tensor,
    is_masked: torch.Tensor,
    draft: torch.Tensor,
    confidence: torch.Tensor,
    share: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Commit a model's own most confident predictions into part of each masked canvas.

    This is one step of low-confidence remasking done in training: an utterance's
    ``share`` of its masked positions, the most confident first, takes the draft's token
    whether right or wrong.  Trained on such canvases, the decoder reads its own
    (imperfect) commits as context where a few-step decode will have them, and learns
    to revise a wrong one (self-drafting; the step-k output of the decoder, not the
    ground truth, beside the masks).

    Args:
        noisy: [B, L] masked canvas; is_masked: [B, L] bool.
        draft: [B, L] predicted tokens; confidence: [B, L] their probabilities.
        share: [B] in [0, 1], the part of each utterance's masked positions to commit.

    Returns:
        drafted [B, L] tokens, committed [B, L] bool (positions now holding a draft),
        still_masked [B, L] bool.

    >>> noisy = torch.tensor([[9, 9, 9, 4]])
    >>> drafted, committed, still = commit_drafts(noisy, noisy == 9, torch.tensor([[1, 2, 3, 0]]),
    ...                                           torch.tensor([[0.2, 0.9, 0.5, 1.0]]), torch.tensor([0.67]))
    >>> drafted.tolist(), still.tolist()
    ([[9, 2, 3, 4]], [[True, False, False, False]])
    """
    if not ((share >= 0) & (share <= 1)).all():
        raise ValueError(f"share must lie in [0, 1], got {share.tolist()}")
    count = (is_masked.sum(dim=1).float() * share.to(is_masked.device)).floor().long()
    score = confidence.float().masked_fill(~is_masked, -1.0)
    rank = score.argsort(dim=1, descending=True).argsort(dim=1)
    committed = is_masked & (rank < count[:, None])
    return torch.where(committed, draft, noisy), committed, is_masked & ~committed
