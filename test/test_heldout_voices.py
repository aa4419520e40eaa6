"""Zero-shot Whisper tiny.en as a scored system, and bench/heldout_voices.py's table."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffasr.data.voices import VOICES, synthesize
from diffasr.datadir import write_kv, write_spk2utt
from diffasr.whisper.zero_shot import ZeroShotWhisper

BENCH = Path(__file__).resolve().parents[1] / "bench" / "heldout_voices.py"
SENTENCE = "IT WAS TWENTY ONE DEGREES IN THE KITCHEN"  # Whisper writes "21 degrees": spelled out again


@pytest.fixture(scope="module")
def speech():
    return synthesize(VOICES[0], SENTENCE)


def _one_utterance(data, speech):
    """A data dir of the sentence, its reference with one substitution."""
    wav = data.parent / "spk1-0000.wav"
    data.mkdir(parents=True)
    sf.write(wav, speech, 16000, subtype="PCM_16")
    write_kv(data / "wav.scp", {"spk1-0000": wav})
    write_kv(data / "text", {"spk1-0000": SENTENCE.replace("KITCHEN", "GARDEN")})  # one substitution
    write_kv(data / "utt2spk", {"spk1-0000": "spk1"})
    write_spk2utt(data)
    return data


def test_zero_shot_whisper_writes_the_words_normalised(speech):
    assert ZeroShotWhisper(beam_size=1).transcribe(speech) == SENTENCE
    assert ZeroShotWhisper(beam_size=5).transcribe(speech) == SENTENCE


def test_zero_shot_whisper_refuses_more_than_its_window():
    with pytest.raises(ValueError, match="at most 30 s"):
        ZeroShotWhisper().transcribe(np.zeros(31 * 16000, dtype=np.float32))


def test_bench_scores_zero_shot_whisper_and_writes_the_table(speech, tmp_path):
    data = _one_utterance(tmp_path / "test_heldout", speech)
    spec = importlib.util.spec_from_file_location("heldout_voices", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "out" / "heldout.md"
    assert bench.main(["--data_dir", str(data), "--whisper_beam_sizes", "1", "--output", str(output)]) == 0
    (row,) = json.loads(output.with_suffix(".json").read_text())
    assert (row["sub"], row["del"], row["ins"], row["words"], row["utterances"]) == (1, 0, 0, 8, 1)
    assert row["wer"] == pytest.approx(12.5)
    assert "| Whisper tiny.en zero-shot, greedy | 12.50 | 12.50 / 0.00 / 0.00 | 1 |" in output.read_text()
    assert (tmp_path / "out/decode/whisper_tiny_en_greedy/score_wer/result.txt").is_file()


def test_stage_6s_zero_shot_decode_is_scored_and_a_results_row(speech, tmp_path):
    """asr.sh --zero_shot_sets: diffasr.bin.zero_shot_decode writes a decode dir that stage 7's
    scorer scores and make_results lists beside the trained systems."""
    from diffasr.bin import make_results, score, zero_shot_decode

    data = _one_utterance(tmp_path / "data/test_real", speech)
    decode = tmp_path / "exp/whisper_tiny.en_zeroshot/decode_beam5/test_real"
    zero_shot_decode.main(["--data_dir", str(data), "--decode_dir", str(decode), "--beam_size", "1"])
    assert (decode / "text").read_text().split(maxsplit=1)[1].strip() == SENTENCE
    score.main(["--data_dir", str(data), "--decode_dir", str(decode)])
    make_results.main(["--exp_dir", str(tmp_path / "exp")])
    rows = [line for line in (tmp_path / "exp/RESULTS.md").read_text().splitlines()
            if line.startswith("| whisper_tiny.en_zeroshot | beam5 | test_real | 1 | 8 | 12.50 |")]
    assert len(rows) == 1


def test_zero_shot_decode_names_a_bad_file_and_its_list(tmp_path):
    from diffasr.audio import AudioError
    from diffasr.bin import zero_shot_decode

    data = tmp_path / "data"
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    write_kv(data / "wav.scp", {"u1": tmp_path / "bad.wav"})
    with pytest.raises(AudioError, match=r"wav.scp.*'u1'"):
        zero_shot_decode.main(["--data_dir", str(data), "--decode_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing half-written
