"""The one-off API and CLI: a tiny model, packed as stage 8 packs it, transcribes its training mixture."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import TARGET_TEXT
from diffasr.api import TargetSpeakerASR


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
