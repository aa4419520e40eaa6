"""One audio boundary (#33): every file, upload or array is checked once, by
``diffasr.audio.read_audio``, and errors name the file and whether it is the mixture (or
recording) or the enrollment.

The figure "audio checks per call path (transcribe, transcribe_long, server upload,
stage 6): each check once" is ``test_each_check_runs_once_per_input_on_every_call_path``:
it counts the calls of each check of ``diffasr.audio`` per input.
"""

import collections
import contextlib
import io
import re
import subprocess
import sys
from unittest import mock

import kaldiio
import numpy as np
import pytest
import soundfile

from conftest import TARGET_TEXT
from diffasr import audio
from diffasr.api import TargetSpeakerASR
from diffasr.audio import AudioError, Role, read_audio, wav_truncation

RATE = 16000
MAX_SECONDS = 6  # the memorised model's max_audio_seconds (conftest)


@pytest.fixture(scope="module")
def asr(packed, tmp_path_factory):
    return TargetSpeakerASR(packed[0], unpack_dir=tmp_path_factory.mktemp("boundary") / "unpacked", steps=8)


def voice(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# ------------------------------------------------------------------ bad input, both roles
def _nan(path, seconds=2.0):
    samples = voice(seconds)
    samples[100:110] = np.nan
    soundfile.write(path, samples, RATE, subtype="FLOAT")


def _truncated(path):
    soundfile.write(path, voice(2.0), RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:2000])  # the header still announces every sample


BAD = {  # case -> (writer(path), {role: the message after the file's name, or None: accepted})
    "truncated": (_truncated, {"mixture": ": truncated WAV: its header announces 64000 bytes"}),
    "nan": (_nan, {"mixture": " has 10 NaN/inf samples (the first at 0.01 s)"}),
    "silent": (lambda p: soundfile.write(p, np.zeros(2 * RATE, np.float32), RATE),
               {"mixture": None, "enrollment": " is silent (peak 0.0e+00)"}),
    "too_short": (lambda p: soundfile.write(p, voice(0.05), RATE),
                  {"mixture": " lasts 0.05 s; at least 0.1 s is needed", "enrollment": " lasts 0.05 s; give at least 1 s"}),
    "short_enrollment": (lambda p: soundfile.write(p, voice(0.5), RATE),
                         {"mixture": None, "enrollment": " lasts 0.50 s; give at least 1 s of the target speaker"}),
    "too_long": (lambda p: soundfile.write(p, voice(MAX_SECONDS + 1), RATE),
                 {"mixture": f" lasts 7.0 s, longer than this model's maximum of {MAX_SECONDS} s",
                  "enrollment": None}),  # an enrollment is cut (test_an_overlong_enrollment_is_cut...)
    "rate_8k": (lambda p: soundfile.write(p, voice(2.0)[::2], 8000),
                {"mixture": " is 8000 Hz; expected 16000 Hz (convert with: sox {path} -r 16000 out.wav)"}),
    "stereo": (lambda p: soundfile.write(p, np.stack([voice(2.0)] * 2, axis=1), RATE),
               {"mixture": " has 2 channels; expected mono (down-mix with: sox {path} -c 1 out.wav)"}),
    "not_audio": (lambda p: p.write_text("not audio at all\n" * 20),
                  {"mixture": ": cannot read it, not audio that libsndfile reads"}),
    "zero_bytes": (lambda p: p.write_bytes(b""), {"mixture": " is empty (0 bytes)"}),
    "missing": (lambda p: None, {"mixture": " does not exist"}),
}
CASES = [(case, role) for case, (_, roles) in BAD.items() for role in ("mixture", "enrollment")]


@pytest.mark.parametrize("case,role", CASES, ids=[f"{c}-{r}" for c, r in CASES])
def test_bad_input_is_refused_once_naming_the_file_and_its_role(case, role, asr, packed, tmp_path, caplog):
    _, mixture, enrollment, _ = packed
    writer, expected = BAD[case]
    message = expected.get(role, expected["mixture"])  # most refusals are the same for both
    bad = tmp_path / f"{case}.wav"
    writer(bad)
    call = (lambda: asr.transcribe(bad, enrollment=enrollment)) if role == "mixture" \
        else (lambda: asr.transcribe(mixture, enrollment=bad))
    if message is None:
        call()
        return
    with caplog.at_level("WARNING"), pytest.raises(AudioError) as error:
        call()
    assert str(error.value).startswith(f"the {role} {bad}{message.format(path=bad)}"), str(error.value)
    assert str(bad) not in caplog.text  # said once, in the error


def test_an_overlong_enrollment_is_cut_with_a_warning(asr, packed, tmp_path, caplog):
    _, mixture, enrollment, _ = packed
    samples = soundfile.read(enrollment, dtype="float32")[0]
    long = tmp_path / "long.wav"
    soundfile.write(long, np.tile(samples, 20)[: 20 * RATE], RATE)
    with caplog.at_level("WARNING"):
        assert asr.transcribe(mixture, enrollment=long).text == TARGET_TEXT
    assert [r.getMessage() for r in caplog.records if str(long) in r.getMessage()] == [
        f"the enrollment {long} lasts 20.0 s; the model reads at most {MAX_SECONDS} s of an enrollment: "
        f"using its first {MAX_SECONDS} s"]


def test_arrays_are_checked_for_their_role(asr, packed):
    _, mixture, _, _ = packed
    with pytest.raises(AudioError, match="^the enrollment has 32000 NaN/inf samples"):
        asr.enroll(np.full(32000, np.nan, dtype=np.float32))
    with pytest.raises(AudioError, match=f"^the mixture lasts 7.0 s, longer than this model's maximum of {MAX_SECONDS} s"):
        asr.transcribe(np.zeros(7 * RATE, np.float32), enrollment=voice(2.0))
    with pytest.raises(AudioError, match=r"^the recording: expected a non-empty 1-D sample array, got shape \(2, 3\)"):
        asr.transcribe_long(np.zeros((2, 3), np.float32))
    # Audio checked for a recording (no maximum) is not decoded in one piece unchecked.
    with pytest.raises(ValueError, match=f"the recording {mixture} was read as the recording, not as the mixture"):
        asr.transcribe_long(asr.read(mixture, "recording"), whole=True)


def wav_bytes(samples, rate=RATE, subtype="PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_uploads_are_converted_and_refused_with_the_servers_status():
    """The server reads uploads with ``convert``: stereo is down-mixed and other rates
    resampled, each said in the notes; what cannot be used gets its HTTP status."""
    tone = voice(1.0)
    role = Role.recording(20, "over the server's limit of 20 s", 413)
    checked = read_audio(wav_bytes(np.stack([tone[::2]] * 2, axis=1), 8000), role, RATE,
                         "the recording upload", convert=True)
    assert checked.frames == RATE and checked.samples().dtype == np.float32
    assert checked.notes == ("the recording upload: 2 channels down-mixed to mono (channel mean)",
                             "the recording upload: resampled from 8000 Hz to 16000 Hz")
    data = wav_bytes(tone)
    assert wav_truncation(data[:4096], len(data)) == ""
    nan = tone.copy()
    nan[RATE // 2] = np.nan
    for upload, status, message in (
            (data[:100], 400, "the recording upload: truncated WAV"),
            (b"", 400, "the recording upload is empty (0 bytes)"),
            (b"this is not audio at all" * 10, 415, "the recording upload: cannot read it, not audio"),
            (wav_bytes(nan, subtype="FLOAT"), 400, "the recording upload has 1 NaN/inf samples (the first at 0.50 s)"),
            (wav_bytes(np.zeros(21 * RATE, np.float32)), 413, "the recording upload lasts 21.0 s, over the server's limit of 20 s")):
        with pytest.raises(AudioError, match=f"^{re.escape(message)}") as error:
            read_audio(upload, role, RATE, convert=True)
        assert error.value.status == status
    enrollment = Role.enrollment(MAX_SECONDS)
    with pytest.raises(AudioError, match="^the enrollment upload lasts 0.50 s; give at least 1 s"):
        read_audio(wav_bytes(tone[: RATE // 2]), enrollment, RATE, convert=True)
    assert read_audio(wav_bytes(np.tile(tone, 8)), enrollment, RATE, convert=True).seconds == MAX_SECONDS


def test_the_cli_refuses_a_wrong_rate_with_the_sox_command(packed, tmp_path):
    zip_path, _, enrollment, _ = packed
    bad = tmp_path / "8k.wav"
    soundfile.write(bad, voice(2.0)[::2], 8000)
    out = subprocess.run([sys.executable, "-m", "diffasr.bin.transcribe", "--model", str(zip_path), "--mixture",
                          str(bad), "--enrollment", str(enrollment), "--unpack_dir", str(tmp_path / "u")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count(str(bad)) == 2  # the file, and in the sox command
    assert (f"transcribe: the recording {bad} is 8000 Hz; expected 16000 Hz "
            f"(convert with: sox {bad} -r 16000 out.wav)") in out.stderr


# ------------------------------------------------------------------ each check once per call path
FILE = ("_exists", "_readable", "_whole", "_channels", "_rate", "_length", "_finite")
UPLOAD = FILE[1:]


@contextlib.contextmanager
def counted_checks():
    """The calls of every check of ``diffasr.audio``, by the input they were made for:
    ``{input name: Counter(check -> calls)}``."""
    counts = collections.defaultdict(collections.Counter)
    with contextlib.ExitStack() as stack:
        for name in audio.CHECKS:
            check = getattr(audio, name)

            def counted(*args, _check=check, _name=name, **kwargs):
                counts[str(args[0])][_name] += 1
                return _check(*args, **kwargs)

            stack.enter_context(mock.patch.object(audio, name, counted))
        yield counts


def once(*checks) -> collections.Counter:
    return collections.Counter({check: 1 for check in checks})


def test_each_check_runs_once_per_input_on_every_call_path(asr, packed, tmp_path):
    from fastapi.testclient import TestClient

    from diffasr.bin import asr_inference
    from diffasr.inference.speech2text import Speech2Text
    from diffasr.serve.app import ServeOptions, build_app

    zip_path, mixture, enrollment, exp = packed
    assert not hasattr(Speech2Text, "check_duration")  # the model's maximum is the boundary's

    # transcribe and transcribe_long (the CLI's path): the mixture, or recording, and the enrollment
    with counted_checks() as counts:
        assert asr.transcribe(mixture, enrollment=enrollment).text == TARGET_TEXT
    assert counts == {f"the mixture {mixture}": once(*FILE), f"the enrollment {enrollment}": once(*FILE, "_audible")}
    with counted_checks() as counts:
        assert asr.transcribe_long(mixture, enrollment=enrollment).text == TARGET_TEXT
    assert counts == {f"the recording {mixture}": once(*FILE), f"the enrollment {enrollment}": once(*FILE, "_audible")}

    # the server: an upload of the audio and of the enrollment, and an enrolled speaker
    app = build_app(asr, ServeOptions(db=tmp_path / "speakers.db"))
    files = dict(audio=("mixture.wav", mixture.read_bytes(), "audio/wav"),
                 enrollment=("enroll.wav", enrollment.read_bytes(), "audio/wav"))
    with TestClient(app) as client:
        with counted_checks() as counts:
            answer = client.post("/v1/transcribe", files=files)
        assert answer.status_code == 200 and answer.json()["text"] == TARGET_TEXT, answer.text
        assert counts == {"the recording upload 'mixture.wav'": once(*UPLOAD),
                          "the enrollment upload 'enroll.wav'": once(*UPLOAD, "_audible")}
        with counted_checks() as counts:
            speaker = client.post("/v1/speakers", files=dict(audio=files["enrollment"])).json()["id"]
            answer = client.post("/v1/transcribe", files=dict(audio=files["audio"]), data=dict(speaker_id=speaker))
        assert answer.json()["text"] == TARGET_TEXT
        assert counts == {"the enrollment upload 'enroll.wav'": once(*UPLOAD, "_audible"),
                          "the recording upload 'mixture.wav'": once(*UPLOAD)}

    # stage 6: each utterance's audio (and, in long form, its enrollment audio) in check_inputs
    data = tmp_path / "data"
    data.mkdir()
    embed = next(iter(kaldiio.load_scp(str(exp.parents[1] / "data/enroll_embed.scp")).values()))
    (data / "wav.scp").write_text(f"u1 {mixture}\nu2 {mixture}\n")
    (data / "enroll.scp").write_text(f"u1 {enrollment}\nu2 {enrollment}\n")
    kaldiio.save_ark(str(data / "embed.ark"), {"u1": embed, "u2": embed}, scp=str(data / "enroll_embed.scp"))
    base = ["--asr_train_config", str(exp / "config.yaml"), "--asr_model_file", str(exp / "4epoch.pth"),
            "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
            "--data_path_and_name_and_type", f"{data}/enroll_embed.scp,enroll_embed,kaldi_ark"]
    speech = {u: f"{data}/wav.scp:{i}: audio of utterance '{u}' ({mixture})" for i, u in ((1, "u1"), (2, "u2"))}
    with counted_checks() as counts:
        asr_inference.main(base + ["--output_dir", str(tmp_path / "short"), "--batch_size", "2"])
    assert counts == {speech["u1"]: once(*FILE), speech["u2"]: once(*FILE)}
    with counted_checks() as counts:
        asr_inference.main(base + ["--output_dir", str(tmp_path / "long"), "--long_form", "true",
                                   "--data_path_and_name_and_type", f"{data}/enroll.scp,enroll_speech,sound"])
    enrolled = {u: f"{data}/enroll.scp:{i}: enrollment audio of utterance '{u}' ({enrollment})"
                for i, u in ((1, "u1"), (2, "u2"))}
    assert counts == {**{name: once(*FILE) for name in speech.values()},
                      **{name: once(*FILE, "_audible") for name in enrolled.values()}}
    for decoded in ("short", "long"):
        assert (tmp_path / decoded / "text").read_text() == f"u1 {TARGET_TEXT}\nu2 {TARGET_TEXT}\n"
