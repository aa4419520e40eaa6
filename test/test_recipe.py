"""Recipe smoke test: egs/librimix_target/asr1 stages 1-7 at the tiny scale, as a user runs them."""

import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from diffasr.datadir import read_kv, validate_data_dir

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librimix_target" / "asr1"
TINY = [
    "--local_data_opts", "--scale tiny",
    "--spk_config", "conf/spk/ecapa_aam_tiny.yaml",
    "--asr_configs", "conf/tuning/train_diffusion_conformer_tiny.yaml conf/tuning/train_ar_conformer_tiny.yaml",
    "--inference_configs", "conf/decode/decode_diffusion_8step.yaml conf/decode/decode_ar_beam1.yaml",
]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A scratch copy of the recipe (links to its scripts and configs), so runs never touch the repo."""
    work = tmp_path_factory.mktemp("librimix_target")
    for name in ("run.sh", "asr.sh", "path.sh", "cmd.sh", "db.sh", "utils", "conf", "local"):
        (work / name).symlink_to(RECIPE / name)
    return work


def run_recipe(recipe, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("LIBRISPEECH", "LIBRIMIX", "NOISE_ROOT")}
    out = subprocess.run(["./run.sh", *args, *TINY], cwd=recipe, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def digest(directory: Path):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def test_stages_1_to_2_build_valid_data_and_token_list(recipe):
    log = run_recipe(recipe, "--stage", "1", "--stop-stage", "2")
    assert "Stage 2 done" in log
    for dset in ("train", "dev", "test", "test_clean"):
        validate_data_dir(recipe / "data" / dset, require=("wav.scp", "text", "utt2spk", "enroll.scp"))
    tokens = (recipe / "data/token_list/bpe_unigram100/tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-2:] == ["<mask>", "<sos/eos>"]
    # Rerunning gives the same files and never duplicates lines.
    before = digest(recipe / "data" / "train")
    run_recipe(recipe, "--stage", "1", "--stop-stage", "2")
    assert digest(recipe / "data" / "train") == before


def test_stages_3_to_4_train_speaker_encoder_and_write_embeddings(recipe):
    run_recipe(recipe, "--stage", "3", "--stop-stage", "4")
    assert "EER" in (recipe / "exp/spk_ecapa_aam_tiny/RESULTS.md").read_text()
    for dset in ("train", "test"):
        scp = recipe / "data" / dset / "enroll_embed.scp"
        embeds = dict(kaldiio.load_scp(str(scp)))
        assert set(embeds) == set(read_kv(recipe / "data" / dset / "wav.scp"))
        assert {np.asarray(v).shape for v in embeds.values()} == {(192,)}


def test_stages_5_to_8_train_decode_score_and_pack(recipe):
    run_recipe(recipe, "--stage", "5", "--stop-stage", "8")
    results = (recipe / "exp" / "RESULTS.md").read_text()
    for exp, decode in (("asr_diffusion_conformer_tiny", "diffusion_8step"), ("asr_ar_conformer_tiny", "ar_beam1")):
        for dset in ("test", "test_clean"):
            assert f"| {exp} | {decode} | {dset} |" in results
            decode_dir = recipe / "exp" / exp / f"decode_{decode}" / dset
            metrics = json.loads((decode_dir / "metrics.json").read_text())
            assert metrics["n_utt"] == len(read_kv(recipe / "data" / dset / "wav.scp"))
            assert metrics["rtfx"] > 0
            assert "Sum/Avg" in (decode_dir / "score_wer" / "result.txt").read_text()
    packed = recipe / "exp/asr_diffusion_conformer_tiny/packed/asr_diffusion_conformer_tiny.zip"
    with zipfile.ZipFile(packed) as z:
        names = z.namelist()
    assert "data/token_list/bpe_unigram100/bpe.model" in names and "exp/spk_ecapa_aam_tiny/model.pt" in names
    # Every experiment dir records the command that made it.
    assert "asr.sh" in (recipe / "exp/asr_diffusion_conformer_tiny/run.sh").read_text()
