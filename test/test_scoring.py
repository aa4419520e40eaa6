"""Stage 7 scoring: sclite WER/CER and alignments, speaker confusion, metrics.json, RESULTS.md."""

import json
import logging
import re
from pathlib import Path

import pytest

from diffasr.bin import make_results as make_results_bin
from diffasr.bin import score as score_bin
from diffasr.scoring.confusion import follows, is_confused, speaker_confusion
from diffasr.scoring.results import make_results
from diffasr.scoring.sclite import (ScoringError, find_sclite, parse_summary, read_hypotheses,
                                    score_with_sclite, words_to_chars)






# u1: one substitution (B->X) and one insertion (E); u2: one deletion (F); u3: two deletions.
REFS = {"spk1-u1": "A B C D", "spk1-u2": "E F G", "spk2-u3": "H I"}
HYPS = {"spk1-u1": "A X C D E", "spk1-u2": "E G", "spk2-u3": ""}
UTT2SPK = {"spk1-u1": "spk1", "spk1-u2": "spk1", "spk2-u3": "spk2"}


def write_lines(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def make_data_dir(root: Path, refs=REFS, mixture=None) -> Path:
    data = root / "data" / "test"
    write_lines(data / "text", [f"{u} {t}" for u, t in refs.items()])
    write_lines(data / "utt2spk", [f"{u} {UTT2SPK[u]}" for u in refs])
    if mixture is not None:
        write_lines(data / "mixture.jsonl", [json.dumps(mixture[u]) for u in refs])
    return data


def make_decode_dir(root: Path, hyps=HYPS, timing=None) -> Path:
    decode = root / "exp" / "asr_a" / "decode_d" / "test"
    write_lines(decode / "text", [f"{u} {t}".rstrip() for u, t in hyps.items()])
    if timing is not None:
        write_lines(decode / "timing", [f"{u} {w} {a}" for u, (w, a) in timing.items()])
    return decode


def test_sclite_counts_match_hand_counted_errors(tmp_path):
    result = score_with_sclite(tmp_path, REFS, HYPS, UTT2SPK)
    s = result.summary
    assert (s.n_snt, s.n_wrd, s.corr, s.sub, s.dele, s.ins, s.err, s.snt_err) == (3, 9, 5, 1, 3, 1, 5, 3)
    assert s.error_rate == pytest.approx(100 * 5 / 9)
    assert s.printed_percent["err"] == pytest.approx(55.6)
    for name in ("ref.trn", "hyp.trn", "result.txt", "alignment.sgml"):
        assert (tmp_path / name).is_file()
    assert "(spk1-spk1-u1)" in (tmp_path / "ref.trn").read_text()
    report = (tmp_path / "result.txt").read_text()
    assert "Sum/Avg" in report and "spk2" in report


def test_hypothesis_word_labels_follow_sclite_alignment(tmp_path):
    alignments = score_with_sclite(tmp_path, REFS, HYPS, UTT2SPK).alignments
    assert alignments["spk1-u1"].hyp_word_correct() == [True, False, True, True, False]
    assert alignments["spk1-u2"].hyp_word_correct() == [True, True]
    assert alignments["spk2-u3"].hyp_word_correct() == []
    assert [op for op, _, _ in alignments["spk1-u2"].ops] == ["C", "D", "C"]
    # Per-utterance error file, worst first.
    rows = (tmp_path / "utt_errors.txt").read_text().splitlines()[1:]
    assert rows == ["spk2-u3 2 0 0 2 0 100.00", "spk1-u1 4 3 1 0 1 50.00",
                    "spk1-u2 3 2 0 1 0 33.33"]


def test_words_to_chars_uses_space_token():
    assert words_to_chars("AB  C") == "A B <space> C"


def test_cer_counts_characters_and_word_boundaries(tmp_path):
    refs = {"spk1-u1": "AB C"}
    hyps = {"spk1-u1": "AB D"}  # 4 tokens A B <space> C; one substitution
    result = score_with_sclite(tmp_path, {u: words_to_chars(t) for u, t in refs.items()},
                               {u: words_to_chars(t) for u, t in hyps.items()}, {"spk1-u1": "spk1"})
    assert (result.summary.n_wrd, result.summary.sub, result.summary.err) == (4, 1, 1)
    assert result.summary.error_rate == pytest.approx(25.0)
    joined = {u: words_to_chars(t) for u, t in {"spk1-u1": "ABC"}.items()}
    merged = score_with_sclite(tmp_path / "b", {"spk1-u1": "A B <space> C"}, joined, {"spk1-u1": "spk1"})
    assert (merged.summary.dele, merged.summary.err) == (1, 1)  # a lost word boundary is one error


def test_missing_hypothesis_is_scored_empty_with_warning(tmp_path, caplog):
    hyp_path = tmp_path / "text"
    write_lines(hyp_path, ["spk1-u1 A B C D", "spk2-u3 H I"])
    with caplog.at_level(logging.WARNING):
        hyps = read_hypotheses(hyp_path, REFS)
    assert hyps == {"spk1-u1": "A B C D", "spk1-u2": "", "spk2-u3": "H I"}
    assert "spk1-u2" in caplog.text
    summary = score_with_sclite(tmp_path / "s", REFS, hyps, UTT2SPK).summary
    assert (summary.dele, summary.err) == (3, 3)


def test_hypothesis_for_unknown_utterance_is_an_error(tmp_path):
    hyp_path = tmp_path / "text"
    write_lines(hyp_path, ["spk1-u1 A B C D", "spk9-zzz OOPS"])
    with pytest.raises(ScoringError, match=r"text:2: .*'spk9-zzz'"):
        read_hypotheses(hyp_path, REFS)


def test_parse_summary_rejects_a_report_without_sum_rows():
    with pytest.raises(ScoringError, match="result.txt"):
        parse_summary("no table here", "result.txt")


def test_find_sclite_prefers_debians_sctk_then_path_and_names_both_when_missing(tmp_path, monkeypatch):
    # (The real sclite is run by the scoring tests above.)
    from diffasr.scoring import sclite

    def executable(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
        return path

    debian, on_path = tmp_path / "sctk/bin/sclite", executable(tmp_path / "bin/sclite")
    monkeypatch.setattr(sclite, "DEBIAN_SCLITE", str(debian))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_sclite() == str(on_path)  # no Debian package: the one on PATH
    debian.parent.mkdir(parents=True)
    debian.write_text("not executable")
    assert find_sclite() == str(on_path)
    debian.chmod(0o755)
    assert find_sclite() == str(debian)  # Debian's sctk first
    debian.unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=rf"looked for {re.escape(str(debian))} and on PATH.*tools/install.sh"):
        find_sclite()


def test_speaker_confusion_hand_cases():
    assert is_confused("THE CAT SAT", ["A DOG RAN FAST"], "A DOG RAN")
    assert not is_confused("THE CAT SAT", ["A DOG RAN FAST"], "THE CAT RAN")
    # Equal distance is not confusion: "closer" is strict.
    assert not is_confused("A B", ["C D"], "A D")
    # Normalised by each reference's length: 1 edit / 4 words beats 1 edit / 2 words.
    assert is_confused("X Y", ["P Q R S"], "X Q R S")
    refs = {"u1": "THE CAT SAT", "u2": "ONE TWO", "u3": "HELLO"}
    hyps = {"u1": "a dog ran", "u2": "ONE TWO"}  # u3 has no hypothesis
    mixture = {"u1": {"interferers": [{"text": "A DOG RAN"}]},
               "u2": {"interferers": [{"text": "THREE FOUR"}, {"text": "ONE TWO THREE"}]},
               "u3": {"interferers": []}}
    out = speaker_confusion(refs, hyps, mixture)
    assert (out["n_scored"], out["n_confused"], out["confused_utts"]) == (2, 1, ["u1"])
    assert out["rate"] == pytest.approx(0.5)
    with pytest.raises(ScoringError, match="'u3'"):
        speaker_confusion(refs, hyps, {"u1": mixture["u1"], "u2": mixture["u2"]})


def test_score_cli_writes_metrics_and_score_dirs(tmp_path):
    mixture = {u: {"utt": u, "interferers": [{"text": "A X C D E"}]} for u in REFS}
    data = make_data_dir(tmp_path, mixture=mixture)
    decode = make_decode_dir(tmp_path, timing={"spk1-u1": (0.5, 10.0), "spk1-u2": (0.25, 5.0),
                                               "spk2-u3": (0.25, 5.0)})
    for _ in range(2):  # a rerun overwrites, giving the same result
        score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode)])
    metrics = json.loads((decode / "metrics.json").read_text())
    assert metrics["wer"] == pytest.approx(100 * 5 / 9, abs=1e-3)
    assert metrics["n_utt"] == 3 and metrics["rtfx"] == pytest.approx(20.0)
    # CER: u1 "A <space> B ..." 7 chars, 1 sub + 2 ins; u2 5 chars, 2 del; u3 3 chars, 3 del.
    assert metrics["cer_detail"]["n_wrd"] == 15
    assert metrics["cer"] == pytest.approx(100 * 8 / 15, abs=1e-3)
    # Only u1's hypothesis equals the interferer's transcript.
    assert metrics["speaker_confusion"] == pytest.approx(100 / 3, abs=1e-3)
    assert "uncertainty" not in metrics
    for unit in ("score_wer", "score_cer"):
        assert (decode / unit / "result.txt").is_file()
    assert (decode / "score_cer" / "ref.trn").read_text().startswith("A <space> B <space> C")


def test_follows_means_strictly_closer_to_the_target_than_to_everyone_else():
    assert follows("THE CAT SAT", ["A DOG RAN"], "THE CAT RAN")
    assert not follows("THE CAT SAT", ["A DOG RAN"], "A DOG RAN")
    assert not follows("A B", ["C D"], "A D")  # a tie follows no one
    assert not follows("A B", ["C D"], "")  # nor does an empty hypothesis
    assert not follows("A B C", ["X Y", "A B Z"], "A B Z")  # every other talker counts


def test_target_absent_examples_are_scored_apart_from_the_words(tmp_path):
    # u3 is target-absent: no words, left out of WER; its empty hypothesis counts for
    # "absent -> empty"; u1 follows its target, u2 follows the other talker.
    refs = {"spk1-u1": "A B C D", "spk1-u2": "E F G", "spk2-u3": ""}
    mixture = {"spk1-u1": {"utt": "spk1-u1", "target": {"utt": "t1"}, "interferers": [{"text": "X Y Z"}]},
               "spk1-u2": {"utt": "spk1-u2", "target": {"utt": "t2"}, "interferers": [{"text": "P Q"}]},
               "spk2-u3": {"utt": "spk2-u3", "target": {"utt": None}, "interferers": [{"text": "A B"}]}}
    data = make_data_dir(tmp_path, refs=refs, mixture=mixture)
    decode = make_decode_dir(tmp_path, hyps={"spk1-u1": "A B C D", "spk1-u2": "P Q", "spk2-u3": ""},
                             timing={"spk1-u1": (1, 4), "spk1-u2": (1, 3), "spk2-u3": (2, 5)})
    score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode)])
    metrics = json.loads((decode / "metrics.json").read_text())
    assert metrics["n_utt"] == 2 and metrics["wer_detail"]["n_wrd"] == 7
    assert metrics["rtfx"] == pytest.approx(12 / 4)  # the absent example was decoded too: its time counts
    assert metrics["wer"] == pytest.approx(100 * 3 / 7, abs=1e-3)
    assert (metrics["follows"], metrics["speaker_confusion"], metrics["emptied"]) == (50.0, 50.0, 0.0)
    assert metrics["absent_empty"] == 100.0 and metrics["target_absent"]["n_absent"] == 1
    # a set of target-absent examples only: no WER, the share of empty hypotheses
    only = {"spk2-u3": refs["spk2-u3"]}
    data = make_data_dir(tmp_path / "absent", refs=only, mixture=mixture)
    decode = make_decode_dir(tmp_path / "absent", hyps={"spk2-u3": "A B"})
    score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode)])
    metrics = json.loads((decode / "metrics.json").read_text())
    assert "wer" not in metrics and metrics["absent_empty"] == 0.0 and metrics["n_utt"] == 1
    # an empty transcript that mixture.jsonl does not mark absent is an error
    mixture["spk2-u3"]["target"]["utt"] = "t3"
    data = make_data_dir(tmp_path / "bad", refs=refs, mixture=mixture)
    with pytest.raises(Exception, match="text:3: no value for key 'spk2-u3'"):
        score_bin.main(["--data_dir", str(data), "--decode_dir", str(make_decode_dir(tmp_path / "bad"))])


def test_timing_for_unknown_utterance_names_file_and_line(tmp_path):
    data = make_data_dir(tmp_path)
    decode = make_decode_dir(tmp_path, timing={"spk1-u1": (1, 2), "spk7-x": (1, 2)})
    with pytest.raises(ScoringError, match=r"timing:2: .*'spk7-x'"):
        score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode)])


def fake_metrics(path: Path, **extra):
    path.mkdir(parents=True, exist_ok=True)
    metrics = {"n_utt": 10, "wer": 12.345, "cer": 6.5, "rtfx": 55.55,
               "wer_detail": {"n_wrd": 100}, **extra}
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_results_md_has_one_row_per_scored_decode_dir(tmp_path):
    exp = tmp_path / "exp"
    fake_metrics(exp / "asr_diffusion" / "decode_steps16" / "test", speaker_confusion=4.0,
                 uncertainty={"nce": 0.25, "auroc": 0.8, "ece": 0.05},
                 wer_detail={"n_wrd": 200, "sub": 13, "del": 9, "ins": 3})
    fake_metrics(exp / "asr_diffusion" / "decode_steps16" / "test_clean")
    (exp / "asr_diffusion" / "run.sh").write_text("#!/usr/bin/env bash\n./asr.sh --stage 5 \"$@\"\n")
    make_results_bin.main(["--exp_dir", str(exp)])
    text = (exp / "RESULTS.md").read_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| exp |"))
    assert "WER" in header and "Spk. confusion (%)" in header and "NCE" in header
    assert "ECE (calibrated)" not in header  # no row has it
    assert "Sub | Del | Ins" in header  # sclite's error kinds, in % of the reference words
    assert ("| asr_diffusion | steps16 | test | 10 | 200 | 12.35 | 6.5 | 4.5 | 1.5 | 6.50 | 55.5 | 4.00 | 0.250 "
            "| 0.800 | 0.050 |") in lines
    assert "| asr_diffusion | steps16 | test_clean | 10 | 100 | 12.35 | - | - | - | 6.50 | 55.5 | - | - | - | - |" in lines
    assert "### asr_diffusion\n\n- training (`run.sh`):\n\n```sh\n#!/usr/bin/env bash\n./asr.sh --stage 5" in text
    assert "torch version" in text and "python version" in text


def test_results_md_without_metrics_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        make_results(tmp_path)
