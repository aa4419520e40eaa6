"""Behaviour of the plain-torch diffusion core on toy tensors and fake denoisers."""

import math

import pytest
import torch

from diffasr.diffusion import (
    CanvasPolicy,
    build_canvas,
    canvas_lengths_from_predicted,
    commit_drafts,
    deliberate,
    forward_mask,
    generate,
    num_transfer_tokens,
    scaled_masked_cross_entropy,
)

torch.set_num_threads(1)

VOCAB = 6
MASK = 4  # ids come from the caller; these tests pick arbitrary ones
END = 5
PAD = -1


class Recorder:
    """A fake denoiser: ``logits_for(tokens, call_index)`` and a copy of every input."""

    def __init__(self, logits_for):
        self.logits_for = logits_for
        self.inputs = []

    def __call__(self, tokens):
        self.inputs.append(tokens.clone())
        return self.logits_for(tokens, len(self.inputs) - 1)


def oracle(target, peak=8.0):
    """A denoiser whose logits peak on ``target`` wherever the input is masked or not."""
    logits = torch.nn.functional.one_hot(target.clamp(min=0), VOCAB).float() * peak
    return Recorder(lambda tokens, call: logits)


def masked_canvas(lengths, width):
    positions = torch.arange(width)
    return torch.where(positions < torch.tensor(lengths)[:, None], MASK, PAD), torch.tensor(lengths)


# --- canvas -----------------------------------------------------------------------------


def test_fixed_canvas_puts_transcript_then_end_fill():
    ys_pad = torch.tensor([[1, 2, 3], [0, -1, -1]])
    canvas, lengths = build_canvas(ys_pad, torch.tensor([3, 1]), END, PAD, canvas_length=4)
    assert canvas.tolist() == [[1, 2, 3, END], [0, END, END, END]]
    assert lengths.tolist() == [4, 4]


def test_fixed_canvas_refuses_longer_transcript_naming_the_utterance():
    ys_pad = torch.tensor([[1, 2, -1], [0, 1, 2]])
    with pytest.raises(ValueError, match="utterance 1 .* 3 tokens.*canvas_length=2"):
        build_canvas(ys_pad, torch.tensor([2, 3]), END, PAD, canvas_length=2)


def test_dynamic_canvas_adds_margin_and_pads_beyond():
    ys_pad = torch.tensor([[1, 2, 3], [0, -1, -1]])
    canvas, lengths = build_canvas(ys_pad, torch.tensor([3, 1]), END, PAD, margin=2)
    assert canvas.tolist() == [[1, 2, 3, END, END], [0, END, END, PAD, PAD]]
    assert lengths.tolist() == [5, 3]


def test_canvas_refuses_padding_value_inside_transcript():
    with pytest.raises(ValueError, match="utterance 0"):
        build_canvas(torch.tensor([[1, -1]]), torch.tensor([2]), END, PAD)


def test_predicted_canvas_lengths_get_margin_and_clamp():
    lengths = canvas_lengths_from_predicted(torch.tensor([0, 3, 50]), margin=2, max_length=10)
    assert lengths.tolist() == [2, 5, 10]


def test_canvas_policy_sizes_training_and_decoding_canvases_alike_per_mode():
    text, text_lengths = torch.tensor([[1, 2, 3], [0, -1, -1]]), torch.tensor([3, 1])
    seconds = torch.tensor([0.5, 1.5])
    fixed = CanvasPolicy("fixed", length=4)
    assert fixed.training_canvas(text, text_lengths, END)[1].tolist() == [4, 4]
    assert fixed.decoding_lengths(batch=2).tolist() == [4, 4]
    with pytest.raises(ValueError, match="utterance 'b' has 3 tokens, more than canvas_length=2"):
        CanvasPolicy("fixed", length=2).training_canvas(text.flip(0), text_lengths.flip(0), END, names=["a", "b"])
    dynamic = CanvasPolicy("dynamic", length=6, margin=2)
    canvas, lengths = dynamic.training_canvas(text, text_lengths, END)
    assert lengths.tolist() == [5, 3] and canvas[1].tolist() == [0, END, END, END, END]  # padded with the end
    assert dynamic.decoding_lengths(predicted=torch.tensor([1, 9])).tolist() == [3, 6]  # at most length
    with pytest.raises(ValueError, match="needs the predicted lengths"):
        dynamic.decoding_lengths(batch=2)
    # duration: ceil(4 * s) + 1 in both, never shorter than the transcript in training
    duration = CanvasPolicy("duration", margin=1, rate=4.0)
    assert duration.training_canvas(text, text_lengths, END, seconds, max_length=32)[1].tolist() == [3, 7]
    assert duration.decoding_lengths(seconds=seconds, max_length=32).tolist() == [3, 7]
    # a decode's margin is the inference margin; the training canvas keeps the trained one
    decoded = duration.overridden(margin=0, mode="length")
    assert decoded == CanvasPolicy("length", margin=1, rate=4.0, decode_margin=0)
    assert decoded.decoding_lengths(predicted=torch.tensor([3])).tolist() == [3]
    assert decoded.training_canvas(text, text_lengths, END)[1].tolist() == [4, 2]
    assert duration.overridden() is not None and duration.overridden() == duration
    with pytest.raises(ValueError, match="canvas must be one of"):
        CanvasPolicy("elastic")


def test_a_uniform_training_margin_varies_the_surplus_and_keeps_the_transcript():
    # margin_draw uniform: each utterance gets 0..margin end tokens after its words, so the
    # canvas length no longer tells the decoder where the transcript ends
    torch.manual_seed(0)
    text = torch.tensor([[5, 6, 7]] * 64)
    text_lengths = torch.tensor([3] * 64)
    policy = CanvasPolicy("length", margin=4, margin_draw="uniform")
    canvas, lengths = policy.training_canvas(text, text_lengths, END)
    assert set((lengths - 3).tolist()) == {0, 1, 2, 3, 4}
    assert (canvas[:, :3] == text).all()
    for row, length in zip(canvas.tolist(), lengths.tolist()):
        assert row[3:] == [END] * (canvas.size(1) - 3)  # end fill, then end as padding
    fixed = CanvasPolicy("length", margin=4).training_canvas(text, text_lengths, END)[1]
    assert set(fixed.tolist()) == {7}
    # trained on 0..4 end tokens, decoded with the margin chosen for it (2)
    chosen = CanvasPolicy("length", margin=4, margin_draw="uniform", decode_margin=2)
    assert chosen.decoding_lengths(predicted=torch.tensor([3, 70])).tolist() == [5, 64]
    assert chosen.cut_to_maximum(torch.tensor([3, 70]), torch.tensor([5, 64])) == [(1, 72)]
    with pytest.raises(ValueError, match="canvas_decode_margin must be >= 0"):
        CanvasPolicy("length", decode_margin=-1)
    with pytest.raises(ValueError, match="canvas_margin_draw must be one of"):
        CanvasPolicy("length", margin_draw="poisson")


def test_canvas_policy_schedule_and_request_checks():
    # a sized canvas: whole blocks, steps a multiple of them; fixed and one block: as given
    assert CanvasPolicy("length").schedule(width=7, steps=3, block_length=2) == (8, 4)
    assert CanvasPolicy("length").schedule(width=7, steps=3, block_length=None) == (7, 3)
    assert CanvasPolicy("fixed", length=8).schedule(width=8, steps=3, block_length=2) == (8, 3)
    with pytest.raises(ValueError, match="steps=3 is not a multiple of the 4 blocks"):
        CanvasPolicy("fixed", length=8).check_request(3, 2, max_length=64)
    CanvasPolicy("length").check_request(3, 2, max_length=64)  # rounded per batch instead
    with pytest.raises(ValueError, match="steps must be between 1 and the canvas length 64"):
        CanvasPolicy("length").check_request(65, None, max_length=64)


# --- forward process and loss ---------------------------------------------------------


def test_masking_rate_matches_p_and_stays_inside_canvas():
    width = 20000
    canvas = torch.zeros(4, width, dtype=torch.long)
    lengths = torch.tensor([20000, 10000, 5000, 3])
    t = torch.tensor([0.0, 0.25, 0.6, 1.0])
    generator = torch.Generator().manual_seed(0)
    noisy, is_masked, p = forward_mask(canvas, lengths, MASK, eps=0.01, t=t, generator=generator)
    assert torch.allclose(p, 0.99 * t + 0.01)
    positions = torch.arange(width)
    inside = positions < lengths[:, None]
    assert not is_masked[~inside].any()
    assert torch.equal(noisy, torch.where(is_masked, MASK, canvas))
    for b in range(3):  # binomial std <= 0.007 here, 0.03 is > 4 sigma
        rate = is_masked[b, : lengths[b]].float().mean().item()
        assert abs(rate - p[b].item()) < 0.03
    assert is_masked[3, :3].all()  # p = 1 masks the whole canvas


def test_forward_mask_draws_a_time_per_utterance_reproducibly():
    canvas = torch.zeros(8, 50, dtype=torch.long)
    lengths = torch.full((8,), 50)
    first = forward_mask(canvas, lengths, MASK, generator=torch.Generator().manual_seed(3))
    again = forward_mask(canvas, lengths, MASK, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])
    assert first[2].unique().numel() == 8 and ((first[2] >= 1e-3) & (first[2] <= 1)).all()


def test_a_time_power_draws_more_high_mask_ratios():
    # t = u ** (1/k): E[t] = k / (k + 1), so 1/2 for LLaDA's uniform and 2/3 for k = 2
    canvas = torch.zeros(20000, 4, dtype=torch.long)
    lengths = torch.full((20000,), 4)
    uniform = forward_mask(canvas, lengths, MASK, generator=torch.Generator().manual_seed(0))[2]
    high = forward_mask(canvas, lengths, MASK, generator=torch.Generator().manual_seed(0), time_power=2.0)[2]
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(high.mean()) == pytest.approx(2 / 3, abs=0.01)
    assert float((high > 0.875).float().mean()) == pytest.approx(1 - 0.875 ** 2, abs=0.01)
    with pytest.raises(ValueError, match="time_power must be >= 1"):
        forward_mask(canvas, lengths, MASK, time_power=0.5)


def test_loss_weights_by_inverse_p_and_normalises_by_canvas_length():
    logits = torch.zeros(2, 3, 2)
    logits[0, 2] = torch.tensor([math.log(3.0), 0.0])
    logits[1, 1] = torch.tensor([0.0, math.log(4.0)])
    targets = torch.tensor([[1, 0, 0], [0, 1, PAD]])
    is_masked = torch.tensor([[True, False, True], [False, True, False]])
    p = torch.tensor([0.5, 0.25])
    lengths = torch.tensor([3, 2])
    loss = scaled_masked_cross_entropy(logits, targets, is_masked, p, lengths)
    # utt 0: CE(uniform, 1) = ln 2, CE([3/4, 1/4], 0) = ln 4/3; utt 1: CE([1/5, 4/5], 1) = ln 5/4
    expected_0 = (math.log(2) + math.log(4 / 3)) / 0.5 / 3
    expected_1 = math.log(5 / 4) / 0.25 / 2
    assert loss.item() == pytest.approx((expected_0 + expected_1) / 2, rel=1e-6)


def test_loss_is_exactly_zero_with_finite_grad_when_nothing_is_masked():
    logits = torch.randn(2, 3, VOCAB, requires_grad=True)
    targets = torch.tensor([[1, 2, END], [0, END, PAD]])
    loss = scaled_masked_cross_entropy(
        logits, targets, torch.zeros(2, 3, dtype=torch.bool), torch.tensor([1e-3, 0.5]), torch.tensor([3, 2])
    )
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


# --- sampler: schedule ----------------------------------------------------------------


def test_num_transfer_tokens_spreads_evenly_front_loaded():
    is_masked = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [False] * 5])
    plan = num_transfer_tokens(is_masked, 3)
    assert plan.tolist() == [[2, 2, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        num_transfer_tokens(is_masked, 0)


def test_generate_commits_exactly_the_planned_number_per_step():
    canvas, lengths = masked_canvas([8, 5], 8)
    target = torch.randint(0, 4, (2, 8))
    denoiser = oracle(target)
    out = generate(denoiser, canvas, lengths, MASK, steps=4)
    masked_per_call = torch.stack([(x == MASK).sum(dim=1) for x in denoiser.inputs])
    assert masked_per_call.tolist() == [[8, 5], [6, 3], [4, 2], [2, 1]]
    steps_taken = torch.stack([(out.commit_step == s).sum(dim=1) for s in range(4)], dim=1)
    assert steps_taken.tolist() == num_transfer_tokens(canvas == MASK, 4).tolist()
    assert out.tokens[1, 5:].tolist() == [PAD] * 3  # padding is never touched


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_oracle_denoiser_recovers_the_target(steps):
    canvas, lengths = masked_canvas([8, 6], 8)
    target = torch.tensor([[0, 1, 2, 3, 0, 1, END, END], [3, 3, 2, END, END, END, 0, 0]])
    denoiser = oracle(target)
    out = generate(denoiser, canvas, lengths, MASK, steps=steps)
    expected = torch.where(canvas == MASK, target, PAD)
    assert torch.equal(out.tokens, expected)
    assert out.num_denoise_calls == steps == len(denoiser.inputs)
    assert (out.confidence[canvas == MASK] > 0.99).all()
    assert out.commit_step[canvas == MASK].max() == steps - 1
    assert torch.equal(out.is_remasked, canvas == MASK)


def test_given_positions_are_kept_and_reported_as_given():
    canvas = torch.tensor([[1, MASK, 2, MASK]])
    out = generate(oracle(torch.tensor([[3, 0, 3, 0]])), canvas, torch.tensor([4]), MASK, steps=2)
    assert out.tokens.tolist() == [[1, 0, 2, 0]]
    assert out.commit_step.tolist()[0][::2] == [-1, -1]
    assert out.confidence[0, ::2].tolist() == [1.0, 1.0] and out.entropy[0, ::2].tolist() == [0.0, 0.0]


def test_mask_token_is_never_emitted():
    canvas, lengths = masked_canvas([4], 4)
    loves_mask = torch.zeros(1, 4, VOCAB)
    loves_mask[..., MASK] = 100.0
    loves_mask[..., 2] = 1.0
    out = generate(Recorder(lambda x, c: loves_mask), canvas, lengths, MASK, steps=2)
    assert out.tokens.tolist() == [[2, 2, 2, 2]]
    assert loves_mask[..., MASK].eq(100.0).all()  # the caller's logits were not modified


# --- sampler: remasking strategies ---------------------------------------------------


def rising_confidence(width):
    """Logits on token 0 whose peak (hence confidence) grows with the position."""
    logits = torch.zeros(1, width, VOCAB)
    logits[0, :, 0] = torch.linspace(0.5, 6.0, width)
    return Recorder(lambda tokens, call: logits)


def test_low_confidence_remasking_commits_most_confident_first():
    canvas, lengths = masked_canvas([8], 8)
    out = generate(rising_confidence(8), canvas, lengths, MASK, steps=8)
    assert out.commit_step[0].tolist() == [7, 6, 5, 4, 3, 2, 1, 0]


def test_random_remasking_chooses_differently_from_low_confidence():
    canvas, lengths = masked_canvas([8], 8)
    generator = torch.Generator().manual_seed(0)
    out = generate(rising_confidence(8), canvas, lengths, MASK, steps=8, remasking="random", generator=generator)
    assert sorted(out.commit_step[0].tolist()) == list(range(8))
    assert out.commit_step[0].tolist() != [7, 6, 5, 4, 3, 2, 1, 0]


def test_threshold_commits_every_confident_token_and_at_least_one_per_step():
    canvas, lengths = masked_canvas([6, 6], 6)
    logits = torch.zeros(2, 6, VOCAB)
    logits[0, :3, 1] = 20.0  # utterance 0: three near-certain tokens, three flat ones
    denoiser = Recorder(lambda tokens, call: logits)
    out = generate(denoiser, canvas, lengths, MASK, steps=6, threshold=0.9)
    per_step = torch.stack([(out.commit_step == s).sum(dim=1) for s in range(6)], dim=1)
    assert per_step[0].tolist() == [3, 1, 1, 1, 0, 0]
    assert per_step[1].tolist() == [1, 1, 1, 1, 1, 1]  # flat everywhere: one per step
    assert not (out.tokens == MASK).any()


def test_threshold_finishes_early_when_everything_is_confident():
    canvas, lengths = masked_canvas([6], 6)
    out = generate(oracle(torch.zeros(1, 6, dtype=torch.long)), canvas, lengths, MASK, steps=6, threshold=0.9)
    assert out.num_denoise_calls == 1


def test_threshold_commits_the_rest_at_the_last_step():
    canvas, lengths = masked_canvas([6], 6)
    flat = Recorder(lambda tokens, call: torch.zeros(1, 6, VOCAB))
    out = generate(flat, canvas, lengths, MASK, steps=2, threshold=0.9)
    assert (out.commit_step == 0).sum() == 1 and (out.commit_step == 1).sum() == 5


def end_trap(word_confidence=0.6):
    """An over-allocated canvas of 6 for the words [1, 2, 3]: the surplus (3..5) predicts the
    end token at 0.9; position 2 reads its word (3, at 0.8) only once position 1 holds
    one, and until then guesses the end token at 0.7, like a model that cannot yet tell
    where the transcript stops."""
    def logits_for(tokens, call):
        probs = torch.full((1, 6, VOCAB), 1e-3)
        for i, word in ((0, 1), (1, 2)):
            probs[0, i, word] = word_confidence
        probs[0, 3:, END] = 0.9
        if tokens[0, 1] == MASK:
            probs[0, 2, END] = 0.7
        else:
            probs[0, 2, 3] = 0.8
        return probs.log()
    return Recorder(logits_for)


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_deferred_end_tokens_let_a_word_wait_for_its_neighbours(remasking):
    canvas, lengths = masked_canvas([6], 6)
    kwargs = dict(steps=3, remasking=remasking, generator=torch.Generator().manual_seed(0))
    # By score, the confident end guesses go first and position 2 is lost to the end token.
    by_score = generate(end_trap(), canvas, lengths, MASK, **kwargs)
    if remasking == "low_confidence":
        assert by_score.tokens[0].tolist() == [1, 2, END, END, END, END]
    # Deferred: the words are committed first, so position 2 sees its neighbour in time.
    deferred = generate(end_trap(), canvas, lengths, MASK, end_id=END, end_commit="last", **kwargs)
    assert deferred.tokens[0].tolist() == [1, 2, 3, END, END, END]
    assert deferred.commit_step[0, 3:].min() >= deferred.commit_step[0, :3].max()
    # With a threshold, a confident end guess does not count as a confident commit.
    thresholded = generate(end_trap(), canvas, lengths, MASK, steps=3, threshold=0.85, end_id=END, end_commit="last")
    assert thresholded.tokens[0].tolist() == [1, 2, 3, END, END, END]


def test_end_commit_is_checked():
    canvas, lengths = masked_canvas([6], 6)
    target = torch.zeros(1, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="end_commit must be one of"):
        generate(oracle(target), canvas, lengths, MASK, steps=2, end_id=END, end_commit="first")
    with pytest.raises(ValueError, match="needs the end token's id"):
        generate(oracle(target), canvas, lengths, MASK, steps=2, end_commit="last")


# --- sampler: semi-autoregressive blocks ----------------------------------------------


def test_later_block_is_untouched_until_earlier_blocks_are_done():
    canvas, lengths = masked_canvas([8, 6], 8)
    # the later block is the more confident one, so only the block order holds it back
    logits = torch.zeros(2, 8, VOCAB)
    logits[:, :, 1] = torch.linspace(0.5, 6.0, 8)
    denoiser = Recorder(lambda tokens, call: logits)
    out = generate(denoiser, canvas, lengths, MASK, steps=4, block_length=4)
    first, second = denoiser.inputs[:2], denoiser.inputs[2:]
    assert all((x[:, 4:] == canvas[:, 4:]).all() for x in first)
    assert all(not (x[:, :4] == MASK).any() for x in second)
    assert set(out.commit_step[:, :4].flatten().tolist()) == {0, 1}
    assert set(out.commit_step[:, 4:][canvas[:, 4:] == MASK].tolist()) == {2, 3}


def test_invalid_block_length_is_refused_with_the_values_that_work():
    canvas, lengths = masked_canvas([8], 8)
    with pytest.raises(ValueError, match=r"block_length=3 does not divide .* 8; use one of \[1, 2, 4, 8\]"):
        generate(oracle(torch.zeros(1, 8, dtype=torch.long)), canvas, lengths, MASK, steps=4, block_length=3)
    with pytest.raises(ValueError, match=r"steps=3 is not a multiple of the 2 blocks.*steps = 2, 4, 6"):
        generate(oracle(torch.zeros(1, 8, dtype=torch.long)), canvas, lengths, MASK, steps=3, block_length=4)


# --- sampler: diagnostics -------------------------------------------------------------


def test_flips_and_entropy_follow_a_handcrafted_trajectory():
    # call 0: position 0 is sure of token 0, position 1 leans to token 1;
    # call 1: position 1 changes its mind to token 2 (one flip), then is committed.
    call_logits = [
        torch.tensor([[[6.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]]]),
        torch.tensor([[[6.0, 0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0, 0]]]),
    ]
    denoiser = Recorder(lambda tokens, call: call_logits[call])
    canvas = torch.tensor([[MASK, MASK]])
    out = generate(denoiser, canvas, torch.tensor([2]), MASK, steps=2)
    assert out.tokens.tolist() == [[0, 2]]
    assert out.commit_step.tolist() == [[0, 1]]
    assert out.flips.tolist() == [[0, 1]]

    def entropy(logits):  # the mask token is excluded from the distribution
        probs = torch.cat([logits[:MASK], logits[MASK + 1 :]]).softmax(-1)
        return -(probs * probs.log()).sum().item()

    assert out.entropy[0, 0].item() == pytest.approx(entropy(call_logits[0][0, 0]), rel=1e-5)
    assert out.entropy[0, 1].item() == pytest.approx(entropy(call_logits[1][0, 1]), rel=1e-5)
    assert out.entropy[0, 1] > out.entropy[0, 0]
    assert out.confidence[0, 0] > out.confidence[0, 1]


def test_temperature_sampling_is_reproducible_and_varies_with_the_seed():
    canvas, lengths = masked_canvas([16], 16)
    flat = Recorder(lambda tokens, call: torch.zeros(1, 16, VOCAB))

    def sample(seed):
        generator = torch.Generator().manual_seed(seed)
        return generate(flat, canvas, lengths, MASK, steps=4, temperature=1.0, generator=generator).tokens

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))
    assert not (sample(3) == MASK).any()


def test_temperature_sampling_follows_the_softmax_with_float64_gumbel_noise():
    # One position, tokens 0 and 1 at probabilities 0.8 / 0.2 after a temperature of 0.5.
    logits = torch.full((1, 4000, VOCAB), -1e4)
    logits[..., 0], logits[..., 1] = 0.0, 0.5 * math.log(0.25)
    canvas, lengths = masked_canvas([4000], 4000)
    generator = torch.Generator().manual_seed(0)
    tokens = generate(Recorder(lambda t, call: logits), canvas, lengths, MASK, steps=1, temperature=0.5,
                      generator=generator).tokens
    assert (tokens == 1).float().mean().item() == pytest.approx(0.2, abs=0.02)
    # The noise is drawn in float64 (as LLaDA): the same seed in float64 gives the same draw.
    reference = torch.rand((1, 4000, VOCAB), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gumbel = -torch.log(-torch.log(reference))
    expected = (logits.double().index_fill(-1, torch.tensor([MASK]), float("-inf")) / 0.5 + gumbel).argmax(-1)
    assert torch.equal(tokens, expected)


def test_per_utterance_generators_make_an_utterance_independent_of_its_batch():
    """With one generator per row, random remasking and temperature sampling draw for an
    utterance the same numbers alone, first or second in a batch, beside a longer canvas
    or one that is done sooner (it draws nothing once it has nothing left to commit)."""
    flat = Recorder(lambda tokens, call: torch.zeros(*tokens.shape, VOCAB))

    def run(row_lengths, seeds, **kwargs):
        canvas, lengths = masked_canvas(row_lengths, max(row_lengths))
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        return generate(flat, canvas, lengths, MASK, steps=3, remasking="random", temperature=1.0,
                        generator=generators, **kwargs)

    for length, steps_taken in ((6, [0, 0, 1, 1, 2, 2]), (2, [0, 1])):  # 2 positions: done after 2 steps
        alone = run([length], [7])
        assert sorted(alone.commit_step[0].tolist()) == steps_taken
        for row_lengths, seeds, row in (([9, length], [1, 7], 1), ([length, 4], [7, 2], 0)):
            out = run(row_lengths, seeds)
            assert out.tokens[row, :length].tolist() == alone.tokens[0].tolist(), (row_lengths, row)
            assert out.commit_step[row, :length].tolist() == alone.commit_step[0].tolist(), (row_lengths, row)
        # each of these seeds gives its own draw (fixed seeds: the same draw every run)
        assert run([length], [8]).tokens.tolist() != alone.tokens.tolist()
    with pytest.raises(ValueError, match="1 generators for a batch of 2 utterances"):
        generate(flat, *masked_canvas([3, 3], 3), MASK, steps=1, remasking="random",
                 generator=[torch.Generator()])


# --- deliberation ---------------------------------------------------------------------


def hyp_scorer(hyp, hyp_prob, revised):
    """Masked positions are predicted as ``revised``; an unmasked hypothesis token
    gets probability ``hyp_prob`` (the rest spread over the other tokens)."""

    def logits_for(tokens, call):
        logits = torch.nn.functional.one_hot(revised.clamp(min=0), VOCAB).float() * 8.0
        rest = (1 - hyp_prob) / (VOCAB - 2)  # the mask token gets none
        scored = torch.full((*hyp.shape, VOCAB), 1.0) * rest[..., None]
        scored.scatter_(-1, hyp.clamp(min=0)[..., None], hyp_prob[..., None])
        scored[..., MASK] = 1e-9
        return torch.where((tokens == MASK)[..., None], logits, scored.log())

    return Recorder(logits_for)


def test_deliberation_keeps_unmasked_tokens_fixed():
    hyp = torch.tensor([[0, 1, 2, 3, 0, 1, END, END], [3, 2, 1, END, END, PAD, PAD, PAD]])
    lengths = torch.tensor([8, 5])
    revised = torch.full((2, 8), 2)
    denoiser = hyp_scorer(hyp, torch.full((2, 8), 0.5), revised)
    generator = torch.Generator().manual_seed(0)
    out = deliberate(denoiser, hyp, lengths, MASK, steps=2, mask_ratio=0.5, generator=generator)
    assert out.is_remasked.sum(dim=1).tolist() == [4, 3]  # round(0.5 * 5) = 3
    assert torch.equal(out.tokens, torch.where(out.is_remasked, revised, hyp))
    assert not out.is_remasked[1, 5:].any()
    assert (out.commit_step[~out.is_remasked] == -1).all()


def test_random_deliberation_masks_an_utterance_alike_in_any_batch_with_its_own_generator():
    hyp = torch.tensor([[0, 1, 2, 3, 0, 1, END, END], [3, 2, 1, END, END, PAD, PAD, PAD]])
    lengths = torch.tensor([8, 5])

    def run(rows, seeds):
        denoiser = hyp_scorer(hyp[rows], torch.full((len(rows), 8), 0.5), torch.full((len(rows), 8), 2))
        return deliberate(denoiser, hyp[rows], lengths[rows], MASK, steps=2, mask_ratio=0.5,
                          generator=[torch.Generator().manual_seed(s) for s in seeds])

    alone = run([1], [5])
    assert alone.is_remasked.sum().item() == 3  # round(0.5 * 5)
    for rows, seeds, row in (([0, 1], [9, 5], 1), ([1, 0], [5, 9], 0)):
        out = run(rows, seeds)
        assert out.is_remasked[row].tolist() == alone.is_remasked[0].tolist()
        assert out.commit_step[row].tolist() == alone.commit_step[0].tolist()
    assert run([1], [6]).is_remasked.tolist() != alone.is_remasked.tolist()


def test_low_confidence_deliberation_masks_the_least_likely_tokens():
    hyp = torch.tensor([[0, 1, 2, 3, 0, 1, END, END]])
    hyp_prob = torch.tensor([[0.9, 0.2, 0.8, 0.9, 0.1, 0.7, 0.9, 0.95]])
    out = deliberate(hyp_scorer(hyp, hyp_prob, hyp), hyp, torch.tensor([8]), MASK, steps=2,
                     masking="low_confidence", mask_ratio=0.25)
    assert out.is_remasked.nonzero()[:, 1].tolist() == [1, 4]
    assert out.num_denoise_calls == 1 + 2  # one scoring pass, then the steps


def test_confidence_guided_masks_exactly_the_sub_threshold_tokens():
    hyp = torch.tensor([[0, 1, 2, 3], [3, 2, END, PAD]])
    lengths = torch.tensor([4, 3])
    confidence = torch.tensor([[0.9, 0.3, 0.5, 0.49], [0.1, 0.8, 0.2, 0.0]])
    out = deliberate(hyp_scorer(hyp, torch.ones(2, 4) * 0.5, hyp), hyp, lengths, MASK, steps=1,
                     masking="confidence_guided", threshold=0.5, confidence=confidence)
    assert out.is_remasked.tolist() == [[False, True, False, True], [True, False, True, False]]


def test_confidence_guided_scores_the_hypothesis_when_no_confidence_is_given():
    hyp = torch.tensor([[0, 1, 2, 3]])
    hyp_prob = torch.tensor([[0.9, 0.3, 0.95, 0.2]])
    out = deliberate(hyp_scorer(hyp, hyp_prob, hyp), hyp, torch.tensor([4]), MASK, steps=1,
                     masking="confidence_guided", threshold=0.5)
    assert out.is_remasked.tolist() == [[False, True, False, True]]


def test_chunked_deliberation_revises_chunks_left_to_right():
    hyp = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3], [3, 2, 1, 0, END, END, PAD, PAD]])
    lengths = torch.tensor([8, 6])
    revised = torch.full((2, 8), 1)
    denoiser = hyp_scorer(hyp, torch.full((2, 8), 0.5), revised)
    out = deliberate(denoiser, hyp, lengths, MASK, steps=4, mask_ratio=1.0, num_chunks=2,
                     generator=torch.Generator().manual_seed(0))
    masked_calls = [(x == MASK) for x in denoiser.inputs]
    first_chunk = torch.tensor([[1] * 4 + [0] * 4, [1] * 3 + [0] * 5]).bool()
    # calls 0-1 only see masks in the first chunk, and the second chunk still holds hyp
    assert all(not (m & ~first_chunk).any() for m in masked_calls[:2])
    assert torch.equal(denoiser.inputs[1][~first_chunk], hyp[~first_chunk])
    # calls 2-3 see the revised first chunk and masks only in the second
    assert all((x[first_chunk] == 1).all() and not (m & first_chunk).any()
               for x, m in zip(denoiser.inputs[2:], masked_calls[2:]))
    assert torch.equal(out.tokens, torch.where(torch.arange(8) < lengths[:, None], 1, PAD))
    assert out.commit_step[first_chunk].max() <= 1 and out.commit_step[1, 3:6].min() >= 2


def test_deliberation_refuses_bad_arguments():
    hyp = torch.tensor([[0, 1, 2, 3]])
    lengths = torch.tensor([4])
    denoiser = oracle(hyp)
    with pytest.raises(ValueError, match="multiple of num_chunks=2"):
        deliberate(denoiser, hyp, lengths, MASK, steps=3, num_chunks=2)
    with pytest.raises(ValueError, match="needs a threshold"):
        deliberate(denoiser, hyp, lengths, MASK, steps=2, masking="confidence_guided")
    with pytest.raises(ValueError, match="mask token"):
        deliberate(denoiser, torch.tensor([[0, MASK, 2, 3]]), lengths, MASK, steps=2)


@pytest.mark.parametrize("module_name", ["canvas", "sampler"])
def test_docstring_examples_hold(module_name):
    import doctest
    import importlib

    module = importlib.import_module(f"diffasr.diffusion.{module_name}")
    failures, attempted = doctest.testmod(module)
    assert attempted > 0 and failures == 0


def test_commit_drafts_fills_the_most_confident_masks_and_nothing_else():
    noisy = torch.tensor([[MASK, MASK, MASK, MASK, 3], [MASK, 2, MASK, 4, 5]])
    is_masked = noisy == MASK
    draft = torch.tensor([[1, 2, 3, 4, 0], [7, 0, 8, 0, 0]])
    confidence = torch.tensor([[0.1, 0.8, 0.6, 0.9, 1.0], [0.3, 1.0, 0.7, 1.0, 1.0]])
    drafted, committed, still = commit_drafts(noisy, is_masked, draft, confidence, torch.tensor([0.5, 0.0]))
    assert drafted.tolist() == [[MASK, 2, MASK, 4, 3], [MASK, 2, MASK, 4, 5]]  # the top 2 of 4; none of 2
    assert committed.tolist() == [[False, True, False, True, False], [False] * 5]
    assert torch.equal(still, is_masked & ~committed)
    with pytest.raises(ValueError, match=r"share must lie in \[0, 1\]"):
        commit_drafts(noisy, is_masked, draft, confidence, torch.tensor([1.5, 0.0]))
