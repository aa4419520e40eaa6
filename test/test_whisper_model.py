"""The Whisper-based diffusion model: shifted decoder, canvases, length head, character CTC."""

from pathlib import Path

import pytest
import torch

from diffasr.espnet2.enrollment import Enrollment
from diffasr.espnet2.length import LengthPredictor
from diffasr.espnet2.task import DiffASRTask
from diffasr.espnet2.whisper_decoder import WhisperDiffusionDecoder
from diffasr.inference.options import DecodeOptions
from diffasr.whisper.tokenizer import WhisperTextTokenizer, whisper_token_list
from tiny_configs import tiny

TUNING = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf/tuning"
VOCAB = 51865


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return WhisperDiffusionDecoder(vocab_size=VOCAB, encoder_output_size=384).eval()


def _logits(decoder, tokens, causal):
    memory = torch.randn(1, 30, 384, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = decoder.hidden(memory, torch.tensor([30]), tokens, torch.tensor([tokens.size(1)]), causal=causal)
        return decoder.project(hidden)


def test_shifted_causal_pass_is_whispers_next_token_prediction(decoder):
    """With the shift, position i is predicted from positions < i: in a causal pass its
    logits ignore the token at i itself, and equal Whisper's own next-token logits."""
    import whisper

    tokens = torch.tensor([WhisperTextTokenizer().text2ids("HELLO THERE MY FRIEND")])
    changed = tokens.clone()
    changed[0, 2] = 1000
    first, second = _logits(decoder, tokens, True), _logits(decoder, changed, True)
    assert torch.allclose(first[0, :3], second[0, :3], atol=1e-5)  # positions 0..2 do not see token 2
    assert not torch.allclose(first[0, 3], second[0, 3], atol=1e-3)  # position 3 does
    # Whisper's decoder (its own causal mask, same weights) gives the same next-token logits.
    original = whisper.model.TextDecoder(VOCAB - 1, 448, 384, 6, 4)
    state = {k: v for k, v in decoder.decoder.state_dict().items()}
    state["token_embedding.weight"] = state["token_embedding.weight"][: VOCAB - 1]
    original.load_state_dict(state)
    memory = torch.randn(1, 30, 384, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = original(torch.cat([decoder.prompt[None], tokens], dim=1), memory)
    assert torch.allclose(first[0, :, : VOCAB - 1], reference[0, 1:-1], atol=1e-3)


def test_bidirectional_pass_reads_later_positions(decoder):
    tokens = torch.tensor([WhisperTextTokenizer().text2ids("HELLO THERE MY FRIEND")])
    changed = tokens.clone()
    changed[0, 3] = 1000
    assert not torch.allclose(_logits(decoder, tokens, False)[0, 0], _logits(decoder, changed, False)[0, 0], atol=1e-4)


def test_length_head_learns_lengths_from_the_frames():
    """Lengths proportional to the frame count (no content): the head must use its frame input."""
    torch.manual_seed(0)
    head = LengthPredictor(8)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    frames = torch.randint(20, 200, (64,))
    encoder_out = torch.randn(64, 200, 8)
    lengths = frames // 10
    for _ in range(300):
        loss, _ = head.loss(encoder_out, frames, lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    error = (head.predict(encoder_out, frames) - lengths).abs().float().mean()
    assert error < 1.0, f"mean length error {error:.2f} tokens"


def _model(**model_conf):
    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(tiny(TUNING / "train_diffusion_whisper.yaml")), "--token_list", "x"])
    args.token_list = whisper_token_list()
    args.model_conf.update(model_conf)
    torch.manual_seed(0)
    return DiffASRTask.build_model(args)


def test_training_canvases_by_mode():
    tokenizer = WhisperTextTokenizer()
    ids = [tokenizer.text2ids("HELLO WORLD"), tokenizer.text2ids("A MUCH LONGER SENTENCE THAN THE FIRST ONE")]
    text = torch.full((2, max(map(len, ids))), -1)
    for b, i in enumerate(ids):
        text[b, : len(i)] = torch.tensor(i)
    lengths = torch.tensor([len(i) for i in ids])
    speech = torch.zeros(2, 3 * 16000)
    speech_lengths = torch.tensor([3 * 16000, 2 * 16000])

    exact = _model(canvas_train_margin=1, canvas_margin_draw="fixed")  # canvas: length, one end token
    canvas, canvas_lengths = exact.canvas_policy.training_canvas(text, lengths, exact.end_id)
    assert canvas_lengths.tolist() == (lengths + 1).tolist()
    assert canvas[0, len(ids[0])] == exact.end_id

    by_duration = _model(canvas="duration", canvas_rate=4.0, canvas_train_margin=3, length_weight=0.0)
    seconds = by_duration._input_seconds(speech, speech_lengths)  # Whisper's encoder knows its input
    canvas, canvas_lengths = by_duration.canvas_policy.training_canvas(text, lengths, by_duration.end_id, seconds,
                                                                       by_duration.max_hypothesis_length)
    # ceil(4 * 3 s) + 3 = 15 for the first; the second's transcript (9 tokens) fits 4 * 2 + 3 = 11
    assert canvas_lengths.tolist() == [15, 11]
    assert (canvas[0, len(ids[0]): 15] == by_duration.end_id).all()


def test_length_mode_and_length_weight_go_together():
    with pytest.raises(ValueError, match="canvas: length and length_weight"):
        _model(length_weight=0.0)


def test_character_ctc_trains_and_decodes_to_tokens():
    model = _model()
    assert model.ctc.ctc_lo.out_features == 30  # blank, unk, space, apostrophe, a-z
    tokenizer = WhisperTextTokenizer()
    ids = tokenizer.text2ids("IT'S ME")
    chars, lengths = model.ctc_units.targets(torch.tensor([ids]), torch.tensor([len(ids)]))
    assert model.ctc_units.text(chars[0].tolist()) == "IT'S ME" and int(lengths[0]) == 7
    assert model.ctc_units.tokens(chars[0].tolist()) == ids


def test_subword_ctc_units_are_the_recipes_sentencepiece_pieces(tmp_path):
    import sentencepiece

    corpus = tmp_path / "text"
    corpus.write_text("IT'S ME\nHELLO WORLD\nIT IS A WORLD OF HELLOS\nME AND THE WORLD\n" * 20)
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "bpe"), vocab_size=20,
                                             model_type="unigram", character_coverage=1.0)
    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(tiny(TUNING / "train_diffusion_whisper.yaml")), "--token_list", "x"])
    args.token_list = whisper_token_list()
    args.model_conf.update(ctc_units="bpe")
    args.bpemodel = str(tmp_path / "bpe.model")
    model = DiffASRTask.build_model(args)
    assert model.ctc.ctc_lo.out_features == 21  # the blank, then the 20 pieces
    ids = WhisperTextTokenizer().text2ids("IT'S ME")
    units, lengths = model.ctc_units.targets(torch.tensor([ids, ids[:0] + [-1] * len(ids)]),
                                             torch.tensor([len(ids), 0]))
    pieces = sentencepiece.SentencePieceProcessor(model_file=args.bpemodel).encode("IT'S ME")
    assert units[0, : lengths[0]].tolist() == [p + 1 for p in pieces] and int(lengths[1]) == 0
    with_blanks = [0] + units[0, : lengths[0]].tolist()[:1] + [0] + units[0, 1: lengths[0]].tolist()
    assert model.ctc_units.text(with_blanks) == "IT'S ME" and model.ctc_units.tokens(with_blanks) == ids
    args.bpemodel = None
    with pytest.raises(ValueError, match="ctc_units: bpe needs --bpemodel"):
        DiffASRTask.build_model(args)


def test_ar_model_trains_a_character_ctc_on_the_conditioned_output_and_searches_without_it():
    """The AR baseline's CTC over characters (its token list is Whisper's): the loss is ESPnet's
    CTC/attention mix, the CTC gradient reaches the encoder's output, and the beam search,
    which extends tokens, leaves the character CTC out."""
    from diffasr.espnet2.target_speaker import TargetSpeakerESPnetModel
    from diffasr.inference.speech2text import Speech2Text

    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(tiny(TUNING / "train_ar_whisper.yaml")), "--token_list", "x"])
    args.token_list = whisper_token_list()
    args.model_conf.update(activity_weight=0.0, teacher_weight=0.0)  # these batches carry no frame targets
    args.model_conf.update(ctc_weight=0.3, ctc_units="chars")
    torch.manual_seed(0)
    model = DiffASRTask.build_model(args)
    assert isinstance(model, TargetSpeakerESPnetModel) and model.ctc.ctc_lo.out_features == 30
    ids = WhisperTextTokenizer().text2ids("IT'S ME")
    batch = dict(speech=torch.randn(1, 16000), speech_lengths=torch.tensor([16000]),
                 text=torch.tensor([ids]), text_lengths=torch.tensor([len(ids)]),
                 enroll_speech=torch.randn(1, 16000), enroll_speech_lengths=torch.tensor([16000]), utt_id=["a"])
    loss, stats, _ = model(**batch)
    assert torch.isclose(loss, 0.3 * stats["loss_ctc"] + 0.7 * stats["loss_att"], rtol=1e-4)
    chars, lengths = model.ctc_units.targets(batch["text"], batch["text_lengths"])
    frames, frame_lengths = model.encode(batch["speech"], batch["speech_lengths"],
                                         Enrollment.from_batch(batch, batch["utt_id"]))
    model.ctc(frames, frame_lengths, chars, lengths).backward()
    assert model.ctc.ctc_lo.weight.grad.abs().sum() > 0
    # the trainable encoder part below the CTC head gets the CTC's gradient too
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.encoder.named_parameters()
               if p.requires_grad)
    search = Speech2Text.__new__(Speech2Text)
    search.model, search.device = model.eval(), "cpu"
    search.options = DecodeOptions.from_flat(dict(beam_size=1, ctc_weight=0.3))
    assert "ctc" not in search._build_beam_search().full_scorers
