import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import torch
import yaml

from tiny_configs import tiny_speaker

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs" / "librimix_target" / "asr1"
SPK_CONF = tiny_speaker(RECIPE / "conf/spk/ecapa_aam.yaml")
TARGET_TEXT = "HELLO WORLD"

# Two cores are shared by everything in CI: keep torch from oversubscribing them.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def slurm_cluster():
    """This machine as a real one-node Slurm cluster (tools/slurm/setup_one_node.sh; the
    install provides slurm-wlm and munge, and CI runs as root), stopped afterwards."""
    setup = [str(REPO / "tools/slurm/setup_one_node.sh")]
    if os.geteuid() != 0:  # it starts system daemons
        setup = ["sudo", "-n"] + setup
    out = subprocess.run(setup, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    yield
    subprocess.run(setup + ["--stop"], capture_output=True)


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


@pytest.fixture(scope="session")
def packed(tmp_path_factory):
    """(zip, mixture wav, enrollment wav, exp dir): a memorised mixture, packed by espnet2.bin.pack."""
    # espeak-ng is part of the install (tools/install.sh): its absence is a broken set-up.
    assert shutil.which("espeak-ng") is not None, "espeak-ng is missing: run tools/install.sh"
    from diffasr.bin import asr_train
    from diffasr.data.voices import VOICES, synthesize
    from diffasr.speaker.model import build_encoder, load_config

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
