"""Whisper's text decoder as a masked-diffusion mask predictor or an autoregressive decoder.

Both start from the converted Whisper weights (``pretrained: true``) or from the same
architecture randomly initialised, and read the token list of ``token_type: whisper_en``
(Whisper's vocabulary plus ``<mask>``).  A fixed prompt of Whisper's special tokens is put
before the canvas, as Whisper's decoder always saw one; it is attended to, never predicted.

- ``decoder: whisper_diffusion``: no causal mask (LLaDA's mask predictor), prompt
  ``<|startoftranscript|><|notimestamps|>``, a ``<mask>`` embedding added (the mean of
  Whisper's embeddings to start with), output tied to the embeddings as in Whisper.
  With ``shift: true`` position i is predicted from the hidden state of position i - 1
  (the prompt's last token predicts the first), as the AR model was trained to do; Dream
  and DiffuLLaMA keep this shift when they turn AR language models into diffusion ones.
- ``decoder: whisper_ar``: causal, prompt ``<|startoftranscript|>``; the model's ``sos``
  is ``<|notimestamps|>`` and ``eos`` is ``<|endoftext|>``, so the sequence is exactly
  Whisper's.  Implements ESPnet's ``BatchScorerInterface`` with a per-layer cache, so
  ESPnet's beam search runs it one new position per step.

Both have the same parameters and read the same token list (``<mask>`` included), so one
starts from the other with ESPnet's ``--init_param <exp>/<model>.pth:decoder:decoder`` (the
diffusion system from the AR system's decoder: asr.sh ``--init_from_ar``).
"""

from typing import Any, List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.legacy.nets.scorer_interface import BatchScorerInterface

from diffasr.whisper.checkpoint import load_whisper
from diffasr.whisper.layers import attend, padding_mask, run_block
from diffasr.whisper.tokenizer import NO_TIMESTAMPS, START, whisper_vocabulary


def _random_init(decoder: torch.nn.Module) -> None:
    """Whisper's architecture with fresh weights (the "randomly initialised" control)."""
    for module in decoder.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
    torch.nn.init.normal_(decoder.token_embedding.weight, std=0.02)
    torch.nn.init.normal_(decoder.positional_embedding, std=0.01)


class WhisperTextDecoder(AbsDecoder):
    """Shared body: Whisper's embeddings, blocks and final norm, with padding masks."""

    prompt_tokens: Tuple[str, ...] = (START, NO_TIMESTAMPS)

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        whisper_model: str = "tiny.en",
        pretrained: bool = True,
        freeze_embeddings: bool = False,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.whisper_model = whisper_model
        decoder = load_whisper(whisper_model).decoder
        if not pretrained:
            _random_init(decoder)
        width = decoder.ln.normalized_shape[0]
        if encoder_output_size != width:
            raise ValueError(f"a Whisper decoder of width {width} needs an encoder output of the same "
                             f"width, got {encoder_output_size}")
        known = decoder.token_embedding.num_embeddings
        if vocab_size < known:
            raise ValueError(f"the token list has {vocab_size} entries, fewer than Whisper's {known}: "
                             "use token_type whisper_en (stage 2)")
        # One embedding for Whisper's tokens and ours (<mask>), which start at the mean
        # of Whisper's embeddings.  It is also the output layer (tied, as in Whisper);
        # freezing it saves most of a CPU step's gradient and optimiser work.
        embedding = torch.nn.Embedding(vocab_size, width)
        with torch.no_grad():
            embedding.weight[:known] = decoder.token_embedding.weight
            embedding.weight[known:] = decoder.token_embedding.weight.mean(0)
        embedding.weight.requires_grad = not freeze_embeddings
        decoder.token_embedding = embedding
        self.decoder = decoder
        vocabulary = whisper_vocabulary()
        self.register_buffer("prompt", torch.tensor([vocabulary.index(t) for t in self.prompt_tokens]),
                             persistent=False)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.vocab_size = vocab_size

    @property
    def max_positions(self) -> int:
        """Longest canvas: Whisper's text positions minus the prompt."""
        return self.decoder.positional_embedding.size(0) - len(self.prompt_tokens)

    def embed(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        positions = self.decoder.positional_embedding[offset: offset + tokens.size(1)]
        return self.dropout(self.decoder.token_embedding(tokens) + positions)

    def hidden(self, memory: torch.Tensor, memory_lengths: torch.Tensor, tokens: torch.Tensor,
               lengths: torch.Tensor, causal: bool = False, keep_prompt: bool = False) -> torch.Tensor:
        """Final hidden states [B, L, D] of the canvas/sequence (the prompt's dropped unless kept)."""
        if tokens.size(1) > self.max_positions:
            raise ValueError(f"{tokens.size(1)} positions exceed the Whisper decoder's {self.max_positions}")
        prompt = self.prompt.expand(tokens.size(0), -1)
        x = self.embed(torch.cat([prompt, tokens], dim=1), offset=0)
        pad = padding_mask(lengths + prompt.size(1), x.size(1))
        memory_pad = padding_mask(memory_lengths, memory.size(1))
        for block in self.decoder.blocks:
            x = run_block(block, x, pad, memory, memory_pad, causal=causal)
        x = self.decoder.ln(x)
        return x if keep_prompt else x[:, prompt.size(1):]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from hidden states: the output layer is tied to the embeddings (Whisper)."""
        return hidden @ self.decoder.token_embedding.weight.t()


class WhisperDiffusionDecoder(WhisperTextDecoder):
    """Bidirectional mask predictor over the canvas (``decoder: whisper_diffusion``).

    Same interface as ``DiffusionTransformerDecoder``: ``forward`` returns logits for
    every canvas position; ``hidden``/``project`` let the loss project only masked ones.
    """

    def __init__(self, vocab_size: int, encoder_output_size: int, shift: bool = True, **kwargs):
        super().__init__(vocab_size, encoder_output_size, **kwargs)
        self.shift = shift

    def hidden(self, memory, memory_lengths, tokens, lengths, causal: bool = False):
        """Hidden states [B, L, D] that predict the canvas positions (shifted by one with ``shift``)."""
        states = super().hidden(memory, memory_lengths, tokens, lengths, causal=causal, keep_prompt=self.shift)
        return states[:, len(self.prompt_tokens) - 1: -1] if self.shift else states

    def forward(self, hs_pad, hlens, ys_in_pad, ys_in_lens, causal: bool = False):
        return self.project(self.hidden(hs_pad, hlens, ys_in_pad, ys_in_lens, causal=causal)), ys_in_lens


class WhisperARDecoder(WhisperTextDecoder, BatchScorerInterface):
    """Causal decoder for ESPnet's attention model and beam search (``decoder: whisper_ar``)."""

    prompt_tokens = (START,)

    def forward(self, hs_pad, hlens, ys_in_pad, ys_in_lens):
        return self.project(self.hidden(hs_pad, hlens, ys_in_pad, ys_in_lens, causal=True)), ys_in_lens

    def batch_score(self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor) -> Tuple[torch.Tensor, List[Any]]:
        """Next-token log-probabilities of the prefixes ``ys`` [n, L] given ``xs`` [n, T, D].

        A state holds, per layer, that layer's inputs at the positions decoded so far, so
        each step computes one new position.
        """
        prompt_length = len(self.prompt_tokens)
        if states[0] is None:  # first step: run the prompt and the prefix
            tokens = torch.cat([self.prompt.expand(ys.size(0), -1), ys], dim=1)
            x, cache = self.embed(tokens, offset=0), [None] * len(self.decoder.blocks)
        else:
            x = self.embed(ys[:, -1:], offset=prompt_length + ys.size(1) - 1)
            cache = [torch.stack([s[i] for s in states]) for i in range(len(self.decoder.blocks))]
        new_cache = []
        for i, block in enumerate(self.decoder.blocks):
            full = x if cache[i] is None else torch.cat([cache[i], x], dim=1)
            new_cache.append(full)
            causal = cache[i] is None and x.size(1) > 1
            keys = block.attn_ln(full)
            query = keys[:, -x.size(1):]
            x = x + attend(block.attn, query, keys, causal=causal)
            x = x + attend(block.cross_attn, block.cross_attn_ln(x), xs)
            x = x + block.mlp(block.mlp_ln(x))
        logp = torch.log_softmax(self.project(self.decoder.ln(x[:, -1])).float(), dim=-1)
        return logp, [[c[b] for c in new_cache] for b in range(ys.size(0))]

    def score(self, ys, state, x):
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp[0], states[0]
