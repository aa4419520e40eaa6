"""The one-off API and CLI: a tiny model, packed as stage 8 packs it, transcribes its training mixture."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import TARGET_TEXT
from diffasr.api import TargetSpeakerASR

ROOT = Path(__file__).resolve().parents[1]


def test_packed_model_transcribes_its_training_mixture(packed, tmp_path):
    zip_path, mixture, enroll, _ = packed
    asr = TargetSpeakerASR(zip_path, unpack_dir=tmp_path / "unpacked", steps=8)
    result = asr.transcribe(mixture, enrollment=enroll)
    assert result.text == TARGET_TEXT
    assert len(result.confidences) == len(result.tokens) and all(0 < c <= 1 for c in result.confidences)
    one_step = TargetSpeakerASR(zip_path, unpack_dir=tmp_path / "unpacked", steps=1)
    assert one_step.transcribe(mixture, enrollment=enroll).text == TARGET_TEXT


def test_experiment_dir_finds_the_speaker_encoder_beside_it(packed):
    _, mixture, enroll, exp = packed
    before = set(Path(tempfile.gettempdir()).glob("diffasr_api_*"))
    asr = TargetSpeakerASR(exp, inference_model="4epoch.pth", steps=4)
    assert set(Path(tempfile.gettempdir()).glob("diffasr_api_*")) == before  # its resolved config copy is gone
    assert asr.transcribe(mixture, enrollment=enroll).text == TARGET_TEXT


def test_too_long_wrong_rate_and_missing_enrollment_are_refused(packed, tmp_path):
    zip_path, mixture, enroll, _ = packed
    asr = TargetSpeakerASR(zip_path, unpack_dir=tmp_path / "unpacked")
    long_audio = np.zeros(16000 * 7, dtype=np.float32)  # the model's max_audio_seconds is 6
    with pytest.raises(ValueError, match="longer than this model's maximum of 6 s"):
        asr.transcribe(long_audio, enrollment=enroll)
    audio, _ = soundfile.read(mixture, dtype="float32")
    soundfile.write(tmp_path / "8k.wav", audio[::2], 8000)
    with pytest.raises(ValueError, match="8k.wav"):
        asr.transcribe(tmp_path / "8k.wav", enrollment=enroll)
    with pytest.raises(ValueError, match="enrollment"):
        asr.transcribe(mixture)


def test_cli_prints_the_transcript_and_writes_json(packed, tmp_path):
    zip_path, mixture, enroll, _ = packed
    decode = tmp_path / "decode.yaml"
    decode.write_text("steps: 4\nbatch_size: 8\n")
    out = subprocess.run(
        [sys.executable, "-m", "diffasr.bin.transcribe", "--model", str(zip_path), "--mixture", str(mixture),
         "--enrollment", str(enroll), "--decode_config", str(decode), "--unpack_dir", str(tmp_path / "u"),
         "--output_json", str(tmp_path / "out.json")],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(TARGET_TEXT)
    record = json.loads((tmp_path / "out.json").read_text())[0]
    assert record["text"] == TARGET_TEXT and len(record["words"]) == 2


def test_the_enrollment_is_checked_where_it_is_read(packed, tmp_path, caplog):
    # Silent, too short and NaN enrollments are refused naming the file as the enrollment;
    # an over-long one is cut to what the model reads, with a warning naming it.
    zip_path, mixture, enroll, _ = packed
    asr = TargetSpeakerASR(zip_path, unpack_dir=tmp_path / "unpacked")
    voice, _ = soundfile.read(enroll, dtype="float32")
    silent, short, long = tmp_path / "silent.wav", tmp_path / "short.wav", tmp_path / "long.wav"
    soundfile.write(silent, np.zeros(3 * 16000, dtype=np.float32), 16000)
    soundfile.write(short, voice[:8000], 16000)
    soundfile.write(long, np.tile(voice, int(80 * 16000 / len(voice)) + 1)[: 80 * 16000], 16000)
    with pytest.raises(ValueError, match=rf"the enrollment {silent} is silent"):
        asr.transcribe(mixture, enrollment=silent)
    with pytest.raises(ValueError, match=rf"the enrollment {short} lasts 0.50 s; give at least 1 s"):
        asr.enroll(short)
    with pytest.raises(ValueError, match="the enrollment has 32000 NaN/inf samples"):
        asr.enroll(np.full(32000, np.nan, dtype=np.float32))
    with caplog.at_level("WARNING"):
        enrolled = asr.enroll(long)
    limit = asr.max_enrollment_seconds
    assert any(f"the enrollment {long} lasts 80.0 s; the model reads at most {limit:g} s" in r.getMessage()
               for r in caplog.records)
    assert enrolled.embed.shape[0] == 1
    out = subprocess.run(
        [sys.executable, "-m", "diffasr.bin.transcribe", "--model", str(zip_path), "--mixture", str(mixture),
         "--enrollment", str(silent), "--unpack_dir", str(tmp_path / "u")], capture_output=True, text=True)
    assert out.returncode == 1 and f"the enrollment {silent} is silent" in out.stderr


def test_cli_startup_bench_times_a_fresh_transcribe_process(packed, tmp_path):
    """bench/cli_startup.py: a clip of the first long-enough mixture, transcribed by a
    fresh CLI process; the import profile starts at diffasr.api; a failing run stops
    with the CLI's error."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_startup", ROOT / "bench/cli_startup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    packed_zip, mixture, enrollment, _ = packed
    # A copy, so that the CLI unpacks it here and not beside the shared fixture's experiment
    # (where the other tests look for exactly one speaker encoder).
    zip_path = tmp_path / packed_zip.name
    shutil.copy(packed_zip, zip_path)
    data = tmp_path / "data"
    data.mkdir()
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(8000, dtype=np.float32), 16000)
    (data / "wav.scp").write_text(f"a-short {short}\nb-mix {mixture}\n")
    (data / "enroll.scp").write_text(f"a-short {enrollment}\nb-mix {enrollment}\n")
    out = tmp_path / "cli.md"
    bench.main(["--model", str(zip_path), "--data_dir", str(data), "--seconds", "1", "--repeats", "1",
                "--output", str(out)])
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["utterance"] == "b-mix"  # the 0.5-s one is too short for a 1-s clip
    assert figures["import_profile"][0][0] == "diffasr.api"
    assert f"| transcribe one 1-s recording (b-mix) end to end | {figures['transcribe_s']:.2f} |" in out.read_text()
    with pytest.raises(SystemExit, match="failed"):
        bench.main(["--model", str(tmp_path / "nowhere.zip"), "--data_dir", str(data), "--seconds", "1",
                    "--repeats", "1", "--output", str(out)])


def test_the_presence_gate_answers_nothing_for_a_voice_it_does_not_find(packed, tmp_path):
    from diffasr.speaker.presence import PresenceCheck, PresenceGate

    _, mixture, enroll, exp = packed
    spk = tmp_path / "spk_gate"
    shutil.copytree(exp.parent / "spk_tiny", spk)
    load = lambda **kw: TargetSpeakerASR(exp, spk_model_dir=spk, inference_model="4epoch.pth", steps=4, **kw)
    plain = load()  # no presence.yaml beside the speaker encoder: no gate
    assert plain.presence is None
    with pytest.raises(FileNotFoundError, match="presence.yaml"):
        load(presence_gate=True)
    samples = soundfile.read(mixture, dtype="float32")[0]
    score = PresenceCheck(PresenceGate(threshold=0.0), plain.speaker_encoder, plain.fs).score(
        samples, plain.enroll(enroll).embed[0].numpy())
    assert score < 0.999
    PresenceGate(threshold=1.0).save(spk / "presence.yaml")  # no window can reach it
    assert load().transcribe(mixture, enrollment=enroll).text == ""
    assert load(presence_gate=False).transcribe(mixture, enrollment=enroll).text == TARGET_TEXT
    PresenceGate(threshold=score - 0.01).save(spk / "presence.yaml")
    assert load().transcribe(mixture, enrollment=enroll).text == TARGET_TEXT


def test_a_calls_options_and_seed_alone_decide_its_result(packed, tmp_path):
    """Decode options go with the call, never into the model's state, and every call's
    random draws come from generators seeded with its options' seed: the same call gives
    the same result whatever was decoded before it, and another seed another draw."""
    zip_path, mixture, enroll, _ = packed
    asr = TargetSpeakerASR(zip_path, unpack_dir=tmp_path / "unpacked", steps=8)
    defaults = asr.speech2text.options
    samples = soundfile.read(mixture, dtype="float32")[0]
    enrolled = asr.enroll(enroll)

    def result(**options):
        r = asr.transcribe(mixture, enrollment=enroll, options=options)
        return r.text, r.token_ids, r.confidences, r.entropies, r.flips

    # Random remasking and Gumbel sampling at temperature 5: the words themselves are drawn.
    sampled = dict(remasking="random", temperature=5.0)
    first = result(**sampled)
    assert result(**sampled, seed=1)[0] != first[0]
    asr.decode([samples, samples[:40000]], enrolled, options=dict(sampled, steps=4))
    asr.transcribe(mixture, enrollment=enroll, options=dict(decode_mode="deliberation", mask_ratio=0.5))
    assert result(**sampled) == first
    assert asr.transcribe_long(mixture, enrolled=enrolled, whole=True, options=sampled).text == first[0]
    assert len({result(**sampled, seed=seed)[0] for seed in range(3)}) == 3

    # Random remasking alone keeps the memorised words; the order of commits (hence each
    # token's confidence) follows the seed.  Low-confidence remasking draws nothing.
    remasked = [result(remasking="random", seed=seed) for seed in (0, 1, 0)]
    assert [r[0] for r in remasked] == [TARGET_TEXT] * 3
    assert remasked[0] == remasked[2] and remasked[0][2] != remasked[1][2]
    assert result(seed=0) == result(seed=1)
    delib = [result(decode_mode="deliberation", masking="random", mask_ratio=0.5, seed=seed) for seed in (0, 1, 0)]
    assert delib[0] == delib[2] and delib[0][2] != delib[1][2]

    # The model's own options are untouched; a bad option is refused naming the call.
    assert asr.speech2text.options == defaults
    assert asr.transcribe(mixture, enrollment=enroll).text == TARGET_TEXT
    with pytest.raises(ValueError, match="request: unknown decode option 'stepz'"):
        asr.transcribe(mixture, enrollment=enroll, options=dict(stepz=4))
    with pytest.raises(ValueError, match="request: decode option 'canvas_margin' was renamed 'canvas_decode_margin'"):
        asr.transcribe(mixture, enrollment=enroll, options=dict(canvas_margin=2))
    with pytest.raises(ValueError, match=r"request: remasking must be one of \('low_confidence', 'random'\)"):
        asr.transcribe(mixture, enrollment=enroll, options=dict(remasking="lowest"))
    with pytest.raises(ValueError, match=r"\['dtype'\] are set when the model is loaded"):
        asr.transcribe(mixture, enrollment=enroll, options=dict(dtype="float64"))
