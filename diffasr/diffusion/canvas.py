"""The canvas: the fixed-length sequence a masked-diffusion decoder fills in.

Utterance ``b`` owns positions ``0 .. canvas_lengths[b] - 1``: its transcript,
then ``end_id`` fill up to the canvas length.  Positions beyond hold ``pad_id``;
they are never masked, never predicted and ignored by the loss.
"""

from typing import Optional, Tuple, Union

import torch

IGNORE_ID = -1  # ESPnet's padding value for ys_pad


def build_canvas(
    ys_pad: torch.Tensor,
    ys_lens: torch.Tensor,
    end_id: int,
    pad_id: int,
    canvas_length: Optional[int] = None,
    margin: Union[int, torch.Tensor] = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Place transcripts on canvases filled with ``end_id``.

    Args:
        ys_pad: [B, U] token ids, ``-1`` (ESPnet's ignore_id) beyond ``ys_lens``.
        ys_lens: [B] transcript lengths.
        end_id: id that fills the canvas after the transcript (``<sos/eos>``).
        pad_id: id written beyond each canvas (only with dynamic canvases).
        canvas_length: fixed canvas length for every utterance, or None for a
            dynamic canvas of ``ys_len + margin`` positions (at least 1).
        margin: extra end-filled positions of a dynamic canvas (an int, or [B] per utterance).

    Returns:
        canvas [B, L] and canvas_lengths [B].

    >>> canvas, lengths = build_canvas(torch.tensor([[5, 6], [7, -1]]),
    ...                                torch.tensor([2, 1]), end_id=9, pad_id=-1,
    ...                                margin=1)
    >>> canvas.tolist(), lengths.tolist()
    ([[5, 6, 9], [7, 9, -1]], [3, 2])
    """
    if ys_pad.dim() != 2 or ys_lens.dim() != 1 or ys_pad.size(0) != ys_lens.size(0):
        raise ValueError(
            f"expected ys_pad [B, U] and ys_lens [B], got {tuple(ys_pad.shape)} "
            f"and {tuple(ys_lens.shape)}"
        )
    if (torch.as_tensor(margin) < 0).any():
        raise ValueError(f"margin must be >= 0, got {margin}")
    ys_lens = ys_lens.to(device=ys_pad.device, dtype=torch.long)
    positions = torch.arange(ys_pad.size(1), device=ys_pad.device)
    negative = ((ys_pad < 0) & (positions < ys_lens[:, None])).any(dim=1)
    if negative.any():
        index = int(negative.nonzero()[0])
        raise ValueError(
            f"utterance {index} of the batch has a negative token id within its "
            f"length {int(ys_lens[index])}: {ys_pad[index].tolist()}"
        )
    if canvas_length is not None:
        if canvas_length < 1:
            raise ValueError(f"canvas_length must be >= 1, got {canvas_length}")
        too_long = (ys_lens > canvas_length).nonzero()
        if too_long.numel() > 0:
            index = int(too_long[0])
            raise ValueError(
                f"utterance {index} of the batch has {int(ys_lens[index])} tokens, "
                f"more than canvas_length={canvas_length}; raise canvas_length"
            )
        canvas_lengths = torch.full_like(ys_lens, canvas_length)
    else:
        # Never an empty canvas: the loss divides by the canvas length.
        canvas_lengths = (ys_lens + margin).clamp(min=1)
    width = int(canvas_lengths.max()) if canvas_lengths.numel() > 0 else 0

    positions = torch.arange(width, device=ys_pad.device)
    tokens = ys_pad[:, :width]
    if tokens.size(1) < width:
        tokens = torch.nn.functional.pad(tokens, (0, width - tokens.size(1)), value=IGNORE_ID)
    canvas = torch.where(positions < canvas_lengths[:, None], end_id, pad_id)
    canvas = torch.where(positions < ys_lens[:, None], tokens, canvas)
    return canvas.long(), canvas_lengths


def canvas_lengths_from_predicted(
    pred_lengths: torch.Tensor, margin: int, max_length: int, min_length: int = 1
) -> torch.Tensor:
    """Inference canvas lengths from predicted transcript lengths (CTC or a length head).

    ``margin`` end-filled positions are added so that an under-estimate can still
    be recovered; the result is clamped to ``[min_length, max_length]``.

    >>> canvas_lengths_from_predicted(torch.tensor([0, 3, 50]), margin=2, max_length=10).tolist()
    [2, 5, 10]
    """
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    return (pred_lengths.long() + margin).clamp(min=min_length, max=max_length)
