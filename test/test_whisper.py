"""Whisper, offline: the converted weights, the tokenizer, the frozen encoder and its cache."""

import shutil
from pathlib import Path
import struct

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from diffasr.data.voices import VOICES, synthesize
from diffasr.espnet2.encoder_cache import EncoderCacheError, check_cache, extract
from diffasr.espnet2.enrollment import Enrollment
from diffasr.espnet2.whisper_decoder import WhisperARDecoder
from diffasr.espnet2.whisper_encoder import WhisperEncoder
from diffasr.whisper.checkpoint import (
    WhisperModelError,
    convert_ctranslate2,
    load_whisper,
    read_ctranslate2,
    shipped_model_dir,
    whisper_checkpoint,
)
from diffasr.whisper.tokenizer import WhisperTextTokenizer, whisper_token_list

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / \
    "egs/librimix_target/asr1/conf/tuning/train_diffusion_whisper.yaml"
SENTENCES = ("Hello world, this is a test of the speech recognizer.", "She sells sea shells by the sea shore.")


@pytest.fixture(scope="module")
def whisper():
    return load_whisper("tiny.en")


@pytest.fixture(scope="module")
def speech():
    return [synthesize(VOICES[0], s.upper().replace(",", "").replace(".", "")) for s in SENTENCES]


def test_converted_encoder_matches_ctranslate2(whisper, speech):
    import ctranslate2
    from whisper.audio import N_SAMPLES, log_mel_spectrogram

    mel = log_mel_spectrogram(torch.from_numpy(speech[0]), padding=N_SAMPLES)[:, :3000]
    with torch.no_grad():
        ours = whisper.encoder(mel[None]).numpy()
    engine = ctranslate2.models.Whisper(str(shipped_model_dir()), device="cpu", compute_type="float32")
    theirs = np.array(engine.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None].numpy())),
                                    to_cpu=True))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3


def test_converted_decoder_decodes_like_faster_whisper(whisper, speech):
    """Greedy decoding of the same features: openai-whisper's decoder over our weights,
    and faster-whisper (CTranslate2's own weights), give the same text."""
    import whisper as openai_whisper
    from faster_whisper import WhisperModel

    engine = WhisperModel(str(shipped_model_dir()), device="cpu", compute_type="float32")
    for audio in speech:
        features = engine.feature_extractor(audio)  # faster-whisper's log-mel, [80, frames]
        segments, _ = engine.transcribe(audio, beam_size=1, temperature=0.0, without_timestamps=True,
                                        language="en", condition_on_previous_text=False, vad_filter=False)
        theirs = " ".join(s.text.strip() for s in segments)
        mel = openai_whisper.pad_or_trim(torch.from_numpy(features), 3000)
        ours = openai_whisper.decode(whisper, mel, openai_whisper.DecodingOptions(
            language="en", without_timestamps=True, fp16=False)).text
        assert ours.strip() == theirs.strip() and len(ours.split()) >= 4


def _copy_model(tmp_path):
    target = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), target)
    return target


def test_truncated_or_foreign_model_files_are_named(tmp_path):
    model = _copy_model(tmp_path)
    data = (model / "model.bin").read_bytes()
    (model / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(WhisperModelError, match=r"model\.bin: truncated .*tools/install\.sh"):
        read_ctranslate2(model / "model.bin")
    (model / "model.bin").write_bytes(struct.pack("<I", 5) + data[4:])
    with pytest.raises(WhisperModelError, match="binary version 5"):
        read_ctranslate2(model / "model.bin")
    spec = b"TransformerSpec"
    (model / "model.bin").write_bytes(struct.pack("<IH", 6, len(spec) + 1) + spec + b"\0")
    with pytest.raises(WhisperModelError, match="TransformerSpec"):
        read_ctranslate2(model / "model.bin")
    (model / "model.bin").unlink()
    with pytest.raises(WhisperModelError, match=r"model\.bin: no such file"):
        whisper_checkpoint(str(model))
    with pytest.raises(WhisperModelError, match="not available offline"):
        whisper_checkpoint("large-v3")


def test_conversion_splits_the_fused_projections(tmp_path):
    checkpoint = convert_ctranslate2(shipped_model_dir())
    state, dims = checkpoint["model_state_dict"], checkpoint["dims"]
    assert dims["n_audio_layer"] == dims["n_text_layer"] == 4 and dims["n_vocab"] == 51864
    assert state["encoder.blocks.0.attn.query.weight"].shape == (384, 384)
    assert "encoder.blocks.0.attn.key.bias" not in state  # Whisper's key projection has no bias
    variables, _ = read_ctranslate2(shipped_model_dir() / "model.bin")
    fused = variables["decoder/layer_2/attention/linear_1/weight"].astype(np.float32)
    assert np.array_equal(state["decoder.blocks.2.cross_attn.value.weight"].numpy(), fused[384:])


def test_tokenizer_round_trip_and_token_list():
    tokenizer = WhisperTextTokenizer()
    text = "DON'T STOP BELIEVING IN ANTIDISESTABLISHMENTARIANISM"
    tokens = tokenizer.text2tokens(text)
    assert tokens[:3] == ["Ġdon", "'t", "Ġstop"]
    assert tokenizer.tokens2text(tokens) == text
    token_list = whisper_token_list()
    assert len(token_list) == 51865 and token_list[-1] == "<mask>"
    assert token_list[50256] == "<|endoftext|>" and token_list[50362] == "<|notimestamps|>"
    assert len(set(token_list)) == len(token_list)


def _encoder(**conf):
    torch.manual_seed(0)
    return WhisperEncoder(**conf).eval()


def test_frozen_part_does_not_depend_on_batch_padding(speech):
    encoder = _encoder(adapter_blocks=0)
    lengths = torch.tensor([len(s) for s in speech])
    batch = torch.zeros(2, int(lengths.max()))
    for b, s in enumerate(speech):
        batch[b, : len(s)] = torch.from_numpy(s)
    frames, frame_lengths = encoder.frozen(batch, lengths)
    for b, s in enumerate(speech):
        alone, alone_lengths = encoder.frozen(torch.from_numpy(s)[None], lengths[b: b + 1])
        assert int(frame_lengths[b]) == int(alone_lengths[0]) == (len(s) // 160 + 1) // 2
        assert torch.allclose(frames[b, : frame_lengths[b]], alone[0], atol=1e-4)


def test_over_long_audio_is_refused_with_the_limit():
    encoder = _encoder(adapter_blocks=0)
    with pytest.raises(ValueError, match=r"31\.0 s is longer than the 30 s"):
        encoder.frozen(torch.zeros(1, 31 * 16000), torch.tensor([31 * 16000]))


@pytest.mark.parametrize("kind,conditioning_conf", [
    ("cross_attention", {}), ("frame_transform", {}),
    ("frame_transform", {"detector_layers": 1, "detector_dim": 16}),  # the TS-VAD decides p_t
])
@pytest.mark.parametrize("frozen_layers", [2, 4])
def test_each_conditioning_kind_starts_as_the_unconditioned_encoder_and_then_listens(
        speech, kind, conditioning_conf, frozen_layers):
    # At initialisation the output equals the unconditioned encoder's (with the same
    # weights); one optimiser step on a loss that needs the enrollment makes it matter.
    conf = dict(frozen_layers=frozen_layers, adapter_blocks=1, adapter_size=32, enrollment_pool=2)
    plain = _encoder(**conf)
    conditioned = _encoder(enrollment=kind, conditioning_conf=conditioning_conf, **conf)
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    audio = torch.from_numpy(speech[0])[None]
    lengths = torch.tensor([audio.size(1)])
    enroll = [Enrollment(speech=torch.from_numpy(s)[None]) for s in speech]
    reference = plain(audio, lengths)[0]
    outputs = [conditioned(audio, lengths, enrollment=e)[0] for e in enroll]
    assert all(torch.allclose(o, reference, atol=1e-5) for o in outputs)
    conditioned.train()
    trainable = [p for p in conditioned.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    targets = [torch.randn_like(reference) for _ in enroll]  # a different output wanted for each voice
    for _ in range(2):  # the first step opens the gates / moves the transforms, the second the rest
        loss = sum((conditioned(audio, lengths, enrollment=e)[0] - t).pow(2).mean() for e, t in zip(enroll, targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    conditioned.eval()
    after = [conditioned(audio, lengths, enrollment=e)[0] for e in enroll]
    assert not torch.allclose(after[0], after[1], atol=1e-4)


def test_prefix_segment_embeddings_start_at_zero():
    encoder = _encoder(enrollment="prefix", adapter_blocks=0, frozen_layers=2)
    assert torch.count_nonzero(encoder.segment) == 0


def test_the_enrollment_is_an_argument_not_state(speech):
    # The same encoder with two enrollments in turn gives each its own output, and a call
    # without one is refused: nothing of an earlier call is kept.
    encoder = _encoder(enrollment="prefix", frozen_layers=2, adapter_blocks=0)
    torch.nn.init.normal_(encoder.segment, std=1.0)
    audio, lengths = torch.from_numpy(speech[0])[None], torch.tensor([len(speech[0])])
    first = encoder(audio, lengths, enrollment=Enrollment(speech=torch.from_numpy(speech[0])[None]))[0]
    second = encoder(audio, lengths, enrollment=Enrollment(speech=torch.from_numpy(speech[1])[None]))[0]
    again = encoder(audio, lengths, enrollment=Enrollment(speech=torch.from_numpy(speech[0])[None]))[0]
    assert torch.equal(first, again) and not torch.allclose(first, second)
    with pytest.raises(ValueError, match="no enroll_speech was given"):
        encoder(audio, lengths)
    assert not any(isinstance(v, (torch.Tensor, Enrollment)) and k.startswith("_")
                   for k, v in vars(encoder).items())


def test_the_activity_detector_reads_the_enrollment(speech):
    # The TS-VAD's per-frame probability depends on whose enrollment it is given, and its
    # options are checked and confined to the kind that has them.
    encoder = _encoder(enrollment="frame_transform", frozen_layers=2, adapter_blocks=0,
                       conditioning_conf={"detector_layers": 1, "detector_dim": 16})
    audio, lengths = torch.from_numpy(speech[0])[None], torch.tensor([len(speech[0])])
    probabilities = [encoder(audio, lengths, enrollment=Enrollment(speech=torch.from_numpy(s)[None]))[2].activity
                     for s in speech[:2]]
    assert probabilities[0].shape == (1, int(encoder.frozen(audio, lengths)[1][0]))
    assert not torch.allclose(probabilities[0], probabilities[1])
    with pytest.raises(ValueError, match="detector_layers must be >= 0"):
        _encoder(enrollment="frame_transform", frozen_layers=2, adapter_blocks=0,
                 conditioning_conf={"detector_layers": -1})
    with pytest.raises(ValueError, match="conditioning_conf is for enrollment"):
        _encoder(enrollment="prefix", frozen_layers=2, adapter_blocks=0, conditioning_conf={"detector_layers": 1})


def test_conditioning_kinds_need_a_trainable_point():
    with pytest.raises(ValueError, match="acts before trainable layers"):
        _encoder(enrollment="cross_attention", frozen_layers=4, adapter_blocks=0)


def _data_dir(root, speech, enroll):
    root.mkdir(parents=True)
    import soundfile

    wav, enr = [], []
    for i, (s, e) in enumerate(zip(speech, enroll)):
        soundfile.write(root / f"u{i}.wav", s, 16000)
        soundfile.write(root / f"e{i}.wav", e, 16000)
        wav.append(f"utt{i} {root / f'u{i}.wav'}\n")
        enr.append(f"utt{i} {root / f'e{i}.wav'}\n")
    (root / "wav.scp").write_text("".join(wav))
    (root / "enroll.scp").write_text("".join(enr))
    (root / "text").write_text("".join(f"utt{i} {s.upper()}\n" for i, s in enumerate(SENTENCES)))
    return root


def test_cache_gives_the_same_loss_as_raw_audio(tmp_path, speech):
    """Training from the cache and from audio: the same batch, the same loss."""
    from diffasr.espnet2.task import DiffASRTask

    enroll = [s[::-1].copy() for s in speech]  # any audio will do as an enrollment here
    data = _data_dir(tmp_path / "data", speech, enroll)
    config = yaml.safe_load(open(DEFAULT_CONFIG))
    cache = extract(config["encoder_conf"], data, tmp_path / "cache", nj=1)
    token_list = tmp_path / "tokens.txt"
    token_list.write_text("".join(t + "\n" for t in whisper_token_list()))
    # In fp32: under bf16 autocast the raw-audio pass would run the frozen layers in bf16,
    # the cache holds them as computed in fp32 (both are right; they are not equal).
    args = DiffASRTask.get_parser().parse_args(["--config", str(DEFAULT_CONFIG), "--token_list", str(token_list),
                                                "--model_conf", "train_autocast=none",
                                                "--model_conf", "activity_weight=0",  # no frame targets here
                                                "--model_conf", "teacher_weight=0"])
    torch.manual_seed(0)
    model = DiffASRTask.build_model(args).eval()
    tokenizer = WhisperTextTokenizer()
    ids = [tokenizer.text2ids(s.upper()) for s in SENTENCES]
    text = torch.full((2, max(map(len, ids))), -1)
    for b, i in enumerate(ids):
        text[b, : len(i)] = torch.tensor(i)
    text_lengths = torch.tensor([len(i) for i in ids])

    def pad(arrays):
        lengths = torch.tensor([len(a) for a in arrays])
        out = torch.zeros(len(arrays), int(lengths.max()), *arrays[0].shape[1:])
        for b, a in enumerate(arrays):
            out[b, : len(a)] = torch.from_numpy(np.asarray(a))
        return out, lengths

    feats = kaldiio.load_scp(str(cache / "feats.scp"))
    enroll_feats = kaldiio.load_scp(str(cache / "enroll_feats.scp"))
    losses = []
    for speech_batch, enroll_batch in (
        (pad(speech), pad(enroll)),
        (pad([feats[f"utt{i}"] for i in range(2)]), pad([enroll_feats[f"utt{i}"] for i in range(2)])),
    ):
        torch.manual_seed(1)  # the same masking draws
        loss, _, _ = model(*speech_batch, text, text_lengths, enroll_speech=enroll_batch[0],
                           enroll_speech_lengths=enroll_batch[1])
        losses.append(float(loss))
    # fp32 either way, but the raw pass runs the frozen layers on a padded batch: the pretrained
    # decoder's cross-attention carries that rounding to ~3e-4 of the loss; another cache would not be close.
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)

    # The cache is refused for another frozen encoder and for another set.
    check_cache(cache / "feats.scp", config["encoder_conf"], ["utt0", "utt1"], "text")
    with pytest.raises(EncoderCacheError, match="another frozen encoder"):
        check_cache(cache / "feats.scp", dict(config["encoder_conf"], frozen_layers=3))
    with pytest.raises(EncoderCacheError, match="'utt7'"):
        check_cache(cache / "feats.scp", config["encoder_conf"], ["utt0", "utt7"], "data/x/text")
    (cache / "meta.json").unlink()
    with pytest.raises(EncoderCacheError, match="not a complete encoder cache"):
        check_cache(cache / "feats.scp", config["encoder_conf"])


def test_ar_decoder_steps_match_teacher_forcing(speech):
    torch.manual_seed(0)
    decoder = WhisperARDecoder(vocab_size=51865, encoder_output_size=384).eval()
    memory = torch.randn(1, 50, 384)
    ys = torch.tensor([[50362] + WhisperTextTokenizer().text2ids("HELLO WORLD HOW ARE YOU")])
    with torch.no_grad():
        full = torch.log_softmax(decoder(memory, torch.tensor([50]), ys, torch.tensor([ys.size(1)]))[0][0], -1)
        state = [None]
        for t in range(1, ys.size(1) + 1):
            step, state = decoder.batch_score(ys[:, :t], state, memory)
            assert torch.allclose(step[0], full[t - 1], atol=1e-4)
