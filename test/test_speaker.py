"""Speaker encoder (stages 3-4): metrics, triplet loss, training/resume, embedding I/O."""

import json
import logging
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from diffasr.datadir import read_kv, validate_data_dir, write_kv, write_spk2utt
from diffasr.speaker import SpeakerDataError, compute_eer, compute_min_dcf, load_config, make_trials
from diffasr.speaker.data import SpeakerSet
from diffasr.speaker.embed import embed_scp
from diffasr.speaker.losses import batch_hard_triplet_loss, mine_batch_hard
from diffasr.speaker.train import train
from tiny_configs import tiny_speaker

torch.set_num_threads(1)

CONF_DIR = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf/spk"
SR = 16000


def tone_wav(path, f0, seconds, seed):
    """A harmonic 'voice' at pitch f0 with a little noise; each speaker gets its own f0."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    wav = 0.2 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(len(t))
    sf.write(path, wav.astype(np.float32), SR, subtype="PCM_16")


def make_source_dir(root, speakers, utts_per_spk, seconds=0.8):
    """A Kaldi source data dir: speaker i speaks at 110 * (1 + 0.35 i) Hz."""
    root = Path(root)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    wav_scp, utt2spk = {}, {}
    for i, spk in enumerate(speakers):
        for j in range(utts_per_spk[i] if isinstance(utts_per_spk, list) else utts_per_spk):
            utt = f"{spk}-{j:04d}"
            path = root / "wav" / f"{utt}.wav"
            tone_wav(path, 110 * (1 + 0.35 * i), seconds + 0.1 * j, seed=hash((i, j)) % 1000)
            wav_scp[utt], utt2spk[utt] = str(path), spk
    write_kv(root / "wav.scp", wav_scp)
    write_kv(root / "utt2spk", utt2spk)
    write_kv(root / "text", {u: "HELLO" for u in wav_scp})
    write_spk2utt(root)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("spk")
    train_dir = make_source_dir(root / "sources_train", ["s1", "s2", "s3", "s4"], 3)
    dev_dir = make_source_dir(root / "sources_dev", ["d1", "d2"], 2)
    return train_dir, dev_dir


# ---------------------------------------------------------------- metrics

def test_eer_hand_computed():
    # perfectly separated
    assert compute_eer([0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1])[0] == 0.0
    # one target (0.3) below two non-targets: at threshold 0.5, P_miss = P_fa = 1/4
    eer, threshold = compute_eer([0.9, 0.8, 0.7, 0.3], [0.6, 0.5, 0.2, 0.1])
    assert eer == pytest.approx(0.25) and threshold == pytest.approx(0.5)  # scores above it are accepted
    # fully inverted scores: every threshold errs on one side
    assert compute_eer([0.1, 0.2], [0.8, 0.9])[0] == pytest.approx(1.0)
    # interleaved 2+2: P_miss=P_fa=0.5 at 0.5
    assert compute_eer([0.9, 0.4], [0.5, 0.1])[0] == pytest.approx(0.5)


def test_min_dcf_hand_computed():
    tgt, non = [0.9, 0.8, 0.7, 0.3], [0.6, 0.5, 0.2, 0.1]
    # p_target=0.01: best is threshold 0.7 (P_miss 1/4, P_fa 0): 0.01*0.25 / min(0.01, 0.99)
    assert compute_min_dcf(tgt, non, p_target=0.01)[0] == pytest.approx(0.25)
    # p_target=0.5: threshold 0.7 costs 0.5*0.25 = 0.125, normalised by 0.5
    assert compute_min_dcf(tgt, non, p_target=0.5)[0] == pytest.approx(0.25)
    assert compute_min_dcf([0.9, 0.8], [0.1, 0.2])[0] == 0.0
    # inverted: never better than the trivial "reject all" system
    assert compute_min_dcf([0.1], [0.9])[0] == pytest.approx(1.0)


def test_trials_balanced_deterministic_and_correctly_labelled():
    utt2spk = {f"{s}-{i}": s for s in "abcd" for i in range(5)}
    trials = make_trials(utt2spk, max_per_class=30, seed=0)
    assert trials == make_trials(utt2spk, max_per_class=30, seed=0)
    targets = [t for t in trials if t[2]]
    assert len(targets) == 30 and len(trials) == 60
    assert all((utt2spk[a] == utt2spk[b]) == is_t for a, b, is_t in trials)
    assert len(set(trials)) == len(trials)
    with pytest.raises(ValueError, match="two speakers"):
        make_trials({"a-1": "a", "a-2": "a"})


# ---------------------------------------------------------------- triplet loss

def test_triplet_loss_zero_when_margin_met_positive_otherwise():
    labels = torch.tensor([0, 0, 1, 1])
    # speakers 3 apart, same-speaker points 0.1 apart: |a-n| - |a-p| >= 2.8 > margin 1
    far = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.1, 0.0]])
    assert batch_hard_triplet_loss(far, labels, margin=1.0, normalize=False).item() == 0.0
    # speakers 0.5 apart: the margin of 1 is violated
    near = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.5, 0.0], [0.6, 0.0]])
    loss = batch_hard_triplet_loss(near, labels, margin=1.0, normalize=False)
    # per anchor d(a,p) - d(a,n) + 1: 0.1-0.5+1, 0.1-0.4+1, 0.1-0.4+1, 0.1-0.5+1 -> mean 0.65
    assert loss.item() == pytest.approx(0.65, abs=1e-4)
    near.requires_grad_(True)
    batch_hard_triplet_loss(near, labels, normalize=False).backward()
    assert near.grad.abs().sum() > 0


def test_batch_hard_mining_picks_farthest_positive_nearest_negative():
    emb = torch.tensor([[0.0], [1.0], [5.0], [1.5], [9.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    a, p, n = mine_batch_hard(emb, labels)
    assert a.tolist() == [0, 1, 2, 3, 4]
    assert p.tolist() == [2, 2, 0, 4, 3]
    assert n.tolist() == [3, 3, 3, 1, 2]


# ---------------------------------------------------------------- data / training

def test_single_utterance_speaker_excluded_with_message(tmp_path, caplog):
    data = make_source_dir(tmp_path / "src", ["a", "b", "lonely"], [2, 2, 1], seconds=0.3)
    with caplog.at_level(logging.WARNING):
        speakers = SpeakerSet(data, SR)
    assert speakers.speakers == ["a", "b"] and speakers.excluded == ["lonely"]
    assert "lonely" in caplog.text and "lonely-0000" in caplog.text
    assert "excluded" in caplog.text


def test_training_runs_without_the_single_utterance_speaker(tmp_path):
    data = make_source_dir(tmp_path / "src", ["a", "b", "c"], [2, 2, 1], seconds=0.3)
    conf = dict(load_config(tiny_speaker(CONF_DIR / "ecapa_aam.yaml")), epochs=1)
    info = train(conf, data, tmp_path / "exp")
    assert info["excluded_speakers"] == ["c"] and info["num_speakers"] == 2
    assert info["num_utterances"] == 4


def test_unreadable_training_audio_names_utterance(tmp_path):
    data = make_source_dir(tmp_path / "src", ["a", "b"], 2, seconds=0.3)
    bad = Path(read_kv(data / "wav.scp")["b-0001"])
    bad.write_bytes(b"not a wav")
    with pytest.raises(SpeakerDataError, match=r"b-0001.*" + bad.name):
        SpeakerSet(data, SR)


def _weights(model_dir):
    return torch.load(Path(model_dir) / "model.pt")


@pytest.mark.parametrize("loss", ["aam", "triplet"])
def test_resume_matches_uninterrupted_training(corpus, tmp_path, loss, caplog):
    train_dir, dev_dir = corpus
    conf = load_config(tiny_speaker(CONF_DIR / f"ecapa_{loss}.yaml"))
    assert conf["epochs"] == 2
    full = train(conf, train_dir, tmp_path / "full", valid_dir=dev_dir)

    # a run stopped after epoch 1 (as if killed), then restarted
    part = train(conf, train_dir, tmp_path / "resumed", valid_dir=dev_dir, max_epochs_this_run=1)
    assert part["epochs"] == 1 and not part["finished"]
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert list((tmp_path / "resumed" / "checkpoints").glob("CKPT*"))
    # A later save that the kill cut short: SpeechBrain's meta file is written, the
    # parameters are not. Resuming must skip it (loading it would fail).
    half_saved = tmp_path / "resumed" / "checkpoints" / "CKPT+2099-01-01+00-00-00+00"
    half_saved.mkdir()
    (half_saved / "CKPT.yaml").write_text("end-of-epoch: true\nepoch: 2\nunixtime: 4070908800.0\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffasr.speaker.train"):
        resumed = train(conf, train_dir, tmp_path / "resumed", valid_dir=dev_dir, resume=True)
    # the second call loaded epoch 1 and trained epoch 2 only
    assert "resumed from" in caplog.text and "after epoch 1" in caplog.text
    assert f"removing {half_saved}: the run was stopped while saving it" in caplog.text
    assert not half_saved.exists()
    assert "epoch 2/2" in caplog.text and "epoch 1/2" not in caplog.text

    assert resumed["epochs"] == full["epochs"] == 2
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for a, b in zip(full["history"], resumed["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    full_w, resumed_w = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert full_w.keys() == resumed_w.keys()
    for name in full_w:
        torch.testing.assert_close(resumed_w[name], full_w[name], rtol=1e-5, atol=1e-6, msg=name)
    info = json.loads((tmp_path / "resumed" / "train_info.json").read_text())
    assert info["loss"] == loss and info["train_seconds"] > 0 and info["embedding_dim"] == conf["encoder"]["lin_neurons"]
    assert "valid_eer" in info["history"][-1]
    assert (tmp_path / "resumed" / "config.yaml").is_file()
    assert list((tmp_path / "resumed" / "tensorboard").glob("events.out.tfevents*"))


def test_resume_with_changed_epochs_is_refused(corpus, tmp_path):
    train_dir, _ = corpus
    conf = load_config(tiny_speaker(CONF_DIR / "ecapa_aam.yaml"))
    train(conf, train_dir, tmp_path / "exp", max_epochs_this_run=1)
    with pytest.raises(ValueError, match="resume false"):
        train(dict(conf, epochs=3), train_dir, tmp_path / "exp")
    # --resume false starts over
    info = train(dict(conf, epochs=1), train_dir, tmp_path / "exp", resume=False)
    assert info["epochs"] == 1 and info["finished"]


# ---------------------------------------------------------------- stage 4 (embeddings)

@pytest.fixture(scope="module")
def trained_model(corpus, tmp_path_factory):
    train_dir, _ = corpus
    out = tmp_path_factory.mktemp("exp") / "spk_tiny"
    from diffasr.bin.spk_train import main as spk_train
    assert spk_train(["--config", str(tiny_speaker(CONF_DIR / "ecapa_aam.yaml")), "--train_dir", str(train_dir),
                      "--output_dir", str(out)]) == 0
    return out


def make_mixture_dir(root, source_dir):
    """A mixture-set-like dir: 4 utterances whose enroll.scp shares 2 enrollment wavs."""
    root = Path(root)
    root.mkdir(parents=True)
    src = read_kv(Path(source_dir) / "wav.scp")
    wav_scp = {f"s1-mix{i}": src["s1-0000"] for i in range(2)}
    wav_scp.update({f"s2-mix{i}": src["s2-0000"] for i in range(2)})
    enroll = {u: src[u.split("-")[0] + "-0001"] for u in wav_scp}
    write_kv(root / "wav.scp", wav_scp)
    write_kv(root / "enroll.scp", enroll)
    write_kv(root / "utt2spk", {u: u.split("-")[0] for u in wav_scp})
    write_kv(root / "text", {u: "HELLO" for u in wav_scp})
    return root


def test_embed_writes_consistent_ark_scp_and_rerun_rewrites(corpus, trained_model, tmp_path):
    from diffasr.bin.spk_embed import main as spk_embed

    data = make_mixture_dir(tmp_path / "test", corpus[0])
    out = tmp_path / "embed"
    args = ["--model_dir", str(trained_model), "--data_dir", str(data), "--output_dir", str(out)]
    assert spk_embed(args) == 0
    first = {k: v.copy() for k, v in kaldiio.load_scp(str(data / "enroll_embed.scp")).items()}
    assert sorted(first) == sorted(read_kv(data / "wav.scp"))
    dim = load_config(trained_model / "config.yaml")["encoder"]["lin_neurons"]
    assert all(v.dtype == np.float32 and v.shape == (dim,) for v in first.values())
    # utterances sharing an enrollment wav share the (cached) embedding
    np.testing.assert_array_equal(first["s1-mix0"], first["s1-mix1"])
    assert not np.allclose(first["s1-mix0"], first["s2-mix0"])
    assert read_kv(data / "enroll_embed.scp") == read_kv(out / "enroll_embed.scp")
    validate_data_dir(data)  # enroll_embed.scp covers exactly the utterances of wav.scp

    # rerun with one utterance fewer: both scps are rewritten, nothing stale or temporary
    for name in ("wav.scp", "enroll.scp", "utt2spk", "text"):
        table = read_kv(data / name)
        del table["s2-mix1"]
        write_kv(data / name, table)
    assert spk_embed(args) == 0
    second = kaldiio.load_scp(str(data / "enroll_embed.scp"))
    assert sorted(second) == ["s1-mix0", "s1-mix1", "s2-mix0"]
    for utt in second:
        np.testing.assert_allclose(second[utt], first[utt], rtol=1e-6)
    assert read_kv(data / "enroll_embed.scp") == read_kv(out / "enroll_embed.scp")
    assert sorted(p.name for p in out.iterdir()) == ["enroll_embed.ark", "enroll_embed.scp"]
    validate_data_dir(data)


def test_missing_enrollment_audio_names_utterance_and_file(corpus, trained_model, tmp_path, caplog):
    from diffasr.bin.spk_embed import main as spk_embed

    data = make_mixture_dir(tmp_path / "test", corpus[0])
    enroll = read_kv(data / "enroll.scp")
    enroll["s2-mix1"] = str(tmp_path / "nowhere.wav")
    write_kv(data / "enroll.scp", enroll)
    args = ["--model_dir", str(trained_model), "--data_dir", str(data), "--output_dir", str(tmp_path / "e")]
    with caplog.at_level(logging.ERROR):
        assert spk_embed(args) == 1
    assert "s2-mix1" in caplog.text and "nowhere.wav" in caplog.text and "does not exist" in caplog.text
    assert not (data / "enroll_embed.scp").exists()


def test_unreadable_enrollment_audio_names_utterance_and_file(corpus, trained_model, tmp_path):
    from diffasr.speaker import load_trained_encoder

    data = make_mixture_dir(tmp_path / "test", corpus[0])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((1600, 2), dtype=np.float32), SR)
    encoder, conf = load_trained_encoder(trained_model)
    for bad, why in ((broken, "cannot read"), (stereo, "2 channels")):
        enroll = read_kv(data / "enroll.scp")
        enroll["s1-mix1"] = str(bad)
        write_kv(data / "enroll.scp", enroll)
        with pytest.raises(SpeakerDataError) as err:
            embed_scp(encoder, conf["sample_rate"], data / "enroll.scp")
        msg = str(err.value)
        assert "s1-mix1" in msg and str(bad) in msg and why in msg and "enroll.scp" in msg


def test_eval_writes_results_trials_and_plot(corpus, trained_model, tmp_path):
    from diffasr.bin.spk_eval import main as spk_eval

    _, dev_dir = corpus
    out = tmp_path / "eval"
    assert spk_eval(["--model_dir", str(trained_model), "--data_dirs", str(dev_dir),
                     "--output_dir", str(out)]) == 0
    results = (out / "RESULTS.md").read_text()
    assert "| sources_dev |" in results and "minDCF" in results and "spk_eval" in results
    trials = (out / "trials" / "sources_dev.trials").read_text().splitlines()
    # 2 speakers x 2 utterances: 2 target pairs, 2 of the 4 cross pairs
    assert len(trials) == 4 and sum(t.endswith(" target") for t in trials) == 2
    assert (out / "score_distribution.png").stat().st_size > 1000
    assert len((out / "scores" / "sources_dev.scores").read_text().splitlines()) == 4


def test_bench_scores_same_trials_for_both_systems(corpus, trained_model, tmp_path, capsys):
    import csv
    import importlib.util

    _, dev_dir = corpus
    bench_path = Path(__file__).resolve().parents[1] / "bench" / "speaker_eer.py"
    spec = importlib.util.spec_from_file_location("speaker_eer", bench_path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speaker_eer.csv"
    assert bench.main(["--model_dir", str(trained_model), "--data_dirs", str(dev_dir),
                       "--output", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["system"].split()[0] for r in rows] == ["diffasr", "resemblyzer"]
    trials = (trained_model / "trials" / "sources_dev.trials").read_text().splitlines()
    assert all(int(r["num_trials"]) == len(trials) for r in rows)
    dim = load_config(trained_model / "config.yaml")["encoder"]["lin_neurons"]
    assert [r["embedding_dim"] for r in rows] == [str(dim), "256"]
    assert float(rows[0]["train_seconds"]) > 0 and rows[1]["train_seconds"] == ""
    assert all(0 <= float(r["eer_percent"]) <= 100 for r in rows)
    printed = capsys.readouterr().out
    assert "resemblyzer" in printed and "eer_percent" in printed


# ---------------------------------------------------------------- stage 4 (presence gate)

def test_presence_threshold_loses_at_most_the_allowed_share_and_catches_what_lies_below():
    from diffasr.speaker.presence import choose_threshold

    present = np.linspace(0.0, 0.99, 100)  # 0.00, 0.01, ... 0.99
    absent = np.array([-0.5, 0.005, 0.025, 0.5])
    figures = choose_threshold(present, absent, max_lost=0.03)
    assert figures["threshold"] == pytest.approx(0.03)  # 0.00, 0.01, 0.02 fall below it
    assert figures["present_lost"] == pytest.approx(0.03) and figures["absent_caught"] == pytest.approx(0.75)
    assert choose_threshold(present, absent, max_lost=0.0)["present_lost"] == 0.0
    with pytest.raises(ValueError, match="target-absent"):
        choose_threshold(present, [], 0.03)


def test_presence_windows_cover_the_whole_recording():
    from diffasr.speaker.presence import windows

    samples = np.arange(16000 * 4, dtype=np.float32)
    cut = windows(samples, SR, 1.5, 0.5)
    assert cut.shape == (6, 24000)  # starts 0, 0.5, ... 2.0 s and one ending at 4.0 s
    assert cut[0, 0] == 0 and cut[-1, -1] == samples[-1] and cut[1, 0] == 8000
    assert windows(samples[:8000], SR, 1.5, 0.5).shape == (1, 8000)  # shorter than a window: itself


def test_presence_gate_file_round_trips_and_bad_values_are_refused(tmp_path):
    from diffasr.speaker.presence import PresenceGate

    PresenceGate(threshold=0.25, window_seconds=2.0).save(tmp_path / "presence.yaml", {"absent_caught": 0.5})
    assert PresenceGate.load(tmp_path) == PresenceGate(threshold=0.25, window_seconds=2.0)
    with pytest.raises(ValueError, match="cosine"):
        PresenceGate(threshold=3.0)
    with pytest.raises(FileNotFoundError, match="stage 4"):
        PresenceGate.load(tmp_path / "nothing")


def test_presence_stage_embeds_windows_and_chooses_the_threshold_on_absent_examples(corpus, trained_model, tmp_path):
    from diffasr.bin.spk_presence import main as spk_presence
    from diffasr.datadir import write_jsonl
    from diffasr.speaker.presence import PresenceGate, windows

    data = make_mixture_dir(tmp_path / "dev", corpus[0])
    utts = sorted(read_kv(data / "wav.scp"))
    # the first utterance's enrollment is declared absent (its record has no target utterance)
    write_jsonl(data / "mixture.jsonl", [{"utt": u, "target": {"utt": None if u == utts[0] else u}} for u in utts])
    assert spk_presence(["choose", "--model_dir", str(trained_model), "--data_dir", str(data)]) == 1  # not embedded
    assert spk_embed_main(trained_model, data, tmp_path / "embed") == 0
    assert spk_presence(["embed", "--model_dir", str(trained_model), "--data_dir", str(data),
                         "--output_dir", str(tmp_path / "windows"), "--window_seconds", "0.5",
                         "--hop_seconds", "0.25"]) == 0
    stored = dict(kaldiio.load_scp(str(data / "window_embed.scp")))
    for utt, path in read_kv(data / "wav.scp").items():
        audio, _ = sf.read(path, dtype="float32")
        assert stored[utt].shape == (len(windows(audio, SR, 0.5, 0.25)), 192)
        assert np.allclose(np.linalg.norm(stored[utt], axis=1), 1.0, atol=1e-5)
    assert spk_presence(["choose", "--model_dir", str(trained_model), "--data_dir", str(data),
                         "--max_lost", "0.0"]) == 0
    gate = PresenceGate.load(trained_model)
    assert (gate.window_seconds, gate.hop_seconds) == (0.5, 0.25)
    scores = {u: float(s) for u, s in read_kv(trained_model / "presence_scores").items()}
    assert gate.threshold == pytest.approx(min(s for u, s in scores.items() if u != utts[0]), abs=1e-4)


def spk_embed_main(model_dir, data_dir, out):
    from diffasr.bin.spk_embed import main as spk_embed

    return spk_embed(["--model_dir", str(model_dir), "--data_dir", str(data_dir), "--output_dir", str(out)])


def test_overlap_augmentation_adds_another_speaker_at_the_drawn_ratio():
    from diffasr.speaker.train import overlap

    rng = np.random.default_rng(0)
    wavs = torch.from_numpy(0.1 * rng.standard_normal((6, 4000)).astype(np.float32))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mixed = overlap(wavs, labels, 1.0, (6.0, 6.0), np.random.default_rng(1))
    for i in range(6):
        added = mixed[i] - wavs[i]
        # the added signal is a scaled crop of a speaker other than i's
        sources = [j for j in range(6) if torch.allclose(added, wavs[j] * (added @ wavs[j]) / (wavs[j] @ wavs[j]),
                                                          atol=1e-5)]
        assert sources and all(labels[j] != labels[i] for j in sources)
        assert 10 * torch.log10(wavs[i].pow(2).mean() / added.pow(2).mean()).item() == pytest.approx(6.0, abs=1e-3)
    assert torch.equal(overlap(wavs, labels, 0.0, (6.0, 6.0), np.random.default_rng(1)), wavs)


def test_one_embedding_call_for_several_sets_writes_what_separate_calls_write(corpus, trained_model, tmp_path):
    from diffasr.bin.spk_embed import main as spk_embed

    a, b = make_mixture_dir(tmp_path / "a", corpus[0]), make_mixture_dir(tmp_path / "b", corpus[0])
    assert spk_embed(["--model_dir", str(trained_model), "--data_dir", str(a), str(b),
                      "--output_dir", str(tmp_path / "ea"), str(tmp_path / "eb")]) == 0
    together = {d: dict(kaldiio.load_scp(str(d / "enroll_embed.scp"))) for d in (a, b)}
    assert spk_embed_main(trained_model, b, tmp_path / "alone") == 0
    alone = dict(kaldiio.load_scp(str(b / "enroll_embed.scp")))
    assert together[b].keys() == alone.keys() == together[a].keys()
    assert all(np.allclose(together[b][u], alone[u], atol=1e-6) for u in alone)
    assert spk_embed(["--model_dir", str(trained_model), "--data_dir", str(a), str(b),
                      "--output_dir", str(tmp_path / "ea")]) == 2  # one output dir per set
