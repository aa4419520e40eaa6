"""Word-confidence metrics (NCE, AUROC, ECE), temperature calibration and their use in score.py."""

import json
from pathlib import Path

import numpy as np
import pytest

from diffasr.bin import score as score_bin
from diffasr.scoring import uncertainty
from diffasr.scoring.sclite import ScoringError
from diffasr.scoring.uncertainty import (apply_temperature, auroc_error_detection, ece,
                                         fit_temperature, nce, plot_reliability,
                                         read_word_confidences, reliability_bins)




def arrays(conf, correct):
    return np.asarray(conf, dtype=float), np.asarray(correct, dtype=bool)


def test_nce_matches_hand_computation():
    # Prior p = 1/2 over 4 words: 4 bits. Confidences cost
    # -(log2 .9 + log2 .8 + log2 (1-.3) + log2 (1-.6)) = 2.310432 bits.
    conf, correct = arrays([0.9, 0.8, 0.3, 0.6], [True, True, False, False])
    assert nce(conf, correct) == pytest.approx((4 - 2.310432) / 4, abs=1e-6)
    # Confidence equal to the prior gives exactly 0; perfect confidence gives ~1.
    assert nce(np.full(4, 0.5), correct) == pytest.approx(0.0, abs=1e-12)
    assert nce(arrays([1, 1, 0, 0], correct)[0], correct) == pytest.approx(1.0, abs=1e-4)
    assert np.isnan(nce(*arrays([0.9, 0.8], [True, True])))


def test_auroc_counts_pairs_with_ties_as_half():
    # Correct words 0.9, 0.8, 0.5 against errors 0.5, 0.2: 5 of 6 pairs ordered, 1 tie.
    conf, correct = arrays([0.9, 0.5, 0.8, 0.2, 0.5], [True, False, True, False, True])
    assert auroc_error_detection(conf, correct) == pytest.approx(5.5 / 6)
    # Inverted confidences detect errors perfectly badly.
    assert auroc_error_detection(1 - conf[[0, 2, 3]], correct[[0, 2, 3]]) == pytest.approx(0.0)
    assert np.isnan(auroc_error_detection(*arrays([0.3], [True])))


def test_ece_matches_hand_computation():
    # Bin 9: conf .92/.98, one right -> |0.5 - 0.95| = .45; bin 1: .12/.18, none right -> .15.
    conf, correct = arrays([0.92, 0.98, 0.12, 0.18], [True, False, False, False])
    assert ece(conf, correct, n_bins=10) == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    assert ece(*arrays([0.25, 0.75], [False, True]), n_bins=2) == pytest.approx(0.25)


def test_bin_edges_put_boundaries_in_the_upper_bin_and_one_in_the_last():
    count, _, _ = reliability_bins(np.array([0.0, 0.5, 1.0, 0.1]), np.ones(4, bool), n_bins=10)
    assert count.tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]


def overconfident_set(rng, n):
    """Labels drawn from sigmoid(z); the reported confidence is the sharper sigmoid(3 z)."""
    z = rng.normal(1.0, 1.5, n)
    correct = rng.random(n) < 1 / (1 + np.exp(-z))
    return 1 / (1 + np.exp(-3 * z)), correct


def test_temperature_fitted_on_dev_lowers_test_ece():
    rng = np.random.default_rng(0)
    dev_conf, dev_correct = overconfident_set(rng, 3000)
    test_conf, test_correct = overconfident_set(rng, 3000)
    temperature = fit_temperature(dev_conf, dev_correct)
    assert 2.4 < temperature < 3.6  # the true sharpening factor is 3
    calibrated = apply_temperature(test_conf, temperature)
    assert ece(calibrated, test_correct) < 0.5 * ece(test_conf, test_correct)
    assert nce(calibrated, test_correct) > nce(test_conf, test_correct)
    # Temperature scaling is monotonic, so ranking (AUROC) is unchanged.
    assert auroc_error_detection(calibrated, test_correct) == pytest.approx(
        auroc_error_detection(test_conf, test_correct))
    with pytest.raises(ValueError):
        fit_temperature(*arrays([0.9, 0.8], [True, True]))


def test_reliability_diagram_plots_each_curves_filled_bins_against_the_diagonal(tmp_path, monkeypatch):
    import struct

    import matplotlib.figure

    conf, correct = overconfident_set(np.random.default_rng(1), 200)
    # 4 words in 3 of the 10 bins: [0, .1) holds an error at .05, [.1, .2) a correct word at
    # .15, [.9, 1] two correct words at .95 and .97.  ECE = (1 * .05 + 1 * .85 + 2 * .04) / 4.
    few_conf, few_correct = arrays([0.05, 0.15, 0.95, 0.97], [False, True, True, True])
    figures = []
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *args, **kwargs: (figures.append(self), savefig(self, *args, **kwargs))[1])
    path = tmp_path / "plots/r.png"
    plot_reliability(path, {"raw": (conf, correct), "few": (few_conf, few_correct)}, title="dev words")

    (ax,) = figures[0].axes
    diagonal, raw, few = ax.get_lines()
    assert [line.get_label() for line in (diagonal, raw, few)] == [
        "perfect calibration", f"raw (ECE {ece(conf, correct):.3f})", "few (ECE 0.245)"]
    assert diagonal.get_xydata().tolist() == [[0, 0], [1, 1]]
    assert few.get_xdata().tolist() == pytest.approx([0.05, 0.15, 0.96])
    assert few.get_ydata().tolist() == [0.0, 1.0, 1.0]
    count, mean_conf, accuracy = reliability_bins(conf, correct)
    assert len(raw.get_xdata()) == int((count > 0).sum())
    assert raw.get_xdata().tolist() == pytest.approx(mean_conf[count > 0].tolist())
    assert raw.get_ydata().tolist() == pytest.approx(accuracy[count > 0].tolist())
    assert ax.get_title() == "dev words" and (ax.get_xlim(), ax.get_ylim()) == ((0, 1), (0, 1))
    png = path.read_bytes()  # the parent dir was made; 4.5 in at 100 dpi
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (450, 450)


def test_confidence_file_errors_name_line_or_utterance(tmp_path):
    ctm = tmp_path / "word_confidence.ctm"
    hyps = {"u1": "A B", "u2": ""}
    ctm.write_text("u1 1 1 1 B 0.5\nu1 1 0 1 a 0.9\n")
    assert read_word_confidences(ctm, hyps) == {"u1": [0.9, 0.5], "u2": []}
    ctm.write_text("u1 1 0 1 A 0.9\nu1 1 1 1 B 1.5\n")
    with pytest.raises(ScoringError, match=r"ctm:2: confidence"):
        read_word_confidences(ctm, hyps)
    ctm.write_text("u1 1 0 1 A 0.9\n")
    with pytest.raises(ScoringError, match=r"'u1'"):
        read_word_confidences(ctm, hyps)
    ctm.write_text("u9 1 0 1 A 0.9\n")
    with pytest.raises(ScoringError, match=r"ctm:1: utterance 'u9'"):
        read_word_confidences(ctm, hyps)


def write_set(root: Path, name: str, refs, hyps, confs):
    data, decode = root / "data" / name, root / "exp" / "asr" / "decode_d" / name
    for d in (data, decode):
        d.mkdir(parents=True)
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in refs.items()))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in refs))
    (decode / "text").write_text("".join(f"{u} {t}\n" for u, t in hyps.items()))
    (decode / "word_confidence.ctm").write_text("".join(
        f"{u} 1 {i} 1 {w} {c}\n" for u in hyps for i, (w, c) in enumerate(zip(hyps[u].split(), confs[u]))))
    return data, decode


def test_score_reports_uncertainty_from_sclite_labels(tmp_path):
    refs = {"s1-a": "A B C D", "s1-b": "E F G H"}
    hyps = {"s1-a": "A X C D", "s1-b": "E F Y H Z"}  # errors: X, Y, Z (insertion)
    confs = {"s1-a": [0.9, 0.4, 0.8, 0.7], "s1-b": [0.95, 0.6, 0.3, 0.85, 0.2]}
    data, decode = write_set(tmp_path, "test", refs, hyps, confs)
    dev_data, dev_decode = write_set(tmp_path, "dev", refs, hyps, confs)
    score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode),
                    "--calib_data_dir", str(dev_data), "--calib_decode_dir", str(dev_decode)])
    metrics = json.loads((decode / "metrics.json").read_text())
    u = metrics["uncertainty"]
    conf = np.array(confs["s1-a"] + confs["s1-b"])
    correct = np.array([True, False, True, True, True, True, False, True, False])
    assert u["n_words"] == 9
    assert u["nce"] == pytest.approx(nce(conf, correct), abs=1e-5)
    assert u["auroc"] == pytest.approx(1.0)  # every error is less confident than every right word
    assert u["temperature"] > 0 and "calibrated" in u
    assert (decode / "reliability.png").is_file()
    assert not list(dev_decode.glob("score_*"))  # calibration leaves the dev decode dir alone


def test_a_set_with_target_absent_examples_calibrates_and_scores_without_them(tmp_path):
    # dev and test as stage 1 writes dev: s2-c is target-absent (empty transcript, marked in
    # mixture.jsonl) and the model wrote words for it anyway; they have no reference to rate.
    refs = {"s1-a": "A B C D", "s1-b": "E F G H", "s2-c": ""}
    hyps = {"s1-a": "A X C D", "s1-b": "E F Y H Z", "s2-c": "P Q"}
    confs = {"s1-a": [0.9, 0.4, 0.8, 0.7], "s1-b": [0.95, 0.6, 0.3, 0.85, 0.2], "s2-c": [0.5, 0.5]}
    sets = {}
    for name in ("dev", "test"):
        data, decode = sets[name] = write_set(tmp_path, name, refs, hyps, confs)
        (data / "mixture.jsonl").write_text("".join(json.dumps(
            {"utt": u, "target": {"utt": None if u == "s2-c" else u}, "interferers": [{"text": "P Q"}]}) + "\n"
            for u in refs))
    (data, decode), (dev_data, dev_decode) = sets["test"], sets["dev"]
    score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode),
                    "--calib_data_dir", str(dev_data), "--calib_decode_dir", str(dev_decode)])
    u = json.loads((decode / "metrics.json").read_text())["uncertainty"]
    assert u["n_words"] == 9 and "calibration_error" not in u and u["temperature"] > 0
    with pytest.raises(ScoringError, match="has no hypothesis"):  # only the named ones are skipped
        read_word_confidences(decode / "word_confidence.ctm", {u: hyps[u] for u in ("s1-a", "s1-b")})


def test_token_signals_group_pieces_into_words_with_the_worst_piece(tmp_path):
    path = tmp_path / "token_uncertainty"
    rows = [("u1", 0, "\u2581HE", 0.9, 0.1, 0), ("u1", 1, "LLO", 0.5, 1.5, 2), ("u1", 2, "\u2581WORLD", 0.8, 0.4, 1),
            ("u2", 0, "\u2581A", 0.7, 0.2, 3)]
    path.write_text("".join(" ".join(str(x) for x in row) + "\n" for row in rows))
    signals = uncertainty.read_token_signals(path, {"u1": "HELLO WORLD", "u2": "A", "u3": ""})
    assert signals["u1"] == {"entropy": [1.5, 0.4], "flips": [2, 1]}
    assert signals["u2"] == {"entropy": [0.2], "flips": [3]}
    assert signals["u3"] == {"entropy": [], "flips": []}
    with pytest.raises(ScoringError, match="do not spell"):
        uncertainty.read_token_signals(path, {"u1": "HELLO THERE", "u2": "A"})


def test_score_rates_entropy_and_flips_as_error_detectors(tmp_path):
    refs = {"s1-a": "A B C D"}
    hyps = {"s1-a": "A X C D"}  # X is the one error
    data, decode = write_set(tmp_path, "test", refs, hyps, {"s1-a": [0.9, 0.4, 0.8, 0.7]})
    # X has the most entropy (a perfect detector) but no more flips than C (a tie: AUROC 5/6)
    (decode / "token_uncertainty").write_text("".join(
        f"s1-a {i} \u2581{w} 0.5 {e} {f}\n" for i, (w, e, f) in enumerate(
            [("A", 0.1, 0), ("X", 2.0, 1), ("C", 0.3, 1), ("D", 0.2, 0)])))
    score_bin.main(["--data_dir", str(data), "--decode_dir", str(decode)])
    u = json.loads((decode / "metrics.json").read_text())["uncertainty"]
    assert u["auroc_entropy"] == pytest.approx(1.0)
    assert u["auroc_flips"] == pytest.approx(5 / 6)


def test_a_whisper_hypothesis_writes_a_ctm_whose_words_are_its_text(tmp_path):
    """A decoder that writes Whisper's <|startoftranscript|> (or a timestamp) into a
    hypothesis: text and word_confidence.ctm leave it out alike, so scoring reads them."""
    from diffasr.inference.decode_set import write_outputs
    from diffasr.inference.speech2text import Recognition
    from diffasr.whisper.tokenizer import WhisperTextTokenizer

    tokens = ["<|startoftranscript|>", "\u0120hello", "<|0.00|>", "\u0120wor", "ld", "<|endoftext|>"]
    text = WhisperTextTokenizer().tokens2text(tokens)
    recognition = Recognition(text=text, tokens=tokens, token_ids=list(range(len(tokens))),
                              confidences=[0.1, 0.9, 0.2, 0.8, 0.6, 0.3])
    # a word of several bytes split across pieces (stage 7 once stopped on 'PÃ©ACACHE')
    accented = ["\u0120and", "\u0120p", "\u00c3\u00a9", "ac", "ache"]
    accented_recognition = Recognition(text=WhisperTextTokenizer().tokens2text(accented), tokens=accented,
                                       token_ids=list(range(5)), confidences=[0.7, 0.5, 0.3, 0.9, 0.8])
    write_outputs(tmp_path, {"u1": (recognition, 0.1, 1.0), "u2": (accented_recognition, 0.1, 1.0)})
    hyps = dict(line.split(maxsplit=1) for line in (tmp_path / "text").read_text(encoding="utf-8").splitlines())
    assert hyps == {"u1": "HELLO WORLD", "u2": "AND PÉACACHE"}
    assert read_word_confidences(tmp_path / "word_confidence.ctm", hyps) == {"u1": [0.9, 0.6], "u2": [0.7, 0.3]}


def test_control_tokens_are_never_hypothesis_tokens():
    from diffasr.espnet2.target_speaker import special_ids
    from diffasr.whisper.tokenizer import END, START, whisper_token_list

    token_list = whisper_token_list()
    ids = special_ids(token_list, "<blank>")
    assert {token_list.index(START), token_list.index(END), token_list.index("<|0.00|>")} <= ids
    assert token_list.index("\u0120hello") not in ids
