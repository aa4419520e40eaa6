"""The benchmark's own arithmetic: the length slope and the utterance subset it scores."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from diffasr.datadir import read_jsonl, read_kv

BENCH = Path(__file__).resolve().parents[1] / "bench" / "decode_benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("decode_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_length_slope_recovers_a_linear_cost(bench):
    lengths = [3, 9, 1, 7, 5, 2, 10, 4, 8, 6]
    seconds = [0.1 + 0.02 * n for n in lengths]
    bucket_lengths, bucket_times, slope = bench.length_slope(lengths, seconds, n_buckets=5)
    # equal-size buckets of the sorted lengths: (1,2) (3,4) (5,6) (7,8) (9,10)
    assert bucket_lengths.tolist() == [1.5, 3.5, 5.5, 7.5, 9.5]
    assert np.allclose(bucket_times, [0.13, 0.17, 0.21, 0.25, 0.29])
    assert slope == pytest.approx(0.02)


def test_length_slope_is_zero_for_a_length_independent_cost(bench):
    _, _, slope = bench.length_slope([1, 2, 3, 4, 5, 6], [0.5] * 6, n_buckets=3)
    assert slope == pytest.approx(0.0, abs=1e-12)


def test_subset_keeps_the_first_utterances_in_every_file(bench, tmp_path):
    src = tmp_path / "test"
    src.mkdir()
    utts = [f"spk{i % 2}-{i:03d}" for i in range(5)]
    (src / "wav.scp").write_text("".join(f"{u} /a/{u}.wav\n" for u in sorted(utts)))
    (src / "text").write_text("".join(f"{u} WORD {u}\n" for u in sorted(utts)))
    (src / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    (src / "mixture.jsonl").write_text("".join(json.dumps({"utt": u}) + "\n" for u in sorted(utts)))
    assert bench.subset_data_dir(src, tmp_path / "out", None) == src
    subset = bench.subset_data_dir(src, tmp_path / "out", 2)
    first = sorted(utts)[:2]
    for name in ("wav.scp", "text", "utt2spk"):
        assert sorted(read_kv(subset / name)) == first
    assert sorted(read_jsonl(subset / "mixture.jsonl")) == first
    assert (subset / "spk2utt").is_file()


def test_the_feature_follows_curve_reads_each_epochs_validation(tmp_path):
    spec = importlib.util.spec_from_file_location("feature_follows_curve",
                                                  Path(__file__).resolve().parents[1] / "bench/feature_follows_curve.py")
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    log = tmp_path / "train.log"
    log.write_text(
        "[vm] 2026 (trainer:810) INFO: 1epoch:train:1-10batch: loss_teacher=1.0\n"
        "[vm] 2026 (trainer:383) INFO: 1epoch results: [train] iter_time=0.01, loss_teacher=0.8, loss=0.8, "
        "total_count=46 [valid] loss_teacher=0.744, feature_follows=0.495, loss=0.744, time=22.58 seconds, "
        "total_count=14\n"
        "[vm] 2026 (trainer:383) INFO: 2epoch results: [train] loss=0.7, total_count=92 [valid] "
        "loss_teacher=0.637, feature_follows=0.791, loss=0.637, total_count=28\n")
    assert curve.read_curve(log) == [(1, 46, pytest.approx(49.5), 0.744), (2, 92, pytest.approx(79.1), 0.637)]
    curve.main(["--log", f"a={log}", "--output_dir", str(tmp_path / "out")])
    assert "| a | 2 | 92 | 79.1 | 0.637 |" in (tmp_path / "out/feature_follows.md").read_text()
    log.write_text("1epoch results: [train] loss=0.7, total_count=46 [valid] loss=0.6, total_count=14\n")
    with pytest.raises(SystemExit, match="no valid feature_follows"):
        curve.read_curve(log)
