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
  the frame and of the enrollment's mean frame, or (``detector_layers`` > 0) from a small
  target-speaker voice-activity detector (``ActivityDetector``, TS-VAD); each point scales
  and shifts a frame by ``p_t`` of the target transform and ``1 - p_t`` of the non-target
  one, both starting as the identity (scale 1, bias 0).

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


def pooled_voice(enroll: torch.Tensor, enroll_pad: torch.Tensor):
    """Mean and standard deviation [B, D] of each enrollment's unpadded frames."""
    keep = (~enroll_pad).unsqueeze(-1).to(enroll.dtype)
    count = keep.sum(dim=1).clamp(min=1.0)
    mean = (enroll * keep).sum(dim=1) / count
    std = ((((enroll - mean.unsqueeze(1)) ** 2) * keep).sum(dim=1) / count).clamp(min=1e-6).sqrt()
    return mean, std


class ActivityDetector(torch.nn.Module):
    """Target-speaker voice activity (TS-VAD): the probability [B, T, 1] that the enrolled
    voice speaks in each mixture frame.

    The enrollment's frames are pooled into their mean and standard deviation (who speaks,
    not what), which scale and shift the projected mixture frames (FiLM); a few
    transformer layers then compare each frame with its context, the way a voice is told
    apart in an overlap: by what it sounds like where it is alone.  A linear cosine of
    frame and enrollment (``FrameTransform``'s default) sees one frame at a time.

    >>> d = ActivityDetector(width=8, dim=8, layers=1, heads=2)
    >>> x, e = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    >>> pad, epad = torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)
    >>> tuple(d(x, pad, e, epad).shape)
    (2, 5, 1)
    """

    def __init__(self, width: int, dim: int = 192, layers: int = 2, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.frames = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, dim))
        self.voice = torch.nn.Sequential(torch.nn.LayerNorm(2 * width), torch.nn.Linear(2 * width, 2 * dim))
        layer = torch.nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, batch_first=True,
                                                 norm_first=True)
        self.context = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor, x_pad: torch.Tensor, enroll: torch.Tensor,
                enroll_pad: torch.Tensor) -> torch.Tensor:
        mean, std = pooled_voice(enroll, enroll_pad)
        scale, shift = self.voice(torch.cat([mean, std], dim=-1)).unsqueeze(1).chunk(2, dim=-1)
        h = self.frames(x) * (1.0 + scale) + shift
        h = self.context(h, src_key_padding_mask=x_pad)
        return torch.sigmoid(self.out(h))


class FrameTransform(torch.nn.Module):
    """Per-frame target/non-target scale and bias, mixed by the frame's similarity to the enrollment.

    >>> layer = FrameTransform(width=8, num_points=2)
    >>> x, e = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    >>> pad, epad = torch.zeros(1, 5, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool)
    >>> p = layer.frame_target(x, pad, e, epad)
    >>> tuple(p.shape), bool(torch.equal(layer(1, x, e, epad, p), x))
    ((1, 5, 1), True)
    """

    def __init__(self, width: int, num_points: int, speaker_dim: int = 128, detector_layers: int = 0,
                 detector_dim: int = 192):
        super().__init__()
        if detector_layers < 0:
            raise ValueError(f"conditioning_conf detector_layers must be >= 0, got {detector_layers}")
        self.detector = ActivityDetector(width, detector_dim, detector_layers) if detector_layers > 0 else None
        if self.detector is None:
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
        if self.detector is not None:
            return self.detector(x, x_pad, enroll, enroll_pad)
        voice, _ = pooled_voice(enroll, enroll_pad)
        similarity = torch.nn.functional.cosine_similarity(
            self.project(x), self.project(voice).unsqueeze(1), dim=-1)
        return torch.sigmoid(self.similarity_scale * similarity + self.similarity_bias).unsqueeze(-1)

    def forward(self, point: int, x: torch.Tensor, enroll: torch.Tensor, enroll_pad: torch.Tensor,
                frame_target: Optional[torch.Tensor] = None) -> torch.Tensor:
        p = frame_target
        scale = 1.0 + p * self.scale[point, 0] + (1.0 - p) * self.scale[point, 1]
        return x * scale + p * self.bias[point, 0] + (1.0 - p) * self.bias[point, 1]


CONDITIONING = {"cross_attention": GatedCrossAttention, "frame_transform": FrameTransform}
