"""Stage 1, real-corpus path on a fixture laid out exactly like LibriSpeech."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffasr.bin import prepare_single_speaker_data, prepare_target_speaker_data
from diffasr.data.mixing import power
from diffasr.datadir import read_jsonl, read_kv, validate_data_dir
from librispeech_fixture import ALL_SUBSETS, SUBSETS, make_librispeech

@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    return make_librispeech(tmp_path_factory.mktemp("LibriSpeech"))


def _run(out, libri_root, *extra):
    return prepare_target_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(libri_root),
                              "--seed", "3", "--nj", "1", *extra])


@pytest.fixture(scope="module")
def built(libri, tmp_path_factory):
    out = tmp_path_factory.mktemp("libri_out") / "data"
    assert _run(out, libri) == 0
    return out


def test_every_utterance_is_a_target_once(built, libri):
    for split, subset in (("train", "train-clean-100"), ("dev", "dev-clean"), ("test", "test-clean")):
        validate_data_dir(built / split, require=("wav.scp", "text", "utt2spk", "enroll.scp", "mixture.jsonl"))
        validate_data_dir(built / f"sources_{split}")
        sources = read_kv(built / f"sources_{split}" / "wav.scp")
        assert sorted(sources) == sorted(p.stem for p in (libri / subset).rglob("*.flac"))
        records = read_jsonl(built / split / "mixture.jsonl")
        # each_target: utterances paired into mixtures, each talker a target once
        present = [r["target"]["utt"] for r in records.values() if r["target"]["utt"] is not None]
        assert sorted(present) == sorted(sources)
        for utt, record in records.items():
            assert utt.startswith(record["target"]["spk"] + "-")
            assert record["enroll"]["utt"] != record["target"]["utt"]
            assert record["enroll"]["utt"].split("-")[0] == record["target"]["spk"]
            assert all(i["spk"] != record["target"]["spk"] for i in record["interferers"])
    text = read_kv(built / "sources_dev" / "text")
    assert text["84-100-0000"] == (libri / "dev-clean/84/100/84-100.trans.txt").read_text().split("\n")[0].split(" ", 1)[1]


def test_target_absent_pairs_take_a_speaker_who_is_not_in_the_mixture(built):
    counts = {}
    for split in ("train", "dev", "test_absent"):
        text = read_kv(built / split / "text", allow_empty_value=True)
        for utt, record in read_jsonl(built / split / "mixture.jsonl").items():
            if record["target"]["utt"] is None:
                counts[split] = counts.get(split, 0) + 1
                heard = {i["spk"] for i in record["interferers"]}
                assert record["enroll"]["spk"] not in heard and text[utt] == ""
                assert record["enroll"]["utt"].split("-")[0] == record["enroll"]["spk"]
    # round(10 %) of 18, 9 and 9 present examples
    assert counts == {"train": 2, "dev": 1, "test_absent": 1}


def test_target_loudness_and_sir_follow_the_metadata(built):
    wav = read_kv(built / "train" / "wav.scp")
    for utt, record in read_jsonl(built / "train" / "mixture.jsonl").items():
        if record["target"]["utt"] is None:
            continue  # target absent
        mixture, _ = sf.read(wav[utt], dtype="float64")
        target = sf.read(record["target"]["path"], dtype="float64")[0] * record["target"]["gain"]
        for item in record["interferers"]:
            audio = sf.read(item["path"], dtype="float64")[0] * item["gain"]
            assert 10 * np.log10(power(target) / power(audio)) == pytest.approx(item["sir_db"], abs=0.05)
        assert len(mixture) >= len(target)


def test_noise_root_supplies_the_noise(libri, tmp_path):
    noise_root = tmp_path / "wham" / "tr"
    noise_root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for k in range(2):  # stereo 8 kHz, as a check that channels and rate are handled
        sf.write(noise_root / f"n{k}.wav", 0.1 * rng.standard_normal((8000 * 3, 2)), 8000)
    out = tmp_path / "data"
    assert _run(out, libri, "--noise_root", str(noise_root.parent)) == 0
    noises = [r["noise"] for r in read_jsonl(out / "dev" / "mixture.jsonl").values()]
    assert {n["kind"] for n in noises} == {"file"}
    assert {Path(n["path"]).parent for n in noises} == {noise_root}


@pytest.fixture(scope="module")
def librimix_built(libri, tmp_path_factory):
    """Stage 1 from LibriMix metadata CSVs over the fixture; (data dir, expected pairs and gains)."""
    tmp_path = tmp_path_factory.mktemp("librimix")
    meta = tmp_path / "metadata" / "Libri2Mix"
    meta.mkdir(parents=True)
    expected = {}
    for subset in SUBSETS:
        flacs = sorted((libri / subset).rglob("*.flac"))
        rows = []
        for a, b in ((0, -1), (1, -2)):
            s1, s2 = flacs[a].relative_to(libri), flacs[b].relative_to(libri)
            rows.append({"mixture_ID": f"{flacs[a].stem}_{flacs[b].stem}", "source_1_path": s1,
                         "source_1_gain": 0.8, "source_2_path": s2, "source_2_gain": 0.35,
                         "noise_path": "tr/n0.wav", "noise_gain": 0.1})
            # each source the target of one example (each_target), with the CSV's gains
            expected[rows[-1]["mixture_ID"]] = (flacs[a].stem, flacs[b].stem, 0.8, 0.35)
            expected[f"{flacs[b].stem}_{flacs[a].stem}"] = (flacs[b].stem, flacs[a].stem, 0.35, 0.8)
        with open(meta / f"libri2mix_{subset}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        with open(meta / f"libri2mix_{subset}_info.csv", "w") as f:  # LibriMix's speaker info: ignored
            f.write("mixture_ID,speaker_1_ID,speaker_1_sex\n")
    out = tmp_path / "data"
    assert _run(out, libri, "--librimix_metadata", str(meta.parent)) == 0
    return out, expected


def test_librimix_metadata_fixes_pairs_and_gains(librimix_built):
    out, expected = librimix_built
    records = {}
    for split in ("train", "dev", "test"):
        records.update(read_jsonl(out / split / "mixture.jsonl"))
    assert sorted(records) == sorted(expected)
    for utt, record in records.items():
        target, interferer, target_gain, interferer_gain = expected[utt]
        assert (record["target"]["utt"], record["interferers"][0]["utt"]) == (target, interferer)
        scale = record["target"]["gain"] / target_gain  # 1 unless the clipping rule fired
        assert record["interferers"][0]["gain"] == pytest.approx(interferer_gain * scale)
        assert record["interferers"][0]["offset_samples"] == record["target"]["offset_samples"] == 0


def test_the_teacher_of_a_librimix_example_is_whisper_on_its_flac_source_alone(librimix_built, libri, tmp_path):
    """The clean-target teacher on the real-corpus path: each example's teacher is the frozen
    encoder on its LibriSpeech FLAC at the CSV's gain; its interferer's is the other example's."""
    import kaldiio
    import torch
    import yaml

    from diffasr.espnet2.teacher import extract_teachers
    from diffasr.espnet2.whisper_encoder import WhisperEncoder

    out, expected = librimix_built
    conf = yaml.safe_load(open(Path(__file__).resolve().parents[1]
                               / "egs/librimix_target/asr1/conf/tuning/train_ar_whisper.yaml"))["encoder_conf"]
    cache = extract_teachers(conf, out / "dev", tmp_path / "teacher", with_others=True)
    teachers, others = (dict(kaldiio.load_scp(str(cache / f"{name}.scp"))) for name in ("teacher", "teacher_others"))
    wav = read_kv(out / "dev" / "wav.scp")
    records = read_jsonl(out / "dev" / "mixture.jsonl")
    assert sorted(teachers) == sorted(records) and len(records) == 4
    encoder = WhisperEncoder(whisper_model="tiny.en", frozen_layers=None, adapter_blocks=0)
    for utt, record in records.items():
        length = sf.info(wav[utt]).frames
        target_stem, _, _, _ = expected[utt]
        flac = next((libri / "dev-clean").rglob(f"{target_stem}.flac"))
        alone = np.zeros(length, np.float32)
        audio = sf.read(flac, dtype="float32")[0] * record["target"]["gain"]
        alone[: len(audio)] = audio
        frames, lengths = encoder.frozen(torch.from_numpy(alone)[None], torch.tensor([length]))
        np.testing.assert_allclose(teachers[utt], frames[0, : int(lengths[0])].numpy(), atol=1e-4)
    for utt, (target, interferer, _, _) in expected.items():
        if utt in records:  # the interferer's teacher is that talker's own example's teacher
            partner = f"{interferer}_{target}"
            np.testing.assert_allclose(others[utt][:, :384], teachers[partner], atol=1e-5)


def _assert_fails_and_keeps(built, root, capsys, message):
    before = {p: p.read_bytes() for p in sorted(built.rglob("*.scp"))}
    assert _run(built, root) == 1
    assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sorted(built.rglob("*.scp"))} == before
    assert not (built / ".stage1_tmp").exists()


@pytest.fixture
def broken(libri, tmp_path):
    root = tmp_path / "LibriSpeech"
    shutil.copytree(libri, root)
    return root


def test_flac_without_transcript_line(built, broken, capsys):
    trans = broken / "dev-clean/84/100/84-100.trans.txt"
    trans.write_text("".join(trans.read_text().splitlines(keepends=True)[:2]))
    flac = broken / "dev-clean/84/100/84-100-0002.flac"
    _assert_fails_and_keeps(built, broken, capsys, f"{flac}: no transcript line for '84-100-0002' in {trans}")


def test_chapter_without_trans_txt(built, broken, capsys):
    trans = broken / "test-clean/121/100/121-100.trans.txt"
    trans.unlink()
    _assert_fails_and_keeps(built, broken, capsys, f"{trans}: transcript file missing")


@pytest.mark.parametrize("content, what", [(b"", "corrupt or unreadable audio"),
                                           (b"fLaC\x00garbage" * 10, "corrupt or unreadable audio")])
def test_corrupt_or_empty_audio(built, broken, capsys, content, what):
    flac = broken / "train-clean-100/26/200/26-200-0001.flac"
    flac.write_bytes(content)
    _assert_fails_and_keeps(built, broken, capsys, f"{flac}: {what}")


def test_transcript_that_normalises_to_nothing(built, broken, capsys):
    trans = broken / "dev-clean/174/100/174-100.trans.txt"
    lines = trans.read_text().splitlines(keepends=True)
    lines[1] = lines[1].split(" ")[0] + " -- ?!\n"
    trans.write_text("".join(lines))
    _assert_fails_and_keeps(built, broken, capsys, f"{trans}:2: transcript of '174-100-0001' is empty")


def test_missing_subset(built, broken, capsys):
    shutil.rmtree(broken / "test-clean")
    _assert_fails_and_keeps(built, broken, capsys, f"{broken / 'test-clean'}: LibriSpeech subset directory not found")


# ---- single-speaker data dirs (egs/librispeech/asr1 stage 1)
@pytest.fixture(scope="module")
def libri_all(tmp_path_factory):
    return make_librispeech(tmp_path_factory.mktemp("LibriSpeechAll"), ALL_SUBSETS)


def test_single_speaker_sets_in_espnet_librispeech_format(libri_all, tmp_path, capsys):
    out = tmp_path / "data"
    assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(libri_all), "--nj", "1"]) == 0
    for subset in ALL_SUBSETS:
        data_dir = out / subset.replace("-", "_")
        validate_data_dir(data_dir, require=("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"))
        assert not (data_dir / "enroll.scp").exists() and not (data_dir / "mixture.jsonl").exists()
        flacs = {p.stem: p for p in (libri_all / subset).rglob("*.flac")}
        # wav.scp points at the corpus's own flac files (ESPnet2 reads them directly)
        assert read_kv(data_dir / "wav.scp") == {utt: str(path.resolve()) for utt, path in flacs.items()}
        # text is the trans.txt line as it is; the speaker is the reader-chapter
        expected_text = {}
        for trans in (libri_all / subset).rglob("*.trans.txt"):
            expected_text.update(line.split(" ", 1) for line in trans.read_text().splitlines())
        assert read_kv(data_dir / "text") == expected_text
        assert read_kv(data_dir / "utt2spk") == {utt: "-".join(utt.split("-")[:2]) for utt in flacs}
    assert read_kv(out / "test_other" / "utt2spk")["831-100-0002"] == "831-100"
    # A rerun with the same options reads nothing and rewrites nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(libri_all), "--nj", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_single_speaker_bad_subset_names_the_file_and_keeps_earlier_sets(libri_all, tmp_path, capsys):
    out = tmp_path / "data"
    assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(libri_all), "--nj", "1"]) == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    broken = tmp_path / "LibriSpeech"
    shutil.copytree(libri_all, broken)
    trans = broken / "test-other/831/100/831-100.trans.txt"
    lines = trans.read_text().splitlines(keepends=True)
    lines[1] = "831-100-0001 ?!\n"
    trans.write_text("".join(lines))
    assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(broken), "--nj", "1"]) == 1
    assert f"{trans}:2: transcript of '831-100-0001' is empty" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
