"""A length head: how many tokens the transcript has, from the encoder output.

The diffusion decoder of ``canvas: length`` is trained on exact canvases (transcript +
end token), so at inference something must say how long the canvas is; this head does,
trained beside the decoder (``model_conf length_weight``).
"""

from typing import Tuple

import torch


class LengthPredictor(torch.nn.Module):
    """Transcript length in tokens from the encoder output.

    Attention pooling of the frames, with the log frame count beside it (pooling alone
    forgets how long the audio is), then an MLP regressing the log length.
    """

    def __init__(self, size: int, hidden: int = 256):
        super().__init__()
        self.attention = torch.nn.Linear(size, 1)
        self.regressor = torch.nn.Sequential(
            torch.nn.Linear(size + 1, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor) -> torch.Tensor:
        """Predicted log length [B]."""
        pad = torch.arange(encoder_out.size(1), device=encoder_out.device)[None] >= encoder_out_lens[:, None]
        weights = self.attention(encoder_out).squeeze(-1).masked_fill(pad, float("-inf")).softmax(dim=-1)
        pooled = (weights.unsqueeze(-1) * encoder_out).sum(dim=1)
        frames = encoder_out_lens.float().clamp(min=1).log().unsqueeze(-1)
        return self.regressor(torch.cat([pooled, frames], dim=-1)).squeeze(-1)

    def loss(self, encoder_out, encoder_out_lens, text_lengths) -> Tuple[torch.Tensor, torch.Tensor]:
        """Smooth L1 on the log length, and the mean absolute error in tokens."""
        predicted = self(encoder_out, encoder_out_lens)
        target = text_lengths.float().clamp(min=1).log()
        error = (predicted.detach().exp() - text_lengths.float()).abs().mean()
        return torch.nn.functional.smooth_l1_loss(predicted, target, beta=0.1), error

    def predict(self, encoder_out, encoder_out_lens) -> torch.Tensor:
        return self(encoder_out, encoder_out_lens).exp().round().long()
