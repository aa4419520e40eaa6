"""Recipe smoke test: egs/librimix_target/asr1 stages 1-7 at the tiny scale, as a user runs them."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import yaml

from diffasr.datadir import read_kv, validate_data_dir
from librispeech_fixture import ALL_SUBSETS, make_librispeech

pytestmark = pytest.mark.integration  # make test-full (pytest.ini)

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librimix_target" / "asr1"
TINY = [
    "--local_data_opts", "--scale tiny",
    "--overlay", "conf/tiny.yaml",  # every config at the CI size, each exp dir with _tiny
    "--spk_config", "conf/spk/ecapa_aam.yaml",
    # The AR baseline first: a diffusion config deliberates its output.
    "--asr_configs", "conf/tuning/train_ar_whisper.yaml conf/tuning/train_diffusion_whisper.yaml",
    "--ar_exp", "exp/asr_ar_whisper_tiny",
    "--inference_configs", "",  # every decode config (run.sh's default is a subset)
    "--teacher_phase_args", "",  # phase 1 at the tiny config's own epochs (run.sh's are the demo's)
]
# The nospk ablation, as run.sh --with_ablation adds it: a variant of the diffusion config
# (conf/variants.txt), trained, decoded and scored after the configs.
ABLATION = ["--asr_variants", "diffusion_whisper_nospk"]
CONFORMER = ["--asr_configs", "conf/tuning/train_ar_conformer.yaml conf/tuning/train_diffusion_conformer.yaml",
             "--ar_exp", "exp/asr_ar_conformer_tiny"]
DECODE_CONFIGS = sorted(p.stem for p in (RECIPE / "conf/decode").glob("decode_*.yaml"))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A scratch copy of the recipe (links to its scripts and configs), so runs never touch the repo."""
    work = tmp_path_factory.mktemp("librimix_target")
    for name in ("run.sh", "asr.sh", "path.sh", "cmd.sh", "db.sh", "utils", "local"):
        (work / name).symlink_to(RECIPE / name)
    shutil.copytree(RECIPE / "conf", work / "conf")
    return work


def run_recipe_process(recipe, *args, **env_overrides) -> subprocess.CompletedProcess:
    """./run.sh at the tiny scale (later options win), without the real-corpus paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("LIBRISPEECH", "LIBRIMIX", "NOISE_ROOT")}
    return subprocess.run(["./run.sh", *TINY, *args], cwd=recipe, env=dict(env, **env_overrides),
                          capture_output=True, text=True)


def run_recipe(recipe, *args, **env_overrides):
    out = run_recipe_process(recipe, *args, **env_overrides)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def kill_run_when(recipe, ready, *args, timeout: float = 900) -> None:
    """Start ./run.sh and SIGKILL its whole process group once ``ready()`` holds, as a
    scheduler ends a job: asr.sh, the launcher and the stage's Python process at once."""
    env = {k: v for k, v in os.environ.items() if k not in ("LIBRISPEECH", "LIBRIMIX", "NOISE_ROOT")}
    proc = subprocess.Popen(["./run.sh", *TINY, *args], cwd=recipe, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the run ended (code {proc.returncode}) before the kill point"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# What each group of stages leaves, as the tests in file order leave it.
DONE_WHEN = {2: "data/token_list/bpe_unigram100/tokens.txt", 4: "data/test/enroll_embed.scp",
             8: "exp/asr_diffusion_whisper_tiny/packed/asr_diffusion_whisper_tiny.zip"}


def through_stage(recipe, last: int):
    """The recipe with stages 1..last done: run here (without kills) unless an earlier test
    already left them, so that any one test runs alone (``pytest -k``)."""
    if not (recipe / DONE_WHEN[last]).is_file():
        run_recipe(recipe, "--stage", "1", "--stop-stage", str(last), "--test_sets", "test")
    return recipe


def digest(directory: Path):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def test_stages_1_to_2_build_valid_data_and_token_list(recipe):
    # Killed while stage 1 synthesizes the voices; the rerun completes from there.
    pool = recipe / "downloads/embedded/wav"
    kill_run_when(recipe, lambda: pool.is_dir() and sum(1 for _ in pool.rglob("*.wav")) >= 12,
                  "--stage", "1", "--stop-stage", "2")
    assert not (recipe / "data/train/wav.scp").exists()  # nothing half-written in its place
    log = run_recipe(recipe, "--stage", "1", "--stop-stage", "2")
    assert "Stage 2 done" in log
    for dset in ("train", "dev", "test", "test_clean"):
        validate_data_dir(recipe / "data" / dset, require=("wav.scp", "text", "utt2spk", "enroll.scp"))
    tokens = (recipe / "data/token_list/bpe_unigram100/tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-2:] == ["<mask>", "<sos/eos>"]
    # No audio file was left truncated by the kill: every source lasts what utt2dur says.
    for dset in ("sources_train", "sources_dev", "sources_test"):
        durations = read_kv(recipe / "data" / dset / "utt2dur")
        for utt, path in read_kv(recipe / "data" / dset / "wav.scp").items():
            assert abs(soundfile.info(path).duration - float(durations[utt])) < 1e-3, (dset, utt)
    # Stage 2 records what its token lists were learnt from.
    record = json.loads((recipe / "data/token_list/bpe_unigram100/inputs.json").read_text())
    assert record["inputs"] == {"data/train/text": hashlib.sha256((recipe / "data/train/text").read_bytes()).hexdigest()}
    whisper_tokens = (recipe / "data/token_list/whisper_en/tokens.txt").read_text().splitlines()
    assert len(whisper_tokens) == 51865 and whisper_tokens[50256] == "<|endoftext|>" and whisper_tokens[-1] == "<mask>"
    # Rerunning gives the same files and never duplicates lines.
    before = digest(recipe / "data" / "train")
    run_recipe(recipe, "--stage", "1", "--stop-stage", "2")
    assert digest(recipe / "data" / "train") == before


def test_stages_3_to_4_train_speaker_encoder_and_write_embeddings(recipe):
    through_stage(recipe, 2)
    spk_exp = recipe / "exp/spk_ecapa_aam_tiny"
    # Killed after the first of its 2 epochs: the rerun resumes at the second.
    kill_run_when(recipe, lambda: any((spk_exp / "checkpoints").glob("CKPT*/COMPLETE")),
                  "--stage", "3", "--stop-stage", "3")
    assert not (spk_exp / "model.pt").exists()
    run_recipe(recipe, "--stage", "3", "--stop-stage", "3")
    assert "resumed from" in (spk_exp / "train.log").read_text()
    spk_inputs = json.loads((spk_exp / "inputs.json").read_text())["inputs"]
    assert set(spk_inputs) == {"dump/configs/overlay/ecapa_aam_tiny.yaml", "data/sources_train/wav.scp", "data/sources_train/utt2spk",
                               "data/sources_dev/wav.scp", "data/sources_dev/utt2spk"}
    # Killed once the first set's embeddings are written; the rerun writes every set whole.
    kill_run_when(recipe, lambda: (spk_exp / "embed/train/enroll_embed.scp").is_file(),
                  "--stage", "4", "--stop-stage", "4")
    run_recipe(recipe, "--stage", "4", "--stop-stage", "4")
    assert "EER" in (recipe / "exp/spk_ecapa_aam_tiny/RESULTS.md").read_text()
    for dset in ("train", "test"):
        scp = recipe / "data" / dset / "enroll_embed.scp"
        keys = [line.split()[0] for line in scp.read_text().splitlines()]
        assert len(keys) == len(set(keys))  # no line twice
        embeds = dict(kaldiio.load_scp(str(scp)))
        assert set(embeds) == set(read_kv(recipe / "data" / dset / "wav.scp"))
        assert {np.asarray(v).shape for v in embeds.values()} == {(192,)}
        record = json.loads((recipe / "exp/spk_ecapa_aam_tiny/embed" / dset / "inputs.json").read_text())["inputs"]
        assert record["exp/spk_ecapa_aam_tiny/model.pt"] == hashlib.sha256(
            (recipe / "exp/spk_ecapa_aam_tiny/model.pt").read_bytes()).hexdigest()


def test_stages_5_to_8_train_decode_score_and_pack(recipe):
    through_stage(recipe, 4)
    # The first system's training is killed mid-way through its 2nd epoch; the same
    # command resumes it from the last checkpoint and finishes.
    ar_exp = recipe / "exp/asr_ar_whisper_tiny"
    kill_run_when(recipe, lambda: (ar_exp / "1epoch.pth").is_file(), "--stage", "5", "--stop-stage", "8",
                  "--test_sets", "test")
    assert not (ar_exp / "2epoch.pth").exists() and not (ar_exp / "valid.loss.ave.pth").exists()
    # Every decode config on test (and dev, for calibration); a second test set is the
    # LibriSpeech recipe test's (test_clean and test_other).
    log = run_recipe(recipe, "--stage", "5", "--stop-stage", "8", "--test_sets", "test")
    # The variant alone (no --asr_configs), decoded with the one config its rows are read for.
    variant_log = run_recipe(recipe, "--stage", "5", "--stop-stage", "7", "--test_sets", "test", "--asr_configs", "",
                             *ABLATION, "--inference_configs", "conf/decode/decode_diffusion_8step.yaml")
    train_log = (ar_exp / "train.log").read_text()
    assert f"The training was resumed using {ar_exp.relative_to(recipe)}/checkpoint.pth" in train_log
    assert "1epoch results" not in train_log and "2epoch results" in train_log
    assert (ar_exp / "2epoch.pth").is_file() and (ar_exp / "valid.loss.ave_2best.pth").is_file()
    results = (recipe / "exp" / "RESULTS.md").read_text()
    # The whisper systems trained on one cache of the frozen encoder, written once.
    caches = sorted((recipe / "dump/encoder_cache").iterdir())
    assert len(caches) == 1 and {p.name for p in caches[0].iterdir()} == {"train", "dev"}
    meta = json.loads((caches[0] / "train/meta.json").read_text())
    assert meta["num_utterances"] == len(read_kv(recipe / "data/train/wav.scp"))
    # the 2nd config and the variant reuse both sets
    assert log.count("cache up to date") >= 2 and variant_log.count("cache up to date") >= 2
    # Every decode config of each model type, on both test sets.
    systems = [("asr_ar_whisper_tiny" if name.startswith("decode_ar_") else "asr_diffusion_whisper_tiny",
                name[len("decode_"):]) for name in DECODE_CONFIGS if not name.startswith("decode_maskctc")]
    systems += [("asr_diffusion_whisper_nospk_tiny", "diffusion_8step")]
    # The variant trained its config with its overrides (ESPnet saves what it trained).
    trained = yaml.safe_load((recipe / "exp/asr_diffusion_whisper_nospk_tiny/config.yaml").read_text())
    assert trained["encoder_conf"]["enrollment"] == "none" and trained["encoder_conf"]["adapter_size"] == 64
    # Stage 6 decoded each system with exactly the decode configs of its model type (Mask-CTC's
    # fit neither), and run.sh's --rotate_configs (AR beam 1, diffusion 8 steps) again with a
    # rotated and a swapped enrollment; stage 7 scored every one of those decodes of test.
    from diffasr.scoring.results import collect_metrics

    main = ("asr_ar_whisper_tiny", "asr_diffusion_whisper_tiny")
    scored = {(row.exp, row.decode) for row in collect_metrics(recipe / "exp")
              if row.test_set == "test" and row.exp in main}
    again = {(exp, f"{decode}_{how}") for exp, decode in zip(main, ("ar_beam1", "diffusion_8step"))
             for how in ("rotate", "swap")}
    assert scored == {(exp, decode) for exp, decode in systems if exp in main} | again
    for exp, decode in systems:
        for dset in ("test",):
            assert f"| {exp} | {decode} | {dset} |" in results
            decode_dir = recipe / "exp" / exp / f"decode_{decode}" / dset
            metrics = json.loads((decode_dir / "metrics.json").read_text())
            assert metrics["n_utt"] == len(read_kv(recipe / "data" / dset / "wav.scp"))
            assert metrics["rtfx"] > 0
            assert "Sum/Avg" in (decode_dir / "score_wer" / "result.txt").read_text()
            # dev was decoded too, and stage 7 calibrated on it (or says why it could not)
            assert (recipe / "exp" / exp / f"decode_{decode}" / "dev" / "text").is_file()
            # every hypothesis word was rated, and stage 7 calibrated on dev (or said why it could not)
            uncertainty = metrics["uncertainty"]
            hyp_words = sum(len(line.split()) - 1 for line in (decode_dir / "text").read_text().splitlines())
            assert uncertainty["n_words"] == hyp_words
            assert ("temperature" in uncertainty and "calibrated" in uncertainty) or uncertainty["calibration_error"]
            if "delib" in decode:
                assert (decode_dir / "remasked").is_file()
            # Stage 6 records the model, config and data each decode read.
            record = json.loads((decode_dir / "inputs.json").read_text())["inputs"]
            models = [name for name in record if name.endswith(".pth")]  # run.sh's --inference_model
            assert len(models) == 1 and models[0].startswith(f"exp/{exp}/valid.loss.ave")
            assert record[models[0]] == hashlib.sha256((recipe / models[0]).read_bytes()).hexdigest()
            assert {f"exp/{exp}/config.yaml", "data/test/wav.scp"} <= set(record)
    # run.sh's --rotate_configs: its AR and diffusion decodes of test again, with another test
    # speaker's enrollment, scored beside the real one's.
    for exp, decode in (("asr_ar_whisper_tiny", "ar_beam1"), ("asr_diffusion_whisper_tiny", "diffusion_8step")):
        assert f"| {exp} | {decode}_rotate | test |" in results
        rotated, real = (recipe / "exp" / exp / d / "test" for d in (f"decode_{decode}_rotate", f"decode_{decode}"))
        assert "--enrollment_override rotate" in (rotated / "logdir/asr_inference.1.log").read_text()
        assert "--enrollment_override" not in (real / "logdir/asr_inference.1.log").read_text()
        assert not (recipe / "exp" / exp / f"decode_{decode}_rotate" / "dev").exists()
    # run.sh's --swap_sets: the same decodes of test with each mixture's other talker's enrollment,
    # and Follows other (the share that gave that talker's words) in RESULTS.md
    assert "Follows other (%)" in results
    for exp, decode in (("asr_ar_whisper_tiny", "ar_beam1"), ("asr_diffusion_whisper_tiny", "diffusion_8step")):
        swapped = recipe / "exp" / exp / f"decode_{decode}_swap" / "test"
        assert "--enrollment_override swap" in (swapped / "logdir/asr_inference.1.log").read_text()
        assert json.loads((swapped / "metrics.json").read_text())["follows_other"] is not None
    # run.sh's --teacher_phase: phase 1 trained the conditioned encoder alone on the clean-target
    # teacher (no decoder pass), reporting feature follows on dev; both systems started from it
    # and kept the teacher loss.
    # (a rerun resumes phase 1 as finished and rewrites its train.log: its reporter keeps every epoch)
    import torch

    phase1 = torch.load(recipe / "exp/asr_teacher_phase_tiny/checkpoint.pth", map_location="cpu",
                        weights_only=False)["reporter"]["stats"]
    for epoch_stats in phase1.values():
        assert {"feature_follows", "loss_teacher"} <= set(epoch_stats["valid"])
        assert not {"loss_att", "loss_diffusion"} & set(epoch_stats["train"])
    validated = re.compile(r"epoch results: .*\[valid\].*feature_follows=")
    teachers = sorted((recipe / "dump/teacher_cache").iterdir())
    assert len(teachers) == 1 and (teachers[0] / "dev/teacher_others.scp").is_file()
    assert not (teachers[0] / "train/teacher_others.scp").exists()
    for exp in ("asr_ar_whisper_tiny", "asr_diffusion_whisper_tiny"):
        trained = yaml.safe_load((recipe / "exp" / exp / "config.yaml").read_text())
        assert trained["init_param"] == ["exp/asr_teacher_phase_tiny/valid.loss.best.pth:encoder:encoder"]
        log_text = (recipe / "exp" / exp / "train.log").read_text()
        assert "Loading pretrained params from exp/asr_teacher_phase_tiny/valid.loss.best.pth:encoder:encoder" in log_text
        assert validated.search(log_text)
    # the variant alone (no --asr_configs entry to make phase 1 from) starts from Whisper
    assert "no --asr_configs entry has model_conf teacher_weight > 0: no phase 1" in variant_log
    assert not yaml.safe_load((recipe / "exp/asr_diffusion_whisper_nospk_tiny/config.yaml").read_text()).get("init_param")
    packed = recipe / "exp/asr_diffusion_whisper_tiny/packed/asr_diffusion_whisper_tiny.zip"
    with zipfile.ZipFile(packed) as z:
        names = z.namelist()
    assert "exp/spk_ecapa_aam_tiny/model.pt" in names
    # The packed model carries the commit and the hashes of its config and weights.
    with zipfile.ZipFile(packed) as z:
        provenance = json.loads(z.read("exp/asr_diffusion_whisper_tiny/provenance.json"))
    exp = recipe / "exp/asr_diffusion_whisper_tiny"
    head = subprocess.run(["git", "-C", str(RECIPE), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert provenance["git_commit"].removesuffix("-modified") == (head.strip() or "unknown")
    assert provenance["config_sha256"] == hashlib.sha256((exp / "config.yaml").read_bytes()).hexdigest()
    assert provenance["model_sha256"] == hashlib.sha256(
        (exp / provenance["model_file"]).resolve().read_bytes()).hexdigest()
    assert any(n.endswith("config.yaml") and "asr_diffusion_whisper_tiny" in n for n in names)
    # Every experiment dir records the command that made it.
    assert "asr.sh" in (recipe / "exp/asr_diffusion_whisper_tiny/run.sh").read_text()


def test_slurm_backend_decodes_as_the_local_one(recipe, slurm_cluster):
    """DIFFASR_CMD_BACKEND=slurm: stage 6's JOB=1:N steps go through sbatch --array on a
    real one-node cluster, with the same hypotheses and scores as the local backend's."""
    through_stage(recipe, 8)
    slurmctld_log = Path("/var/log/slurm/slurmctld.log")
    # One "done" line per finished array task, whichever of slurm's schedulers started it
    # (the main one logs "Allocate JobId", the backfill one "Started JobId").
    finished_tasks = re.compile(r"_job_complete: JobId=\d+_\d+\(\d+\) done")
    finished = len(finished_tasks.findall(slurmctld_log.read_text()))
    decodes = ("decode_ar_beam1", "decode_diffusion_8step")
    run_recipe(recipe, "--stage", "6", "--stop-stage", "7", "--test_sets", "test", "--calibrate", "false",
               "--rotate_configs", "", "--inference_suffix", "_slurm", "--inference_configs", " ".join(f"conf/decode/{d}.yaml" for d in decodes),
               "--asr_configs", "conf/tuning/train_ar_whisper.yaml conf/tuning/train_diffusion_whisper.yaml",
               DIFFASR_CMD_BACKEND="slurm")
    assert len(finished_tasks.findall(slurmctld_log.read_text())) >= finished + 2 * 2  # 2 steps x 2 tasks
    for exp, decode in (("asr_ar_whisper_tiny", decodes[0]), ("asr_diffusion_whisper_tiny", decodes[1])):
        local, slurm = recipe / "exp" / exp / decode / "test", recipe / "exp" / exp / f"{decode}_slurm" / "test"
        assert (slurm / "text").read_text() == (local / "text").read_text()
        a, b = (json.loads((d / "metrics.json").read_text()) for d in (local, slurm))
        assert (a["wer"], a["cer"], a["n_utt"]) == (b["wer"], b["cer"], b["n_utt"])


def epoch_losses(exp: Path) -> dict:
    """{epoch: (train loss, valid loss)} from the reporter state of ESPnet's checkpoint."""
    import torch

    stats = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["stats"]
    return {epoch: (s["train"]["loss"], s["valid"]["loss"]) for epoch, s in stats.items()}


def test_two_training_processes_match_one(recipe):
    """asr.sh --train_procs 2: ESPnet's trainer under torch.distributed (torchrun, gloo),
    each process taking half of every batch; the per-epoch losses match one process's."""
    through_stage(recipe, 8)
    tuning = recipe / "conf/tuning"
    shutil.copy(tuning / "train_ar_whisper.yaml", tuning / "train_ar_whisper_2procs.yaml")
    # from the same phase-1 encoder as the one-process system (phase 1 itself not trained again)
    run_recipe(recipe, "--stage", "5", "--stop-stage", "5", "--train_procs", "2", "--teacher_phase", "false",
               "--asr_args", "--init_param exp/asr_teacher_phase_tiny/valid.loss.best.pth:encoder:encoder",
               "--asr_configs", "conf/tuning/train_ar_whisper_2procs.yaml")
    two = recipe / "exp/asr_ar_whisper_2procs_tiny"
    log = (two / "train.log").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node 2" in log and "--dist_backend gloo" in log
    assert ":0/2]" in log  # ESPnet's [host:rank/world size] log prefix
    one, both = epoch_losses(recipe / "exp/asr_ar_whisper_tiny"), epoch_losses(two)
    assert sorted(one) == sorted(both) == [1, 2]
    for epoch in one:
        for a, b in zip(one[epoch], both[epoch]):
            assert abs(a - b) <= 0.01 * abs(a), (epoch, one[epoch], both[epoch])


def test_conformer_systems_train_on_audio_and_decode(recipe):
    """The from-scratch conformer systems (SentencePiece tokens, ECAPA FiLM, raw audio)."""
    through_stage(recipe, 4)
    run_recipe(recipe, "--stage", "5", "--stop-stage", "7", *CONFORMER, "--calibrate", "false", "--rotate_configs", "",
               "--inference_configs", "conf/decode/decode_ar_beam10.yaml conf/decode/decode_diffusion_8step.yaml "
                                      "conf/decode/decode_diffusion_delib_ar_guided.yaml")
    results = (recipe / "exp" / "RESULTS.md").read_text()
    for exp, decode in (("asr_ar_conformer_tiny", "ar_beam10"), ("asr_diffusion_conformer_tiny", "diffusion_8step"),
                        ("asr_diffusion_conformer_tiny", "diffusion_delib_ar_guided")):
        assert f"| {exp} | {decode} | test |" in results
    config = (recipe / "exp/asr_diffusion_conformer_tiny/config.yaml").read_text()
    assert "bpe_unigram100" in config and "feats_stats.npz" in config


def test_benchmark_runs_every_system_on_the_tiny_models(recipe):
    through_stage(recipe, 8)
    out = subprocess.run(
        [sys.executable, str(RECIPE.parents[2] / "bench/decode_benchmark.py"),
         "--diffusion_exp", "exp/asr_diffusion_whisper_tiny", "--ar_exp", "exp/asr_ar_whisper_tiny",
         "--max_utts", "3", "--output_dir", "exp/benchmark", "--num_threads", "1"],
        cwd=recipe, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    bench = recipe / "exp/benchmark"
    systems = [line.split(",")[0] for line in (bench / "benchmark.csv").read_text().splitlines()[1:]]
    for name in ("ar_beam1", "ar_beam10", "diffusion_1step", "diffusion_16step", "diffusion_8step_block",
                 "delib_ctc_guided", "delib_ctc_random_same_share", "delib_ar_beam10_guided",
                 "delib_ar_beam10_random_same_share", "whisper_tiny_en"):
        assert name in systems
    assert (bench / "wer_rtfx.png").stat().st_size > 0 and (bench / "time_vs_length.png").stat().st_size > 0
    # The training-step profile of a tiny system, from the recipe's own cache.
    out = subprocess.run(
        [sys.executable, str(RECIPE.parents[2] / "bench/train_step_profile.py"), "--threads", "1",
         "--system", "ar tiny=dump/configs/overlay/train_ar_whisper_tiny.yaml", "--batch_size", "4", "--steps", "2",
         "--warmup", "1", "--output", "exp/train_step_profile"], cwd=recipe, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads((recipe / "exp/train_step_profile/train_step_profile.json").read_text())
    assert set(row["phase_ms"]) == {"forward", "backward", "optimizer"}
    # the phases are the step: their sum is within the step's wall time (profiler overhead aside)
    assert 0.5 * row["step_seconds"] < sum(row["phase_ms"].values()) / 1e3 < 1.5 * row["step_seconds"]
    assert any(o["op"] in ("aten::mm", "aten::addmm", "aten::bmm") for o in row["top_operators"])
    assert "decoder" in row["module_forward_ms"] and "encoder" in row["module_forward_ms"]
    # What dynamic mixing would add per step: the mixtures it timed are the set's first four.
    out = subprocess.run(
        [sys.executable, str(RECIPE.parents[2] / "bench/dynamic_mixing_cost.py"), "--threads", "1",
         "--config", "dump/configs/overlay/train_ar_whisper_tiny.yaml", "--step_overrides", "--model_conf teacher_only=true",
         "--batch_size", "4", "--repeats", "1", "--output_dir", "exp/dynamic_mixing_cost"],
        cwd=recipe, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    cost = json.loads((recipe / "exp/dynamic_mixing_cost/dynamic_mixing_cost.json").read_text())
    durations = read_kv(recipe / "data/train/utt2dur")
    first = sorted(read_kv(recipe / "data/train/wav.scp"))[:4]
    assert cost["mean_mixture_seconds"] == pytest.approx(sum(float(durations[u]) for u in first) / 4, abs=1e-3)
    assert cost["frozen_layers_seconds"] > 0 and cost["teacher_seconds"] > 0 and cost["batch_size"] == 4
    # WER and selection of chosen epochs' checkpoints (AR decode options included).
    out = subprocess.run(
        [sys.executable, str(RECIPE.parents[2] / "bench/wer_per_epoch.py"), "--exp", "exp/asr_ar_whisper_tiny",
         "--decode_config", "conf/decode/decode_ar_beam1.yaml", "--sets", "data/test", "--epochs", "2",
         "--output_dir", "exp/wer_per_epoch"], cwd=recipe, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((recipe / "exp/wer_per_epoch/wer_per_epoch.json").read_text())
    assert [r["epoch"] for r in rows] == [2] and rows[0]["test WER"] is not None and rows[0]["test follows"] is not None


def test_deliberating_a_missing_first_pass_stops_with_a_message(recipe):
    through_stage(recipe, 8)
    (recipe / "conf/decode/decode_diffusion_delib_missing.yaml").write_text(
        "decode_mode: deliberation\ndeliberation_hyp: exp/nowhere/decode_x/{test_set}/text\n")
    out = run_recipe_process(recipe, "--stage", "6", "--stop-stage", "6",
                             "--inference_configs", "conf/decode/decode_diffusion_delib_missing.yaml",
                             "--asr_configs", "conf/tuning/train_diffusion_whisper.yaml")
    assert out.returncode != 0
    assert "exp/nowhere/decode_x/test/text, which does not exist" in out.stdout + out.stderr


def test_stage_6_killed_then_rerun_with_fewer_jobs(recipe):
    through_stage(recipe, 8)
    # Stage 6 is killed while its 2 jobs decode; the rerun, with one job, must neither keep
    # a half-written output nor merge the old second job's.
    args = ["--inference_configs", "conf/decode/decode_ar_beam1.yaml", "--rotate_configs", "",
            "--asr_configs", "conf/tuning/train_ar_whisper.yaml", "--calibrate", "false"]
    decode_dir = recipe / "exp/asr_ar_whisper_tiny/decode_ar_beam1/test"
    (decode_dir / "text").unlink()
    job_log = decode_dir / "logdir/asr_inference.1.log"
    kill_run_when(recipe, lambda: job_log.is_file() and "config file:" in job_log.read_text(),  # loading the model
                  "--stage", "6", "--stop-stage", "6", "--nj", "2", *args)
    assert not (decode_dir / "text").exists()
    run_recipe(recipe, "--stage", "6", "--stop-stage", "6", "--nj", "1", *args)
    assert not (decode_dir / "logdir/output.2").exists()
    lines = (decode_dir / "text").read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(read_kv(recipe / "data/test/wav.scp"))


def test_a_model_without_a_matching_decode_config_stops_stage_6(recipe):
    through_stage(recipe, 8)
    out = run_recipe_process(recipe, "--stage", "6", "--stop-stage", "6",
                             "--inference_configs", "conf/decode/decode_ar_beam1.yaml",
                             "--asr_configs", "conf/tuning/train_diffusion_whisper.yaml")
    assert out.returncode != 0
    assert "no decode config for model type 'diffusion'" in out.stderr
    assert "Stage 6: Decoding" not in out.stdout + out.stderr


def test_stage_6_long_form_option(recipe):
    """--long_form true: the same utterances through silero-vad segments, with words.ctm."""
    through_stage(recipe, 8)
    for config, decode in (("train_diffusion_whisper.yaml", "decode_diffusion_8step"),
                           ("train_ar_whisper.yaml", "decode_ar_beam1")):
        log = run_recipe(recipe, "--stage", "6", "--stop-stage", "6", "--long_form", "true",
                         "--inference_suffix", "_longform", "--inference_configs", f"conf/decode/{decode}.yaml",
                         "--asr_configs", f"conf/tuning/{config}", "--calibrate", "false")
        exp = recipe / "exp" / config.replace("train_", "asr_").replace(".yaml", "_tiny")
        # run.sh rotates its decode configs' enrollments; long form has no rotated enrollment audio
        assert "no rotated-enrollment decodes" in log and not (exp / f"{decode}_longform_rotate").exists()
        decode_dir = exp / f"{decode}_longform/test"
        utts = read_kv(recipe / "data/test/wav.scp")
        assert sorted(read_kv(decode_dir / "text", allow_empty_value=True)) == sorted(utts)
        durations = {k: float(v) for k, v in read_kv(recipe / "data/test/utt2dur").items()}
        timing = read_kv(decode_dir / "timing")
        assert all(abs(float(timing[u].split()[1]) - durations[u]) < 0.01 for u in utts)
        for line in (decode_dir / "words.ctm").read_text().splitlines():
            utt, _, start, duration, word, confidence = line.split()
            assert utt in utts and 0 <= float(start) and float(start) + float(duration) <= durations[utt] + 0.01
            assert word.isupper() or not word.isalpha()
            assert 0 < float(confidence) <= 1


LIBRISPEECH_RECIPE = RECIPE.parents[1] / "librispeech" / "asr1"


def test_librispeech_recipe_on_the_librispeech_layout_fixture(tmp_path):
    """egs/librispeech/asr1 stages 1-7 (speaker stages skipped) on a corpus laid out like LibriSpeech."""
    corpus = make_librispeech(tmp_path / "LibriSpeech", ALL_SUBSETS)
    work = tmp_path / "librispeech"
    work.mkdir()
    for name in ("run.sh", "asr.sh", "path.sh", "cmd.sh", "db.sh", "utils", "local", "conf"):
        (work / name).symlink_to(LIBRISPEECH_RECIPE / name)
    decodes = ("ar_beam10", "diffusion_8step", "diffusion_delib_ar_guided")  # delib revises ar_beam10
    env = {**os.environ, "LIBRISPEECH": str(corpus)}
    out = subprocess.run(
        ["./run.sh", "--stage", "1", "--stop-stage", "7", "--nbpe", "30", "--calibrate", "false",
         "--overlay", "conf/tiny.yaml",
         "--asr_configs", "conf/tuning/train_ar_whisper.yaml conf/tuning/train_diffusion_whisper.yaml",
         "--inference_configs", " ".join(f"conf/decode/decode_{d}.yaml" for d in decodes)],
        cwd=work, env=env, capture_output=True, text=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "Stage 3" not in log and "Stage 4" not in log and not list((work / "exp").glob("spk_*"))
    # run.sh ends with where the time went: one row per stage run, the total their sum.
    rows = [line.split("|")[1:3] for line in (work / "exp/stage_times.md").read_text().splitlines()[2:]]
    seconds = {stage.strip(): int(t) for stage, t in rows}
    assert list(seconds) == ["1", "2", "5", "6", "7", "all"]
    assert seconds.pop("all") == sum(seconds.values()) and seconds["5"] > 0
    # Stage 1 read the real-corpus path: the data dirs point at the corpus's flac files.
    for subset in ALL_SUBSETS:
        wavs = read_kv(work / "data" / subset.replace("-", "_") / "wav.scp")
        assert sorted(wavs.values()) == sorted(str(p.resolve()) for p in (corpus / subset).rglob("*.flac"))
    tokens = (work / "data/token_list/bpe_unigram30/tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-1] == "<sos/eos>" and "▁ALPHA" in tokens
    results = (work / "exp" / "RESULTS.md").read_text()
    for dset in ("test_clean", "test_other"):
        n_utts = len(read_kv(work / "data" / dset / "text"))
        assert n_utts == 3 * len(ALL_SUBSETS[dset.replace("_", "-")])  # 3 utterances a speaker
        for decode in decodes:
            exp = "asr_ar_whisper_tiny" if decode.startswith("ar_") else "asr_diffusion_whisper_tiny"
            assert f"| {exp} | {decode} | {dset} | {n_utts} | {5 * n_utts} |" in results
