"""Stage 1, embedded corpus: a tiny build end to end (built once per module)."""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffasr.bin import prepare_data
from diffasr.data.corpus import SourceUtt, plan_mixtures, set_names
from diffasr.data.embedded import SCALES
from diffasr.data.mixing import MAX_AMP, MIX_SETTINGS, mix, power
from diffasr.data.voices import VOICES, assign_splits
from diffasr.datadir import read_jsonl, read_kv, validate_data_dir

MIXTURE_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "enroll.scp", "mixture.jsonl")
SOURCE_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur")


def _build(out: Path, corpus: Path, *extra: str) -> int:
    return prepare_data.main(["--output_dir", str(out), "--corpus_dir", str(corpus), "--scale", "tiny",
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
    for name in ("train", "dev", "test", "test_clean"):
        validate_data_dir(data / name, require=MIXTURE_FILES)
    for name in ("sources_train", "sources_dev", "sources_test"):
        validate_data_dir(data / name, require=SOURCE_FILES)
    stats = json.loads((data / "corpus_stats.json").read_text())
    assert [stats[s]["utterances"] for s in ("train", "dev", "test", "test_clean")] == [24, 8, 8, 8]
    assert [stats[f"sources_{s}"]["speakers"] for s in ("train", "dev", "test")] == [8, 2, 2]
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
    for split in ("train", "dev", "test"):
        for utt, record in read_jsonl(data / split / "mixture.jsonl").items():
            target_spk = record["target"]["spk"]
            assert utt.startswith(target_spk + "-") and target_spk in speakers[split]
            spks = [i["spk"] for i in record["interferers"]]
            assert len(spks) in (1, 2) and target_spk not in spks and len(set(spks)) == len(spks)
            assert set(spks) <= speakers[split]


def test_enrollment_is_another_utterance_of_the_target_speaker(built):
    data = built / "data"
    sources = read_kv(data / "sources_train" / "utt2spk")
    enroll = read_kv(data / "train" / "enroll.scp")
    for utt, record in read_jsonl(data / "train" / "mixture.jsonl").items():
        assert record["enroll"]["utt"] != record["target"]["utt"]
        assert sources[record["enroll"]["utt"]] == record["target"]["spk"]
        assert enroll[utt] == record["enroll"]["path"] != record["target"]["path"]


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
    setting = MIX_SETTINGS["default"]
    data = built / "data"
    for split in ("dev", "test"):
        wav = read_kv(data / split / "wav.scp")
        for utt, record in read_jsonl(data / split / "mixture.jsonl").items():
            mixture = _audio(wav[utt])
            target = _audio(record["target"]["path"]) * record["target"]["gain"]
            speech = np.zeros_like(mixture)
            speech[:len(target)] += target
            for item in record["interferers"]:
                audio = _audio(item["path"]) * item["gain"]
                speech[item["offset_samples"]:item["offset_samples"] + len(audio)] += audio
                assert 10 * np.log10(power(target) / power(audio)) == pytest.approx(item["sir_db"], abs=0.05)
                assert setting.sir_db[0] - 0.05 <= item["sir_db"] <= setting.sir_db[1] + 0.05
            noise = mixture - speech
            assert 10 * np.log10(power(target) / power(noise)) == pytest.approx(record["noise"]["snr_db"], abs=0.3)
            assert setting.snr_db[0] - 0.05 <= record["noise"]["snr_db"] <= setting.snr_db[1] + 0.05
            assert np.max(np.abs(mixture)) <= MAX_AMP + 1e-3


def test_test_clean_is_the_target_as_mixed(built):
    data = built / "data"
    assert read_kv(data / "test_clean" / "text") == read_kv(data / "test" / "text")
    clean_wav = read_kv(data / "test_clean" / "wav.scp")
    for utt, record in read_jsonl(data / "test" / "mixture.jsonl").items():
        clean = _audio(clean_wav[utt])
        target = _audio(record["target"]["path"]) * record["target"]["gain"]
        assert len(clean) == sf.info(read_kv(data / "test" / "wav.scp")[utt]).frames
        np.testing.assert_allclose(clean[:len(target)], target, atol=1e-4)
        assert not clean[len(target):].any()
    assert all(not r["interferers"] for r in read_jsonl(data / "test_clean" / "mixture.jsonl").values())


def test_same_seed_rebuild_is_identical(built, tmp_path):
    """A fresh build (new pool, one process) gives the same lists and audio bytes."""
    assert _build(tmp_path / "data", tmp_path / "corpus", "--nj", "1") == 0
    for name in set_names():
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
    assert prepare_data.main(["--output_dir", str(built / "data"), "--scale", "huge"]) == 1
    assert "unknown --scale 'huge'; valid scales: tiny, default" in capsys.readouterr().err


def test_bad_text_file_fails_naming_line_and_keeps_outputs(built, capsys):
    bad = built / "bad.txt"
    bad.write_text("A perfectly fine sentence is here.\n?! -- ?!\n")
    text_before = (built / "data" / "train" / "text").read_text()
    assert _build(built / "data", built / "corpus", "--text_file", str(bad)) == 1
    assert f"{bad}:2: sentence normalises to nothing" in capsys.readouterr().err
    assert (built / "data" / "train" / "text").read_text() == text_before
    validate_data_dir(built / "data" / "train", require=MIXTURE_FILES)


def test_voice_inventory_and_scales():
    specs = {(v.engine, v.voice, v.pitch) for v in VOICES}
    assert len(VOICES) >= 24 and len(specs) == len(VOICES) == len({v.spk for v in VOICES})
    assert {v.engine for v in VOICES} == {"espeak-ng", "flite"} and {v.gender for v in VOICES} == {"m", "f"}
    default = SCALES["default"]
    splits = assign_splits(VOICES, *default.speakers)
    ids = [{v.spk for v in splits[s]} for s in ("train", "dev", "test")]
    assert [len(i) for i in ids] == [24, 4, 4] and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert default.mixtures[0] >= 2000 and min(default.mixtures[1:]) >= 200
    assert min(default.utts_per_speaker) >= 30
    assert sum(SCALES["tiny"].speakers) >= 12


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
           "--corpus_dir", str(built / "corpus")]  # the module's pool: no synthesis
    done = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": OK (") == 7
    assert (tmp_path / "data" / "train" / "text").read_text() == (built / "data" / "train" / "text").read_text()
    bad = subprocess.run(cmd[:2] + ["huge"] + cmd[3:], cwd=RECIPE, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "valid scales: tiny, default" in bad.stderr


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
