"""The one-off API and CLI: a tiny model, packed as stage 8 packs it, transcribes its training mixture."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import yaml

from diffasr.api import TargetSpeakerASR
from diffasr.bin import asr_train
from diffasr.data.voices import VOICES, synthesize
from diffasr.speaker.model import build_encoder, load_config

REPO = Path(__file__).resolve().parents[1]
SPK_CONF = REPO / "egs/librimix_target/asr1/conf/spk/ecapa_aam_tiny.yaml"
TARGET_TEXT = "HELLO WORLD"

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (tools/install.sh)")

# A model small enough to memorise one mixture in seconds: no SpecAugment or dropout,
# characters, a fixed canvas.
MEMORISE_CONFIG = {
    "frontend": "default",
    "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40},
    "normalize": "utterance_mvn",
    "encoder": "conformer",
    "encoder_conf": {"output_size": 64, "attention_heads": 2, "linear_units": 128, "num_blocks": 2,
                     "dropout_rate": 0.0, "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0,
                     "input_layer": "conv2d", "normalize_before": True, "macaron_style": True,
                     "rel_pos_type": "latest", "pos_enc_layer_type": "rel_pos",
                     "selfattention_layer_type": "rel_selfattn", "activation_type": "swish",
                     "use_cnn_module": True, "cnn_module_kernel": 7},
    "model": "diffusion",
    "model_conf": {"ctc_weight": 0.3, "canvas": "fixed", "canvas_length": 16, "lsm_weight": 0.0},
    "decoder": "diffusion",
    "decoder_conf": {"attention_heads": 2, "linear_units": 128, "num_blocks": 2, "dropout_rate": 0.0},
    "spk_conditioner": "film",
    "spk_conditioner_conf": {"embed_dim": 192},
    "batch_type": "unsorted",
    "batch_size": 1,
    "max_epoch": 4,
    "num_iters_per_epoch": 75,
    "optim": "adam",
    "optim_conf": {"lr": 0.003},
    "max_audio_seconds": 6.0,
}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(zip, mixture wav, enrollment wav, exp dir): a memorised mixture, packed by espnet2.bin.pack."""
    root = tmp_path_factory.mktemp("api")
    target, interferer = VOICES[0], VOICES[7]
    speech = synthesize(target, TARGET_TEXT)
    other = synthesize(interferer, "NICE DAY")
    mixture = np.zeros(max(len(speech), len(other)), dtype=np.float32)
    mixture[: len(speech)] += speech
    mixture[: len(other)] += 0.3 * other
    soundfile.write(root / "mixture.wav", mixture / max(1.0, np.abs(mixture).max()), 16000)
    soundfile.write(root / "enroll.wav", synthesize(target, "GOOD MORNING"), 16000)

    # Speaker encoder: the tiny ECAPA, untrained (its embedding only has to be consistent).
    spk_dir = root / "exp/spk_tiny"
    spk_dir.mkdir(parents=True)
    shutil.copy(SPK_CONF, spk_dir / "config.yaml")
    import torch
    torch.manual_seed(0)
    encoder = build_encoder(load_config(SPK_CONF))
    torch.save(encoder.state_dict(), spk_dir / "model.pt")
    embed = encoder.eval().embed(soundfile.read(root / "enroll.wav", dtype="float32")[0])

    data = root / "data"
    data.mkdir()
    utt = "spk0-0001"
    (data / "wav.scp").write_text(f"{utt} {root / 'mixture.wav'}\n")
    (data / "text").write_text(f"{utt} {TARGET_TEXT}\n")
    kaldiio.save_ark(str(data / "enroll_embed.ark"), {utt: embed}, scp=str(data / "enroll_embed.scp"))
    tokens = ["<blank>", "<unk>", "<space>"] + sorted(set(TARGET_TEXT) - {" "}) + ["<mask>", "<sos/eos>"]
    (data / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (root / "train.yaml").write_text(yaml.safe_dump(MEMORISE_CONFIG))

    exp = root / "exp/asr_memorise"
    args = ["--config", str(root / "train.yaml"), "--output_dir", str(exp), "--token_list", str(data / "tokens.txt"),
            "--token_type", "char", "--ngpu", "0", "--num_workers", "0", "--use_tensorboard", "false", "--seed", "0"]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text",
                 f"--{split}_data_path_and_name_and_type", f"{data}/enroll_embed.scp,enroll_embed,kaldi_ark",
                 f"--{split}_shape_file", f"{data}/wav.scp"]
    asr_train.main(args)
    zip_path = exp / "packed/asr_memorise.zip"
    subprocess.run([sys.executable, "-m", "espnet2.bin.pack", "asr", "--asr_train_config", str(exp / "config.yaml"),
                    "--asr_model_file", str(exp / "4epoch.pth"), "--option", str(spk_dir / "model.pt"),
                    "--option", str(spk_dir / "config.yaml"), "--outpath", str(zip_path)],
                   check=True, cwd=root, capture_output=True)
    return zip_path, root / "mixture.wav", root / "enroll.wav", exp


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
    asr = TargetSpeakerASR(exp, inference_model="4epoch.pth", steps=4)
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
