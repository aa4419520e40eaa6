"""The recipe utilities: option parsing, the job launcher, data-dir checks, token list."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diffasr.datadir import DataDirError, fix_data_dir, read_kv, validate_data_dir, write_kv, write_spk2utt

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "utils"
PY = sys.executable


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# --- parse_options.sh ---------------------------------------------------------------------------

@pytest.fixture
def option_script(tmp_path):
    script = tmp_path / "demo.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        # Demo of option parsing.
        stage=1          # first stage
        use_gpu=false    # a switch
        local_data_opts= # passed through
        . {UTILS}/parse_options.sh
        echo "stage=$stage use_gpu=$use_gpu opts=[$local_data_opts] rest=$*"
        """))
    return script


def test_parse_options_overrides_defined_variables(option_script):
    out = run(["bash", str(option_script), "--stage", "3", "--use-gpu", "true",
               "--local_data_opts", "--scale tiny", "pos"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stage=3 use_gpu=true opts=[--scale tiny] rest=pos"


def test_parse_options_rejects_unknown_option_and_bad_boolean(option_script):
    out = run(["bash", str(option_script), "--stgae", "3"])
    assert out.returncode != 0 and "invalid option --stgae" in out.stderr
    out = run(["bash", str(option_script), "--use_gpu", "yes"])
    assert out.returncode != 0 and "true or false" in out.stderr


def test_parse_options_help_lists_options_with_their_comments(option_script):
    out = run(["bash", str(option_script), "--help"])
    assert out.returncode == 0
    assert "Demo of option parsing." in out.stdout
    assert "--stage" in out.stdout and "first stage" in out.stdout


# --- launch.py ----------------------------------------------------------------------------------

def test_launcher_runs_array_jobs_with_one_log_each(tmp_path):
    out = run([PY, str(UTILS / "launch.py"), "--max_jobs_run", "2", "JOB=1:3", str(tmp_path / "log.JOB.log"),
               f"echo job JOB > {tmp_path}/out.JOB.txt"])
    assert out.returncode == 0, out.stderr
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}.txt").read_text() == f"job {i}\n"
        assert "(code 0)" in (tmp_path / f"log.{i}.log").read_text()


def test_launcher_reports_failed_jobs(tmp_path):
    out = run([PY, str(UTILS / "launch.py"), "JOB=1:3", str(tmp_path / "log.JOB.log"),
               "bash", "-c", "test JOB -ne 2"])
    assert out.returncode == 1
    assert "1 of 3 jobs failed" in out.stderr and "log.2.log" in out.stderr
    assert "(code 1)" in (tmp_path / "log.2.log").read_text()


def test_launcher_refuses_array_log_without_job_variable(tmp_path):
    out = run([PY, str(UTILS / "launch.py"), "JOB=1:2", str(tmp_path / "log.log"), "true"])
    assert out.returncode != 0 and "must contain JOB" in out.stderr


def fake_sbatch(tmp_path) -> dict:
    """A stand-in sbatch that runs each array task here, as Slurm would, and records its arguments
    (tools/slurm/check_backend.sh runs the same paths on a real cluster)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        echo "$@" > {tmp_path}/sbatch_args
        for a in "$@"; do case $a in --array=*) r=${{a#--array=}};; --output=*) o=${{a#--output=}};; esac; done
        script=${{@: -1}}
        for i in $(seq ${{r%-*}} ${{r#*-}}); do SLURM_ARRAY_TASK_ID=$i bash "$script" > "${{o//%a/$i}}" 2>&1; done
        """))
    (bindir / "sbatch").chmod(0o755)
    return dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")


def test_launcher_slurm_backend_submits_one_array(tmp_path):
    env = fake_sbatch(tmp_path)
    out = run([PY, str(UTILS / "launch.py"), "--backend", "slurm", "--gpu", "1", "JOB=1:2",
               str(tmp_path / "log.JOB.log"), f"echo task JOB > {tmp_path}/out.JOB.txt"], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out.2.txt").read_text() == "task 2\n"
    args = (tmp_path / "sbatch_args").read_text()
    assert "--array=1-2" in args and "--gres=gpu:1" in args and "--wait" in args


def test_launcher_slurm_task_that_exits_is_named_with_its_log(tmp_path):
    # `exit` in the command ends a child shell, so the task's log still gets its end line.
    out = run([PY, str(UTILS / "launch.py"), "--backend", "slurm", "JOB=1:3", str(tmp_path / "log.JOB.log"),
               "exit $((JOB == 2))"], env=fake_sbatch(tmp_path), cwd=tmp_path)
    assert out.returncode == 1
    assert f"1 of 3 jobs failed; see {tmp_path}/log.2.log" in out.stderr
    log = (tmp_path / "log.2.log").read_text().splitlines()
    assert log[0] == "# exit $((2 == 2))" and log[-1].startswith("# Ended (code 1)")


def test_compare_results_ignores_timings_only(tmp_path):
    table = "| exp | decode | test set | #Snt | WER | RTFx |\n|---|---|---|---:|---:|---:|\n| a | d | test | 4 | {} | {} |\n"
    for name, wer, rtfx in (("a", "10.00", "5.1"), ("b", "10.00", "7.3"), ("c", "12.50", "5.1")):
        (tmp_path / f"{name}.md").write_text(table.format(wer, rtfx))
    same = run([PY, str(UTILS / "compare_results.py"), str(tmp_path / "a.md"), str(tmp_path / "b.md")])
    assert same.returncode == 0 and same.stdout == "1 rows identical apart from timings\n"
    other = run([PY, str(UTILS / "compare_results.py"), str(tmp_path / "a.md"), str(tmp_path / "c.md")])
    assert other.returncode == 1
    assert "-a | d | test | 4 | 10.00" in other.stdout and "+a | d | test | 4 | 12.50" in other.stdout


# --- data dirs ----------------------------------------------------------------------------------

def make_dir(tmp_path, utts=("spkA-1", "spkA-2", "spkB-1")):
    d = tmp_path / "data"
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    write_kv(d / "wav.scp", {u: wav for u in utts})
    write_kv(d / "text", {u: "HELLO WORLD" for u in utts})
    write_kv(d / "utt2spk", {u: u.split("-")[0] for u in utts})
    write_spk2utt(d)
    return d


def test_valid_data_dir_passes_and_spk2utt_is_derived(tmp_path):
    d = make_dir(tmp_path)
    assert validate_data_dir(d) == ["spkA-1", "spkA-2", "spkB-1"]
    assert read_kv(d / "spk2utt") == {"spkA": "spkA-1 spkA-2", "spkB": "spkB-1"}


def test_validation_names_file_and_line(tmp_path):
    d = make_dir(tmp_path)
    (d / "text").write_text("spkA-1 HELLO\nspkA-2 HI\nspkA-2 AGAIN\n")
    with pytest.raises(DataDirError, match=r"text:3: duplicate key 'spkA-2'"):
        validate_data_dir(d)
    d = make_dir(tmp_path)
    (d / "utt2spk").write_text("spkB-1 spkB\nspkA-1 spkA\nspkA-2 spkA\n")
    with pytest.raises(DataDirError, match=r"utt2spk:2: not sorted"):
        validate_data_dir(d)
    d = make_dir(tmp_path)
    (d / "wav.scp").write_text(f"spkA-1 {tmp_path}/a.wav\nspkA-2 {tmp_path}/missing.wav\nspkB-1 {tmp_path}/a.wav\n")
    with pytest.raises(DataDirError, match=r"wav.scp:2: audio file of 'spkA-2' does not exist"):
        validate_data_dir(d)


def test_mismatched_ids_are_reported_and_fixed(tmp_path):
    d = make_dir(tmp_path)
    (d / "text").write_text("spkA-1 HELLO\nspkB-1 HI\n")
    with pytest.raises(DataDirError, match=r"/text: no line for utterance 'spkA-2' of .*/wav.scp:2 \(0 extra, 1 missing\)"):
        validate_data_dir(d)
    (tmp_path / "extra").mkdir()
    extra = make_dir(tmp_path / "extra")
    (extra / "utt2spk").write_text("spkA-1 spkA\nspkA-2 spkA\nspkA-3 spkA\nspkB-1 spkB\n")
    with pytest.raises(DataDirError, match=r"/utt2spk:3: utterance 'spkA-3' is not in wav.scp \(1 extra, 0 missing\)"):
        validate_data_dir(extra)
    kept, dropped = fix_data_dir(d)
    assert (kept, dropped) == (2, 1)
    assert validate_data_dir(d) == ["spkA-1", "spkB-1"]
    # Rerunning changes nothing and never duplicates lines.
    before = {f.name: f.read_text() for f in d.iterdir()}
    fix_data_dir(d)
    assert before == {f.name: f.read_text() for f in d.iterdir()}


def test_validate_cli_exit_status(tmp_path):
    d = make_dir(tmp_path)
    assert run([PY, str(UTILS / "validate_data_dir.py"), str(d)]).returncode == 0
    (d / "utt2spk").write_text("spkA-1 spkB\nspkA-2 spkA\nspkB-1 spkB\n")
    out = run([PY, str(UTILS / "validate_data_dir.py"), str(d)])
    assert out.returncode == 1 and "does not start with its speaker id" in out.stderr


def test_split_and_merge_roundtrip(tmp_path):
    d = make_dir(tmp_path, utts=[f"spk{i % 3}-{i}" for i in range(7)])
    out = run([PY, str(UTILS / "split_scp.py"), str(d / "wav.scp"), str(tmp_path / "split"), "3"])
    assert out.returncode == 0, out.stderr
    parts = [read_kv(tmp_path / "split" / f"keys.{i}.scp") for i in (1, 2, 3)]
    assert sum(map(len, parts), 0) == 7 and set().union(*parts) == set(read_kv(d / "wav.scp"))
    for i, part in enumerate(parts, 1):
        write_kv(tmp_path / f"out.{i}" / "text", {u: f"HYP {u}" for u in part})
    out = run([PY, str(UTILS / "merge_decode_outputs.py"), "--output_dir", str(tmp_path / "merged")]
              + [str(tmp_path / f"out.{i}") for i in (1, 2, 3)])
    assert out.returncode == 0, out.stderr
    assert list(read_kv(tmp_path / "merged" / "text")) == sorted(read_kv(d / "wav.scp"))


# --- stage 2 ------------------------------------------------------------------------------------

def test_token_list_has_special_tokens_in_espnet_order(tmp_path):
    from diffasr.bin.make_token_list import make_token_list
    words = "THE LORD SAID UNTO MOSES GO FORTH INTO LAND OF EGYPT WITH ALL THY PEOPLE".split()
    text = tmp_path / "text"
    write_kv(text, {f"u{i:03d}": " ".join(words[i % 7:i % 7 + 6]) for i in range(60)})
    tokens_file = make_token_list(text, tmp_path / "tl", nbpe=30)
    tokens = tokens_file.read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-2:] == ["<mask>", "<sos/eos>"]
    assert len(tokens) == len(set(tokens))
    # Rerunning gives the same list.
    make_token_list(text, tmp_path / "tl", nbpe=30)
    assert tokens_file.read_text().split() == tokens


def test_token_list_rejects_empty_transcript_naming_line(tmp_path):
    from diffasr.bin.make_token_list import make_token_list
    text = tmp_path / "text"
    text.write_text("u1 HELLO\nu2\n")
    with pytest.raises(DataDirError, match=r"text:2: no value for key 'u2'"):
        make_token_list(text, tmp_path / "tl", nbpe=10)
