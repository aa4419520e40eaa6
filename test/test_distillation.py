"""Sequence-level distillation (model_conf distill_share) and the diffusion system started from the
AR system (--init_param): the AR outputs file and its fingerprint, the references replaced where
torch's generator says, training on them, and every AR weight loaded."""

import json
import logging
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import sentencepiece as spm
import soundfile
import torch
import yaml
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

import diffasr.inference.distillation as distillation_module
from diffasr.bin import asr_inference, asr_train
from diffasr.bin import make_distillation as make_distillation_bin
from diffasr.datadir import read_kv, write_jsonl
from diffasr.espnet2.distillation import (
    TEXT_DISTILL,
    DistillationError,
    check_distillation,
    data_part,
    distilled_targets,
    tokens_part,
)
from diffasr.espnet2.model import DiffusionASRModel
from diffasr.espnet2.task import DiffASRTask
from diffasr.inference.distillation import expected_parts, make_distillation
from diffasr.whisper.tokenizer import whisper_token_list
from test_espnet_model import batch, tiny_model
from tiny_configs import tiny

TUNING = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf/tuning"
# Each example's reference; the last example's target is absent (empty reference).
REFERENCES = {"spk0-utt0": "HELLO WORLD", "spk0-utt1": "GOOD MORNING", "spk1-utt2": "THE CAT SAT",
              "spk1-utt3": ""}
# What an AR system might have said instead (other words, so that the two can be told apart).
AR_OUTPUTS = {"spk0-utt0": "GOOD DOG", "spk0-utt1": "A DOG RAN HOME", "spk1-utt2": "HELLO CAT", "spk1-utt3": ""}
SAMPLES, SOURCE_SAMPLES, OFFSET, GAIN = 6400, 4800, 800, 0.5
EMBED_DIM = 192


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A training set of four mixtures (a target source at OFFSET, GAIN, plus noise; the last
    with its target absent), described by mixture.jsonl, with a BPE model and token list; and
    ``clean/``: the same examples' targets alone, as files."""
    root = tmp_path_factory.mktemp("distill_corpus")
    rng = np.random.default_rng(0)
    (root / "text.raw").write_text("\n".join(list(REFERENCES.values()) + list(AR_OUTPUTS.values())) * 5 + "\n")
    spm.SentencePieceTrainer.train(
        input=str(root / "text.raw"), model_prefix=str(root / "bpe"), vocab_size=20, model_type="unigram",
        character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=1, pad_id=-1, control_symbols="<blank>",
        minloglevel=2)
    model = spm.SentencePieceProcessor(model_file=str(root / "bpe.model"))
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    tokens = ["<blank>", "<unk>"] + [p for p in pieces if p not in ("<blank>", "<unk>")] + ["<mask>", "<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (root / "clean").mkdir()
    records, clean_wavs = [], {}
    for utt, reference in REFERENCES.items():
        mixture = (0.05 * rng.standard_normal(SAMPLES)).astype(np.float32)
        target = dict(utt=None, spk="spkx", path=None, text="", gain=0.0, offset_samples=0)
        if reference:
            source = (0.3 * rng.standard_normal(SOURCE_SAMPLES)).astype(np.float32)
            soundfile.write(root / f"{utt}.source.wav", source, 16000, subtype="FLOAT")
            placed = np.zeros(SAMPLES, np.float32)
            placed[OFFSET:OFFSET + SOURCE_SAMPLES] = GAIN * source
            mixture += placed
            soundfile.write(root / "clean" / f"{utt}.wav", placed, 16000, subtype="FLOAT")
            clean_wavs[utt] = root / "clean" / f"{utt}.wav"
            target = dict(utt=f"{utt}-source", spk=utt[:4], path=str(root / f"{utt}.source.wav"), text=reference,
                          gain=GAIN, offset_samples=OFFSET)
        soundfile.write(root / f"{utt}.wav", mixture, 16000, subtype="FLOAT")
        records.append(dict(utt=utt, target=target, interferers=[]))
    write_jsonl(root / "mixture.jsonl", records)
    embeds = {utt: rng.standard_normal(EMBED_DIM).astype(np.float32) for utt in REFERENCES}
    kaldiio.save_ark(str(root / "enroll_embed.ark"), embeds, scp=str(root / "enroll_embed.scp"))
    kaldiio.save_ark(str(root / "clean/enroll_embed.ark"), {u: embeds[u] for u in clean_wavs},
                     scp=str(root / "clean/enroll_embed.scp"))
    lines = dict(
        wav_scp=[f"{u} {root / u}.wav" for u in REFERENCES],
        text=[f"{u} {t}".rstrip() for u, t in REFERENCES.items()],
        utt2spk=[f"{u} {u[:4]}" for u in REFERENCES],
        speech_shape=[f"{u} {SAMPLES}" for u in REFERENCES],
        text_shape=[f"{u} {max(1, len(model.encode(t)))}" for u, t in REFERENCES.items()],
    )
    for name, content in lines.items():
        (root / name.replace("wav_scp", "wav.scp")).write_text("\n".join(content) + "\n")
    (root / "clean/wav.scp").write_text("".join(f"{u} {p}\n" for u, p in clean_wavs.items()))
    return root


@pytest.fixture(scope="module")
def ar_exp(corpus, tmp_path_factory):
    """An AR experiment dir (config.yaml, model.pth): the tiny AR conformer, random weights."""
    exp = tmp_path_factory.mktemp("asr_ar")
    args = DiffASRTask.get_parser().parse_args([
        "--config", str(tiny(TUNING / "train_ar_conformer.yaml")), "--token_list", str(corpus / "tokens.txt"),
        "--token_type", "bpe", "--bpemodel", str(corpus / "bpe.model")])
    torch.manual_seed(0)
    model = DiffASRTask.build_model(args)
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(
        {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}))
    return exp


@pytest.fixture(scope="module")
def decode_config(tmp_path_factory):
    # a length bonus makes each hypothesis run to the length limit: words that depend on the audio
    path = tmp_path_factory.mktemp("decode") / "decode_ar_beam2.yaml"
    path.write_text("beam_size: 2\nctc_weight: 0.3\npenalty: 5.0\nmaxlenratio: 0.5\n")
    return path


@pytest.fixture(scope="module")
def distilled(corpus, ar_exp, decode_config, tmp_path_factory):
    """The AR system's outputs on the mixtures, decoded in two processes."""
    out = tmp_path_factory.mktemp("dump") / "distill" / "train"
    return make_distillation(ar_exp, "model.pth", decode_config, corpus, out, audio="mixture", nj=2, batch_size=2)


def _read_text(path: Path) -> dict:
    return read_kv(path, allow_empty_value=True)


def _token_ids(corpus: Path, sentence: str) -> list:
    tokens = (corpus / "tokens.txt").read_text().splitlines()
    pieces = spm.SentencePieceProcessor(model_file=str(corpus / "bpe.model")).encode(sentence, out_type=str)
    return [tokens.index(p) for p in pieces]


def _write_distillation(directory: Path, outputs: dict, parts: dict) -> Path:
    """A distillation file as make_distillation writes it: text, and meta.json with its parts."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "text").write_text("".join(f"{u} {t}".rstrip() + "\n" for u, t in outputs.items()))
    (directory / "meta.json").write_text(json.dumps(parts))
    return directory / "text"


# ---------------------------------------------------------------------------- the replacement
def _padded(rows):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows]), torch.tensor([len(r) for r in rows])


def test_distill_share_replaces_exactly_the_examples_torchs_generator_draws():
    text, text_lengths = _padded([[2, 3], [4], [5, 5, 5], [2], [3, 4], [], [5], [2, 2]])
    distill, distill_lengths = _padded([[6, 6, 6, 6], [7], [], [6, 7], [7], [6], [7, 7], [6]])
    for share, seed in ((0.0, 0), (1.0, 0), (0.5, 3)):
        torch.manual_seed(seed)
        targets, lengths, chosen = distilled_targets(text, text_lengths, distill, distill_lengths, share)
        torch.manual_seed(seed)
        expected = torch.rand(8) < share  # the same generator, the same draw
        assert chosen.tolist() == expected.tolist()
        for b in range(8):
            source, source_lengths = (distill, distill_lengths) if expected[b] else (text, text_lengths)
            assert int(lengths[b]) == int(source_lengths[b])
            assert targets[b, : lengths[b]].tolist() == source[b, : source_lengths[b]].tolist()
            assert (targets[b, lengths[b]:] == -1).all()
    assert not expected.all() and expected.any()  # the 0.5 draw kept some references and replaced others


def _seen_targets(model, monkeypatch, **extra):
    """The targets the model's losses read (after any replacement), per utterance, and the loss."""
    seen = {}

    def spy(text, text_lengths, utt_ids):
        seen.update({u: text[b, : text_lengths[b]].tolist() for b, u in enumerate(utt_ids)})

    monkeypatch.setattr(model, "_check_transcripts", spy)
    loss, _, _ = model(**dict(batch(), **extra))
    return seen, loss


def test_the_model_trains_on_the_ar_outputs_where_distill_share_draws_them(monkeypatch):
    distill = dict(text_distill=torch.tensor([[4, 4, 4, 4], [3, -1, -1, -1]]),
                   text_distill_lengths=torch.tensor([4, 1]))
    references = {"spk1-a": [2, 3, 4], "spk2-b": [5, 2]}
    outputs = {"spk1-a": [4, 4, 4, 4], "spk2-b": [3]}
    # share 0 (the default): the references and the loss of a batch without the AR outputs,
    # nothing drawn (training draws exactly what it drew before)
    model = tiny_model(distill_share=0.0)
    torch.manual_seed(0)
    seen, loss_given = _seen_targets(model, monkeypatch, **distill)
    next_draw = torch.rand(1)
    torch.manual_seed(0)
    _, loss_without = _seen_targets(model, monkeypatch)
    assert seen == references and torch.equal(loss_given, loss_without) and torch.equal(torch.rand(1), next_draw)
    # share 1: every example's AR output, in every loss
    model = tiny_model(distill_share=1.0)
    assert _seen_targets(model, monkeypatch, **distill)[0] == outputs
    _, stats, _ = model(**dict(batch(), **distill))
    assert float(stats["distilled"]) == 1.0
    # share 0.5: the examples that the first draw of torch's generator picks
    model = tiny_model(distill_share=0.5)
    draws = set()
    for seed in range(4):
        torch.manual_seed(seed)
        seen = _seen_targets(model, monkeypatch, **distill)[0]
        torch.manual_seed(seed)
        chosen = torch.rand(2) < 0.5
        assert seen == {u: (outputs if chosen[b] else references)[u] for b, u in enumerate(references)}
        draws.add(tuple(chosen.tolist()))
    assert {(True, False), (False, True)} <= draws  # each example kept by one draw, replaced by another
    # validation reads the references
    assert _seen_targets(model.eval(), monkeypatch, **distill)[0] == references


def test_distill_share_out_of_range_or_without_the_ar_outputs_is_refused():
    with pytest.raises(ValueError, match=r"distill_share must be in \[0, 1\], got 1.5"):
        tiny_model(distill_share=1.5)
    with pytest.raises(ValueError, match=r"distill_share must be in \[0, 1\], got -0.1"):
        tiny_model(distill_share=-0.1)
    with pytest.raises(ValueError, match="the batch has no text_distill: make them with python -m "
                                         "diffasr.bin.make_distillation"):
        tiny_model(distill_share=0.5)(**batch())


# ---------------------------------------------------------------------------- the AR outputs file
def test_the_ar_outputs_are_stage_6s_decode_of_the_set_with_the_ar_models_fingerprint(
        corpus, ar_exp, decode_config, distilled, tmp_path, monkeypatch):
    text = _read_text(distilled / "text")
    # stage 6's decode of the same set with the same model and options (one process, batches of 2)
    asr_inference.main([
        "--output_dir", str(tmp_path / "decode"), "--asr_train_config", str(ar_exp / "config.yaml"),
        "--asr_model_file", str(ar_exp / "model.pth"), "--config", str(decode_config), "--batch_size", "2",
        "--data_path_and_name_and_type", f"{corpus}/wav.scp,speech,sound",
        "--data_path_and_name_and_type", f"{corpus}/enroll_embed.scp,enroll_embed,kaldi_ark"])
    assert text == _read_text(tmp_path / "decode/text")
    assert list(text) == list(REFERENCES) and len(set(text.values())) > 1  # every utterance, words of its own
    meta = json.loads((distilled / "meta.json").read_text())
    # the AR config's token list (held in its config.yaml) is the corpus's tokens.txt
    assert (meta["tokens"]["token_type"], meta["tokens"]["token_list"]) == \
        ("bpe", tokens_part("bpe", corpus / "tokens.txt")["token_list"])
    assert meta["data"]["num_utterances"] == 4 and meta["decoding"]["options"]["beam_size"] == 2
    assert meta["decoding"]["audio"] == "mixture" and len(meta["ar_model"]["model"]) == 32
    assert not list(distilled.parent.glob("*.tmp"))

    # made once: a second call with the same inputs decodes nothing
    def no_decoding(job):
        raise AssertionError("decoded again")

    monkeypatch.setattr(distillation_module, "_decode_part", no_decoding)
    make_distillation(ar_exp, "model.pth", decode_config, corpus, distilled, audio="mixture")
    with pytest.raises(AssertionError, match="decoded again"):  # other options: made again
        other = tmp_path / "beam1.yaml"
        other.write_text(decode_config.read_text().replace("beam_size: 2", "beam_size: 1"))
        make_distillation(ar_exp, "model.pth", other, corpus, distilled, audio="mixture")
    assert _read_text(distilled / "text") == text  # the failed attempt left the file as it was


def test_clean_target_decodes_each_target_alone_and_leaves_an_absent_target_empty(corpus, ar_exp, decode_config,
                                                                                  distilled, tmp_path):
    out = make_distillation(ar_exp, "model.pth", decode_config, corpus, tmp_path / "clean_target", audio="clean_target")
    asr_inference.main([
        "--output_dir", str(tmp_path / "decode"), "--asr_train_config", str(ar_exp / "config.yaml"),
        "--asr_model_file", str(ar_exp / "model.pth"), "--config", str(decode_config),
        "--data_path_and_name_and_type", f"{corpus}/clean/wav.scp,speech,sound",
        "--data_path_and_name_and_type", f"{corpus}/clean/enroll_embed.scp,enroll_embed,kaldi_ark"])
    clean = _read_text(tmp_path / "decode/text")
    text = _read_text(out / "text")
    assert text == dict(clean, **{"spk1-utt3": ""})
    assert text != _read_text(distilled / "text")  # not the mixtures' outputs
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["decoding"]["audio"], meta["num_decoded"], meta["num_target_absent"]) == ("clean_target", 3, 1)


def test_a_distillation_file_of_another_ar_model_tokenizer_or_data_is_refused_naming_both(
        corpus, ar_exp, decode_config, distilled, tmp_path):
    text = distilled / "text"
    made = json.loads((distilled / "meta.json").read_text())
    expected = expected_parts(ar_exp, "model.pth", decode_config, "mixture", corpus)
    check_distillation(text, expected, REFERENCES, corpus / "text")  # what made it: accepted

    # another AR model: the same config, other weights
    other_exp = tmp_path / "asr_ar_other"
    other_exp.mkdir()
    (other_exp / "config.yaml").write_text((ar_exp / "config.yaml").read_text())
    state = torch.load(ar_exp / "model.pth")
    torch.save({k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}, other_exp / "model.pth")
    other_model = expected_parts(other_exp, "model.pth", decode_config, "mixture", corpus)
    with pytest.raises(DistillationError) as error:
        check_distillation(text, other_model)
    message = str(error.value)
    assert str(text) in message and made["ar_model"]["model"] in message
    assert other_model["ar_model"]["model"] in message and str(other_exp / "model.pth") in message

    # another tokenizer: another token type, or another token list
    for tokens in (tokens_part("whisper_en", whisper_token_list()), tokens_part("bpe", ["<blank>", "a", "b"])):
        with pytest.raises(DistillationError) as error:
            check_distillation(text, dict(expected, tokens=tokens))
        assert "tokens:" in str(error.value) and made["tokens"]["token_list"] in str(error.value)
        assert tokens["token_list"] in str(error.value)

    # another data dir: other audio under the same utterance names
    other_data = tmp_path / "other_data"
    other_data.mkdir()
    (other_data / "wav.scp").write_text((corpus / "wav.scp").read_text().replace("spk0-utt0.wav", "spk0-utt1.wav"))
    with pytest.raises(DistillationError) as error:
        check_distillation(text, dict(expected, data=data_part(other_data)))
    assert str(corpus) in str(error.value) and str(other_data) in str(error.value)

    # a file without its meta.json is not a complete one
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare/text").write_text(text.read_text())
    with pytest.raises(DistillationError, match="no meta.json beside it"):
        check_distillation(tmp_path / "bare/text", expected)


def test_an_utterance_missing_from_the_file_is_an_error_naming_it_and_the_file(corpus, distilled, tmp_path):
    expected = dict(tokens=tokens_part("bpe", corpus / "tokens.txt"), data=data_part(corpus))
    lines = _read_text(distilled / "text")
    del lines["spk0-utt1"]
    text = _write_distillation(tmp_path / "cut", lines, json.loads((distilled / "meta.json").read_text()))
    with pytest.raises(DistillationError, match=rf"{text}: no line for utterance 'spk0-utt1' of {corpus / 'text'}"):
        check_distillation(text, expected, REFERENCES, corpus / "text")


def test_make_distillation_names_what_it_lacks(corpus, ar_exp, decode_config, tmp_path):
    with pytest.raises(SystemExit, match="valid.loss.ave.pth: missing: train the AR system first"):
        make_distillation_bin.main(["--ar_exp", str(ar_exp), "--decode_config", str(decode_config),
                                    "--data_dir", str(corpus), "--output_dir", str(tmp_path / "out")])
    no_records = tmp_path / "data"
    no_records.mkdir()
    for name in ("wav.scp", "enroll_embed.scp"):
        (no_records / name).write_text((corpus / name).read_text())
    with pytest.raises(SystemExit, match="mixture.jsonl: missing: the clean target of an example"):
        make_distillation_bin.main(["--ar_exp", str(ar_exp), "--ar_model", "model.pth", "--decode_config",
                                    str(decode_config), "--audio", "clean_target", "--data_dir", str(no_records),
                                    "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- training on them
def _train_args(corpus: Path, exp: Path, distill_text=None):
    args = ["--config", str(tiny(TUNING / "train_diffusion_conformer.yaml")), "--output_dir", str(exp),
            "--token_list", str(corpus / "tokens.txt"), "--token_type", "bpe", "--bpemodel", str(corpus / "bpe.model"),
            "--max_epoch", "1", "--ngpu", "0", "--num_workers", "0", "--use_tensorboard", "false", "--seed", "0",
            "--fold_length", "80000", "--fold_length", "150", "--model_conf", "distill_share=1.0"]
    for split in ("train", "valid"):
        for triple in (f"{corpus}/wav.scp,speech,sound", f"{corpus}/text,text,text",
                       f"{corpus}/enroll_embed.scp,enroll_embed,kaldi_ark"):
            args += [f"--{split}_data_path_and_name_and_type", triple]
        args += [f"--{split}_shape_file", f"{corpus}/speech_shape", f"--{split}_shape_file", f"{corpus}/text_shape"]
    if distill_text is not None:
        args += ["--train_data_path_and_name_and_type", f"{distill_text},{TEXT_DISTILL},text"]
    return args


def test_training_reads_the_ar_outputs_tokenized_as_the_references_and_validates_on_the_references(
        corpus, tmp_path, monkeypatch):
    parts = dict(ar_model=dict(model="0" * 32), tokens=tokens_part("bpe", corpus / "tokens.txt"),
                 data=data_part(corpus), decoding=dict(audio="mixture"))
    text = _write_distillation(tmp_path / "distill", AR_OUTPUTS, parts)
    seen = {True: {}, False: {}}
    check = DiffusionASRModel._check_transcripts

    def spy(self, targets, lengths, utt_ids):
        seen[self.training].update({u: targets[b, : lengths[b]].tolist() for b, u in enumerate(utt_ids)})
        return check(self, targets, lengths, utt_ids)

    monkeypatch.setattr(DiffusionASRModel, "_check_transcripts", spy)
    asr_train.main(_train_args(corpus, tmp_path / "exp", text))
    assert (tmp_path / "exp/1epoch.pth").is_file()
    assert seen[True] == {u: _token_ids(corpus, t) for u, t in AR_OUTPUTS.items()}
    assert seen[False] == {u: _token_ids(corpus, t) for u, t in REFERENCES.items()}


def test_training_refuses_ar_outputs_of_other_tokens_or_data_before_it_starts(corpus, tmp_path):
    good = dict(tokens=tokens_part("bpe", corpus / "tokens.txt"), data=data_part(corpus))
    other_data = tmp_path / "other"
    other_data.mkdir()
    (other_data / "wav.scp").write_text("spk0-utt0 /elsewhere/a.wav\n")
    for name, parts in (("tokens", dict(good, tokens=tokens_part("whisper_en", whisper_token_list()))),
                        ("data", dict(good, data=data_part(other_data)))):
        text = _write_distillation(tmp_path / name, AR_OUTPUTS, parts)
        with pytest.raises(DistillationError, match=rf"{text} was made from other inputs than these \({name}: "):
            asr_train.main(_train_args(corpus, tmp_path / "exp", text))
    text = _write_distillation(tmp_path / "cut", {u: t for u, t in AR_OUTPUTS.items() if u != "spk1-utt2"}, good)
    with pytest.raises(DistillationError, match=rf"no line for utterance 'spk1-utt2' of {corpus / 'text'}"):
        asr_train.main(_train_args(corpus, tmp_path / "exp", text))
    assert not (tmp_path / "exp/checkpoint.pth").exists()


# ---------------------------------------------------------------------------- --init_param from the AR system
@pytest.fixture(scope="module")
def whisper_systems(tmp_path_factory):
    """The tiny Whisper AR system with weights of its own (Whisper's, moved: the diffusion system
    starts from Whisper's too, so a weight not loaded would be told apart), saved as an
    experiment's model; and a fresh diffusion system."""
    def build(config):
        args = DiffASRTask.get_parser().parse_args(["--config", str(tiny(TUNING / config)), "--token_list", "x"])
        args.token_list = whisper_token_list()
        return DiffASRTask.build_model(args)

    torch.manual_seed(0)
    ar = build("train_ar_whisper.yaml")
    with torch.no_grad():
        for parameter in ar.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model_file = tmp_path_factory.mktemp("asr_ar_whisper") / "valid.loss.ave.pth"
    torch.save(ar.state_dict(), model_file)
    return model_file, {k: v for k, v in ar.state_dict().items()}, build("train_diffusion_whisper.yaml")


def test_init_param_from_an_ar_experiment_loads_every_decoder_and_encoder_weight(whisper_systems):
    model_file, ar_state, diffusion = whisper_systems
    before = {k: v.clone() for k, v in diffusion.state_dict().items()}
    named = [k for k in ar_state if k.startswith(("decoder.", "encoder."))]
    # the same parameters: every one the AR system names is one of the diffusion system's, and back
    assert set(named) == {k for k in before if k.startswith(("decoder.", "encoder."))}
    moved = [k for k in named if not torch.equal(before[k], ar_state[k])]
    assert len(moved) > 100 and "decoder.decoder.token_embedding.weight" in moved
    # what ESPnet's trainer does with --init_param <file>:decoder:decoder <file>:encoder:encoder
    for part in ("decoder", "encoder"):
        load_pretrained_model(f"{model_file}:{part}:{part}", diffusion, ignore_init_mismatch=False)
    after = diffusion.state_dict()
    not_loaded = [k for k in named if not torch.equal(after[k], ar_state[k])]
    assert not_loaded == []
    assert all(torch.equal(after[k], before[k]) for k in after if k not in named)  # the heads keep their start
