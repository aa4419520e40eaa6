"""The decoder teacher: zero-shot Whisper's next-token distributions on the clean target as soft targets."""

from pathlib import Path

import pytest
import torch

from diffasr.espnet2.decoder_teacher import TranscriptFold, decoder_teacher_kl
from diffasr.espnet2.task import DiffASRTask
from diffasr.whisper.tokenizer import WhisperTextTokenizer, whisper_token_list
from tiny_configs import tiny

TUNING = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf/tuning"


@pytest.fixture(scope="module")
def token_list():
    return whisper_token_list()


def test_the_fold_moves_cased_pieces_to_lower_case_and_drops_what_no_transcript_holds(token_list):
    ids = {t: i for i, t in enumerate(token_list)}
    probs = torch.zeros(len(token_list))
    probs[ids["ĠThe"]], probs[ids["."]], probs[ids["Ġthe"]], probs[ids["<|endoftext|>"]] = 0.4, 0.3, 0.2, 0.1
    probs[ids["Ġ1999"]] = 0.05
    folded = TranscriptFold(token_list)(probs[None])[0]
    assert folded[ids["Ġthe"]].item() == pytest.approx(0.6 / 0.7)
    assert folded[ids["<|endoftext|>"]].item() == pytest.approx(0.1 / 0.7)
    assert folded[ids["ĠThe"]] == 0 and folded[ids["."]] == 0 and folded[ids["Ġ1999"]] == 0
    assert folded.sum().item() == pytest.approx(1.0)
    # every piece of a transcript is kept where it is
    for piece in WhisperTextTokenizer().text2tokens("IT'S THE QUICK BROWN FOX"):
        one = torch.zeros(len(token_list))
        one[ids[piece]] = 1.0
        assert TranscriptFold(token_list)(one[None])[0, ids[piece]] == 1.0


def test_the_kl_is_zero_when_the_student_equals_the_teacher_and_grows_otherwise():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.softmax(torch.randn(2, 4, 10, generator=generator), dim=-1)
    targets = torch.tensor([[1, 2, 3, -1], [4, 5, -1, -1]])
    assert decoder_teacher_kl(teacher.log(), teacher, targets, -1).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 4, 10, generator=generator)
    kl = decoder_teacher_kl(other, teacher, targets, -1)
    assert kl.item() > 0.05
    # positions past each reference's end are not scored
    changed = other.clone()
    changed[0, 3], changed[1, 2:] = 100.0, -100.0
    assert decoder_teacher_kl(changed, teacher, targets, -1).item() == pytest.approx(kl.item())
    # a student nearer the teacher scores lower
    assert decoder_teacher_kl(0.5 * other + 0.5 * teacher.log(), teacher, targets, -1) < kl


def _ar_model(token_list, **model_conf):
    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(tiny(TUNING / "train_ar_whisper.yaml")), "--token_list", "x"])
    args.token_list = token_list
    args.model_conf.update(activity_weight=0.0, teacher_weight=0.0, **model_conf)
    torch.manual_seed(0)
    return DiffASRTask.build_model(args)


def test_the_ar_model_adds_the_weighted_kl_to_the_references_loss_and_trains_no_teacher(token_list):
    ids = WhisperTextTokenizer().text2ids("IT'S ME")
    teacher = torch.randn(1, 50, 384, generator=torch.Generator().manual_seed(1))
    batch = dict(speech=torch.randn(1, 16000, generator=torch.Generator().manual_seed(2)),
                 speech_lengths=torch.tensor([16000]), text=torch.tensor([ids]), text_lengths=torch.tensor([len(ids)]),
                 enroll_speech=torch.randn(1, 16000), enroll_speech_lengths=torch.tensor([16000]), utt_id=["a"])
    losses = {}
    for weight in (1.0, 3.0):
        model = _ar_model(token_list, decoder_teacher_weight=weight).eval()
        loss, stats, _ = model(**batch, teacher=teacher, teacher_lengths=torch.tensor([50]))
        losses[weight] = loss, stats
    (loss1, stats1), (loss3, _) = losses[1.0], losses[3.0]
    assert stats1["loss_decoder_teacher"] > 0
    assert torch.isclose(loss1, stats1["loss_att"] + stats1["loss_decoder_teacher"], rtol=1e-4)
    assert torch.isclose(loss3 - loss1, 2 * stats1["loss_decoder_teacher"], rtol=1e-3)
    # Whisper's decoder that gives the soft targets is neither a parameter nor in a checkpoint
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in _ar_model(token_list).parameters())
    assert set(model.state_dict()) == set(_ar_model(token_list).state_dict())
    with pytest.raises(ValueError, match="needs the data '<cache>/teacher.scp"):
        model(**batch)


def test_the_decoder_teacher_is_refused_for_a_decoder_that_is_not_whispers_causal_one(token_list):
    from diffasr.espnet2.decoder_teacher import build_decoder_teacher
    from diffasr.espnet2.whisper_decoder import WhisperDiffusionDecoder

    diffusion = WhisperDiffusionDecoder(vocab_size=len(token_list) + 1, encoder_output_size=384)
    with pytest.raises(ValueError, match="decoder_teacher_weight > 0 .* needs decoder: whisper_ar"):
        build_decoder_teacher(1.0, diffusion, token_list + ["<mask>"], teacher_only=False)
    assert build_decoder_teacher(1.0, diffusion, token_list, teacher_only=True) is None  # phase 1: no decoder pass
    with pytest.raises(ValueError, match="decoder_teacher_weight must be >= 0"):
        _ar_model(token_list, decoder_teacher_weight=-1.0)
