"""The clean-target teacher: its cache, its loss, feature follows, and their bad input."""

import json
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import torch
import yaml

from diffasr.data.voices import VOICES, synthesize
from diffasr.datadir import read_jsonl, write_jsonl
from diffasr.espnet2.target_speaker import TargetSpeakerMixin
from diffasr.espnet2.teacher import (
    TeacherCacheError,
    check_teacher_cache,
    extract_teachers,
    feature_follows,
    teacher_distance,
)
from diffasr.espnet2.whisper_encoder import EncoderStates, WhisperEncoder

RECIPE = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1"
CONFIG = RECIPE / "conf/tuning/train_diffusion_whisper.yaml"
ENCODER_CONF = yaml.safe_load(open(CONFIG))["encoder_conf"]
OFFSET, GAINS = 2400, (0.5, 0.3)


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory):
    """One mixture of two voices (A at 0, B at OFFSET), as stage 1 describes it: the example
    of A, the example of B, and a target-absent example (C enrolled)."""
    root = tmp_path_factory.mktemp("teacher")
    a = synthesize(VOICES[0], "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG")
    b = synthesize(VOICES[1], "SHE SELLS SEA SHELLS BY THE SEA SHORE")
    for name, audio in (("a", a), ("b", b), ("c", a[::-1].copy())):
        soundfile.write(root / f"{name}.wav", audio, 16000, subtype="FLOAT")  # exact samples
    length = max(len(a), OFFSET + len(b))
    mixture = np.zeros(length, dtype=np.float32)
    mixture[: len(a)] += GAINS[0] * a
    mixture[OFFSET:OFFSET + len(b)] += GAINS[1] * b
    soundfile.write(root / "mix.wav", mixture, 16000, subtype="FLOAT")
    talker = {"a": dict(utt="a", spk="A", path=str(root / "a.wav"), text="THE QUICK", gain=GAINS[0], offset_samples=0),
              "b": dict(utt="b", spk="B", path=str(root / "b.wav"), text="SHE SELLS", gain=GAINS[1],
                        offset_samples=OFFSET)}
    absent = dict(utt=None, spk="C", path=None, text="", gain=0.0, offset_samples=0)
    records = [dict(utt="ex_a", target=talker["a"], interferers=[talker["b"]]),
               dict(utt="ex_b", target=talker["b"], interferers=[talker["a"]]),
               dict(utt="ex_absent", target=absent, interferers=[talker["a"], talker["b"]])]
    data = root / "data"
    data.mkdir()
    write_jsonl(data / "mixture.jsonl", records)
    (data / "wav.scp").write_text("".join(f"{r['utt']} {root / 'mix.wav'}\n" for r in records))
    cache = extract_teachers(ENCODER_CONF, data, root / "cache", nj=2, with_others=True)
    return dict(data=data, cache=cache, a=a, b=b, mixture=mixture, length=length)


@pytest.fixture(scope="module")
def teacher_encoder():
    return WhisperEncoder(whisper_model="tiny.en", frozen_layers=None, adapter_blocks=0)


def _frozen(encoder, audio):
    audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    return encoder.frozen(audio[None], torch.tensor([audio.numel()]))[0][0].numpy()


def _teachers(cache):
    return dict(kaldiio.load_scp(str(cache / "teacher.scp"))), dict(kaldiio.load_scp(str(cache / "teacher_others.scp")))


def test_the_teacher_of_a_target_is_the_complete_frozen_encoder_on_that_source_alone(mixture_dir, teacher_encoder):
    teachers, others = _teachers(mixture_dir["cache"])
    length, a, b = mixture_dir["length"], mixture_dir["a"], mixture_dir["b"]
    a_alone, b_alone = np.zeros(length, np.float32), np.zeros(length, np.float32)
    a_alone[: len(a)] = GAINS[0] * a
    b_alone[OFFSET:OFFSET + len(b)] = GAINS[1] * b
    expected_a, expected_b = _frozen(teacher_encoder, a_alone), _frozen(teacher_encoder, b_alone)
    assert teachers["ex_a"].shape == expected_a.shape == (((length // 160) + 1) // 2, 384)
    np.testing.assert_allclose(teachers["ex_a"], expected_a, atol=1e-4)
    np.testing.assert_allclose(teachers["ex_b"], expected_b, atol=1e-4)
    # not the mixture's output, and each talker's teacher is the other example's interferer
    on_mixture = _frozen(teacher_encoder, mixture_dir["mixture"])
    assert np.abs(teachers["ex_a"] - on_mixture).mean() > 0.1
    np.testing.assert_allclose(others["ex_a"][:, :384], expected_b, atol=1e-4)
    np.testing.assert_allclose(others["ex_b"][:, :384], expected_a, atol=1e-4)
    # one interferer of at most two in this set: the second block is empty
    assert others["ex_a"].shape[1] == 768 and not others["ex_a"][:, 384:].any()


def test_a_cache_written_to_a_relative_dir_is_read_where_it_was_moved(mixture_dir, tmp_path, monkeypatch):
    """The scp files name the arks in the final dir, not in the temporary one they were written to."""
    monkeypatch.chdir(tmp_path)
    extract_teachers(ENCODER_CONF, mixture_dir["data"], Path("dump/teacher/dev"), with_others=True)
    assert not Path("dump/teacher/dev.tmp").exists()
    teachers, others = _teachers(Path("dump/teacher/dev"))
    cached, _ = _teachers(mixture_dir["cache"])
    np.testing.assert_array_equal(teachers["ex_a"], cached["ex_a"])
    assert others["ex_a"].shape == (len(cached["ex_a"]), 768)


def test_the_teacher_of_a_target_absent_example_is_the_silence_teacher(mixture_dir, teacher_encoder):
    teachers, others = _teachers(mixture_dir["cache"])
    silence = _frozen(teacher_encoder, np.zeros(mixture_dir["length"], np.float32))
    np.testing.assert_allclose(teachers["ex_absent"], silence, atol=1e-5)
    # both talkers are its interferers
    np.testing.assert_allclose(others["ex_absent"][:, :384], teachers["ex_a"], atol=1e-6)
    np.testing.assert_allclose(others["ex_absent"][:, 384:], teachers["ex_b"], atol=1e-6)


class _Encoder(torch.nn.Module):
    trainable_layers, subsample = 2, 1


class _Model(TargetSpeakerMixin, torch.nn.Module):
    def __init__(self, form="mse", weight=2.0):
        super().__init__()
        self.encoder = _Encoder()
        self.set_teacher(weight, form, False)


def _batch(teachers, others, utts, student_of):
    frames = max(len(teachers[u]) for u in utts)
    pad = lambda arrays: torch.stack([torch.nn.functional.pad(torch.from_numpy(np.array(x)), (0, 0, 0, frames - len(x)))  # noqa: E731
                                      for x in arrays])
    lengths = torch.tensor([len(teachers[u]) for u in utts])
    states = EncoderStates(None, pad([student_of[u] for u in utts]), lengths)
    batch = {"teacher": pad([teachers[u] for u in utts]), "teacher_lengths": lengths,
             "teacher_others": pad([others[u] for u in utts]), "teacher_others_lengths": lengths}
    return states, batch


@pytest.mark.parametrize("form", ["mse", "l1_cosine"])
def test_the_teacher_loss_is_zero_at_the_teacher_and_grows_with_the_interferers(mixture_dir, form):
    teachers, others = _teachers(mixture_dir["cache"])
    model = _Model(form).eval()
    utts = ["ex_a", "ex_b"]
    exact, wrong = {u: teachers[u] for u in utts}, {"ex_a": teachers["ex_b"], "ex_b": teachers["ex_a"]}
    stats = {}
    loss = model.teacher_loss(*_batch(teachers, others, utts, exact), stats, utts)
    floor = 0.0 if form == "mse" else float(-torch.nn.functional.logsigmoid(torch.tensor(1.0)))
    assert float(loss) == pytest.approx(2.0 * floor, abs=1e-5)
    assert float(stats["feature_follows"]) == 1.0
    swapped = model.teacher_loss(*_batch(teachers, others, utts, wrong), stats, utts)
    assert float(swapped) > float(loss) + 0.1
    assert float(stats["feature_follows"]) == 0.0
    # a teacher of other audio (another length) is refused, naming the example
    states, batch = _batch(teachers, others, utts, exact)
    batch["teacher_lengths"] = batch["teacher_lengths"] - torch.tensor([0, 3])
    with pytest.raises(ValueError, match="'ex_b' has .* frames"):
        model.teacher_loss(states, batch, {}, utts)


def test_feature_follows_counts_the_examples_nearer_their_own_teacher(mixture_dir):
    teachers, others = _teachers(mixture_dir["cache"])
    rng = np.random.default_rng(0)
    noisy = lambda x, scale: (x + scale * rng.standard_normal(x.shape)).astype(np.float32)  # noqa: E731
    utts = ["ex_a", "ex_b", "ex_absent"]
    # ex_a: near its teacher; ex_b: nearer A (its interferer) than B; ex_absent: near silence
    student = {"ex_a": noisy(teachers["ex_a"], 0.3),
               "ex_b": noisy(0.2 * teachers["ex_b"] + 0.8 * teachers["ex_a"], 0.05),
               "ex_absent": noisy(teachers["ex_absent"], 0.3)}
    states, batch = _batch(teachers, others, utts, student)
    follows, scored = feature_follows(states.whisper_out, batch["teacher"], batch["teacher_others"], states.lengths)
    assert follows.tolist() == [True, False, True] and scored.tolist() == [True, True, True]
    # the distance that decides it is the mean squared error over the example's own frames
    d = teacher_distance(states.whisper_out, batch["teacher"], states.lengths)
    assert float(d[0]) == pytest.approx(float(np.mean((student["ex_a"] - teachers["ex_a"]) ** 2)), rel=1e-4)
    # an example without interferers is not scored
    follows, scored = feature_follows(states.whisper_out, batch["teacher"], torch.zeros_like(batch["teacher_others"]),
                                      states.lengths)
    assert not scored.any() and not follows.any()


def test_a_teacher_cache_of_another_encoder_or_other_data_is_refused_naming_both(mixture_dir, tmp_path):
    scp = mixture_dir["cache"] / "teacher.scp"
    check_teacher_cache(scp, ENCODER_CONF, mixture_dir["data"], ["ex_a", "ex_b"])
    with pytest.raises(TeacherCacheError, match=r"made by the encoder .*'padding': 'none'.*this config's teacher is "
                                                r".*'padding': '30s'"):
        check_teacher_cache(scp, dict(ENCODER_CONF, padding="30s"))
    other = tmp_path / "other"
    shutil.copytree(mixture_dir["data"], other)
    records = read_jsonl(other / "mixture.jsonl")
    records["ex_a"]["target"]["gain"] = 0.25
    write_jsonl(other / "mixture.jsonl", records.values())
    with pytest.raises(TeacherCacheError, match=f"made from {mixture_dir['data']}.*the data here is {other}"):
        check_teacher_cache(scp, ENCODER_CONF, other)
    with pytest.raises(TeacherCacheError, match="'ex_zz'"):
        check_teacher_cache(scp, ENCODER_CONF, keys=["ex_a", "ex_zz"])


@pytest.mark.parametrize("fault", ["missing source", "offset beyond the mixture"])
def test_a_bad_record_names_the_example_and_file_and_keeps_the_cache(mixture_dir, tmp_path, fault):
    data = tmp_path / "data"
    shutil.copytree(mixture_dir["data"], data)
    cache = tmp_path / "cache"
    shutil.copytree(mixture_dir["cache"], cache)
    meta_before = (cache / "meta.json").read_text()
    records = read_jsonl(data / "mixture.jsonl")
    if fault == "missing source":
        records["ex_b"]["target"]["path"] = str(tmp_path / "gone.wav")
        expected = r"example 'ex_b': the source of its target 'b' \(.*gone.wav\) is missing"
    else:
        records["ex_b"]["target"]["offset_samples"] = mixture_dir["length"]
        expected = r"example 'ex_b': talker 'b' \(.*b.wav.*\) does not fit the mixture"
    write_jsonl(data / "mixture.jsonl", records.values())
    with pytest.raises(TeacherCacheError, match=expected):
        extract_teachers(ENCODER_CONF, data, cache, with_others=True)
    assert (cache / "meta.json").read_text() == meta_before
    assert json.loads(meta_before)["num_utterances"] == 3


def test_teacher_weight_needs_a_trainable_whisper_layer(tmp_path):
    """Refused when the model is built: a frozen encoder has nothing to train towards the teacher."""
    from diffasr.espnet2.task import DiffASRTask
    from diffasr.whisper.tokenizer import whisper_token_list

    token_list = tmp_path / "tokens.txt"
    token_list.write_text("".join(t + "\n" for t in whisper_token_list()))
    args = DiffASRTask.get_parser().parse_args([
        "--config", str(CONFIG), "--token_list", str(token_list), "--encoder_conf", "frozen_layers=4",
        "--encoder_conf", "enrollment=none", "--encoder_conf", "adapter_blocks=0",
        "--model_conf", "activity_weight=0", "--model_conf", "teacher_weight=1.0"])
    with pytest.raises(ValueError, match="no trainable Whisper layer"):
        DiffASRTask.build_model(args)
    with pytest.raises(ValueError, match="teacher_only trains on the teacher loss alone"):
        _Model(weight=0.0).set_teacher(0.0, "mse", True)
