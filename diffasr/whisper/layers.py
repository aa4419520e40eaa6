"""Running openai-whisper's blocks on padded batches.

Whisper's ``MultiHeadAttention`` takes a mask only as a causal flag (with SDPA) and its
cross-attention takes none, because Whisper always sees one 30-s window.  Variable-length
batches need key-padding masks, so these helpers run Whisper's own modules (its
``query``/``key``/``value``/``out`` projections, layer norms and MLP) through
``scaled_dot_product_attention`` with a mask.  The scaling is the same: Whisper scales q
and k by ``d_head ** -0.25`` each, SDPA scales q·k by ``d_head ** -0.5``.
"""

from typing import Optional

import torch
import torch.nn.functional as F


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width] True at padded positions.

    >>> padding_mask(torch.tensor([2, 3]), 3).tolist()
    [[False, False, True], [False, False, False]]
    """
    return torch.arange(width, device=lengths.device)[None, :] >= lengths[:, None]


def attend(
    attention: torch.nn.Module,
    x: torch.Tensor,
    memory: Optional[torch.Tensor] = None,
    key_padding: Optional[torch.Tensor] = None,
    causal: bool = False,
) -> torch.Tensor:
    """Whisper ``MultiHeadAttention`` of ``x`` [B, L, D] over itself or ``memory`` [B, S, D].

    ``key_padding`` [B, S] is True where a key is padding; ``causal`` hides later keys.
    """
    source = x if memory is None else memory
    heads = attention.n_head

    def split(t):
        return t.view(t.size(0), t.size(1), heads, -1).transpose(1, 2)

    q, k, v = split(attention.query(x)), split(attention.key(source)), split(attention.value(source))
    allowed = None
    if key_padding is not None:
        allowed = ~key_padding[:, None, None, :]
    if causal:
        order = torch.ones(x.size(1), source.size(1), dtype=torch.bool, device=x.device).tril()
        allowed = order[None, None] if allowed is None else allowed & order[None, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return attention.out(out.transpose(1, 2).flatten(2))


def run_block(
    block: torch.nn.Module,
    x: torch.Tensor,
    x_padding: Optional[torch.Tensor] = None,
    memory: Optional[torch.Tensor] = None,
    memory_padding: Optional[torch.Tensor] = None,
    causal: bool = False,
) -> torch.Tensor:
    """One Whisper ``ResidualAttentionBlock`` (pre-norm) with padding masks."""
    x = x + attend(block.attn, block.attn_ln(x), key_padding=x_padding, causal=causal)
    if block.cross_attn is not None:
        x = x + attend(block.cross_attn, block.cross_attn_ln(x), memory, key_padding=memory_padding)
    return x + block.mlp(block.mlp_ln(x))
