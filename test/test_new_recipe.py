"""A corpus recipe made from nothing, as README's "Adding a corpus" tells a user to.

egs/TEMPLATE/asr1/setup.sh makes egs/mycorpus/asr1 (in a scratch copy of the
repository's top level); the test then adds what a user adds, step by step: run.sh, a
minimal local/data.sh (espeak-ng utterances into Kaldi data dirs) and conf/ (one
training and one decode config copied from egs/librispeech/asr1), and runs stages 1-7
at the tiny scale to a RESULTS.md.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRISPEECH_CONF = ROOT / "egs" / "librispeech" / "asr1" / "conf"
TRAIN_CONFIG = "conf/tuning/train_diffusion_whisper.yaml"  # at the CI size: --overlay conf/tiny.yaml
DECODE_CONFIG = "conf/decode/decode_diffusion_8step.yaml"

RUN_SH = f"""#!/usr/bin/env bash
# My corpus: plain single-speaker ASR with the template's stages.
set -euo pipefail
./asr.sh --use_speaker false --train_set train --valid_set dev --test_sets test --nbpe 40 \\
  --asr_configs {TRAIN_CONFIG} --overlay conf/tiny.yaml --inference_configs {DECODE_CONFIG} \\
  --inference_model valid.loss.ave.pth --calibrate false "$@"
"""

SENTENCES = {
    "train": ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "RED SKY AT NIGHT", "WE MET AT NOON",
              "OPEN THE DOOR PLEASE", "THE RIVER IS COLD", "BIRDS SING IN SPRING", "SHE READ A BOOK"],
    "dev": ["THE SUN IS WARM", "HE TOOK THE BUS"],
    "test": ["THE DOG SAT IN THE PARK", "SHE MET A CAT AT NOON"],
}
VOICES = {"spka": "en-us", "spkb": "en-gb"}

# The user's local/data.sh: synthesize every sentence with both voices and write
# wav.scp, text, utt2spk and spk2utt (utterance ids start with the speaker id).
DATA_SH = """#!/usr/bin/env bash
set -euo pipefail
. ./path.sh
while read -r dset spk voice index text; do
  dir=data/${dset}; mkdir -p "${dir}/wav"
  utt=${spk}-${dset}-${index}
  espeak-ng -v "${voice}" -w "${dir}/wav/${utt}.22k.wav" "${text}"
  sox "${dir}/wav/${utt}.22k.wav" -r 16000 -c 1 -b 16 "${dir}/wav/${utt}.wav" && rm "${dir}/wav/${utt}.22k.wav"
  echo "${utt} $(pwd)/${dir}/wav/${utt}.wav" >>"${dir}/wav.scp.unsorted"
  echo "${utt} ${text}" >>"${dir}/text.unsorted"
  echo "${utt} ${spk}" >>"${dir}/utt2spk.unsorted"
done <local/sentences.txt
for dir in data/train data/dev data/test; do
  for f in wav.scp text utt2spk; do sort "${dir}/${f}.unsorted" >"${dir}/${f}"; rm "${dir}/${f}.unsorted"; done
  python utils/utt2spk_to_spk2utt.py "${dir}"
done
"""


@pytest.fixture(scope="module")
def top(tmp_path_factory):
    """A scratch top level (links to the package, tools and utilities) so egs/ here is writable."""
    top = tmp_path_factory.mktemp("repo")
    for name in ("diffasr", "tools", "utils"):
        (top / name).symlink_to(ROOT / name)
    (top / "egs").mkdir()
    return top


def _run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LIBRISPEECH", "LIBRIMIX", "NOISE_ROOT")}
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True)


def test_setup_sh_plus_local_and_conf_is_a_working_recipe(top):
    recipe = top / "egs" / "mycorpus" / "asr1"
    made = subprocess.run([str(ROOT / "egs/TEMPLATE/asr1/setup.sh"), str(recipe)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in recipe.iterdir()) == ["asr.sh", "cmd.sh", "conf", "db.sh", "local", "path.sh",
                                                        "utils"]
    assert (recipe / "asr.sh").resolve() == ROOT / "egs/TEMPLATE/asr1/asr.sh"
    # The decode configs and the CI-size overlay are the template's, shared by every recipe.
    assert (recipe / DECODE_CONFIG).resolve() == ROOT / "egs/TEMPLATE/asr1" / DECODE_CONFIG
    assert (recipe / "conf/tiny.yaml").resolve() == ROOT / "egs/TEMPLATE/asr1/conf/tiny.yaml"
    # Step 1, run.sh. With nothing else, the stage script lists everything the recipe lacks.
    (recipe / "run.sh").write_text(RUN_SH)
    (recipe / "run.sh").chmod(0o755)
    out = _run(recipe, "--stage", "1", "--stop-stage", "7")
    assert out.returncode != 0
    for lacking in ("local/data.sh (executable; stage 1", f"{TRAIN_CONFIG} (a training config",
                    "README: Adding a corpus"):
        assert lacking in out.stderr, out.stderr
    assert not (recipe / "data").exists()

    # Step 2, local/data.sh. A first version that forgets a test utterance's speaker is
    # stopped right after stage 1, with the file and line, before anything trains.
    lines = [f"{dset} {spk} {voice} {i:02d} {text}" for dset, texts in SENTENCES.items()
             for spk, voice in VOICES.items() for i, text in enumerate(texts)]
    (recipe / "local/sentences.txt").write_text("\n".join(lines) + "\n")
    broken = DATA_SH.replace('done <local/sentences.txt', 'done <local/sentences.txt\n'
                             'sed -i "/^spkb-test-01 /d" data/test/utt2spk.unsorted')
    (recipe / "local/data.sh").write_text(broken)
    (recipe / "local/data.sh").chmod(0o755)
    shutil.copytree(LIBRISPEECH_CONF / "tuning", recipe / "conf/tuning")
    # conf/decode and conf/tiny.yaml are the template's, linked by setup.sh
    out = _run(recipe, "--stage", "1", "--stop-stage", "7")
    assert out.returncode != 0
    assert ("data/test/utt2spk: no line for utterance 'spkb-test-01' of data/test/wav.scp:4"
            in out.stdout + out.stderr)
    assert "Stage 2" not in out.stdout + out.stderr and not (recipe / "exp").exists()

    # Step 3, the fixed local/data.sh: stages 1-7 run to a RESULTS.md.
    (recipe / "local/data.sh").write_text(DATA_SH)
    shutil.rmtree(recipe / "data")
    out = _run(recipe, "--stage", "1", "--stop-stage", "7")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "Stage 3" not in log and "Stage 4" not in log  # --use_speaker false
    results = (recipe / "exp/RESULTS.md").read_text()
    n_words = sum(len(t.split()) for t in SENTENCES["test"]) * len(VOICES)
    assert f"| asr_diffusion_whisper_tiny | diffusion_8step | test | {2 * len(VOICES)} | {n_words} |" in results
    hyps = (recipe / "exp/asr_diffusion_whisper_tiny/decode_diffusion_8step/test/text").read_text().splitlines()
    assert sorted(line.split(" ", 1)[0] for line in hyps) == sorted(
        f"{spk}-test-{i:02d}" for spk in VOICES for i in range(len(SENTENCES["test"])))

    # A rerun of stage 5 with the same inputs resumes the finished experiment; with a
    # changed transcript it says so, moves the old experiment aside and trains again.
    exp = recipe / "exp/asr_diffusion_whisper_tiny"
    out = _run(recipe, "--stage", "5", "--stop-stage", "5")
    assert out.returncode == 0 and "other inputs" not in out.stdout + out.stderr
    text = recipe / "data/train/text"
    text.write_text(text.read_text().replace("THE CAT SAT ON THE MAT", "THE CAT SAT ON THE HAT"))
    out = _run(recipe, "--stage", "5", "--stop-stage", "5")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "was trained on other inputs (changed: data/train/text)" in log
    assert "was collected from other inputs (changed: data/train/text)" in log
    stale = list((recipe / "exp/stale").glob("asr_diffusion_whisper_tiny.*"))
    assert len(stale) == 1 and (stale[0] / "valid.loss.ave.pth").exists()
    recorded = json.loads((exp / "inputs.json").read_text())["inputs"]
    assert recorded["data/train/text"] == hashlib.sha256(text.read_bytes()).hexdigest()
    assert "| asr_diffusion_whisper_tiny |" in (recipe / "exp/RESULTS.md").read_text()  # earlier results kept
