"""Bad input at every place user data enters, as one sweep (#11).

Entry points: stage 1 on the real-corpus path (a LibriSpeech-layout fixture), a user's
Kaldi data dir (what asr.sh checks after local/data.sh), stage 4 (enrollment
embeddings), stage 6 (decoding) and the API.  Every case ends in an error that names
the file (and the line, where the input is a list) or in a documented, logged repair;
outputs written earlier are byte-identical afterwards (sha256 before and after).
"""

import hashlib
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import yaml

from diffasr.bin import asr_inference, prepare_single_speaker_data, spk_embed
from diffasr.datadir import read_kv
from librispeech_fixture import ALL_SUBSETS, make_librispeech

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


def checksums(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def speech(seconds=1.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * rng.random(t.size))).astype(np.float32)


# Ways to spoil an audio file: (id, writer(path, good samples)).
def _corrupt_header(path, _):
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(64))


def _truncated(path, samples):
    soundfile.write(path, samples, RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:200])  # the header still announces every sample


def _empty(path, _):
    path.write_bytes(b"")


def _rate_8k(path, samples):
    soundfile.write(path, samples[::2], 8000, subtype="PCM_16")


def _stereo(path, samples):
    soundfile.write(path, np.stack([samples, samples], axis=1), RATE, subtype="PCM_16")


def _nan(path, samples):
    bad = samples.copy()
    bad[100:110] = np.nan
    soundfile.write(path, bad, RATE, subtype="FLOAT")


BAD_AUDIO = {  # id -> (writer, what the message must say)
    "corrupt_header": (_corrupt_header, r"cannot read"),
    "truncated": (_truncated, r"truncated WAV"),
    "zero_bytes": (_empty, r"cannot read|empty"),
    "rate_8k": (_rate_8k, r"8000 Hz; expected 16000 Hz"),
    "stereo": (_stereo, r"2 channels; expected mono"),
    "nan": (_nan, r"10 NaN/inf samples"),
}


# ------------------------------------------------------------------ stage 1, LibriSpeech layout
@pytest.fixture(scope="module")
def librispeech(tmp_path_factory):
    """(corpus, data dir of a good stage-1 run: the earlier outputs)."""
    root = tmp_path_factory.mktemp("bad_input_libri")
    corpus = make_librispeech(root / "LibriSpeech", ALL_SUBSETS)
    out = root / "data"
    assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(corpus), "--nj", "1"]) == 0
    return corpus, out


FLAC = "dev-clean/84/100/84-100-0001.flac"
TRANS = "dev-clean/84/100/84-100.trans.txt"


def _flac(writer):
    def spoil(corpus):
        path = corpus / FLAC
        samples = soundfile.read(path, dtype="float32")[0]
        writer(path, samples)
        return path
    return spoil


def _trans_lines(edit):
    def spoil(corpus):
        path = corpus / TRANS
        lines = path.read_text().splitlines(keepends=True)
        path.write_bytes(edit(lines))
        return path
    return spoil


STAGE1_ERRORS = {  # id -> (spoil(corpus) -> the file, message regex given that file)
    "corrupt_header": (_flac(lambda p, s: p.write_bytes(b"fLaC" + bytes(40))), "{f}: corrupt or unreadable audio"),
    "zero_bytes": (_flac(lambda p, s: p.write_bytes(b"")), "{f}: corrupt or unreadable audio"),
    "rate_8k": (_flac(lambda p, s: soundfile.write(p, s[::2], 8000, format="FLAC")),
                "{f}: audio at 8000 Hz; LibriSpeech is 16000 Hz"),
    "stereo": (_flac(lambda p, s: soundfile.write(p, np.stack([s, s], 1), RATE, format="FLAC")),
               "{f}: audio with 2 channels; LibriSpeech is mono"),
    "flac_without_transcript": (_trans_lines(lambda ls: "".join(ls[:1] + ls[2:]).encode()),
                                "{corpus}/" + FLAC + ": no transcript line for '84-100-0001' in {f}"),
    "duplicated_id": (_trans_lines(lambda ls: "".join(ls + ls[1:2]).encode()),
                      "{f}:4: utterance '84-100-0001' appears again \\(first on line 2\\)"),
    "not_utf8": (_trans_lines(lambda ls: "".join(ls[:2]).encode() + b"84-100-0002 CAF\xe9\n"),
                 "{f}:3: not UTF-8 text"),
    "nothing_speakable": (_trans_lines(lambda ls: "".join(ls[:1] + ["84-100-0001 -- ?!\n"] + ls[2:]).encode()),
                          "{f}:2: transcript of '84-100-0001' is empty after normalisation"),
}


@pytest.mark.parametrize("case", sorted(STAGE1_ERRORS))
def test_stage1_librispeech_bad_input(case, librispeech, tmp_path, capsys):
    corpus, out = librispeech
    broken = tmp_path / "LibriSpeech"
    shutil.copytree(corpus, broken)
    spoil, message = STAGE1_ERRORS[case]
    bad_file = spoil(broken)
    before = checksums(out)
    assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(broken), "--nj", "1"]) == 1
    expected = message.format(f=re.escape(str(bad_file)), corpus=re.escape(str(broken)))
    assert re.search(expected, capsys.readouterr().err), expected
    assert checksums(out) == before


STAGE1_REPAIRS = {  # id -> (new transcript of 84-100-0001, what the data dir's text then holds)
    "digits": ("ROOM 101 IS FREE", "ROOM ONE HUNDRED AND ONE IS FREE"),
    "unicode": ("CAFÉ “NOIR” FOR ZOË", "CAFE NOIR FOR ZOE"),
    "lower_case_and_punctuation": ("well, it's late.", "WELL IT'S LATE"),
}


@pytest.mark.parametrize("case", sorted(STAGE1_REPAIRS) + ["empty_line"])
def test_stage1_librispeech_logged_repairs(case, librispeech, tmp_path, caplog):
    """Text LibriSpeech would not hold is normalised to its form (README: the real-corpus
    path), and an empty line is skipped; each repair is logged with its file and line."""
    corpus, _ = librispeech
    broken = tmp_path / "LibriSpeech"
    shutil.copytree(corpus, broken)
    trans = broken / TRANS
    lines = trans.read_text().splitlines(keepends=True)
    if case == "empty_line":
        lines.insert(1, "\n")
        expected_log, expected_text = f"{trans}:2: empty line skipped", lines[2].split(" ", 1)[1].strip()
    else:
        raw, expected_text = STAGE1_REPAIRS[case]
        lines[1] = f"84-100-0001 {raw}\n"
        expected_log = f"{trans}:2: transcript of '84-100-0001' normalised to LibriSpeech's form"
    trans.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        assert prepare_single_speaker_data.main(["--output_dir", str(out), "--librispeech_root", str(broken), "--nj", "1"]) == 0
    assert expected_log in caplog.text
    assert read_kv(out / "dev_clean/text")["84-100-0001"] == expected_text


# ------------------------------------------------------------------ a user's Kaldi data dir
@pytest.fixture
def user_data_dir(tmp_path):
    data = tmp_path / "data/train"
    data.mkdir(parents=True)
    utts = ["spkA-0001", "spkA-0002", "spkB-0001"]
    for i, utt in enumerate(utts):
        soundfile.write(tmp_path / f"{utt}.wav", speech(0.5, i), RATE)
    (data / "wav.scp").write_text("".join(f"{u} {tmp_path / u}.wav\n" for u in utts))
    (data / "text").write_text("spkA-0001 HELLO WORLD\nspkA-0002 GOOD MORNING\nspkB-0001 NICE DAY\n")
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    (data / "spk2utt").write_text("spkA spkA-0001 spkA-0002\nspkB spkB-0001\n")
    return data


def _replace_line(name, number, new):
    def spoil(data):
        lines = (data / name).read_text().splitlines(keepends=True)
        lines[number - 1] = new
        (data / name).write_text("".join(lines))
    return spoil


DATA_DIR_CASES = {  # id -> (spoil(data dir), message regex given the data dir)
    "utt2spk_missing_an_id": (lambda d: (d / "utt2spk").write_text("spkA-0001 spkA\nspkB-0001 spkB\n"),
                              r"{d}/utt2spk: no line for utterance 'spkA-0002' of {d}/wav.scp:2"),
    "text_with_an_extra_id": (_replace_line("text", 3, "spkB-0001 NICE DAY\nspkC-0001 EXTRA\n"),
                              r"{d}/text:4: utterance 'spkC-0001' is not in wav.scp"),
    "unsorted": (lambda d: (d / "text").write_text("spkA-0002 GOOD MORNING\nspkA-0001 HELLO WORLD\n"
                                                    "spkB-0001 NICE DAY\n"),
                 r"{d}/text:2: not sorted \('spkA-0001' after 'spkA-0002'\); run utils/fix_data_dir.py"),
    "duplicated_id": (_replace_line("text", 2, "spkA-0001 AGAIN\n"), r"{d}/text:2: duplicate key 'spkA-0001'"),
    "empty_line": (_replace_line("text", 2, "\n"), r"{d}/text:2: empty line"),
    "empty_transcript": (_replace_line("text", 2, "spkA-0002\n"), r"{d}/text:2: empty transcript for 'spkA-0002'"),
    "not_utf8": (lambda d: (d / "text").write_bytes(b"spkA-0001 HELLO\nspkA-0002 CAF\xe9\nspkB-0001 NICE\n"),
                 r"{d}/text:2: not UTF-8 text"),
    "audio_file_missing": (lambda d: _replace_line("wav.scp", 3, "spkB-0001 /nowhere/spkB-0001.wav\n")(d),
                           r"{d}/wav.scp:3: audio file of 'spkB-0001' does not exist: /nowhere/spkB-0001.wav"),
}


@pytest.mark.parametrize("case", sorted(DATA_DIR_CASES))
def test_user_data_dir_bad_input(case, user_data_dir):
    """What asr.sh runs after a recipe's local/data.sh (README: Adding a corpus)."""
    spoil, message = DATA_DIR_CASES[case]
    spoil(user_data_dir)
    before = checksums(user_data_dir)
    out = subprocess.run([sys.executable, str(REPO / "utils/validate_data_dir.py"), "--require", "wav.scp", "text",
                          "utt2spk", "spk2utt", "--", str(user_data_dir)], capture_output=True, text=True)
    assert out.returncode == 1
    expected = message.format(d=re.escape(str(user_data_dir)))
    assert re.search(expected, out.stderr), (expected, out.stderr)
    assert checksums(user_data_dir) == before  # validation never edits the data


def test_user_data_dir_text_with_digits_and_unicode_is_taken_as_is(user_data_dir):
    """A new corpus's transcripts are its own: valid UTF-8 with digits passes unchanged
    (the tokenizer of stage 2 learns whatever characters it holds)."""
    _replace_line("text", 1, "spkA-0001 ROOM 101 À PARIS\n")(user_data_dir)
    out = subprocess.run([sys.executable, str(REPO / "utils/validate_data_dir.py"), str(user_data_dir)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert read_kv(user_data_dir / "text")["spkA-0001"] == "ROOM 101 À PARIS"


# ------------------------------------------------------------------ stage 4 and stage 6 share a set
@pytest.fixture(scope="module")
def decode_set(packed, tmp_path_factory):
    """A two-utterance set of the memorised model: wav.scp, enroll.scp, enroll_embed.scp,
    and the earlier outputs of a good stage 4 (embeddings) and stage 6 (decode)."""
    _, mixture, enrollment, exp = packed
    root = tmp_path_factory.mktemp("bad_input_set")
    data = root / "data"
    data.mkdir()
    utts = ["spk0-0001", "spk0-0002"]
    for utt in utts:
        shutil.copy(mixture, root / f"{utt}.wav")
        shutil.copy(enrollment, root / f"{utt}_enroll.wav")
    (data / "wav.scp").write_text("".join(f"{u} {root / u}.wav\n" for u in utts))
    (data / "enroll.scp").write_text("".join(f"{u} {root / u}_enroll.wav\n" for u in utts))
    spk_dir = exp.parent / "spk_tiny"
    assert spk_embed.main(["--model_dir", str(spk_dir), "--data_dir", str(data),
                           "--output_dir", str(root / "embed")]) == 0
    decoded = root / "decode"
    asr_inference.main(decode_args(exp, data, decoded))
    assert sorted(read_kv(decoded / "text", allow_empty_value=True)) == utts
    return root, data, exp


def decode_args(exp, data, output_dir, *extra):
    return ["--output_dir", str(output_dir), "--asr_train_config", str(exp / "config.yaml"),
            "--asr_model_file", str(exp / "4epoch.pth"),
            "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
            "--data_path_and_name_and_type", f"{data}/enroll_embed.scp,enroll_embed,kaldi_ark", *extra]


def copy_set(data: Path, tmp_path: Path) -> Path:
    """The set's lists, with its audio copied too, so that a case can spoil one file."""
    new = tmp_path / "data"
    new.mkdir()
    for name in ("wav.scp", "enroll.scp", "enroll_embed.scp"):
        lines = []
        for utt, value in read_kv(data / name).items():
            if name.endswith(".scp") and value.endswith(".wav"):
                shutil.copy(value, tmp_path / Path(value).name)
                value = str(tmp_path / Path(value).name)
            lines.append(f"{utt} {value}\n")
        (new / name).write_text("".join(lines))
    return new


@pytest.mark.parametrize("case", sorted(BAD_AUDIO) + ["no_enrollment_line", "enrollment_file_missing"])
def test_stage4_enrollment_bad_input(case, decode_set, tmp_path, caplog):
    root, data, exp = decode_set
    data = copy_set(data, tmp_path)
    scp = data / "enroll.scp"
    if case == "no_enrollment_line":
        scp.write_text(scp.read_text().splitlines(keepends=True)[0])
        expected = rf"{re.escape(str(scp))}: no enrollment audio for utterance 'spk0-0002' of .*wav.scp:2"
    elif case == "enrollment_file_missing":
        scp.write_text(scp.read_text().splitlines(keepends=True)[0] + "spk0-0002 /nowhere/spk0-0002_enroll.wav\n")
        expected = rf"{re.escape(str(scp))}:2: enrollment audio of utterance 'spk0-0002' \(/nowhere/spk0-0002_enroll.wav\) does not exist"
    else:
        writer, what = BAD_AUDIO[case]
        wav = Path(read_kv(scp)["spk0-0002"])
        writer(wav, soundfile.read(wav, dtype="float32")[0])
        expected = rf"{re.escape(str(scp))}:2: .*({what})"
    before = checksums(root / "embed")
    with caplog.at_level(logging.ERROR):
        assert spk_embed.main(["--model_dir", str(exp.parent / "spk_tiny"), "--data_dir", str(data),
                               "--output_dir", str(root / "embed")]) == 1
    assert re.search(expected, caplog.text), (expected, caplog.text)
    assert checksums(root / "embed") == before
    assert (data / "enroll_embed.scp").read_text() == (decode_set[1] / "enroll_embed.scp").read_text()


STAGE6_OTHER = ("no_embedding_line", "nan_embedding", "decode_config_typo", "token_list_changed",
                "unknown_token_in_first_pass")


@pytest.mark.parametrize("case", sorted(BAD_AUDIO) + list(STAGE6_OTHER))
def test_stage6_decoding_bad_input(case, decode_set, tmp_path, capsys):
    root, data, exp = decode_set
    data = copy_set(data, tmp_path)
    extra, train_config = [], exp / "config.yaml"
    if case in BAD_AUDIO:
        writer, what = BAD_AUDIO[case]
        wav = Path(read_kv(data / "wav.scp")["spk0-0002"])
        writer(wav, soundfile.read(wav, dtype="float32")[0])
        expected = rf"{re.escape(str(data / 'wav.scp'))}:2: .*({what})"
    elif case == "no_embedding_line":
        scp = data / "enroll_embed.scp"
        scp.write_text(scp.read_text().splitlines(keepends=True)[0])
        expected = rf"{re.escape(str(scp))}: no line for utterance 'spk0-0002' \(.*wav.scp:2\)"
    elif case == "nan_embedding":
        vectors = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(data / "enroll_embed.scp")).items()}
        vectors["spk0-0002"] = np.full_like(vectors["spk0-0002"], np.nan)
        kaldiio.save_ark(str(tmp_path / "nan.ark"), vectors, scp=str(data / "enroll_embed.scp"))
        expected = rf"{re.escape(str(data / 'enroll_embed.scp'))}:2: enroll_embed of utterance 'spk0-0002' has NaN"
    elif case == "decode_config_typo":
        (tmp_path / "decode.yaml").write_text("step: 4\n")
        extra = ["--config", str(tmp_path / "decode.yaml")]
        expected = rf"unrecognized arguments: step \(from {re.escape(str(tmp_path / 'decode.yaml'))}\)"
    elif case == "token_list_changed":
        config = yaml.safe_load(train_config.read_text())
        config["token_list"] = config["token_list"][:-3] + config["token_list"][-2:]  # one piece dropped
        train_config = tmp_path / "config.yaml"
        train_config.write_text(yaml.safe_dump(config))
        expected = rf"{re.escape(str(exp / '4epoch.pth'))} does not fit the model that {re.escape(str(train_config))} builds"
    else:
        hyp = tmp_path / "first_pass"
        hyp.write_text("spk0-0001 HELLO WORLD\nspk0-0002 HELLO QUIZ\n")
        extra = ["--decode_mode", "deliberation", "--deliberation_hyp", str(hyp)]
        expected = rf"{re.escape(str(hyp))}:2: the hypothesis of utterance spk0-0002 has tokens outside the model's token list"
    args = decode_args(exp, data, root / "decode", *extra)
    args[args.index("--asr_train_config") + 1] = str(train_config)
    before = checksums(root / "decode")
    with pytest.raises((ValueError, SystemExit)) as error:
        asr_inference.main(args)
    message = str(error.value) if error.type is not SystemExit else capsys.readouterr().err
    assert re.search(expected, message), (expected, message[-2000:])
    assert checksums(root / "decode") == before


def test_stage6_bad_input_is_one_line_with_exit_status_1(decode_set, tmp_path):
    """As stage 6 runs the decoder: the message in its log, no traceback."""
    root, data, exp = decode_set
    data = copy_set(data, tmp_path)
    wav = Path(read_kv(data / "wav.scp")["spk0-0001"])
    _nan(wav, soundfile.read(wav, dtype="float32")[0])
    out = subprocess.run([sys.executable, "-m", "diffasr.bin.asr_inference",
                          *decode_args(exp, data, tmp_path / "decode")], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"ERROR: {data / 'wav.scp'}:1: audio of utterance 'spk0-0001' ({wav}) has 10 NaN/inf samples" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "decode" / "text").exists()


# ------------------------------------------------------------------ the API
@pytest.fixture(scope="module")
def api(packed):
    from diffasr.api import TargetSpeakerASR

    _, mixture, enrollment, exp = packed
    return TargetSpeakerASR(exp, inference_model="4epoch.pth"), mixture, enrollment, exp


@pytest.mark.parametrize("case", sorted(BAD_AUDIO) + ["enrollment_missing", "no_enrollment", "option_typo"])
def test_api_bad_input(case, api, tmp_path):
    from diffasr.api import TargetSpeakerASR

    asr, mixture, enrollment, exp = api
    before = checksums(exp)
    bad = tmp_path / "bad.wav"
    if case in BAD_AUDIO:
        writer, what = BAD_AUDIO[case]
        writer(bad, soundfile.read(mixture, dtype="float32")[0])
        call, expected = (lambda: asr.transcribe(bad, enrollment=enrollment)), what
    elif case == "enrollment_missing":
        call, expected = (lambda: asr.transcribe(mixture, enrollment=tmp_path / "nobody.wav")), "nobody.wav"
    elif case == "no_enrollment":
        call, expected = (lambda: asr.transcribe(mixture)), "speaker-conditioned: give an enrollment recording"
    else:
        call = lambda: TargetSpeakerASR(exp, inference_model="4epoch.pth", step=4)  # noqa: E731
        expected = r"unknown decode option 'step' \(did you mean 'steps'"
    with pytest.raises((ValueError, FileNotFoundError), match=expected) as error:
        call()
    if case in BAD_AUDIO:
        assert str(bad) in str(error.value)
    assert checksums(exp) == before
