"""Train tiny models through DiffASRTask.main and decode them with diffasr.bin.asr_inference."""

import math
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import sentencepiece as spm
import soundfile
import torch

from diffasr.bin import asr_inference, asr_train
from diffasr.espnet2.enrollment import Enrollment
from diffasr.inference import PartnerEnrollment, Speech2Text
from diffasr.scoring.uncertainty import words_with_confidence
from tiny_configs import tiny

CONF = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf"
SENTENCES = ["HELLO WORLD", "GOOD MORNING", "THE CAT SAT", "A DOG RAN HOME", "HELLO CAT", "GOOD DOG"]
EMBED_DIM = 192  # what the tiny configs expect (ECAPA size)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six 0.4-second noise utterances from two speakers, a BPE model and a token list."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    (root / "text.raw").write_text("\n".join(SENTENCES * 5) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(root / "text.raw"), model_prefix=str(root / "bpe"), vocab_size=20,
        model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=1,
        pad_id=-1, control_symbols="<blank>", minloglevel=2,
    )
    model = spm.SentencePieceProcessor(model_file=str(root / "bpe.model"))
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    tokens = ["<blank>", "<unk>"] + [p for p in pieces if p not in ("<blank>", "<unk>")] + ["<mask>", "<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")

    utts = [f"spk{i % 2}-utt{i}" for i in range(len(SENTENCES))]
    utts.sort()
    wav_lines, text_lines, speech_shape, text_shape, utt2spk = [], [], [], [], []
    embeddings = {}
    for utt, sentence in zip(utts, SENTENCES):
        audio = (0.1 * rng.standard_normal(6400)).astype(np.float32)
        soundfile.write(root / f"{utt}.wav", audio, 16000, subtype="PCM_16")
        wav_lines.append(f"{utt} {root / utt}.wav")
        text_lines.append(f"{utt} {sentence}")
        speech_shape.append(f"{utt} 6400")
        text_shape.append(f"{utt} {len(model.encode(sentence))}")
        utt2spk.append(f"{utt} {utt.split('-')[0]}")
        embeddings[utt] = rng.standard_normal(EMBED_DIM).astype(np.float32)
    for name, lines in [("wav.scp", wav_lines), ("text", text_lines), ("speech_shape", speech_shape),
                        ("text_shape", text_shape), ("utt2spk", utt2spk)]:
        (root / name).write_text("\n".join(lines) + "\n")
    kaldiio.save_ark(str(root / "enroll_embed.ark"), embeddings, scp=str(root / "enroll_embed.scp"))
    # Enrollment audio: another utterance of the same speaker.
    (root / "enroll.scp").write_text("".join(
        f"{utt} {root / [u for u in utts if u != utt and u[:4] == utt[:4]][0]}.wav\n" for utt in utts))
    return root


def _train(corpus: Path, config: str, exp: Path) -> Path:  # config: a shipped one, trained at the tiny size
    data = [
        f"{corpus}/wav.scp,speech,sound",
        f"{corpus}/text,text,text",
        f"{corpus}/enroll_embed.scp,enroll_embed,kaldi_ark",
    ]
    args = ["--config", str(tiny(CONF / "tuning" / config)), "--output_dir", str(exp),
            "--token_list", f"{corpus}/tokens.txt", "--token_type", "bpe",
            "--bpemodel", f"{corpus}/bpe.model", "--max_epoch", "1", "--ngpu", "0",
            "--num_workers", "0", "--use_tensorboard", "false", "--seed", "0",
            "--fold_length", "80000", "--fold_length", "150"]
    for split in ("train", "valid"):
        for triple in data:
            args += [f"--{split}_data_path_and_name_and_type", triple]
        args += [f"--{split}_shape_file", f"{corpus}/speech_shape",
                 f"--{split}_shape_file", f"{corpus}/text_shape"]
    asr_train.main(args)
    return exp


@pytest.mark.parametrize(
    "config",
    ["train_diffusion_conformer.yaml", "train_ar_conformer.yaml", "train_maskctc_conformer.yaml"],
)
def test_trained_checkpoint_decodes_to_all_output_files(corpus, tmp_path, config):
    exp = _train(corpus, config, tmp_path / "exp")
    assert (exp / "config.yaml").exists() and (exp / "1epoch.pth").exists()

    def decode(out):
        asr_inference.main([
            "--output_dir", str(out), "--asr_train_config", str(exp / "config.yaml"),
            "--asr_model_file", str(exp / "1epoch.pth"),
            "--data_path_and_name_and_type", f"{corpus}/wav.scp,speech,sound",
            "--data_path_and_name_and_type", f"{corpus}/enroll_embed.scp,enroll_embed,kaldi_ark",
            "--batch_size", "4", "--steps", "4", "--beam_size", "2", "--maxlenratio", "0.5"])
        return out

    out = decode(tmp_path / "decode")
    utts = sorted(line.split()[0] for line in (corpus / "wav.scp").read_text().splitlines())
    for name in ("text", "token", "timing"):
        lines = (out / name).read_text().splitlines()
        assert [line.split(" ", 1)[0] for line in lines] == utts, name
    for line in (out / "timing").read_text().splitlines():
        _, seconds, audio = line.split()
        assert float(seconds) >= 0.0 and float(audio) == pytest.approx(0.4)
    tokens = {line.split(" ", 1)[0]: line.split()[1:] for line in (out / "token").read_text().splitlines()}
    # The CTM: per utterance, its words numbered from 0, as many as the token file's pieces make.
    rows = [line.split() for line in (out / "word_confidence.ctm").read_text().splitlines()]
    for utt in utts:
        mine = [r for r in rows if r[0] == utt]
        words = [w for w, _ in words_with_confidence(tokens[utt], [0.5] * len(tokens[utt]))]
        assert [(r[1], r[2], r[3], r[4]) for r in mine] == [("1", str(i), "1", w) for i, w in enumerate(words)]
    # Only the diffusion sampler reports per-token entropy and flips.
    assert (out / "token_uncertainty").exists() == config.startswith("train_diffusion")
    assert not (out / "remasked").exists()
    if config.startswith("train_ar"):
        # --maxlenratio 0.5 of the 9 encoder frames of 0.4 s (41 frames, conv2d /4): at most 4 tokens
        assert all(len(pieces) <= 4 for pieces in tokens.values()), tokens
    # Decoding is a function of the model, the data and the options: a second run writes the same.
    again = decode(tmp_path / "again")
    for name in ("text", "token", "word_confidence.ctm") + (("token_uncertainty",) if config.startswith(
            "train_diffusion") else ()):
        assert (again / name).read_text() == (out / name).read_text(), name


def test_speech2text_returns_text_tokens_and_confidences(corpus, diffusion_exp):
    s2t = Speech2Text(str(diffusion_exp / "config.yaml"), str(diffusion_exp / "1epoch.pth"), steps=2,
                      canvas="fixed", canvas_length=8)
    sampled = {}
    decode = s2t.model.diffusion_decode

    def keep_sampler_output(*args, **kwargs):
        ids, confidences, sampled["out"] = decode(*args, **kwargs)
        return ids, confidences, sampled["out"]

    s2t.model.diffusion_decode = keep_sampler_output
    torch.manual_seed(0)
    inputs = (torch.randn(2, 6400), torch.tensor([6400, 4800]), Enrollment(embed=torch.randn(2, EMBED_DIM)))
    results = s2t(*inputs)
    out, fill, vocabulary = sampled["out"], s2t.model.fill_ids, len(s2t.model.token_list)
    assert len(results) == 2 and tuple(out.tokens.shape) == (2, 8)
    for b, result in enumerate(results):
        # 8 canvas positions, 4 committed at each of the 2 steps; the recognition is the canvas
        # without its fill (end, mask, blank), each token with its commit probability and flips
        assert sorted(out.commit_step[b].tolist()) == [0] * 4 + [1] * 4
        kept = [i for i in range(8) if int(out.tokens[b, i]) not in fill]
        assert result.token_ids == out.tokens[b, kept].tolist()
        assert result.tokens == s2t.converter.ids2tokens(result.token_ids)
        assert result.text == s2t.tokenizer.tokens2text(result.tokens)
        assert result.confidences == out.confidence[b, kept].tolist()
        assert result.flips == out.flips[b, kept].tolist() and result.entropies == out.entropy[b, kept].tolist()
        # A prediction committed at the first step has had no earlier one to flip from.
        assert all(f <= step for f, step in zip(out.flips[b].tolist(), out.commit_step[b].tolist()))
        # Greedy commits take the most probable token (<mask> excluded), whose probability p
        # bounds the entropy H of that prediction: -log p <= H <= log(V - 1).
        for p, h in zip(result.confidences, result.entropies):
            assert -math.log(p) - 1e-4 <= h <= math.log(vocabulary - 1) + 1e-4
    assert s2t(*inputs) == results  # the same call again gives the same, to the last bit


def test_words_take_the_lowest_piece_confidence():
    assert words_with_confidence(["\u2581A", "B", "\u2581C"], [0.9, 0.2, 0.7]) == [("AB", 0.2), ("C", 0.7)]
    assert words_with_confidence(["H", "I", "<space>", "X"], [0.5, 0.6, 1.0, 0.3]) == [("HI", 0.5), ("X", 0.3)]


def test_rotation_gives_every_utterance_another_speakers_enrollment(corpus):
    original = dict(kaldiio.load_scp(str(corpus / "enroll_embed.scp")))
    speaker = dict(line.split() for line in (corpus / "utt2spk").read_text().splitlines())
    rotate = PartnerEnrollment([(f"{corpus}/wav.scp", "speech", "sound"),
                                (f"{corpus}/enroll_embed.scp", "enroll_embed", "kaldi_ark"),
                                (f"{corpus}/enroll.scp", "enroll_speech", "sound")], "rotate",
                                str(corpus / "utt2spk"))
    utts = sorted(original)
    batch = rotate(utts).as_inputs()
    enroll_audio = dict(line.split() for line in (corpus / "enroll.scp").read_text().splitlines())
    for b, utt in enumerate(utts):
        donors = [u for u, v in original.items() if np.array_equal(v, batch["enroll_embed"][b].numpy())]
        assert donors and speaker[donors[0]] != speaker[utt]
        # The enrollment audio comes from the same donor as the embedding.
        donor = rotate.partners[utt]
        assert speaker[donor] != speaker[utt] and donor in donors
        audio, _ = soundfile.read(enroll_audio[donor], dtype="float32")
        length = int(batch["enroll_speech_lengths"][b])
        assert length == len(audio) and np.allclose(batch["enroll_speech"][b, :length].numpy(), audio)


def test_collect_stats_runs_with_enroll_embed(corpus, tmp_path):
    data = [f"{corpus}/wav.scp,speech,sound", f"{corpus}/text,text,text",
            f"{corpus}/enroll_embed.scp,enroll_embed,kaldi_ark"]
    args = ["--collect_stats", "true", "--config", str(tiny(CONF / "tuning" / "train_diffusion_conformer.yaml")),
            "--output_dir", str(tmp_path / "stats"), "--token_list", f"{corpus}/tokens.txt",
            "--token_type", "bpe", "--bpemodel", f"{corpus}/bpe.model", "--ngpu", "0", "--num_workers", "0",
            "--train_shape_file", f"{corpus}/speech_shape", "--valid_shape_file", f"{corpus}/speech_shape"]
    for split in ("train", "valid"):
        for triple in data:
            args += [f"--{split}_data_path_and_name_and_type", triple]
    asr_train.main(args)
    assert (tmp_path / "stats/train/feats_stats.npz").exists()
    shapes = (tmp_path / "stats/train/enroll_embed_shape").read_text().split()
    assert shapes[1] == str(EMBED_DIM)


@pytest.fixture(scope="module")
def diffusion_exp(corpus, tmp_path_factory):
    return _train(corpus, "train_diffusion_conformer.yaml", tmp_path_factory.mktemp("exp") / "exp")


def _decode(corpus, exp, out, *options):
    asr_inference.main([
        "--output_dir", str(out), "--asr_train_config", str(exp / "config.yaml"),
        "--asr_model_file", str(exp / "1epoch.pth"),
        "--data_path_and_name_and_type", f"{corpus}/wav.scp,speech,sound",
        "--data_path_and_name_and_type", f"{corpus}/enroll_embed.scp,enroll_embed,kaldi_ark",
        "--batch_size", "3", *options,
    ])
    return dict(line.split(" ", 1) if " " in line else (line, "")
                for line in (out / "text").read_text().splitlines())


def test_deliberation_with_nothing_masked_returns_the_external_hypothesis(corpus, diffusion_exp, tmp_path):
    hyps = {line.split()[0]: " ".join(reversed(line.split()[1:]))
            for line in (corpus / "text").read_text().splitlines()}
    (tmp_path / "hyp").write_text("".join(f"{u} {t}\n" for u, t in hyps.items()))
    out = _decode(corpus, diffusion_exp, tmp_path / "out", "--decode_mode", "deliberation",
                  "--deliberation_hyp", str(tmp_path / "hyp"), "--mask_ratio", "0", "--canvas_decode_margin", "0")
    assert out == hyps
    remasked = [line.split() for line in (tmp_path / "out/remasked").read_text().splitlines()]
    assert [int(n) for _, n, _ in remasked] == [0] * len(hyps)


def test_deliberation_masks_the_requested_share_and_keeps_the_rest(corpus, diffusion_exp, tmp_path):
    out_dir = tmp_path / "out"
    _decode(corpus, diffusion_exp, out_dir, "--decode_mode", "deliberation", "--masking", "random",
            "--mask_ratio", "0.5", "--steps", "2")
    for line in (out_dir / "remasked").read_text().splitlines():
        _, remasked, canvas = line.split()
        assert int(remasked) == int(int(canvas) * 0.5 + 0.5)


def test_sampler_writes_token_probability_entropy_and_flips(corpus, diffusion_exp, tmp_path):
    _decode(corpus, diffusion_exp, tmp_path / "out", "--steps", "4")
    tokens = {line.split(" ", 1)[0]: line.split()[1:] for line in (tmp_path / "out/token").read_text().splitlines()}
    rows = [line.split() for line in (tmp_path / "out/token_uncertainty").read_text().splitlines()]
    ctm = [line.split() for line in (tmp_path / "out/word_confidence.ctm").read_text().splitlines()]
    vocabulary = len((corpus / "tokens.txt").read_text().split())
    assert sum(len(pieces) for pieces in tokens.values()) == len(rows) > 0
    for utt, pieces in tokens.items():
        mine = [r for r in rows if r[0] == utt]
        assert [r[2] for r in mine] == pieces and [int(r[1]) for r in mine] == list(range(len(pieces)))
        # each word of the CTM has the lowest probability of its pieces
        probabilities = [float(r[3]) for r in mine]
        assert [(r[4], float(r[5])) for r in ctm if r[0] == utt] == words_with_confidence(pieces, probabilities)
        for _, _, _, probability, entropy, flips in mine:
            # greedy commits take the most probable token: -log p <= H <= log(V - 1) (<mask> excluded)
            assert -math.log(float(probability)) - 1e-4 <= float(entropy) <= math.log(vocabulary - 1) + 1e-4
            assert 0 <= int(flips) <= 3  # 4 steps: at most 3 changes before the commit
    # Random remasking follows --seed: the same seed writes the same probabilities, another
    # seed commits in another order and so with other probabilities.
    seeded = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        _decode(corpus, diffusion_exp, tmp_path / name, "--steps", "4", "--remasking", "random", "--seed", seed)
        seeded[name] = (tmp_path / name / "token_uncertainty").read_text()
    assert seeded["a"] == seeded["b"] and seeded["a"] != seeded["c"]


def test_ctc_greedy_mode_writes_confidences(corpus, diffusion_exp, tmp_path):
    _decode(corpus, diffusion_exp, tmp_path / "out", "--decode_mode", "ctc_greedy")
    # one line per hypothesis word, in order, each with a probability
    words = [(line.split()[0], word) for line in (tmp_path / "out/text").read_text().splitlines()
             for word in line.split()[1:]]
    rows = [line.split() for line in (tmp_path / "out/word_confidence.ctm").read_text().splitlines()]
    assert words and [(utt, word) for utt, _, _, _, word, _ in rows] == words
    assert all(0.0 <= float(confidence) <= 1.0 for *_, confidence in rows)


def test_hypothesis_file_errors_name_the_utterance(corpus, diffusion_exp, tmp_path):
    lines = (corpus / "text").read_text().splitlines()
    (tmp_path / "short").write_text("\n".join(lines[:-1]) + "\n")
    missing = lines[-1].split()[0]
    with pytest.raises(ValueError, match=f"no line for utterance {missing}"):
        _decode(corpus, diffusion_exp, tmp_path / "a", "--decode_mode", "deliberation",
                "--deliberation_hyp", str(tmp_path / "short"))
    utt = lines[2].split()[0]
    piece = (corpus / "tokens.txt").read_text().split()[2]
    tokens = [f"{u} {piece}" for u in (line.split()[0] for line in lines)]
    tokens[2] = f"{utt} {piece} NOT-A-PIECE"
    (tmp_path / "tokens").write_text("\n".join(tokens) + "\n")
    with pytest.raises(ValueError, match=f"tokens:3: the hypothesis of utterance {utt} has tokens outside"):
        _decode(corpus, diffusion_exp, tmp_path / "b", "--decode_mode", "deliberation",
                "--deliberation_hyp", str(tmp_path / "tokens"), "--deliberation_hyp_type", "token")


def test_audio_longer_than_the_model_maximum_is_refused(corpus, diffusion_exp, tmp_path):
    with pytest.raises(ValueError, match=r"lasts 0.4 s, longer than this model's maximum of 0.3 s"):
        _decode(corpus, diffusion_exp, tmp_path / "out", "--max_audio_seconds", "0.3")


def test_fixed_canvas_blocks_that_do_not_divide_are_refused(corpus, diffusion_exp, tmp_path):
    with pytest.raises(ValueError, match=r"use one of \[1, 2, 3, 4, 6, 12\]"):
        _decode(corpus, diffusion_exp, tmp_path / "out", "--canvas", "fixed", "--canvas_length", "12",
                "--block_length", "5")
    with pytest.raises(ValueError, match="use steps = 3, 6, 9"):
        _decode(corpus, diffusion_exp, tmp_path / "out", "--canvas", "fixed", "--canvas_length", "12",
                "--block_length", "4", "--steps", "4")


def test_a_whisper_model_decodes_without_espnets_task_registry(tmp_path):
    """Decoding builds a model from its config.yaml through diffasr.espnet2.builder, which
    imports the classes the config names: not ESPnet's ASR task (every frontend and
    decoder ESPnet has), SpeechBrain (a model without an embedding conditioner) or
    scipy (calibration), which made `transcribe` take seconds before its first step."""
    import subprocess
    import sys

    import yaml

    from diffasr.espnet2.task import DiffASRTask
    from diffasr.whisper.tokenizer import whisper_token_list

    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(tiny(CONF / "tuning/train_diffusion_whisper.yaml")), "--token_list", "x"])
    args.token_list = whisper_token_list()
    torch.manual_seed(0)
    model = DiffASRTask.build_model(args)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}))
    script = f"""
import sys, torch
from diffasr.espnet2.enrollment import Enrollment
from diffasr.inference.speech2text import Speech2Text
s2t = Speech2Text({str(tmp_path / 'config.yaml')!r}, {str(tmp_path / 'model.pth')!r}, steps=2)
weights = torch.load({str(tmp_path / 'model.pth')!r})
assert all(torch.equal(p, weights[k]) for k, p in s2t.model.state_dict().items())
torch.manual_seed(0)
results = s2t(0.1 * torch.randn(1, 16000), torch.tensor([16000]), Enrollment(speech=0.1 * torch.randn(1, 24000)))
print(len(results), type(s2t.model).__name__)
print(" ".join(m for m in ("espnet2.tasks.asr", "speechbrain", "scipy.optimize") if m in sys.modules) or "-")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    decoded, heavy = out.stdout.split("\n")[:2]
    assert decoded == "1 DiffusionASRModel"
    assert heavy == "-"


def test_the_builders_espnet_names_are_espnets_own_classes():
    """builder.ESPNET_CLASSES (imported by path, without ESPnet's task) must name the class
    ESPnet's ASR task registers under that name, and the task's choices use diffasr's."""
    from espnet2.tasks import asr as espnet_asr

    from diffasr.espnet2 import builder, task

    for kind, names in builder.ESPNET_CLASSES.items():
        for name in names:
            assert builder.class_of(kind, name) is getattr(espnet_asr, f"{kind}_choices").get_class(name), (kind, name)
    for kind, names in builder.DIFFASR_CLASSES.items():
        for name in names:
            assert getattr(task, f"{kind}_choices").get_class(name) is builder.class_of(kind, name)
    with pytest.raises(ValueError, match="spk_conditioner must be one of"):
        builder.class_of("spk_conditioner", "xvector")


def _presence_inputs(corpus, tmp_path, present):
    """Window embeddings in which the utterances ``present`` hold their own enrollment's
    voice (cosine 1) and the others only voices unlike it, and a gate at cosine 0.5."""
    from diffasr.speaker.presence import PresenceGate, write_window_shape

    enroll = dict(kaldiio.load_scp(str(corpus / "enroll_embed.scp")))
    rng = np.random.default_rng(1)
    windows = {}
    for utt, embed in enroll.items():
        unit = embed / np.linalg.norm(embed)
        others = rng.standard_normal((3, EMBED_DIM))
        others -= np.outer(others @ unit, unit)  # orthogonal to the enrollment: cosine 0
        others /= np.linalg.norm(others, axis=1, keepdims=True)
        windows[utt] = np.vstack([others, unit[None]] if utt in present else [others]).astype(np.float32)
    data = tmp_path / "windows"
    data.mkdir()
    kaldiio.save_ark(str(data / "window_embed.ark"), windows, scp=str(data / "window_embed.scp"))
    write_window_shape(data, 1.5, 0.5)
    PresenceGate(threshold=0.5).save(tmp_path / "presence.yaml")
    hyps = {line.split()[0]: " ".join(reversed(line.split()[1:]))
            for line in (corpus / "text").read_text().splitlines()}
    (tmp_path / "hyp").write_text("".join(f"{u} {t}\n" for u, t in hyps.items()))
    return hyps, ["--presence_gate", str(tmp_path / "presence.yaml"), "--window_embed", str(data / "window_embed.scp"),
                  "--decode_mode", "deliberation", "--deliberation_hyp", str(tmp_path / "hyp"), "--mask_ratio", "0",
                  "--canvas_decode_margin", "0"]


@pytest.mark.parametrize("batch_size", ["1", "3"])
def test_the_presence_gate_empties_the_utterances_whose_voice_it_does_not_find(corpus, diffusion_exp, tmp_path,
                                                                              batch_size):
    utts = sorted(line.split()[0] for line in (corpus / "wav.scp").read_text().splitlines())
    present = set(utts[::2])
    hyps, gate = _presence_inputs(corpus, tmp_path, present)
    # deliberation with nothing masked returns its input: the decoded utterances keep their words
    out = _decode(corpus, diffusion_exp, tmp_path / "out", *gate, "--batch_size", batch_size)
    assert out == {u: (hyps[u] if u in present else "") for u in utts}
    flags = dict(line.split()[::2] for line in (tmp_path / "out/presence").read_text().splitlines())
    assert flags == {u: str(int(u in present)) for u in utts}


def test_the_presence_gate_reads_the_enrollment_the_decode_uses(corpus, diffusion_exp, tmp_path):
    utts = sorted(line.split()[0] for line in (corpus / "wav.scp").read_text().splitlines())
    hyps, gate = _presence_inputs(corpus, tmp_path, set(utts))  # every voice is its own enrollment's
    assert _decode(corpus, diffusion_exp, tmp_path / "own", *gate) == hyps
    # another speaker's enrollment is in none of the mixtures: nothing is decoded
    rotated = _decode(corpus, diffusion_exp, tmp_path / "rotated", *gate, "--enrollment_override", "rotate",
                      "--utt2spk", str(corpus / "utt2spk"))
    assert rotated == {u: "" for u in utts}


def test_the_presence_gate_needs_its_window_embeddings_and_the_enrollment_embedding(corpus, diffusion_exp, tmp_path):
    _, gate = _presence_inputs(corpus, tmp_path, set())
    with pytest.raises(ValueError, match="go together"):
        _decode(corpus, diffusion_exp, tmp_path / "a", *gate[:2])
    with pytest.raises(ValueError, match="enroll_embed.scp,enroll_embed,kaldi_ark"):
        asr_inference.main(["--output_dir", str(tmp_path / "b"), "--asr_train_config", str(diffusion_exp / "config.yaml"),
                            "--asr_model_file", str(diffusion_exp / "1epoch.pth"),
                            "--data_path_and_name_and_type", f"{corpus}/wav.scp,speech,sound", *gate])
