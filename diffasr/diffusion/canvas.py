"""The canvas: the fixed-length sequence a masked-diffusion decoder fills in.

Utterance ``b`` owns positions ``0 .. canvas_lengths[b] - 1``: its transcript,
then ``end_id`` fill up to the canvas length.  Positions beyond hold ``pad_id``;
they are never masked, never predicted and ignored by the loss.
"""

from dataclasses import dataclass, replace
from typing import List, Optional, Tuple, Union

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


def check_schedule(length: int, steps: int, block_length: int) -> int:
    """The number of blocks of a semi-AR schedule, or a ValueError naming values that work.

    >>> check_schedule(8, 4, 4)
    2
    """
    if block_length < 1 or length % block_length != 0:
        divisors = [d for d in range(1, length + 1) if length % d == 0]
        raise ValueError(f"block_length={block_length} does not divide the canvas length {length}; "
                         f"use one of {divisors}")
    num_blocks = length // block_length
    if steps < num_blocks or steps % num_blocks != 0:
        raise ValueError(f"steps={steps} is not a multiple of the {num_blocks} blocks (canvas {length} / "
                         f"block_length {block_length}); use steps = {num_blocks}, {2 * num_blocks}, "
                         f"{3 * num_blocks}, ...")
    return num_blocks


CANVAS_MODES = ("fixed", "dynamic", "duration", "length")
MARGIN_DRAWS = ("fixed", "uniform")
# What sizes a canvas at inference, per mode (None: nothing, it has a fixed length).
LENGTH_SOURCES = dict(fixed=None, dynamic="ctc", duration="duration", length="length_head")


@dataclass(frozen=True)
class CanvasPolicy:
    """How long each canvas is, what fills it and how the steps divide over it.

    The one place that training (``training_canvas``), decoding (``decoding_lengths``,
    ``schedule``) and the API (``check_request``) read; a model holds the policy it was
    trained with, a decode applies its overrides with ``overridden``.

    - ``fixed``: ``length`` positions for every utterance;
    - ``dynamic``: transcript + ``margin`` in training, CTC greedy length + ``margin``
      at inference (at most ``length``);
    - ``length``: the same, sized at inference by a length head;
    - ``duration``: ``ceil(rate * seconds) + margin`` in training (never shorter than
      the transcript) and at inference alike.

    Every position after the transcript holds the end token (``end_id``).  A sized
    canvas's training margin is ``margin`` end tokens (``margin_draw: fixed``) or a number
    drawn per utterance from ``0 .. margin`` (``uniform``): then the canvas length no
    longer says where the transcript ends, and the decoder learns to write end tokens into
    whatever surplus an over-allocated canvas has at inference (Whisfusion's and Drax's
    end-filled canvases).  ``decode_margin`` is the inference margin when it differs from
    the training one (a drawn surplus of 0..6 decodes best with a margin chosen on dev);
    None: ``margin``.  A decode's ``canvas_decode_margin`` overrides it.  (In ``model_conf``
    these are ``canvas_train_margin``, ``canvas_margin_draw`` and ``canvas_decode_margin``.)

    >>> policy = CanvasPolicy("dynamic", length=10, margin=2)
    >>> policy.decoding_lengths(predicted=torch.tensor([0, 3, 50])).tolist()
    [2, 5, 10]
    >>> CanvasPolicy("length", length=40, margin=1).schedule(width=5, steps=4, block_length=4)
    (8, 4)
    """

    mode: str = "dynamic"
    length: int = 64  # fixed: every canvas; otherwise the longest
    margin: int = 4
    rate: float = 5.0  # duration: positions per second of audio
    margin_draw: str = "fixed"  # training margin of a sized canvas: fixed or uniform in 0..margin
    decode_margin: Optional[int] = None  # inference margin; None: margin

    def __post_init__(self):
        if self.mode not in CANVAS_MODES:
            raise ValueError(f"canvas must be one of {CANVAS_MODES}, got {self.mode!r}")
        if self.length < 1:
            raise ValueError(f"canvas_length must be >= 1, got {self.length}")
        if self.margin < 0:
            raise ValueError(f"canvas_train_margin must be >= 0, got {self.margin}")
        if self.rate <= 0:
            raise ValueError(f"canvas_rate must be > 0, got {self.rate}")
        if self.margin_draw not in MARGIN_DRAWS:
            raise ValueError(f"canvas_margin_draw must be one of {MARGIN_DRAWS}, got {self.margin_draw!r}")
        if self.decode_margin is not None and self.decode_margin < 0:
            raise ValueError(f"canvas_decode_margin must be >= 0, got {self.decode_margin}")

    @property
    def inference_margin(self) -> int:
        """End-filled positions added to a predicted length at inference."""
        return self.margin if self.decode_margin is None else self.decode_margin

    @property
    def length_source(self) -> Optional[str]:
        """What sizes a canvas at inference: ``ctc``, ``length_head``, ``duration`` or None."""
        return LENGTH_SOURCES[self.mode]

    def overridden(self, mode: Optional[str] = None, length: Optional[int] = None,
                   margin: Optional[int] = None) -> "CanvasPolicy":
        """This policy with a decode's options; None keeps the trained value.  ``margin``
        is the inference margin (the training one is history by then)."""
        given = dict(mode=mode, length=length, decode_margin=margin)
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    def duration_lengths(self, seconds: torch.Tensor, max_length: int, margin: int) -> torch.Tensor:
        """``ceil(rate * seconds) + margin`` positions, at most ``max_length``."""
        return canvas_lengths_from_predicted(torch.ceil(self.rate * seconds), margin, max_length)

    def training_canvas(self, text: torch.Tensor, text_lengths: torch.Tensor, end_id: int,
                        seconds: Optional[torch.Tensor] = None, max_length: Optional[int] = None,
                        names: Optional[List[str]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The training canvases [B, L] and lengths [B] of transcripts ``text`` [B, U].

        Padding beyond a canvas is ``end_id`` too, so that an embedding lookup stays in
        range; the decoder's key mask and the loss never look at it.  ``names`` (the
        utterance keys) name a transcript too long for a fixed canvas.
        """
        if self.mode == "duration":
            if seconds is None:
                raise ValueError("canvas: duration needs the audio durations")
            lengths = self.duration_lengths(seconds, max_length or self.length, self.margin)
            return build_canvas(text, text_lengths, end_id, end_id, margin=(lengths - text_lengths).clamp(min=0))
        if self.mode == "fixed":
            too_long = (text_lengths > self.length).nonzero()
            if too_long.numel() > 0:
                index = int(too_long[0])
                name = f"utterance '{names[index]}'" if names else f"utterance #{index} of the batch"
                raise ValueError(f"{name} has {int(text_lengths[index])} tokens, more than "
                                 f"canvas_length={self.length}; raise model_conf canvas_length "
                                 "or use canvas: dynamic")
            return build_canvas(text, text_lengths, end_id, end_id, canvas_length=self.length)
        return build_canvas(text, text_lengths, end_id, end_id, margin=self.training_margins(text.size(0)))

    def training_margins(self, batch: int) -> torch.Tensor:
        """End-filled positions after each of ``batch`` transcripts of a sized training canvas."""
        if self.margin_draw == "uniform":
            return torch.randint(0, self.margin + 1, (batch,))
        return torch.full((batch,), self.margin, dtype=torch.long)

    def decoding_lengths(self, batch: Optional[int] = None, predicted: Optional[torch.Tensor] = None,
                         seconds: Optional[torch.Tensor] = None, max_length: Optional[int] = None) -> torch.Tensor:
        """Canvas lengths [B] at inference: from ``predicted`` transcript lengths (CTC or
        the length head), the audio ``seconds`` (duration) or nothing (fixed: ``batch``)."""
        source = self.length_source
        if source is None:
            if batch is None:
                raise ValueError("a fixed canvas needs the batch size")
            return torch.full((batch,), self.length, dtype=torch.long)
        if source == "duration":
            if seconds is None:
                raise ValueError("canvas: duration needs the audio durations")
            return self.duration_lengths(seconds, max_length or self.length, self.inference_margin)
        if predicted is None:
            raise ValueError(f"canvas: {self.mode} needs the predicted lengths ({source})")
        return canvas_lengths_from_predicted(predicted, self.inference_margin, self.length)

    def cut_to_maximum(self, predicted: torch.Tensor, lengths: torch.Tensor) -> List[Tuple[int, int]]:
        """``(index, wanted length)`` of each utterance whose canvas, ``predicted`` + margin,
        ``decoding_lengths`` cut to ``lengths`` (the canvas maximum).

        >>> CanvasPolicy("length", length=6, margin=2).cut_to_maximum(torch.tensor([3, 9]), torch.tensor([5, 6]))
        [(1, 11)]
        """
        wanted = predicted.long().to(lengths.device) + self.inference_margin
        return [(b, int(wanted[b])) for b in (wanted > lengths).nonzero().flatten().tolist()]

    def check_candidates(self, count: int) -> None:
        """Refuse a number of candidate lengths that this policy cannot decode."""
        if count < 1:
            raise ValueError(f"candidates must be >= 1, got {count}")
        if count > 1 and self.mode == "fixed":
            raise ValueError("candidates > 1 need a sized canvas (canvas: length, dynamic or duration); "
                             "a fixed canvas has one length")

    def candidate_lengths(self, lengths: torch.Tensor, count: int, max_length: int) -> torch.Tensor:
        """``count`` canvas lengths per utterance [B, count], centred on ``lengths``:
        L-1, L, L+1 for 3 (L-2 ... L+2 for 5), each within ``[1, max_length]``, so that one
        batch tries the lengths around an estimate that may be off by a few tokens.

        >>> CanvasPolicy("length", length=6).candidate_lengths(torch.tensor([3, 6]), 3, 6).tolist()
        [[2, 3, 4], [5, 6, 6]]
        """
        self.check_candidates(count)
        offsets = torch.arange(count, device=lengths.device) - count // 2
        return (lengths[:, None] + offsets).clamp(min=1, max=max_length)

    def schedule(self, width: int, steps: int, block_length: Optional[int]) -> Tuple[int, int]:
        """The canvas width and number of steps a batch decodes with.

        One block: as given.  Semi-AR blocks on a sized canvas: the width rounded up to
        whole blocks (the extra positions are end fill) and the steps up to a multiple
        of the blocks, since a sized canvas varies per batch.  A fixed canvas is taken
        as given; the sampler names values that work when the blocks do not divide it.
        """
        if block_length is None or self.mode == "fixed":
            return width, steps
        width = -(-width // block_length) * block_length
        num_blocks = width // block_length
        return width, -(-steps // num_blocks) * num_blocks

    def check_request(self, steps: int, block_length: Optional[int], max_length: int) -> None:
        """Refuse, before any audio is read, steps or blocks that no canvas of this policy can take."""
        if not 1 <= steps <= max_length:
            raise ValueError(f"steps must be between 1 and the canvas length {max_length}, got {steps}")
        if block_length is None:
            return
        if not 1 <= block_length <= max_length:
            raise ValueError(f"block_length must be between 1 and the canvas length {max_length}, "
                             f"got {block_length}")
        if self.mode == "fixed":
            check_schedule(self.length, steps, block_length)
