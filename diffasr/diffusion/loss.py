"""The masked-diffusion training loss (LLaDA, Nie et al. 2025, Algorithm 2)."""

import torch
import torch.nn.functional as F


def scaled_masked_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    is_masked: torch.Tensor,
    p: torch.Tensor,
    canvas_lengths: torch.Tensor,
) -> torch.Tensor:
    """Cross entropy on masked positions, weighted by 1/p, per-canvas normalised.

    For utterance b: ``sum_{i masked} CE_i / p_b`` divided by ``canvas_lengths[b]``
    (end fill included, as LLaDA divides by the answer length with its EOS
    padding); the result is the batch mean.  This is an upper bound on the
    negative log-likelihood of the canvas.

    Args:
        logits: [B, L, V]; targets: [B, L] clean canvas; is_masked: [B, L] bool;
        p: [B] masking probabilities; canvas_lengths: [B].

    Returns:
        scalar loss; exactly 0 (still differentiable) when nothing is masked.
    """
    if logits.shape[:2] != targets.shape or targets.shape != is_masked.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, targets "
            f"{tuple(targets.shape)}, is_masked {tuple(is_masked.shape)}"
        )
    # Unmasked targets may hold pad ids such as -1; keep them in range for the gather.
    safe_targets = targets.masked_fill(~is_masked, 0)
    token_ce = F.cross_entropy(logits.transpose(1, 2).float(), safe_targets, reduction="none")
    return scaled_loss(torch.where(is_masked, token_ce, torch.zeros_like(token_ce)), p, canvas_lengths)


def scaled_loss(token_ce: torch.Tensor, p: torch.Tensor, canvas_lengths: torch.Tensor) -> torch.Tensor:
    """Algorithm 2's weighting of per-position cross entropies [B, L] (0 where not masked).

    Lets a model compute the cross entropy of masked positions only, which matters when
    the vocabulary is large (Whisper's 51,865 tokens).

    >>> scaled_loss(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([0.5, 1.0]), torch.tensor([2, 2]))
    tensor(1.)
    """
    per_utterance = (token_ce / p[:, None]).sum(dim=1) / canvas_lengths.to(token_ce)
    return per_utterance.mean()
