"""Tiny DiffusionASRModel: losses, conditioners, errors, decoder masking, overfitting."""


import dataclasses
import re

import pytest
import torch
import yaml
from espnet2.asr.espnet_model import ESPnetASRModel

import diffasr.espnet2.model as model_module
from diffasr.diffusion import CanvasPolicy, DiffusionOptions
from diffasr.espnet2.builder import build_model_from_file
from diffasr.espnet2.decoder import DiffusionTransformerDecoder
from diffasr.espnet2.enrollment import Enrollment
from diffasr.espnet2.precision import check_train_autocast, cpu_has_bf16
from diffasr.espnet2.task import DiffASRTask

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "<mask>", "<sos/eos>"]
FEAT_DIM, EMBED_DIM, DIM = 5, 3, 16


def tiny_model(spk_conditioner="film", canvas="fixed", canvas_length=6, ar_weight=0.0, ctc_weight=0.3,
               token_list=None, **model_conf):
    """A vocab-8, dim-8 model on precomputed features (no frontend)."""
    parser = DiffASRTask.get_parser()
    args = parser.parse_args(["--token_list", "unused"])
    args.token_list = list(TOKENS) if token_list is None else token_list
    args.input_size = FEAT_DIM
    args.normalize = None
    args.encoder = "transformer"
    args.encoder_conf = dict(output_size=DIM, attention_heads=2, linear_units=32, num_blocks=1,
                             input_layer="linear", dropout_rate=0.0, positional_dropout_rate=0.0,
                             attention_dropout_rate=0.0)
    args.decoder = "diffusion"
    args.decoder_conf = dict(attention_heads=2, linear_units=32, num_blocks=2, dropout_rate=0.0,
                             positional_dropout_rate=0.0)
    args.spk_conditioner = spk_conditioner
    args.spk_conditioner_conf = dict(embed_dim=EMBED_DIM) if spk_conditioner else {}
    args.model = "diffusion"
    args.model_conf = dict(dict(canvas=canvas, canvas_length=canvas_length, canvas_train_margin=2,
                                ar_weight=ar_weight, ctc_weight=ctc_weight), **model_conf)
    return DiffASRTask.build_model(args)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        speech=torch.randn(2, 12, FEAT_DIM, generator=g),
        speech_lengths=torch.tensor([12, 9]),
        text=torch.tensor([[2, 3, 4], [5, 2, -1]]),
        text_lengths=torch.tensor([3, 2]),
        enroll_embed=torch.randn(2, EMBED_DIM, generator=g),
        utt_id=["spk1-a", "spk2-b"],
    )


@pytest.mark.parametrize("conditioner", ["film", "prepend", None])
@pytest.mark.parametrize("canvas", ["fixed", "dynamic"])
def test_forward_backward_reaches_every_parameter(conditioner, canvas):
    model = tiny_model(conditioner, canvas=canvas, ar_weight=0.5)
    loss, stats, weight = model(**batch())
    loss.backward()
    assert torch.isfinite(loss) and int(weight) == 2
    assert {"loss_diffusion", "loss_ctc", "loss_ar", "loss"} <= set(stats)
    unreached = [n for n, p in model.named_parameters() if p.grad is None]
    # FiLM starts as the identity (zero projection) but must still receive gradients.
    assert unreached == []


def test_speaker_embedding_changes_the_film_output_after_an_update():
    model = tiny_model("film")
    torch.optim.SGD(model.parameters(), lr=0.5).zero_grad()
    loss, _, _ = model(**batch())
    loss.backward()
    with torch.no_grad():
        for p in model.spk_conditioner.parameters():
            p -= 0.5 * p.grad
    model.eval()
    b = batch()
    out_1, _ = model.encode(b["speech"], b["speech_lengths"], Enrollment(embed=b["enroll_embed"]))
    out_2, _ = model.encode(b["speech"], b["speech_lengths"], Enrollment(embed=-b["enroll_embed"]))
    assert not torch.allclose(out_1, out_2)


def test_prepend_adds_one_leading_frame():
    model = tiny_model("prepend").eval()
    b = batch()
    plain, plain_lens = ESPnetASRModel.encode(model, b["speech"], b["speech_lengths"])  # no conditioning
    with pytest.raises(ValueError, match="speaker-conditioned but no enroll_embed was given"):
        model.encode(b["speech"], b["speech_lengths"])
    out, lens = model.encode(b["speech"], b["speech_lengths"], Enrollment(embed=b["enroll_embed"]))
    assert out.size(1) == plain.size(1) + 1 and (lens == plain_lens + 1).all()
    assert torch.allclose(out[:, 1:], plain)


def test_batch_with_no_masked_token_gives_a_finite_loss(monkeypatch):
    def mask_nothing(canvas, canvas_lengths, mask_id, eps=1e-3, **kwargs):
        return canvas, torch.zeros_like(canvas, dtype=torch.bool), torch.full((canvas.size(0),), eps)

    monkeypatch.setattr(model_module, "forward_mask", mask_nothing)
    model = tiny_model("film")
    loss, stats, _ = model(**batch())
    loss.backward()
    assert torch.isfinite(loss) and float(stats["loss_diffusion"]) == 0.0


def test_self_drafting_trains_on_the_models_own_most_confident_predictions(monkeypatch):
    def mask_everything(canvas, canvas_lengths, mask_id, eps=1e-3, **kwargs):
        inside = torch.arange(canvas.size(1)) < canvas_lengths[:, None]
        return canvas.masked_fill(inside, mask_id), inside, torch.ones(canvas.size(0))

    monkeypatch.setattr(model_module, "forward_mask", mask_everything)
    model = tiny_model("film", canvas="dynamic", self_draft=1.0)
    mask = TOKENS.index("<mask>")
    seen, hidden = [], model.decoder.hidden

    def spy(encoder_out, encoder_out_lens, tokens, lengths, **kwargs):
        seen.append((encoder_out.detach(), encoder_out_lens, tokens.clone(), lengths))
        return hidden(encoder_out, encoder_out_lens, tokens, lengths, **kwargs)

    monkeypatch.setattr(model.decoder, "hidden", spy)
    torch.manual_seed(1)
    loss, stats, _ = model(**batch())
    loss.backward()
    assert len(seen) == 2 and float(stats["loss_revision"]) > 0.0 and "acc_draft" in stats
    (enc, enc_lens, first, lengths), second = seen[0], seen[1][2]
    inside = torch.arange(first.size(1)) < lengths[:, None]
    assert (first[inside] == mask).all()
    committed = inside & (second != mask)
    assert committed.any() and (committed.sum(dim=1) <= (inside.sum(dim=1) * 7) // 8).all()
    with torch.no_grad():  # the drafts are the first pass's most confident non-mask predictions
        logits = model.decoder.project(hidden(enc, enc_lens, first, lengths)).float()
        logits[..., mask] = float("-inf")
        confidence, argmax = logits.softmax(dim=-1).max(dim=-1)
    assert torch.equal(second[committed], argmax[committed])
    for b in range(first.size(0)):
        if committed[b].any():
            assert confidence[b][committed[b]].min() >= confidence[b][inside[b] & ~committed[b]].max()
    with pytest.raises(ValueError, match="self_draft must be in"):
        tiny_model("film", self_draft=1.5)


def test_token_list_is_not_mutated_and_specials_found_by_name():
    # <mask> and <sos/eos> away from the places stage 2 gives them: found by name, not position
    tokens = ["<blank>", "<unk>", "a", "<mask>", "b", "c", "<sos/eos>", "d"]
    given = list(tokens)
    model = tiny_model("film", token_list=given)
    assert given == tokens  # the caller's list is left as it was
    assert (model.mask_id, model.end_id) == (3, 6)


def test_errors_name_the_utterance():
    model = tiny_model("film")
    b = batch()
    with pytest.raises(ValueError, match="enroll_embed.*spk1-a"):
        model(**{**b, "enroll_embed": None})
    with pytest.raises(ValueError, match="'spk1-a' has token id 99"):
        model(**{**b, "text": torch.tensor([[2, 99, 4], [5, 2, -1]])})
    with pytest.raises(ValueError, match="'spk1-a' has 3 tokens, more than canvas_length=2"):
        tiny_model("film", canvas_length=2)(**b)


def test_the_old_model_conf_name_canvas_margin_is_refused_with_the_new_names(tmp_path):
    """canvas_margin meant the training margin in model_conf and the decode margin in a decode
    config: in model_conf (a training config, --model_conf, a trained experiment's config.yaml)
    it is refused, naming canvas_train_margin and canvas_decode_margin."""
    message = ("model_conf: canvas_margin was renamed canvas_train_margin (the training margin); "
               "the decode margin is canvas_decode_margin")
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_model("film", canvas_margin=2)  # as a training config's model_conf gives it
    args = DiffASRTask.get_parser().parse_args(["--token_list", "unused", "--model_conf", "canvas_margin=6"])
    with pytest.raises(ValueError, match=re.escape(message)):
        DiffASRTask.build_model(args)
    config = tmp_path / "config.yaml"  # an experiment trained before the rename
    config.write_text(yaml.safe_dump(dict(model="diffusion", model_conf=dict(canvas_margin=2))))
    with pytest.raises(ValueError, match=re.escape(f"{config}: {message}")):
        build_model_from_file(config)
    # the new name is the training margin: the sized canvas is the transcript + 3 end tokens
    model = tiny_model("film", canvas="dynamic", canvas_length=12, canvas_train_margin=3)
    assert (model.canvas_policy.margin, model.canvas_policy.inference_margin) == (3, 3)


def test_missing_special_token_is_reported():
    parts = tiny_model(None)
    with pytest.raises(ValueError, match="'<mask>' is not in the token list"):
        type(parts)(
            vocab_size=7, token_list=[t for t in TOKENS if t != "<mask>"], frontend=None,
            specaug=None, normalize=None, preencoder=None, encoder=parts.encoder,
            postencoder=None, decoder=parts.decoder, ctc=parts.ctc,
        )


def test_decoder_is_bidirectional_and_causal_on_request():
    torch.manual_seed(0)
    decoder = DiffusionTransformerDecoder(8, DIM, attention_heads=2, linear_units=32, num_blocks=1,
                                          dropout_rate=0.0, positional_dropout_rate=0.0).eval()
    memory, memory_lens = torch.randn(1, 4, DIM), torch.tensor([4])
    ys, ys_changed = torch.tensor([[2, 3, 4]]), torch.tensor([[2, 3, 5]])
    lens = torch.tensor([3])
    full_a, _ = decoder(memory, memory_lens, ys, lens)
    full_b, _ = decoder(memory, memory_lens, ys_changed, lens)
    assert not torch.allclose(full_a[0, 0], full_b[0, 0])  # first position sees the last
    causal_a, _ = decoder(memory, memory_lens, ys, lens, causal=True)
    causal_b, _ = decoder(memory, memory_lens, ys_changed, lens, causal=True)
    assert torch.allclose(causal_a[0, :2], causal_b[0, :2])


@pytest.mark.parametrize("canvas", ["fixed", "dynamic"])
def test_tiny_model_overfits_three_utterances_exactly_through_the_sampler(canvas):
    torch.manual_seed(0)
    model = tiny_model("film", canvas=canvas, canvas_length=6, ctc_weight=0.5)
    speech = torch.randn(3, 10, FEAT_DIM)
    speech_lengths = torch.tensor([10, 8, 10])
    targets = [[2, 3, 4, 5], [5, 4], [3, 3, 2]]
    text = torch.full((3, 4), -1)
    for i, t in enumerate(targets):
        text[i, : len(t)] = torch.tensor(t)
    text_lengths = torch.tensor([len(t) for t in targets])
    enroll = torch.randn(3, EMBED_DIM)
    # Eight copies per step: each draws its own masking rate, steadying the 1/p-weighted loss.
    copies = 8
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    decoded = None
    for step in range(1, 501):
        model.train()
        loss, _, _ = model(speech.repeat(copies, 1, 1), speech_lengths.repeat(copies),
                           text.repeat(copies, 1), text_lengths.repeat(copies),
                           enroll_embed=enroll.repeat(copies, 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            decoded = [model.diffusion_decode(speech, speech_lengths, Enrollment(embed=enroll), DiffusionOptions(steps=s))[0] for s in (1, 6)]
            if decoded == [targets, targets]:
                break
    assert decoded == [targets, targets], f"after {step} updates: 1 step {decoded[0]}, 6 steps {decoded[1]}"
    ids, confidences, out = model.diffusion_decode(speech, speech_lengths, Enrollment(embed=enroll),
                                                   DiffusionOptions(steps=3, block_length=2))
    assert ids == targets and out.num_denoise_calls <= 3
    assert all(0.0 < c <= 1.0 for row in confidences for c in row)


@pytest.mark.parametrize("canvas", ["fixed", "dynamic"])
def test_the_enrollment_decides_between_words_and_nothing(canvas):
    # The same audio twice: with one enrollment its words, with another (a voice that is
    # not in it) an empty transcript, which trains like any other and decodes to [].
    torch.manual_seed(0)
    model = tiny_model("film", canvas=canvas, canvas_length=6, ctc_weight=0.5)
    speech = torch.randn(1, 10, FEAT_DIM).repeat(2, 1, 1)
    speech_lengths = torch.tensor([10, 10])
    text, text_lengths = torch.tensor([[2, 3, 4], [-1, -1, -1]]), torch.tensor([3, 0])
    enroll = torch.randn(2, EMBED_DIM)
    copies, decoded = 8, None
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(1, 401):
        model.train()
        loss, stats, _ = model(speech.repeat(copies, 1, 1), speech_lengths.repeat(copies),
                               text.repeat(copies, 1), text_lengths.repeat(copies),
                               enroll_embed=enroll.repeat(copies, 1))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            decoded = model.diffusion_decode(speech, speech_lengths, Enrollment(embed=enroll),
                                             DiffusionOptions(steps=3))[0]
            if decoded == [[2, 3, 4], []]:
                break
    assert decoded == [[2, 3, 4], []], f"after {step} updates: {decoded}"


@pytest.mark.parametrize("position", ["encoder_input", "encoder_output"])
def test_film_position_makes_encoder_output_depend_on_the_speaker(position):
    model = tiny_model("film")
    model.spk_conditioner.position = position
    torch.nn.init.normal_(model.spk_conditioner.projection.weight)  # leave the identity start
    model.eval()
    b = batch()
    out_a, _ = model.encode(b["speech"], b["speech_lengths"], Enrollment(embed=b["enroll_embed"]))
    out_b, _ = model.encode(b["speech"], b["speech_lengths"], Enrollment(embed=-b["enroll_embed"]))
    assert not torch.allclose(out_a, out_b)
    # The hook lives only for one encoder call: the plain encoder is left untouched.
    assert not model.encoder.embed._forward_hooks
    plain, _ = ESPnetASRModel.encode(model, b["speech"], b["speech_lengths"])
    plain = plain[0] if isinstance(plain, tuple) else plain
    assert not torch.allclose(plain, out_a)


def test_decoder_tells_masked_positions_apart():
    """From a fully masked canvas only position distinguishes the slots; the decoder
    must learn to fill two different canvases (a sqrt(d)-scaled embedding with a
    sinusoidal encoding stayed at one token everywhere)."""
    from diffasr.diffusion import forward_mask, scaled_masked_cross_entropy
    from diffasr.espnet2.decoder import DiffusionTransformerDecoder

    torch.manual_seed(0)
    mask_id, end_id = 10, 11
    decoder = DiffusionTransformerDecoder(12, 32, attention_heads=2, linear_units=64, num_blocks=2, dropout_rate=0.0)
    memory, memory_lens = torch.randn(2, 20, 32), torch.tensor([20, 20])
    canvas = torch.tensor([[3, 4, 5, 5, 6, 2, 7, end_id, end_id, end_id], [9, 8, 7, 6, 5, end_id, end_id, end_id, end_id, end_id]])
    lengths = torch.tensor([10, 10])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=0.003)
    for _ in range(150):
        noisy, is_masked, p = forward_mask(canvas, lengths, mask_id)
        loss = scaled_masked_cross_entropy(decoder(memory, memory_lens, noisy, lengths)[0], canvas, is_masked, p, lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits, _ = decoder(memory, memory_lens, torch.full_like(canvas, mask_id), lengths)
    assert torch.equal(logits.argmax(-1), canvas)


def test_canvas_longer_than_the_position_table_is_refused():
    from diffasr.espnet2.decoder import DiffusionTransformerDecoder

    decoder = DiffusionTransformerDecoder(5, 8, attention_heads=2, linear_units=8, num_blocks=1, max_positions=4)
    with pytest.raises(ValueError, match="max_positions=4"):
        decoder(torch.randn(1, 3, 8), torch.tensor([3]), torch.zeros(1, 5, dtype=torch.long), torch.tensor([5]))


def test_a_dynamic_canvas_is_decoded_in_whole_blocks_with_the_steps_raised_to_match():
    model = tiny_model("film", canvas="dynamic", canvas_length=12).eval()  # canvas_train_margin 2
    monkeypatch_lengths = torch.full((2,), 5)
    model.ctc_lengths = lambda out, lens: monkeypatch_lengths[: out.size(0)]
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    _, _, out = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(steps=3, block_length=2))
    # 5 + 2 = 7 positions, rounded up to 4 blocks of 2; 3 steps raised to one per block
    assert out.tokens.size(1) == 8 and out.canvas_lengths.tolist() == [7, 7]
    assert out.num_denoise_calls == 4


def test_candidate_lengths_in_one_batch_match_separate_decodes_and_keep_the_best_scored():
    """candidates: 3 decodes L-1, L, L+1 as rows of one batch; each row equals the decode
    of that length alone, and the kept one is the row the model scores highest."""
    torch.manual_seed(0)
    model = tiny_model("film", canvas="dynamic", canvas_length=12).eval()  # canvas_train_margin 2
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    predicted = torch.tensor([3, 5])
    model.ctc_lengths = lambda out, lens: predicted
    ids, confidences, out = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(steps=2, candidates=3))
    assert out.tokens.size(0) == 2
    separate = {}
    for offset in (-1, 0, 1):  # the same lengths one at a time: margin 2 + offset
        separate[offset] = model.diffusion_decode(speech, speech_lengths, enroll,
                                                  DiffusionOptions(steps=2, canvas_decode_margin=2 + offset))
    for b in range(2):
        scores = {}
        for offset, (s_ids, s_conf, s_out) in separate.items():
            n = int(s_out.canvas_lengths[b])
            scores[offset] = float(s_out.confidence[b, :n].log().mean())
        best = max(scores, key=scores.get)
        assert int(out.canvas_lengths[b]) == int(predicted[b]) + 2 + best
        assert ids[b] == separate[best][0][b]
        assert confidences[b] == pytest.approx(separate[best][1][b], abs=1e-5)
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        DiffusionOptions(candidates=0)
    fixed = tiny_model("film", canvas="fixed").eval()
    with pytest.raises(ValueError, match="need a sized canvas"):
        fixed.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(steps=2, candidates=3))


def test_random_remasking_draws_from_each_utterances_own_generator_in_every_candidate():
    """Random remasking with one generator per utterance: each candidate row draws from its
    own copy of its utterance's generator, so that it equals the decode of that length
    alone with a fresh generator of the same seed; torch's global generator plays no part
    (ESPnet's layer stacks draw from it even in eval mode, without using the draw)."""
    torch.manual_seed(0)
    model = tiny_model("film", canvas="dynamic", canvas_length=12).eval()  # canvas_train_margin 2
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    model.ctc_lengths = lambda out, lens: torch.tensor([3, 5])
    seeded = lambda: [torch.Generator().manual_seed(11) for _ in range(2)]
    options = dict(steps=4, remasking="random")
    torch.manual_seed(123)
    ids, _, out = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(candidates=3, **options),
                                         generator=seeded())
    torch.manual_seed(456)
    again = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(candidates=3, **options),
                                   generator=seeded())
    assert again[0] == ids and torch.equal(again[2].commit_step, out.commit_step)
    other = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(candidates=3, **options),
                                   generator=[torch.Generator().manual_seed(12) for _ in range(2)])
    assert not torch.equal(other[2].commit_step, out.commit_step)  # the seed decides the order
    for b in range(2):
        margin = int(out.canvas_lengths[b]) - [3, 5][b]
        _, _, alone = model.diffusion_decode(speech, speech_lengths, enroll,
                                             DiffusionOptions(canvas_decode_margin=margin, **options), generator=seeded())
        n = int(out.canvas_lengths[b])
        assert out.commit_step[b, :n].tolist() == alone.commit_step[b, :n].tolist()
        assert out.tokens[b, :n].tolist() == alone.tokens[b, :n].tolist()
    with pytest.raises(ValueError, match="1 generators for a batch of 2 utterances"):
        model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(**options),
                               generator=[torch.Generator()])


@pytest.mark.parametrize("end_commit", ["any", "last"])
def test_a_model_that_writes_the_end_token_between_words_still_gives_every_word_in_order(end_commit):
    """The end token committed amid words (the canvas longer than the transcript) ends
    nothing: the fill is removed wherever it stands and the words keep their order."""
    model = tiny_model("film", canvas="fixed", canvas_length=8).eval()
    end, words = model.end_id, {0: 2, 2: 3, 5: 4}  # "a", "b", "c" at positions 0, 2, 5

    def decoder_forward(encoder_out, encoder_out_lens, tokens, lengths):
        logits = torch.zeros(*tokens.shape, len(TOKENS))
        logits[..., end] = 4.0  # the end token everywhere, the most confident guess
        for position, word in words.items():
            logits[:, position, end], logits[:, position, word] = 0.0, 3.0
        return logits, lengths

    model.decoder.forward = decoder_forward
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    ids, confidences, out = model.diffusion_decode(speech, speech_lengths, enroll,
                                                   DiffusionOptions(steps=4, end_commit=end_commit))
    assert ids == [[2, 3, 4], [2, 3, 4]]
    assert out.kept_positions == [[0, 2, 5], [0, 2, 5]] and len(confidences[0]) == 3
    if end_commit == "last":  # every end token committed after the words
        assert (out.commit_step[:, [1, 3, 4, 6, 7]].min(dim=1).values >= out.commit_step[:, [0, 2, 5]].max(dim=1).values).all()


def test_the_activity_loss_trains_the_frame_decision_and_needs_its_labels():
    from diffasr.espnet2.target_speaker import TargetSpeakerESPnetModel  # noqa: F401  (same mixin)
    from diffasr.espnet2.whisper_encoder import EncoderStates

    states = lambda activity: EncoderStates(activity, None, None)  # noqa: E731  (only the decision)

    class Encoder(torch.nn.Module):  # a frame-level decision like frame_transform's
        takes_enrollment = True

        def __init__(self):
            super().__init__()
            self.score = torch.nn.Linear(FEAT_DIM, 1)

        def forward(self, x, lengths, enrollment=None, input_transform=None):
            return x, lengths, states(torch.sigmoid(self.score(x)).squeeze(-1))

        def output_size(self):
            return FEAT_DIM

    model = tiny_model(None)
    model.encoder, model.activity_weight = Encoder(), 1.0
    b = batch()
    labels = torch.zeros(2, 12)
    labels[:, :5] = 1.0
    with pytest.raises(ValueError, match="needs the data '<dir>/target_activity.scp"):
        model.activity_loss(states(torch.rand(2, 12)), {}, {})
    stats = {}
    loss = model.activity_loss(model.encoder(b["speech"], b["speech_lengths"])[2],
                               {"target_activity": labels, "target_activity_lengths": torch.tensor([12, 9])}, stats)
    activity = model.encoder(b["speech"], b["speech_lengths"])[2].activity
    # each utterance's mean over its own frames, then the mean over the utterances
    expected = (torch.nn.functional.binary_cross_entropy(activity[0], labels[0])
                + torch.nn.functional.binary_cross_entropy(activity[1, :9], labels[1, :9])) / 2
    assert torch.allclose(loss, expected) and "loss_activity" in stats
    # so two processes' halves of the batch, weighted by utterances as ESPnet's trainer
    # weights them under DDP, give the one-process loss (utterances of unequal length)
    halves = [model.activity_loss(states(activity[i:i + 1]), {"target_activity": labels[i:i + 1],
                                                      "target_activity_lengths": torch.tensor([n])}, {})
              for i, n in enumerate((12, 9))]
    assert torch.allclose(sum(halves) / 2, loss)
    model.activity_weight = 0.0
    assert model.activity_loss(None, {"target_activity": labels}, {}) is None


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_train_autocast_bf16_multiplies_in_bf16_and_keeps_the_loss_and_gradients_fp32():
    model = tiny_model("film", ar_weight=0.5)
    dtypes = []
    model.decoder.register_forward_hook(lambda module, inputs, output: dtypes.append(output[0].dtype))

    def step(mode):
        model.train_autocast = mode
        model.zero_grad()
        torch.manual_seed(0)  # the same masks for both precisions
        loss, stats, _ = model(**batch())
        loss.backward()
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss32, grads32 = step("none")
    assert dtypes[-1] == torch.float32
    loss16, grads16 = step("bf16")
    assert dtypes[-1] == torch.bfloat16  # the decoder's matrix products ran in bf16
    assert loss16.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads16.values())
    assert grads16.keys() == grads32.keys()
    assert abs(float(loss16) - float(loss32)) < 0.02 * abs(float(loss32))
    assert float(loss16) != float(loss32)  # it did change the arithmetic


def test_train_autocast_is_checked():
    with pytest.raises(ValueError, match="train_autocast must be one of"):
        check_train_autocast("fp16")


def test_the_ctc_prior_canvas_is_the_ctc_greedy_hypothesis_before_the_first_step(monkeypatch):
    """Mask-CTC's start (issue #20's CTC prior): with no first pass given, the canvas the
    sampler starts from is this model's CTC greedy tokens, then the decode margin of end
    tokens (here the training one, 2)."""
    torch.manual_seed(0)
    model = tiny_model("film", canvas="dynamic", canvas_length=12).eval()  # canvas_train_margin 2
    greedy = [[2, 3, 4], [5]]
    model.ctc_greedy = lambda encoder_out, encoder_out_lens: [list(h) for h in greedy]
    started_from = {}
    real_deliberate = model_module.deliberate

    def deliberate(denoise, hyp, canvas_lengths, *args, **kwargs):
        started_from.update(tokens=hyp.clone(), lengths=canvas_lengths.clone())
        return real_deliberate(denoise, hyp, canvas_lengths, *args, **kwargs)

    monkeypatch.setattr(model_module, "deliberate", deliberate)
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    from diffasr.diffusion import DeliberationOptions
    ids, _, _ = model.deliberation_decode(speech, speech_lengths, enroll, options=DeliberationOptions(
        steps=1, mask_ratio=0.0))
    end = model.end_id
    assert started_from["lengths"].tolist() == [5, 3]
    assert started_from["tokens"].tolist() == [[2, 3, 4, end, end], [5, end, end, end, end]]
    assert ids == greedy  # nothing masked: the CTC hypothesis comes back as it was


def test_a_predicted_canvas_beyond_the_maximum_is_decoded_at_the_maximum_with_a_warning(caplog):
    torch.manual_seed(0)
    model = tiny_model("film", canvas="dynamic", canvas_length=12).eval()  # canvas_train_margin 2
    model.ctc_lengths = lambda out, lens: torch.tensor([30, 3])
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    with caplog.at_level("WARNING"):
        _, _, out = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(steps=2),
                                           names=["long-one", "short-one"])
    assert out.canvas_lengths.tolist() == [12, 5]
    assert "utterance 'long-one': its predicted canvas of 32 positions is longer than the canvas maximum 12" \
        in caplog.text
    assert "short-one" not in caplog.text


def test_training_and_decoding_size_their_canvases_only_through_the_models_canvas_policy():
    """The model holds no canvas sizing of its own: a policy that answers other lengths
    changes the canvases that training feeds the decoder and that decoding starts from."""

    @dataclasses.dataclass(frozen=True)
    class OddPolicy(CanvasPolicy):
        def training_canvas(self, text, text_lengths, end_id, *args, **kwargs):
            canvas, lengths = super().training_canvas(text, text_lengths, end_id, *args, **kwargs)
            wide = torch.full((canvas.size(0), 9), end_id, dtype=canvas.dtype)
            wide[:, : canvas.size(1)] = canvas
            return wide, torch.tensor([9, 7])

        def decoding_lengths(self, *args, **kwargs):
            return torch.tensor([3, 5])

    torch.manual_seed(0)
    model = tiny_model("film", canvas="dynamic", canvas_length=12)
    model.canvas_policy = OddPolicy("dynamic", length=12, margin=2)
    seen, hidden = [], model.decoder.hidden

    def recording_hidden(enc, enc_lens, canvas, lens, *rest):
        seen.append((tuple(canvas.shape), lens.tolist()))
        return hidden(enc, enc_lens, canvas, lens, *rest)

    model.decoder.hidden = recording_hidden
    model(**batch())
    assert seen == [((2, 9), [9, 7])]
    model.eval()
    speech, speech_lengths, *_ = batch().values()
    enroll = Enrollment(embed=torch.randn(speech.size(0), EMBED_DIM))
    _, _, out = model.diffusion_decode(speech, speech_lengths, enroll, DiffusionOptions(steps=2))
    assert out.canvas_lengths.tolist() == [3, 5]
