"""Long-form transcription: silero-vad segments at known pauses, quietest-point splits,
absolute word times, and the memorised model read through a recording it never saw whole."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from conftest import TARGET_TEXT
from diffasr import longform
from diffasr.api import TargetSpeakerASR

RATE = 16000


def speech_extent(samples: np.ndarray, floor: float = 1e-3):
    """First and last sample above ``floor`` (espeak pads its output with silence)."""
    loud = np.flatnonzero(np.abs(samples) > floor)
    return loud[0] / RATE, (loud[-1] + 1) / RATE


@pytest.fixture(scope="module")
def spoken_recording(tmp_path_factory):
    """Three synthesized sentences with pauses of 0.8, 1.5 and 2.5 s; true speech spans."""
    from diffasr.data.voices import VOICES, synthesize

    sentences = ["THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG", "PLEASE CALL STELLA",
                 "ASK HER TO BRING THESE THINGS WITH HER FROM THE STORE"]
    pauses = [0.8, 1.5, 2.5]
    parts, spans, t = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for sentence, pause in zip(sentences, pauses):
        speech = synthesize(VOICES[1], sentence)
        start, end = speech_extent(speech)
        spans.append((t + start, t + end))
        parts += [speech, np.zeros(int(pause * RATE), np.float32)]
        t += (len(speech) + int(pause * RATE)) / RATE
    path = tmp_path_factory.mktemp("longform") / "three.wav"
    soundfile.write(path, np.concatenate(parts), RATE)
    return path, spans


def test_vad_segments_fall_on_the_pauses(spoken_recording):
    path, spans = spoken_recording
    vad = longform.SpeechActivity()
    options = longform.VADOptions(block=1.0)  # several blocks: the window carry-over is used
    probabilities, levels, total = vad(longform.iter_blocks(str(path), int(options.block * RATE)))
    assert total == soundfile.info(str(path)).frames
    assert len(probabilities) == len(levels) == -(-total // longform.VAD_WINDOW)
    segments = longform.segment(probabilities, levels, total, options)
    assert len(segments) == len(spans), (segments, spans)
    for (start, end), (true_start, true_end) in zip(segments, spans):
        assert abs(start - true_start) <= 0.2 and abs(end - true_end) <= 0.2, (segments, spans)
    # The whole file in one block gives the same windows as block-wise reading.
    whole = vad(iter([soundfile.read(str(path), dtype="float32")[0]]))[0]
    np.testing.assert_allclose(whole, probabilities, atol=1e-5)


def test_an_overlong_region_is_split_at_its_quietest_window():
    levels = np.ones(100)
    levels[52] = 0.01  # the quietest cut that leaves both pieces within 60 windows
    levels[30] = 0.0  # quieter, but the piece after it would still be too long
    assert longform.split_at_quietest(0, 100, levels, max_windows=60) == [(0, 52), (52, 100)]
    pieces = longform.split_at_quietest(0, 1000, np.random.default_rng(0).random(1000), max_windows=120)
    assert all(e - s <= 120 for s, e in pieces)
    assert pieces[0][0] == 0 and pieces[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_batches_are_bounded_in_count_and_padded_seconds():
    durations = [4.0, 1.0, 9.0, 2.0, 8.0, 3.0, 10.0]
    batches = longform.plan_batches(durations, batch_size=3, max_batch_seconds=20.0)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert batches == [[1, 3, 5], [0, 4], [2, 6]]  # 3 x 3 s; 2 x 8 s; 2 x 10 s
    assert all(len(b) * max(durations[i] for i in b) <= 20.0 for b in batches)
    assert longform.plan_batches([30.0, 1.0], 8, 20.0) == [[1], [0]]  # an over-long one alone


def test_segment_respects_max_length_and_padding():
    window = longform.WINDOW_SECONDS
    probabilities = np.zeros(400, dtype=np.float32)
    probabilities[50:100] = 0.9  # 1.6 s of speech
    probabilities[150:390] = 0.9  # 7.7 s of speech: over max_segment 3 s
    levels = np.ones(400)
    levels[230] = 0.0
    segments = longform.segment(probabilities, levels, 400 * longform.VAD_WINDOW,
                                longform.VADOptions(max_segment=3.0, pad=0.1))
    assert segments[0] == (round(50 * window - 0.1, 3), round(100 * window + 0.1, 3))
    assert all(e - s <= 3.0 + 1e-6 for s, e in segments)
    assert any(abs(e - 230 * window) < 1e-3 for _, e in segments)  # the quiet window is a cut


def test_words_get_absolute_times_in_order():
    result = SimpleNamespace(text="HELLO WORLD", tokens=["\u2581HEL", "LO", "\u2581WORLD"], confidences=[0.9, 0.5, 0.8])
    calls = []

    def decode_batch(segments):
        calls.append([len(s) for s in segments])
        return [result] * len(segments)

    recording = np.zeros(10 * RATE, dtype=np.float32)

    class FixedVAD:  # speech at 1-3 s and 6-8 s
        def __call__(self, blocks, what=""):
            total = sum(len(b) for b in blocks)
            windows = -(-total // longform.VAD_WINDOW)
            p = np.zeros(windows, dtype=np.float32)
            for s, e in ((1, 3), (6, 8)):
                p[int(s / longform.WINDOW_SECONDS):int(e / longform.WINDOW_SECONDS)] = 0.9
            return p, np.ones(windows), total

    out = longform.transcribe_long(recording, decode_batch, FixedVAD(), longform.VADOptions(pad=0.0), batch_size=1)
    assert out.text == "HELLO WORLD HELLO WORLD"
    assert [len(c) for c in calls] == [1, 1]  # batch_size 1: one segment per call
    # 1-3 s and 6-8 s without padding, to the 32 ms window
    assert all(abs(c[0] - 2 * RATE) <= longform.VAD_WINDOW for c in calls)
    starts = [w.start for w in out.words]
    assert starts == sorted(starts)
    first, second = out.segments
    assert 0.95 < first.start < 1.05 and 5.95 < second.start < 6.05
    assert first.words[0].start == first.start and abs(first.words[-1].end - first.end) < 1e-3
    assert all(second.start <= w.start < w.end <= second.end + 1e-3 for w in second.words)
    # HELLO has 5 letters, WORLD 5: each gets half of its segment; the lower piece confidence
    assert abs((first.words[0].end - first.words[0].start) - (first.end - first.start) / 2) < 2e-3
    assert out.words[0].confidence == 0.5
    ctm = out.ctm("rec")
    assert ctm[2].split()[:2] == ["rec", "1"] and float(ctm[2].split()[2]) == second.words[0].start
    assert out.audio_seconds == 10.0


def repeated(path, pauses):
    """The mixture said len(pauses) times, each followed by its pause; the speech spans."""
    audio, _ = soundfile.read(path, dtype="float32")
    parts, spans, t = [], [], 0.0
    for pause in pauses:
        parts += [audio, np.zeros(int(pause * RATE), np.float32)]
        spans.append((t, t + len(audio) / RATE))
        t += len(audio) / RATE + pause
    return np.concatenate(parts), spans


def test_memorised_model_reads_a_recording_longer_than_its_maximum(packed, tmp_path):
    zip_path, mixture, enroll, _ = packed
    asr = TargetSpeakerASR(zip_path, unpack_dir=tmp_path / "unpacked", steps=8)
    audio, spans = repeated(mixture, [1.0, 1.7, 1.2, 0.9])
    assert len(audio) / RATE > asr.speech2text.max_audio_seconds  # one decode would be refused
    soundfile.write(tmp_path / "long.wav", audio, RATE)
    result = asr.transcribe_long(tmp_path / "long.wav", enrollment=enroll, batch_size=3)
    assert result.text == " ".join([TARGET_TEXT] * 4)
    assert len(result.segments) == 4
    for segment, (start, end) in zip(result.segments, spans):
        assert start - 0.2 <= segment.start and segment.end <= end + 0.2
        assert [w.word for w in segment.words] == TARGET_TEXT.split()
    # The array path gives the same transcript.
    assert asr.transcribe_long(audio, enrollment=enroll).text == result.text


def test_cli_long_form_writes_ctm_and_handles_silence(packed, tmp_path):
    zip_path, mixture, enroll, _ = packed
    audio, _ = repeated(mixture, [1.0, 1.5, 1.0, 1.0, 1.0])
    soundfile.write(tmp_path / "long.wav", audio, RATE)
    soundfile.write(tmp_path / "silence.wav", np.zeros(8 * RATE, np.float32), RATE)
    base = [sys.executable, "-m", "diffasr.bin.transcribe", "--model", str(zip_path),
            "--enrollment", str(enroll), "--unpack_dir", str(tmp_path / "u")]
    out = subprocess.run(base + ["--mixture", str(tmp_path / "long.wav"), str(tmp_path / "silence.wav"),
                                 "--output_json", str(tmp_path / "out.json"), "--output_ctm", str(tmp_path / "out.ctm"),
                                 "--log_level", "INFO"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == f"{tmp_path / 'long.wav'} {' '.join([TARGET_TEXT] * 5)}"
    assert lines[1] == str(tmp_path / "silence.wav")  # no speech: an empty transcript ...
    assert "no speech found" in out.stderr  # ... said in the log
    assert "Flash Attention" not in out.stdout + out.stderr
    ctm = (tmp_path / "out.ctm").read_text().splitlines()
    assert len(ctm) == 10 and all(line.split()[0] == "long" for line in ctm)
    starts = [float(line.split()[2]) for line in ctm]
    assert starts == sorted(starts) and starts[-1] > 6.0  # absolute times, past the model's 6 s
    record = json.loads((tmp_path / "out.json").read_text())[0]
    assert len(record["segments"]) == 5 and record["words"][2]["start"] == starts[2]
    missing = subprocess.run(base + ["--mixture", str(tmp_path / "nope.wav")], capture_output=True, text=True)
    assert missing.returncode == 1 and f"the recording {tmp_path / 'nope.wav'} does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_stage6_long_form_decodes_recordings_past_the_maximum(packed, tmp_path):
    """asr_inference --long_form true (what asr.sh --long_form true runs in stage 6)."""
    import kaldiio

    _, mixture, _, exp = packed
    data_dir = exp.parents[1] / "data"
    embed = next(iter(kaldiio.load_scp(str(data_dir / "enroll_embed.scp")).values()))
    for name, pauses in (("rec1", [1.0, 1.4, 1.0]), ("rec2", [1.2, 1.0, 1.1, 1.0, 1.3])):
        soundfile.write(tmp_path / f"{name}.wav", repeated(mixture, pauses)[0], RATE)
    (tmp_path / "wav.scp").write_text(f"rec1 {tmp_path / 'rec1.wav'}\nrec2 {tmp_path / 'rec2.wav'}\n")
    kaldiio.save_ark(str(tmp_path / "embed.ark"), {"rec1": embed, "rec2": embed}, scp=str(tmp_path / "embed.scp"))
    out = subprocess.run(
        [sys.executable, "-m", "diffasr.bin.asr_inference", "--asr_train_config", str(exp / "config.yaml"),
         "--asr_model_file", str(exp / "4epoch.pth"), "--output_dir", str(tmp_path / "out"),
         "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
         "--data_path_and_name_and_type", f"{tmp_path / 'embed.scp'},enroll_embed,kaldi_ark",
         "--long_form", "true", "--batch_size", "2"],
        capture_output=True, text=True, cwd=exp.parents[1],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = dict(line.split(" ", 1) for line in (tmp_path / "out/text").read_text().splitlines())
    assert text == {"rec1": " ".join([TARGET_TEXT] * 3), "rec2": " ".join([TARGET_TEXT] * 5)}
    ctm = [line.split() for line in (tmp_path / "out/words.ctm").read_text().splitlines()]
    assert [c[0] for c in ctm] == ["rec1"] * 6 + ["rec2"] * 10
    rec2_starts = [float(c[2]) for c in ctm if c[0] == "rec2"]
    assert rec2_starts == sorted(rec2_starts) and rec2_starts[-1] > 6.0
    timing = dict(line.split(" ", 1) for line in (tmp_path / "out/timing").read_text().splitlines())
    assert abs(float(timing["rec2"].split()[1]) - soundfile.info(str(tmp_path / "rec2.wav")).duration) < 1e-2
