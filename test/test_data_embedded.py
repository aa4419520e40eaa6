"""Stage 1, embedded corpus: a tiny build end to end (built once per module)."""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffasr.bin import prepare_target_speaker_data
from diffasr.data.corpus import HELDOUT_SET, SourceUtt, other_utterance, plan_mixtures, set_names
from diffasr.data.embedded import SCALES, heldout_voices
from diffasr.data.mixing import MAX_AMP, MIX_SETTINGS, mix, power
from diffasr.data.voices import VOICES, assign_splits
from diffasr.datadir import read_jsonl, read_kv, validate_data_dir

MIXTURE_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "enroll.scp", "mixture.jsonl")
SOURCE_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur")


def _build(out: Path, corpus: Path, *extra: str) -> int:
    return prepare_target_speaker_data.main(["--output_dir", str(out), "--corpus_dir", str(corpus), "--scale", "tiny",
                              "--seed", "7", *extra])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    assert _build(root / "data", root / "corpus", "--nj", "2") == 0
    return root


def _audio(path):
    audio, rate = sf.read(path, dtype="float64")
    assert rate == 16000 and audio.ndim == 1
    return audio


def test_all_sets_are_valid_kaldi_dirs(built):
    data = built / "data"
    for name in ("train", "dev", "test", "test_clean", "test_absent"):
        validate_data_dir(data / name, require=MIXTURE_FILES)
    for name in ("sources_train", "sources_dev", "sources_test"):
        validate_data_dir(data / name, require=SOURCE_FILES)
    stats = json.loads((data / "corpus_stats.json").read_text())
    # each_target: 12/4/4 two-talker mixtures, each talker the target once, + round(10 %) absent
    assert [stats[s]["utterances"] for s in ("train", "dev", "test", "test_clean", "test_absent")] == [26, 9, 8, 8, 1]
    assert [stats[f"sources_{s}"]["speakers"] for s in ("train", "dev", "test")] == [8, 3, 3]
    assert not (data / ".stage1_tmp").exists()


def test_audio_is_16k_mono_pcm16(built):
    data = built / "data"
    paths = list(read_kv(data / "test" / "wav.scp").values()) + list(read_kv(data / "test_clean" / "wav.scp").values())
    paths += list(read_kv(data / "sources_dev" / "wav.scp").values())
    for path in paths:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
    for utt, dur in read_kv(data / "test" / "utt2dur").items():
        assert abs(sf.info(read_kv(data / "test" / "wav.scp")[utt]).duration - float(dur)) < 1e-3


def test_speakers_disjoint_and_interferers_from_same_split(built):
    data = built / "data"
    speakers = {s: set(read_kv(data / f"sources_{s}" / "utt2spk").values()) for s in ("train", "dev", "test")}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    for split in ("train", "dev", "test", "test_absent"):
        split_speakers = speakers[split.replace("test_absent", "test")]
        for utt, record in read_jsonl(data / split / "mixture.jsonl").items():
            target_spk = record["target"]["spk"]  # the enrolled speaker (absent or not)
            assert utt.startswith(target_spk + "-") and target_spk in split_speakers
            spks = [i["spk"] for i in record["interferers"]]
            assert len(spks) in (1, 2) and target_spk not in spks and len(set(spks)) == len(spks)
            assert set(spks) <= split_speakers


def test_enrollment_is_another_utterance_of_the_target_speaker(built):
    data = built / "data"
    sources = read_kv(data / "sources_train" / "utt2spk")
    enroll = read_kv(data / "train" / "enroll.scp")
    for utt, record in read_jsonl(data / "train" / "mixture.jsonl").items():
        assert record["enroll"]["utt"] != record["target"]["utt"]
        assert sources[record["enroll"]["utt"]] == record["target"]["spk"]
        assert enroll[utt] == record["enroll"]["path"] != record["target"]["path"]


def test_an_enrollment_too_short_to_decode_is_never_drawn_and_the_other_draws_stay():
    # A 0.999-s enrollment (one in the demo's training set) made decoding that set refuse it:
    # the longest other utterance replaces it, without a draw of its own, so the examples
    # drawn after it are the same as before.
    def sources(short: bool) -> dict:
        lengths = {"a-1": 48000, "a-2": 15985 if short else 32000, "a-3": 40000, "b-1": 40000, "b-2": 20000}
        return {u: SourceUtt(u, u[0], f"/{u}.wav", "x", n) for u, n in lengths.items()}

    def draws(short: bool) -> list:
        table = sources(short)
        by_spk = {"a": ["a-1", "a-2", "a-3"], "b": ["b-1", "b-2"]}
        rng = np.random.default_rng(3)
        return [other_utterance(by_spk, table, spk, [avoid], rng, "test") for spk, avoid in
                [("a", "a-1"), ("b", "b-1")] * 20]

    long_only, with_short = draws(False), draws(True)
    assert "a-2" in long_only and "a-2" not in with_short
    for before, after in zip(long_only, with_short):
        # a-1 is heard in the mixture: the longest other choice is a-3
        assert after == ("a-3" if before == "a-2" else before)


def test_text_is_normalised_and_test_sentences_unseen_in_training(built):
    data = built / "data"
    train = set(read_kv(data / "sources_train" / "text").values())
    test = set(read_kv(data / "sources_test" / "text").values())
    assert not train & test
    for text in train | test:
        assert re.fullmatch(r"[A-Z']+( [A-Z']+){3,19}", text), text
    for utt, record in read_jsonl(data / "test" / "mixture.jsonl").items():
        assert read_kv(data / "test" / "text")[utt] == record["target"]["text"]


def test_mixture_matches_metadata_gains_sir_and_snr(built):
    """Rebuild each mixture from its sources and gains; the residual is the noise."""
    setting = MIX_SETTINGS["each_target"]
    data = built / "data"
    for split in ("dev", "test"):
        wav = read_kv(data / split / "wav.scp")
        for utt, record in read_jsonl(data / split / "mixture.jsonl").items():
            if record["target"]["utt"] is None:
                continue  # target absent: the talkers are all "interferers" (test below)
            mixture = _audio(wav[utt])
            target = _audio(record["target"]["path"]) * record["target"]["gain"]
            speech = np.zeros_like(mixture)
            start = record["target"]["offset_samples"]
            speech[start:start + len(target)] += target
            for item in record["interferers"]:
                audio = _audio(item["path"]) * item["gain"]
                speech[item["offset_samples"]:item["offset_samples"] + len(audio)] += audio
                assert 10 * np.log10(power(target) / power(audio)) == pytest.approx(item["sir_db"], abs=0.05)
                assert setting.sir_db[0] - 0.05 <= item["sir_db"] <= setting.sir_db[1] + 0.05
            noise = mixture - speech
            assert 10 * np.log10(power(target) / power(noise)) == pytest.approx(record["noise"]["snr_db"], abs=0.3)
            if Path(wav[utt]).stem == utt:  # the SNR is drawn for the mixture's first talker
                assert setting.snr_db[0] - 0.05 <= record["noise"]["snr_db"] <= setting.snr_db[1] + 0.05
            assert np.max(np.abs(mixture)) <= MAX_AMP + 1e-3


def test_test_clean_is_the_target_as_mixed(built):
    data = built / "data"
    assert read_kv(data / "test_clean" / "text") == read_kv(data / "test" / "text")
    clean_wav = read_kv(data / "test_clean" / "wav.scp")
    for utt, record in read_jsonl(data / "test" / "mixture.jsonl").items():
        clean = _audio(clean_wav[utt])
        target = _audio(record["target"]["path"]) * record["target"]["gain"]
        start = record["target"]["offset_samples"]
        assert len(clean) == sf.info(read_kv(data / "test" / "wav.scp")[utt]).frames
        np.testing.assert_allclose(clean[start:start + len(target)], target, atol=1e-4)
        assert not clean[:start].any() and not clean[start + len(target):].any()
    assert all(not r["interferers"] for r in read_jsonl(data / "test_clean" / "mixture.jsonl").values())


# ---- test_heldout: clean speech of voices that no scale trains or tests on
def test_heldout_voices_are_in_no_split_at_any_scale(built):
    for name, scale in SCALES.items():
        splits = assign_splits(VOICES, *scale.speakers)
        in_splits = {v.spk for voices in splits.values() for v in voices}
        held = {v.spk for v in heldout_voices(scale.heldout[0])}
        assert len(held) == scale.heldout[0] > 0 and not held & in_splits, name
    # the largest scales hold ~100-200 of them, tiny a handful
    assert 100 <= np.prod(SCALES["default"].heldout) <= 200 and np.prod(SCALES["tiny"].heldout) <= 10
    data = built / "data"
    held = set(read_kv(data / HELDOUT_SET / "utt2spk").values())
    assert held == {v.spk for v in heldout_voices(SCALES["tiny"].heldout[0])}
    for split in ("train", "dev", "test"):
        assert not held & set(read_kv(data / f"sources_{split}" / "utt2spk").values())


def test_heldout_set_is_clean_speech_enrolled_with_another_utterance_of_its_voice(built):
    data = built / "data" / HELDOUT_SET
    validate_data_dir(data, require=MIXTURE_FILES)
    wav, enroll, utt2spk = read_kv(data / "wav.scp"), read_kv(data / "enroll.scp"), read_kv(data / "utt2spk")
    assert len(wav) == np.prod(SCALES["tiny"].heldout)
    for utt, record in read_jsonl(data / "mixture.jsonl").items():
        assert utt.startswith(record["target"]["spk"] + "-") and utt2spk[utt] == record["target"]["spk"]
        assert not record["interferers"] and record["noise"]["kind"] == "none"
        assert wav[utt] == record["target"]["path"]  # the utterance as synthesized
        # the enrollment: the same voice, another of its utterances (one of the set's own)
        assert record["enroll"]["spk"] == record["target"]["spk"] and record["enroll"]["utt"] != utt
        assert enroll[utt] == record["enroll"]["path"] == wav[record["enroll"]["utt"]] != wav[utt]
        assert sf.info(wav[utt]).samplerate == 16000


def test_heldout_sentences_are_read_at_no_scale(built):
    from diffasr.data.text import debian_sentences, partition_sentences

    text = set(read_kv(built / "data" / HELDOUT_SET / "text").values())
    for split in ("train", "dev", "test"):
        assert not text & set(read_kv(built / "data" / f"sources_{split}" / "text").values())
    # every scale's sentences are the first of one blend (seed 7 here); these come after
    most = max(scale.sentences() for scale in SCALES.values())
    (read_at_some_scale,) = partition_sentences(debian_sentences(), [most], np.random.default_rng(7))
    assert not text & set(read_at_some_scale)


def test_adding_heldout_changed_no_other_set_and_an_older_dir_gains_it(built, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(SCALES, "tiny", replace(SCALES["tiny"], heldout=(0, 0)))  # stage 1 before test_heldout
    assert _build(tmp_path / "data", built / "corpus", "--nj", "2") == 0
    assert not (tmp_path / "data" / HELDOUT_SET).exists()
    for name in set_names(with_absent=True):
        for path in sorted((built / "data" / name).rglob("*")):
            if path.is_file():
                other = tmp_path / "data" / path.relative_to(built / "data")
                assert path.read_bytes().replace(str(built / "data").encode(), b"DATA") == \
                    other.read_bytes().replace(str(tmp_path / "data").encode(), b"DATA"), path
    monkeypatch.undo()
    # a rerun on the older dir (same options) is not "done": it builds test_heldout too
    assert _build(tmp_path / "data", built / "corpus", "--nj", "2") == 0
    assert (tmp_path / "data" / HELDOUT_SET / "text").read_text() == (built / "data" / HELDOUT_SET / "text").read_text()


def test_same_seed_rebuild_is_identical(built, tmp_path):
    """A fresh build (new pool, one process) gives the same lists and audio bytes."""
    assert _build(tmp_path / "data", tmp_path / "corpus", "--nj", "1") == 0
    for name in set_names(with_absent=True, with_heldout=True):
        for file in ("wav.scp", "text", "utt2spk", "enroll.scp", "utt2dur", "mixture.jsonl"):
            if not (built / "data" / name / file).exists():
                continue
            a = (built / "data" / name / file).read_text().replace(str(built), "ROOT")
            b = (tmp_path / "data" / name / file).read_text().replace(str(tmp_path), "ROOT")
            assert a == b, (name, file)
    for path in sorted((built / "data" / "train" / "wav").iterdir())[:6]:
        assert path.read_bytes() == (tmp_path / "data" / "train" / "wav" / path.name).read_bytes()


def test_rerun_is_cheap_and_changes_nothing(built):
    wav_scp = built / "data" / "train" / "wav.scp"
    before = (wav_scp.read_text(), wav_scp.stat().st_mtime_ns)
    start = time.time()
    assert _build(built / "data", built / "corpus", "--nj", "2") == 0
    assert time.time() - start < 5
    assert (wav_scp.read_text(), wav_scp.stat().st_mtime_ns) == before


def test_unknown_scale_names_the_valid_ones(built, capsys):
    assert prepare_target_speaker_data.main(["--output_dir", str(built / "data"), "--scale", "huge"]) == 1
    assert "unknown --scale 'huge'; valid scales: tiny, default, large" in capsys.readouterr().err


def test_a_larger_scale_adds_training_data_and_keeps_dev_and_test(built, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(SCALES, "tiny", replace(SCALES["tiny"], extra_train_utts_per_speaker=2,
                                                mixtures=(16, 4, 4)))
    assert _build(tmp_path / "data", built / "corpus", "--nj", "2") == 0
    for name in set_names(with_absent=True, with_heldout=True):
        if "train" in name:
            continue
        for file in ("text", "utt2spk", "enroll.scp", "mixture.jsonl"):
            if (built / "data" / name / file).exists():
                assert (built / "data" / name / file).read_text() == (tmp_path / "data" / name / file).read_text()
    small, large = (read_kv(d / "data" / "sources_train" / "text") for d in (built, tmp_path))
    assert len(large) == len(small) + 2 * SCALES["tiny"].speakers[0]
    held_out = set(read_kv(built / "data" / "sources_test" / "text").values())
    assert not held_out & set(large.values())  # the extra sentences are not the test's
    assert len(read_kv(tmp_path / "data" / "train" / "wav.scp")) > len(read_kv(built / "data" / "train" / "wav.scp"))


def test_train_mixtures_draws_more_training_mixtures_from_the_same_sources(built, tmp_path):
    """--train_mixtures: more stage-1 mixtures of the same clean sources; dev and test unchanged."""
    assert _build(tmp_path / "data", built / "corpus", "--nj", "2", "--train_mixtures", "30") == 0
    for name in set_names(with_absent=True, with_heldout=True):
        for file in ("text", "enroll.scp", "mixture.jsonl"):
            if "train" not in name and (built / "data" / name / file).exists():
                assert (built / "data" / name / file).read_text() == (tmp_path / "data" / name / file).read_text()
    assert (read_kv(built / "data" / "sources_train" / "text") == read_kv(tmp_path / "data" / "sources_train" / "text"))
    records = read_jsonl(tmp_path / "data" / "train" / "mixture.jsonl")
    mixtures = {tuple(sorted([r["target"]["utt"] or "", *(i["utt"] for i in r["interferers"])])) for r in records.values()
                if r["target"]["utt"] is not None}
    assert len(mixtures) == 30 and SCALES["tiny"].mixtures[0] == 12
    sources = set(read_kv(tmp_path / "data" / "sources_train" / "wav.scp"))
    assert {r["target"]["utt"] for r in records.values() if r["target"]["utt"]} <= sources
    assert prepare_target_speaker_data.main(["--output_dir", str(tmp_path / "bad"), "--corpus_dir", str(built / "corpus"),
                              "--scale", "tiny", "--train_mixtures", "0"]) == 1


def test_bad_text_file_fails_naming_line_and_keeps_outputs(built, capsys):
    bad = built / "bad.txt"
    bad.write_text("A perfectly fine sentence is here.\n?! -- ?!\n")
    text_before = (built / "data" / "train" / "text").read_text()
    assert _build(built / "data", built / "corpus", "--text_file", str(bad)) == 1
    assert f"{bad}:2: sentence normalises to nothing" in capsys.readouterr().err
    assert (built / "data" / "train" / "text").read_text() == text_before
    validate_data_dir(built / "data" / "train", require=MIXTURE_FILES)


def test_voice_inventory_and_scales():
    specs = {(v.engine, v.voice, v.pitch, v.rate) for v in VOICES}
    assert len(VOICES) >= 144 and len(specs) == len(VOICES) == len({v.spk for v in VOICES})
    assert {v.engine for v in VOICES} == {"espeak-ng", "flite"}
    genders = [v.gender for v in VOICES]
    assert 0.3 < genders.count("f") / len(genders) < 0.7
    accents = {v.voice.split("+")[0] for v in VOICES if v.engine == "espeak-ng"}
    assert len(accents) >= 8
    default = SCALES["default"]
    splits = assign_splits(VOICES, *default.speakers)
    ids = [{v.spk for v in splits[s]} for s in ("train", "dev", "test")]
    assert [len(i) for i in ids] == [120, 12, 12] and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert default.mixtures[0] >= 1000 and min(default.mixtures[1:]) >= 100
    assert min(default.utts_per_speaker) >= 20
    assert sum(SCALES["tiny"].speakers) >= 14


def test_the_pool_is_the_same_on_every_machine():
    # The generated voices come from a fixed seed: the same list on every import.
    from diffasr.data.voices import generated_voices

    assert generated_voices(128, 33) == VOICES[32:]
    assert VOICES[0].spk == "syn001" and VOICES[-1].spk == f"syn{len(VOICES):03d}"


def test_each_talker_is_the_target_once_with_its_own_enrollment(built):
    data = built / "data"
    sources = read_kv(data / "sources_train" / "utt2spk")
    for split in ("train", "dev", "test"):
        wav = read_kv(data / split / "wav.scp")
        records = read_jsonl(data / split / "mixture.jsonl")
        by_audio = {}
        for utt, record in records.items():
            by_audio.setdefault(wav[utt], []).append(record)
        for path, group in by_audio.items():
            present = [r for r in group if r["target"]["utt"] is not None]
            talkers = {r["target"]["utt"] for r in present}
            # two talkers, each the target of exactly one example of this audio (in test,
            # an example may have gone to test_absent instead, never a present one)
            assert len(present) == 2 and len(talkers) == 2
            for r in present:
                assert {i["utt"] for i in r["interferers"]} == talkers - {r["target"]["utt"]}
                assert r["enroll"]["spk"] == r["target"]["spk"]
                assert r["enroll"]["utt"] not in talkers
            if split == "train":
                assert all(sources[r["enroll"]["utt"]] == r["enroll"]["spk"] for r in group)
            # the two targets' SIRs mirror each other: one talker is the quieter target
            sirs = sorted(r["interferers"][0]["sir_db"] for r in present)
            assert sirs[0] == pytest.approx(-sirs[1], abs=0.05)


def test_target_absent_examples_have_no_words_and_a_voice_not_in_the_mixture(built):
    data = built / "data"
    absent = []
    for split in ("train", "dev", "test_absent"):
        text = read_kv(data / split / "text", allow_empty_value=True)
        wav = read_kv(data / split / "wav.scp")
        for utt, record in read_jsonl(data / split / "mixture.jsonl").items():
            if record["target"]["utt"] is None:
                absent.append(utt)
                heard = {i["spk"] for i in record["interferers"]}
                assert text[utt] == "" and len(heard) == 2 and record["enroll"]["spk"] not in heard
                assert utt.startswith(record["enroll"]["spk"] + "-absent_")
                # the same audio as a present example of the split (test's are in test)
                present_wav = read_kv(data / split.replace("test_absent", "test") / "wav.scp")
                assert wav[utt] in present_wav.values()
            else:
                assert text[utt]
    assert len(absent) == 2 + 1 + 1  # round(10 %) of 24, 8 and 8 present examples
    assert "" not in read_kv(data / "test" / "text", allow_empty_value=True).values()


def test_each_target_levels_span_minus_10_to_10_db_symmetrically():
    sources = {f"s{k}-{i}": SourceUtt(f"s{k}-{i}", f"s{k}", f"/x/s{k}-{i}.wav", "A B C D", 16000 + 100 * i)
               for k in range(5) for i in range(6)}
    plans = plan_mixtures(sources, 300, MIX_SETTINGS["each_target"], np.random.default_rng(0))
    sirs = [i.sir_db for p in plans for i in p.interferers]
    assert {len(p.interferers) for p in plans} == {1}
    assert min(sirs) >= -10 and max(sirs) <= 10 and min(sirs) < -8 and max(sirs) > 8
    # the first talker is the quieter as often as the louder (and each has an example)
    assert 0.4 < np.mean([s < 0 for s in sirs]) < 0.6
    examples = [e for p in plans for e in p.examples()]
    assert len({e.utt for e in examples}) == len(examples)
    assert sum(e.target is None for e in examples) == round(0.1 * 600)


def test_hard_setting_draws_from_minus_20_to_5_db():
    sources = {f"s{k}-{i}": SourceUtt(f"s{k}-{i}", f"s{k}", f"/x/s{k}-{i}.wav", "A B C D", 16000 + 100 * i)
               for k in range(4) for i in range(5)}
    plans = plan_mixtures(sources, 300, MIX_SETTINGS["hard"], np.random.default_rng(0))
    sirs = [i.sir_db for p in plans for i in p.interferers]
    assert min(sirs) >= -20 and max(sirs) <= 5 and min(sirs) < -15 and max(sirs) > 0
    assert len({p.utt for p in plans}) == 300
    assert {len(p.interferers) for p in plans} == {1, 2}


def test_clipping_rule_scales_mixture_and_sources_together():
    target = np.full(100, 0.8, dtype=np.float32)
    interferer = np.full(50, 0.7, dtype=np.float32)
    mixture, clean, scale = mix(target, 1.0, [(interferer, 10, 1.0)], None, 0.0)
    assert np.max(np.abs(mixture)) == pytest.approx(MAX_AMP)
    assert scale == pytest.approx(MAX_AMP / 1.5)
    np.testing.assert_allclose(clean, target * scale, rtol=1e-6)
    _, _, unclipped = mix(target * 0.5, 1.0, [], None, 0.0)
    assert unclipped == 1.0


RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librimix_target" / "asr1"


def test_local_data_sh_builds_and_validates(built, tmp_path):
    """The recipe's stage-1 script: shell options through to validated data dirs."""
    import subprocess
    env = {"PATH": "/usr/bin:/bin", "LIBRISPEECH": "", "HOME": str(tmp_path)}
    cmd = ["local/data.sh", "--scale", "tiny", "--seed", "7", "--nj", "1", "--output_dir", str(tmp_path / "data"),
           "--corpus_dir", str(built / "corpus"),  # the module's pool: no synthesis
           "--real_dir", str(tmp_path / "real")]
    done = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": OK (") == 10  # with test_absent, test_heldout and test_real
    # test_real at the tiny scale: 2 recordings of each of its 3 people
    assert len((tmp_path / "data/test_real/utt2spk").read_text().splitlines()) == 6
    assert (tmp_path / "data" / "train" / "text").read_text() == (built / "data" / "train" / "text").read_text()
    bad = subprocess.run(cmd[:2] + ["huge"] + cmd[3:], cwd=RECIPE, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "valid scales: tiny, default, large" in bad.stderr


# ---- single-speaker sets (egs/librispeech/asr1 stage 1) from the same pool
LIBRISPEECH_RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librispeech" / "asr1"


def test_single_speaker_sets_from_the_embedded_pool(built, tmp_path):
    import subprocess
    env = {"PATH": "/usr/bin:/bin", "LIBRISPEECH": "", "HOME": str(tmp_path)}
    out = tmp_path / "data"
    cmd = ["local/data.sh", "--scale", "tiny", "--seed", "7", "--nj", "1", "--output_dir", str(out),
           "--corpus_dir", str(built / "corpus")]  # the module's pool: no synthesis
    done = subprocess.run(cmd, cwd=LIBRISPEECH_RECIPE, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sources = {split: read_kv(built / "data" / f"sources_{split}" / "text") for split in ("train", "dev", "test")}
    assert read_kv(out / "train_clean_100" / "text") == sources["train"]
    assert read_kv(out / "dev_clean" / "text") == sources["dev"]
    clean, other = read_kv(out / "test_clean" / "text"), read_kv(out / "test_other" / "text")
    assert not set(clean) & set(other) and {**clean, **other} == sources["test"]
    for name in ("train_clean_100", "dev_clean", "test_clean", "test_other"):
        validate_data_dir(out / name, require=SOURCE_FILES)
        assert not (out / name / "enroll.scp").exists()
    # test_other: the same voices under noise at 5-15 dB SNR (the source scaled down only if it would clip)
    source_wav = read_kv(built / "data" / "sources_test" / "wav.scp")
    for utt, path in read_kv(out / "test_other" / "wav.scp").items():
        assert path == str(out / "test_other" / "wav" / f"{utt}.wav")
        noisy, speech = _audio(path), _audio(source_wav[utt])
        scale = float(noisy @ speech / (speech @ speech))  # noise is uncorrelated with the speech
        snr = 10 * np.log10(power(scale * speech) / power(noisy - scale * speech))
        assert 0.5 < scale < 1.05 and 4.5 < snr < 15.5, (utt, scale, snr)
    assert read_kv(out / "test_clean" / "wav.scp") == {u: source_wav[u] for u in clean}


def test_the_generated_voices_are_as_distinct_as_the_hand_picked_ones():
    # Three sentences per voice, embedded by resemblyzer's pretrained speaker encoder (a
    # third party: our ECAPA is trained on these voices). Same/different-voice trials over
    # the 32 hand-picked voices and over 32 of the generated ones: the generated voices
    # must be told apart about as well (near-duplicate voices would push the EER to 50 %).
    # Measured: 5.1 % hand-picked, 4.4 % for VOICES[32:64].
    from resemblyzer import VoiceEncoder, preprocess_wav

    from diffasr.data.voices import synthesize
    from diffasr.speaker.metrics import compute_eer

    encoder = VoiceEncoder("cpu", verbose=False)
    sentences = ("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG NEAR THE RIVER BANK",
                 "SHE SELLS SEA SHELLS BY THE SEA SHORE EVERY SUMMER MORNING",
                 "A LARGE NUMBER OF PEOPLE CAME TO SEE THE NEW BRIDGE OPEN TODAY")

    def eer(voices):
        embeds = np.stack([encoder.embed_utterance(preprocess_wav(synthesize(v, s), source_sr=16000))
                           for v in voices for s in sentences])
        owner = np.repeat(np.arange(len(voices)), len(sentences))
        upper = np.triu_indices(len(embeds), 1)
        scores, same = (embeds @ embeds.T)[upper], owner[upper[0]] == owner[upper[1]]
        return compute_eer(scores[same], scores[~same])[0]

    hand_picked, generated = eer(VOICES[:32]), eer(VOICES[32:64])
    assert generated <= max(0.08, 1.5 * hand_picked), (generated, hand_picked)


def test_target_activity_marks_the_frames_where_the_target_speaks(built):
    import kaldiio

    data = built / "data"
    for split in ("test", "test_absent"):
        labels = dict(kaldiio.load_scp(str(data / split / "target_activity.scp")))
        wav = read_kv(data / split / "wav.scp")
        assert set(labels) == set(wav)
        for utt, record in read_jsonl(data / split / "mixture.jsonl").items():
            frames = (sf.info(wav[utt]).frames // 160 + 1) // 2  # the Whisper encoder's frames
            assert labels[utt].shape == (frames,)
            if record["target"]["utt"] is None:
                assert not labels[utt].any()
                continue
            # from the target alone at its place in the mixture (test_clean): speech frames
            clean = _audio(read_kv(data / "test_clean" / "wav.scp")[utt])[: frames * 320]
            energy = np.square(np.pad(clean, (0, frames * 320 - len(clean)))).reshape(frames, 320).mean(axis=1)
            speaking = energy > energy.max() * 1e-3
            assert np.mean(labels[utt].astype(bool) == speaking) > 0.97  # PCM-16 rounding at the edges
            start = record["target"]["offset_samples"] // 320
            assert not labels[utt][:start].any() and labels[utt].any()


def test_the_swap_decode_pairs_each_example_with_its_mixtures_other_talker(built):
    from diffasr.datadir import DataDirError, read_jsonl, read_kv, swap_partners

    data = built / "data" / "test"
    records, wavs = read_jsonl(data / "mixture.jsonl"), read_kv(data / "wav.scp")
    partners = swap_partners(data)
    assert sorted(partners) == sorted(wavs)
    for utt, partner in partners.items():
        assert partner != utt and wavs[partner] == wavs[utt]  # the same mixture
        assert records[partner]["target"]["utt"] == records[utt]["interferers"][0]["utt"]
        assert partners[partner] == utt  # and back
    # a set of single examples (the clean targets, nothing mixed in) has no one to swap to
    with pytest.raises(DataDirError, match="example '.*' has no talker to swap to"):
        swap_partners(built / "data" / "test_clean")
