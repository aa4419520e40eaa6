"""Masked-diffusion decoding: iterative unmasking and deliberation of a hypothesis.

``denoise(tokens [B, L]) -> logits [B, L, V]`` is a closure supplied by the model
(it already holds the encoder output and speaker conditioning).
"""

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch

from diffasr.diffusion.canvas import check_schedule
from diffasr.diffusion.options import DELIBERATION_MASKING, END_COMMITS, REMASKING

Denoiser = Callable[[torch.Tensor], torch.Tensor]
# Where the sampler's random draws come from: torch's global generator (None), one
# generator for the whole batch, or one per utterance (row): see ``uniform``.
Generators = Union[None, torch.Generator, Sequence[torch.Generator]]


def check_generators(generator: Generators, batch: int) -> None:
    """A per-utterance sequence of generators must have one per row."""
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != batch:
        raise ValueError(f"{len(generator)} generators for a batch of {batch} utterances; give one per utterance")


def clone_generator(generator: torch.Generator) -> torch.Generator:
    """A new generator in the same state (it then draws the same numbers)."""
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def uniform(generator: Generators, lengths: torch.Tensor, width: int, *trailing: int,
            rows: Optional[torch.Tensor] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) noise [B, width, *trailing] for the sampler's random choices.

    None or one ``torch.Generator``: the whole tensor at once (torch's global generator or
    that one).  A sequence of generators, one per row: each row draws from its own, only
    if ``rows[b]`` (default: every row) and only its own ``lengths[b]`` positions (the rest
    of the row is 0.5, never a candidate), so that what an utterance draws depends on that
    utterance alone, not on the batch it is decoded in or the utterances before it.
    """
    batch, device = lengths.size(0), lengths.device
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(batch, width, *trailing, generator=generator, device=device, dtype=dtype)
    check_generators(generator, batch)
    noise = torch.full((batch, width, *trailing), 0.5, device=device, dtype=dtype)
    drawing = [True] * batch if rows is None else rows.tolist()
    for b, (own, n, draw) in enumerate(zip(generator, lengths.clamp(max=width).tolist(), drawing)):
        if draw and n > 0:
            noise[b, :n] = torch.rand(n, *trailing, generator=own, device=own.device, dtype=dtype).to(device)
    return noise


@dataclass
class SamplerOutput:
    """Decoded canvases and per-position diagnostics, all [B, L].

    tokens: final tokens.
    confidence: softmax probability of the committed token when it was committed
        (1.0 where the sampler committed nothing).
    entropy: predictive entropy (nats) at commit (0.0 where nothing was committed).
    flips: how often the position's argmax changed between steps before commit.
    commit_step: schedule step at which the position was committed (-1: given).
    is_remasked: positions the sampler filled in (masked on entry or by deliberation).
    num_denoise_calls: model evaluations used (NFE).
    canvas_lengths: [B] positions each utterance owns.
    kept_positions: per utterance, the canvas positions of the tokens a caller kept
        (set by the model when it strips the end fill).
    """

    tokens: torch.Tensor
    confidence: torch.Tensor
    entropy: torch.Tensor
    flips: torch.Tensor
    commit_step: torch.Tensor
    is_remasked: torch.Tensor
    num_denoise_calls: int = 0
    canvas_lengths: Optional[torch.Tensor] = None
    kept_positions: Optional[List[List[int]]] = None


def num_transfer_tokens(is_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """How many masked positions to commit at each step: an even spread.

    >>> num_transfer_tokens(torch.tensor([[True] * 5, [True] * 2 + [False] * 3]), 3).tolist()
    [[2, 2, 1], [1, 1, 0]]
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    counts = is_masked.sum(dim=1, keepdim=True)
    remainder = counts % steps
    extra = torch.arange(steps, device=is_masked.device) < remainder
    return counts // steps + extra.long()


def _forbid_mask(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Float logits with the ``<mask>`` logit at -inf (a copy: callers' tensors are untouched)."""
    return logits.float().index_fill(-1, torch.tensor([mask_id], device=logits.device), float("-inf"))


def _select_top(score: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The ``count[b]`` highest-scoring candidate positions of each row (batched top-k)."""
    score = score.masked_fill(~candidates, float("-inf"))
    order = score.argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(score.size(1), device=score.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    return (rank < count[:, None]) & candidates


def _untouched(tokens: torch.Tensor, is_remasked: torch.Tensor, canvas_lengths: torch.Tensor) -> SamplerOutput:
    """The output for a canvas of which nothing has been committed yet."""
    return SamplerOutput(
        canvas_lengths=canvas_lengths,
        tokens=tokens,
        confidence=torch.ones(tokens.shape, device=tokens.device),
        entropy=torch.zeros(tokens.shape, device=tokens.device),
        flips=torch.zeros_like(tokens),
        commit_step=torch.full_like(tokens, -1),
        is_remasked=is_remasked,
    )


@torch.no_grad()
def generate(
    denoise: Denoiser,
    canvas: torch.Tensor,
    canvas_lengths: torch.Tensor,
    mask_id: int,
    steps: int,
    block_length: Optional[int] = None,
    remasking: str = "low_confidence",
    threshold: Optional[float] = None,
    temperature: float = 0.0,
    generator: Generators = None,
    end_id: Optional[int] = None,
    end_commit: str = "any",
) -> SamplerOutput:
    """Fill the masked positions of ``canvas`` by iterative unmasking.

    The reverse process of LLaDA (Nie et al. 2025, "Large Language Diffusion
    Models", Algorithms 4-5): at every step the model predicts all masked
    positions at once; a planned number of them is committed and the rest stay
    masked ("low-confidence remasking" keeps the least confident ones masked;
    "random" keeps a random subset).  With ``threshold`` every prediction whose
    probability reaches it is committed (at least one per utterance per step,
    the rest at the block's last step), which usually needs fewer steps.
    With ``block_length`` the canvas is decoded semi-autoregressively: blocks
    left to right, ``steps // num_blocks`` steps each.

    Args:
        denoise: tokens [B, L] -> logits [B, L, V].
        canvas: [B, L]; ``mask_id`` where to generate, other positions stay fixed.
        canvas_lengths: [B]; positions at or beyond are padding and left alone.
        mask_id: the ``<mask>`` id; its logit is set to -inf.
        steps: total denoising steps.
        block_length: semi-AR block size dividing L (None: one block).
        remasking: "low_confidence" or "random".
        threshold: confidence threshold for parallel commits, or None.
        temperature: 0 for greedy, else Gumbel-max sampling.
        generator: where random remasking and temperature sampling draw from: one
            ``torch.Generator`` for the batch, or one per row (each row's draws then depend
            on that row alone: ``uniform``); None: torch's global generator.
        end_id, end_commit: with ``end_commit="last"``, a position whose prediction is
            ``end_id`` is committed only once no other prediction of its block waits
            (at the block's last step at the latest).  The end token is the most
            confident guess wherever the model cannot yet read a word, so by score alone
            an over-allocated canvas commits its ends first and a word that needed its
            neighbours is lost as a deletion (LLaDA's notes on long canvases).
    """
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if end_commit not in END_COMMITS:
        raise ValueError(f"end_commit must be one of {END_COMMITS}, got {end_commit!r}")
    if end_commit == "last" and end_id is None:
        raise ValueError("end_commit='last' needs the end token's id (end_id)")
    batch, length = canvas.shape
    check_generators(generator, batch)
    num_blocks = check_schedule(length, steps, length if block_length is None else block_length)
    steps_per_block, block_size = steps // num_blocks, length // num_blocks
    positions = torch.arange(length, device=canvas.device)
    inside = positions < canvas_lengths.to(canvas.device)[:, None]
    tokens = canvas.clone()
    out = _untouched(tokens, (canvas == mask_id) & inside, canvas_lengths)
    last_argmax = torch.full_like(out.flips, -1)

    for block in range(num_blocks):
        in_block = (positions >= block * block_size) & (positions < (block + 1) * block_size)
        plan = num_transfer_tokens((tokens == mask_id) & inside & in_block, steps_per_block)
        for i in range(steps_per_block):
            masked = (tokens == mask_id) & inside
            todo = masked & in_block
            if not todo.any():
                break
            logits = _forbid_mask(denoise(tokens), mask_id)
            out.num_denoise_calls += 1
            probs = logits.softmax(dim=-1)
            entropy = torch.special.entr(probs).sum(dim=-1)
            argmax = logits.argmax(dim=-1)
            predicted = argmax
            if temperature > 0:  # Gumbel-max sampling from softmax(logits / temperature)
                # In float64, as LLaDA: float32 noise truncates the Gumbel tail and skews
                # the samples (arXiv 2409.02908).
                noise = uniform(generator, inside.sum(dim=1), length, logits.size(-1), rows=todo.any(dim=1),
                                dtype=torch.float64).to(logits.device)
                gumbel = -torch.log(-torch.log(noise.clamp(min=1e-300)))
                predicted = (logits.double() / temperature + gumbel).argmax(dim=-1)
            confidence = probs.gather(-1, predicted.unsqueeze(-1)).squeeze(-1)
            out.flips += (masked & (last_argmax >= 0) & (argmax != last_argmax)).long()
            last_argmax = torch.where(masked, argmax, last_argmax)
            deferred = (predicted == end_id) if end_commit == "last" else torch.zeros_like(todo)

            if threshold is None:
                count = plan[:, i]
            elif i == steps_per_block - 1:
                count = todo.sum(dim=1)
            else:
                confident = (todo & ~deferred & (confidence >= threshold)).sum(dim=1)
                count = confident.clamp(min=1).minimum(todo.sum(dim=1))
            if remasking == "low_confidence":
                score = confidence
            else:
                score = uniform(generator, inside.sum(dim=1), length, rows=todo.any(dim=1))
            # Scores lie in [0, 1]: minus 2 ranks every deferred position after the rest.
            commit = _select_top(score - 2.0 * deferred.float(), todo, count)

            tokens = torch.where(commit, predicted, tokens)
            out.confidence = torch.where(commit, confidence, out.confidence)
            out.entropy = torch.where(commit, entropy, out.entropy)
            out.commit_step = out.commit_step.masked_fill(commit, block * steps_per_block + i)
    out.tokens = tokens
    return out


def best_candidates(out: SamplerOutput, count: int) -> SamplerOutput:
    """Keep, of every ``count`` consecutive rows (one utterance's candidates), the one with
    the highest mean log-probability of its committed tokens, end fill included (the
    model's own score of the whole canvas, so that a length is judged by its fill too)."""
    if count == 1:
        return out
    rows = out.tokens.size(0)
    if rows % count != 0:
        raise ValueError(f"{rows} rows are not whole groups of {count} candidates")
    inside = torch.arange(out.tokens.size(1), device=out.tokens.device) < out.canvas_lengths[:, None]
    log_confidence = (out.confidence.clamp(min=1e-12).log() * inside).sum(dim=1) / inside.sum(dim=1).clamp(min=1)
    best = log_confidence.view(-1, count).argmax(dim=1)
    chosen = torch.arange(rows // count, device=best.device) * count + best
    return SamplerOutput(
        tokens=out.tokens[chosen], confidence=out.confidence[chosen], entropy=out.entropy[chosen],
        flips=out.flips[chosen], commit_step=out.commit_step[chosen], is_remasked=out.is_remasked[chosen],
        num_denoise_calls=out.num_denoise_calls, canvas_lengths=out.canvas_lengths[chosen],
    )


def hypothesis_confidence(denoise: Denoiser, tokens: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Probability the model gives each token of an unmasked hypothesis (one pass)."""
    logits = _forbid_mask(denoise(tokens), mask_id)
    return logits.softmax(dim=-1).gather(-1, tokens.clamp(min=0).unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def deliberate(
    denoise: Denoiser,
    hyp: torch.Tensor,
    canvas_lengths: torch.Tensor,
    mask_id: int,
    steps: int,
    masking: str = "random",
    mask_ratio: float = 0.3,
    threshold: Optional[float] = None,
    confidence: Optional[torch.Tensor] = None,
    num_chunks: int = 1,
    temperature: float = 0.0,
    generator: Generators = None,
) -> SamplerOutput:
    """Re-mask part of an external hypothesis and denoise it again.

    Deliberation as in Whisper-LLaDA-style ASR: a first-pass hypothesis (e.g.
    CTC or an autoregressive decoder), already on the canvas with end fill, is
    partly masked and re-predicted by the diffusion decoder, the other tokens
    staying fixed.  Positions to mask, per utterance:
    "random": a ``mask_ratio`` share of the canvas (rounded), chosen at random;
    "low_confidence": the ``mask_ratio`` share that the model, scoring the
    unmasked hypothesis in one pass, gives the lowest probability;
    "confidence_guided": exactly the tokens whose confidence is below
    ``threshold``.
    The confidence is ``confidence`` [B, L] when given (e.g. the model's score,
    calibrated), else the model's score of the unmasked hypothesis.
    ``num_chunks > 1`` deliberates semi-autoregressively: each canvas is cut
    into ``num_chunks`` near-equal chunks, masked and re-denoised left to right
    (with "low_confidence", chunks after the first are scored again once the
    earlier ones were revised); ``steps`` is the total and is split evenly
    between chunks.  ``generator``: where random masking and the re-denoising draw from
    (as ``generate``'s).
    """
    if masking not in DELIBERATION_MASKING:
        raise ValueError(f"masking must be one of {DELIBERATION_MASKING}, got {masking!r}")
    if masking == "confidence_guided" and threshold is None:
        raise ValueError("masking='confidence_guided' needs a threshold")
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    if num_chunks < 1 or steps % num_chunks != 0 or steps < num_chunks:
        raise ValueError(
            f"steps={steps} must be a positive multiple of num_chunks={num_chunks}; "
            f"use steps = {max(num_chunks, 1)}, {2 * max(num_chunks, 1)}, ..."
        )
    batch, length = hyp.shape
    check_generators(generator, batch)
    positions = torch.arange(length, device=hyp.device)
    canvas_lengths = canvas_lengths.to(hyp.device)
    inside = positions < canvas_lengths[:, None]
    if (hyp.eq(mask_id) & inside).any():
        raise ValueError("hyp already contains the mask token; pass a complete hypothesis")
    # Chunk c of utterance b holds positions with floor(i * num_chunks / len_b) == c.
    chunk_of = (positions * num_chunks) // canvas_lengths.clamp(min=1)[:, None]
    steps_per_chunk = steps // num_chunks

    tokens = hyp.clone()
    out = _untouched(tokens, torch.zeros_like(inside), canvas_lengths)
    for chunk in range(num_chunks):
        in_chunk = (chunk_of == chunk) & inside
        if masking == "random":
            token_confidence = uniform(generator, inside.sum(dim=1), length)
        elif confidence is not None and (masking == "confidence_guided" or chunk == 0):
            token_confidence = confidence.to(hyp.device).float()
        else:  # the later chunks are scored after the earlier ones were revised
            token_confidence = hypothesis_confidence(denoise, tokens, mask_id)
            out.num_denoise_calls += 1
        if masking == "confidence_guided":
            remask = in_chunk & (token_confidence < threshold)
        else:
            count = (in_chunk.sum(dim=1) * mask_ratio + 0.5).floor().long()
            remask = _select_top(-token_confidence, in_chunk, count)

        part = generate(
            denoise, tokens.masked_fill(remask, mask_id), canvas_lengths, mask_id,
            steps_per_chunk, temperature=temperature, generator=generator,
        )
        tokens = part.tokens
        out.confidence = torch.where(remask, part.confidence, out.confidence)
        out.entropy = torch.where(remask, part.entropy, out.entropy)
        out.flips = torch.where(remask, part.flips, out.flips)
        out.commit_step = torch.where(remask, part.commit_step + chunk * steps_per_chunk, out.commit_step)
        out.is_remasked |= remask
        out.num_denoise_calls += part.num_denoise_calls
    out.tokens = tokens
    return out
