"""Masked-diffusion transformer decoder: a bidirectional denoiser over a token canvas.

Built from ESPnet's transformer blocks (``DecoderLayer`` = self-attention,
cross-attention to the encoder output, feed-forward).  Unlike ESPnet's
``TransformerDecoder`` the self-attention sees the whole canvas (no causal mask),
as LLaDA's mask predictor does; ``causal=True`` gives a left-to-right pass of the same
weights for an optional autoregressive auxiliary loss.
"""

from typing import Tuple

import torch
from typeguard import typechecked

from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet2.legacy.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet2.legacy.nets.pytorch_backend.transformer.decoder_layer import DecoderLayer
from espnet2.legacy.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet2.legacy.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet2.legacy.nets.pytorch_backend.transformer.repeat import repeat


class DiffusionTransformerDecoder(AbsDecoder):
    """Predicts every canvas position from the (partly masked) canvas and the audio.

    Args:
        vocab_size: number of output tokens (the whole token list, ``<mask>`` included).
        encoder_output_size: width of the (conditioned) encoder output; also the
            decoder's attention width, as in ESPnet's transformer decoder.

    >>> dec = DiffusionTransformerDecoder(vocab_size=7, encoder_output_size=8,
    ...                                   attention_heads=2, linear_units=16, num_blocks=1)
    >>> logits, lens = dec(torch.randn(2, 5, 8), torch.tensor([5, 4]),
    ...                    torch.randint(0, 7, (2, 3)), torch.tensor([3, 2]))
    >>> tuple(logits.shape), lens.tolist()
    ((2, 3, 7), [3, 2])
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 1024,
        num_blocks: int = 3,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        normalize_before: bool = True,
        concat_after: bool = False,
        max_positions: int = 512,
    ):
        super().__init__()
        size = encoder_output_size
        self.vocab_size = vocab_size
        self.embed = torch.nn.Embedding(vocab_size, size)
        # Learned absolute positions, on the same scale as the token embedding.  Every
        # position of a fully masked canvas holds the same token, so position is all that
        # tells them apart; ESPnet's sinusoidal encoding, added to an embedding scaled by
        # sqrt(size), is too weak a signal for that (a 2-block decoder could not learn
        # to fill a single memorised canvas in 300 steps).
        self.position = torch.nn.Embedding(max_positions, size)
        self.embed_dropout = torch.nn.Dropout(positional_dropout_rate)
        self.decoders = repeat(
            num_blocks,
            lambda layer_index: DecoderLayer(
                size,
                MultiHeadedAttention(attention_heads, size, self_attention_dropout_rate),
                MultiHeadedAttention(attention_heads, size, src_attention_dropout_rate),
                PositionwiseFeedForward(size, linear_units, dropout_rate),
                dropout_rate,
                normalize_before,
                concat_after,
            ),
        )
        self.normalize_before = normalize_before
        if normalize_before:
            self.after_norm = LayerNorm(size)
        self.output_layer = torch.nn.Linear(size, vocab_size)

    @property
    def max_positions(self) -> int:
        """Longest canvas (the position table)."""
        return self.position.num_embeddings

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        causal: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits for every canvas position.

        Args:
            hs_pad: [B, T, D] encoder output; hlens: [B].
            ys_in_pad: [B, L] canvas tokens (``<mask>`` where unknown); ys_in_lens: [B].
            causal: attend only to earlier positions (autoregressive pass).

        Returns:
            logits [B, L, vocab_size] and ys_in_lens.
        """
        return self.project(self.hidden(hs_pad, hlens, ys_in_pad, ys_in_lens, causal)), ys_in_lens

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [..., vocab_size] of hidden states [..., D]."""
        return self.output_layer(hidden)

    def hidden(self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_in_pad: torch.Tensor,
               ys_in_lens: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """Final hidden states [B, L, D] of the canvas (before the output layer)."""
        length = ys_in_pad.size(1)
        # [B, 1, L] keys inside the canvas; broadcast over queries (bidirectional).
        tgt_mask = (~make_pad_mask(ys_in_lens, maxlen=length))[:, None, :].to(hs_pad.device)
        if causal:
            tgt_mask = tgt_mask & subsequent_mask(length, device=hs_pad.device).unsqueeze(0)
        memory_mask = (~make_pad_mask(hlens, maxlen=hs_pad.size(1)))[:, None, :].to(hs_pad.device)

        if length > self.position.num_embeddings:
            raise ValueError(
                f"canvas of {length} positions is longer than decoder_conf max_positions="
                f"{self.position.num_embeddings}"
            )
        positions = torch.arange(length, device=ys_in_pad.device)
        x = self.embed_dropout(self.embed(ys_in_pad) + self.position(positions)[None])
        x, _, _, _ = self.decoders(x, tgt_mask, hs_pad, memory_mask)
        if self.normalize_before:
            x = self.after_norm(x)
        return x

    def score(self, ys, state, x):
        """Next-token log-probabilities from a causal pass (ESPnet ScorerInterface).

        Lets ESPnet's beam search use the decoder when it was trained with ``ar_weight``.
        """
        logits, _ = self.forward(
            x.unsqueeze(0),
            torch.tensor([x.size(0)], device=x.device),
            ys.unsqueeze(0),
            torch.tensor([ys.size(0)], device=x.device),
            causal=True,
        )
        return torch.log_softmax(logits[0, -1], dim=-1), None
