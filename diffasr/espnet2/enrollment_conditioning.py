"""How the enrollment's frames condition the trainable layers of the Whisper encoder.

Each kind acts at every *conditioning point*: before each trainable Whisper block and
before the adapter (``WhisperEncoder``).  The enrollment arrives as the frozen
encoder's frames of the enrollment utterance, pooled; the mixture frames are changed
so that the layers above can pick out the enrolled voice.

- ``cross_attention`` (SE-DiCoW's gated cross-attention): the mixture frames attend to
  the enrollment frames, ``x + tanh(gate) * attention(LN(x), enrollment)``, the gate
  starting at 0, so that the encoder starts as the unconditioned one.
- ``frame_transform`` (DiCoW's frame-level transforms, with the class of each frame
  read from its similarity to the enrollment instead of a diarization): a target
  probability ``p_t`` per frame from the cosine similarity of learned projections of
  the frame and of the enrollment's mean frame; each point scales and shifts a frame by
  ``p_t`` of the target transform and ``1 - p_t`` of the non-target one, both starting
  as the identity (scale 1, bias 0).

(The third kind, ``prefix``, puts the enrollment frames before the mixture's in the
sequence itself; ``WhisperEncoder`` does that, as it changes the sequence.)
"""

from typing import Optional

import torch


class GatedCrossAttention(torch.nn.Module):
    """Cross-attention from the mixture to the enrollment at each point, gates closed at first.

    >>> layer = GatedCrossAttention(width=8, num_points=2, heads=2)
    >>> x, e = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    >>> bool(torch.equal(layer(0, x, e, torch.zeros(1, 3, dtype=torch.bool)), x))
    True
    """

    def __init__(self, width: int, num_points: int, heads: int = 4):
        super().__init__()
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(width) for _ in range(num_points))
        self.attentions = torch.nn.ModuleList(
            torch.nn.MultiheadAttention(width, heads, batch_first=True) for _ in range(num_points))
        self.gates = torch.nn.Parameter(torch.zeros(num_points))

    def forward(self, point: int, x: torch.Tensor, enroll: torch.Tensor, enroll_pad: torch.Tensor,
                frame_target: Optional[torch.Tensor] = None) -> torch.Tensor:
        attended, _ = self.attentions[point](self.norms[point](x), enroll, enroll, key_padding_mask=enroll_pad,
                                             need_weights=False)
        return x + torch.tanh(self.gates[point]) * attended

    def frame_target(self, x, x_pad, enroll, enroll_pad) -> None:
        return None


class FrameTransform(torch.nn.Module):
    """Per-frame target/non-target scale and bias, mixed by the frame's similarity to the enrollment.

    >>> layer = FrameTransform(width=8, num_points=2)
    >>> x, e = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    >>> pad, epad = torch.zeros(1, 5, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool)
    >>> p = layer.frame_target(x, pad, e, epad)
    >>> tuple(p.shape), bool(torch.equal(layer(1, x, e, epad, p), x))
    ((1, 5, 1), True)
    """

    def __init__(self, width: int, num_points: int, speaker_dim: int = 128):
        super().__init__()
        self.project = torch.nn.Linear(width, speaker_dim)
        # cosine similarity -> logit of "this frame is the target's"
        self.similarity_scale = torch.nn.Parameter(torch.tensor(5.0))
        self.similarity_bias = torch.nn.Parameter(torch.tensor(0.0))
        # [point, class (target, other), width]: scale - 1 and bias, both 0 (the identity)
        self.scale = torch.nn.Parameter(torch.zeros(num_points, 2, width))
        self.bias = torch.nn.Parameter(torch.zeros(num_points, 2, width))

    def frame_target(self, x: torch.Tensor, x_pad: torch.Tensor, enroll: torch.Tensor,
                     enroll_pad: torch.Tensor) -> torch.Tensor:
        """Probability [B, T, 1] that each mixture frame is the enrolled speaker's."""
        keep = (~enroll_pad).unsqueeze(-1).to(enroll.dtype)
        voice = (enroll * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        similarity = torch.nn.functional.cosine_similarity(
            self.project(x), self.project(voice).unsqueeze(1), dim=-1)
        return torch.sigmoid(self.similarity_scale * similarity + self.similarity_bias).unsqueeze(-1)

    def forward(self, point: int, x: torch.Tensor, enroll: torch.Tensor, enroll_pad: torch.Tensor,
                frame_target: Optional[torch.Tensor] = None) -> torch.Tensor:
        p = frame_target
        scale = 1.0 + p * self.scale[point, 0] + (1.0 - p) * self.scale[point, 1]
        return x * scale + p * self.bias[point, 0] + (1.0 - p) * self.bias[point, 1]


CONDITIONING = {"cross_attention": GatedCrossAttention, "frame_transform": FrameTransform}
