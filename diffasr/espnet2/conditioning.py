"""Speaker conditioning of the encoder output from an enrollment embedding.

A conditioner maps ``(encoder_out [B, T, D], encoder_out_lens [B], enroll_embed [B, E])``
to a conditioned ``(encoder_out', encoder_out_lens')`` that both the CTC head and the
diffusion decoder read, so that they transcribe the enrolled (target) speaker.
"""

import contextlib
from abc import ABC, abstractmethod
from typing import Iterator, Tuple

import torch


class AbsSpeakerConditioner(torch.nn.Module, ABC):
    """Conditions encoder frames on a per-utterance speaker embedding.

    ``position`` is ``encoder_output`` (``forward`` is applied to the encoder output)
    or ``encoder_input`` (the conditioner is attached inside the encoder).
    """

    position = "encoder_output"

    def __init__(self, encoder_output_size: int, embed_dim: int, normalize_embed: bool = True):
        super().__init__()
        self.encoder_output_size = encoder_output_size
        self.embed_dim = embed_dim
        # Speaker embeddings (ECAPA, d-vectors) differ in scale between extractors;
        # only the direction carries identity, so unit length keeps the projection tame.
        self.normalize_embed = normalize_embed

    def _prepare(self, encoder_out: torch.Tensor, enroll_embed: torch.Tensor) -> torch.Tensor:
        if enroll_embed.dim() != 2 or enroll_embed.size(1) != self.embed_dim:
            raise ValueError(
                f"enroll_embed must be [batch, {self.embed_dim}] (embed_dim of "
                f"spk_conditioner_conf), got {tuple(enroll_embed.shape)}"
            )
        if enroll_embed.size(0) != encoder_out.size(0):
            raise ValueError(
                f"enroll_embed has {enroll_embed.size(0)} rows for a batch of "
                f"{encoder_out.size(0)} utterances"
            )
        embed = enroll_embed.to(encoder_out.dtype)
        if self.normalize_embed:
            embed = torch.nn.functional.normalize(embed, dim=-1)
        return embed

    @abstractmethod
    def forward(
        self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor, enroll_embed: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class FiLMConditioner(AbsSpeakerConditioner):
    """Feature-wise linear modulation: ``h * (1 + scale(e)) + shift(e)`` per channel.

    ``position`` says which frames are modulated:
    - ``encoder_input`` (default): the output of the encoder's input layer (after
      subsampling), so every encoder block can use the speaker to pick out the
      target, as SpeakerBeam's adaptation layer does. Applied by a forward hook on
      ``encoder.embed`` for the duration of one encoder call (``attached_to``).
    - ``encoder_output``: the encoder output that CTC and the decoder read.

    The projection starts at zero, so an untrained conditioner is the identity and
    training starts from a plain ASR model.

    >>> film = FiLMConditioner(encoder_output_size=4, embed_dim=3, position="encoder_output")
    >>> out, lens = film(torch.ones(2, 5, 4), torch.tensor([5, 3]), torch.randn(2, 3))
    >>> tuple(out.shape), lens.tolist()
    ((2, 5, 4), [5, 3])
    """

    POSITIONS = ("encoder_input", "encoder_output")

    def __init__(self, encoder_output_size: int, embed_dim: int, normalize_embed: bool = True,
                 position: str = "encoder_input"):
        super().__init__(encoder_output_size, embed_dim, normalize_embed)
        if position not in self.POSITIONS:
            raise ValueError(f"spk_conditioner_conf position must be one of {self.POSITIONS}, got {position!r}")
        self.position = position
        self.projection = torch.nn.Linear(embed_dim, 2 * encoder_output_size)
        torch.nn.init.zeros_(self.projection.weight)
        torch.nn.init.zeros_(self.projection.bias)

    def modulate(self, frames: torch.Tensor, enroll_embed: torch.Tensor) -> torch.Tensor:
        embed = self._prepare(frames, enroll_embed)
        scale, shift = self.projection(embed).unsqueeze(1).chunk(2, dim=-1)
        return frames * (1.0 + scale) + shift

    def forward(self, encoder_out, encoder_out_lens, enroll_embed):
        return self.modulate(encoder_out, enroll_embed), encoder_out_lens

    @contextlib.contextmanager
    def attached_to(self, input_layer: torch.nn.Module, enroll_embed: torch.Tensor) -> Iterator[None]:
        """Modulate the output of ``input_layer`` (ESPnet's ``encoder.embed``) while inside.

        ESPnet input layers return ``x`` (linear), ``(x, mask)`` (subsampling), or
        ``((x, pos_emb), mask)`` with relative positional encodings; only ``x`` is modulated.
        """

        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                return self.modulate(output, enroll_embed)
            xs, mask = output
            if isinstance(xs, tuple):
                return (self.modulate(xs[0], enroll_embed), *xs[1:]), mask
            return self.modulate(xs, enroll_embed), mask

        handle = input_layer.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


class PrependConditioner(AbsSpeakerConditioner):
    """The projected embedding becomes an extra leading frame of the encoder output.

    The decoder's cross-attention can then attend to the speaker like to any frame.

    >>> prepend = PrependConditioner(encoder_output_size=4, embed_dim=3)
    >>> out, lens = prepend(torch.ones(2, 5, 4), torch.tensor([5, 3]), torch.randn(2, 3))
    >>> tuple(out.shape), lens.tolist()
    ((2, 6, 4), [6, 4])
    """

    def __init__(self, encoder_output_size: int, embed_dim: int, normalize_embed: bool = True):
        super().__init__(encoder_output_size, embed_dim, normalize_embed)
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(embed_dim, encoder_output_size),
            torch.nn.LayerNorm(encoder_output_size),
        )

    def forward(self, encoder_out, encoder_out_lens, enroll_embed):
        speaker_frame = self.projection(self._prepare(encoder_out, enroll_embed)).unsqueeze(1)
        # Padding stays at the end because every utterance gains the same leading frame.
        return torch.cat([speaker_frame, encoder_out], dim=1), encoder_out_lens + 1
