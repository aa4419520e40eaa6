"""utils/launch.py --backend slurm against a real one-node Slurm cluster (slurm-wlm).

Each `JOB=1:N` step is one `sbatch --wait --array=1-N`; a failed or cancelled task fails
the step and names its log; a rerun completes.  The tiny recipe's decoding under this
backend is compared with the local backend's in test_recipe.py.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "utils" / "launch.py"

pytestmark = pytest.mark.integration  # make test-full (pytest.ini)


def launch(cwd, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAUNCH), "--backend", "slurm", *args], cwd=cwd,
                          capture_output=True, text=True, **kwargs)


def test_each_array_task_runs_with_its_index_under_slurm(slurm_cluster, tmp_path):
    out = launch(tmp_path, "JOB=1:3", "log/task.JOB.log", 'echo "task JOB of array $SLURM_ARRAY_JOB_ID"')
    assert out.returncode == 0, out.stderr
    for i in (1, 2, 3):
        lines = (tmp_path / f"log/task.{i}.log").read_text().splitlines()
        assert lines[0] == f'# echo "task {i} of array $SLURM_ARRAY_JOB_ID"'
        assert lines[2].startswith(f"task {i} of array ") and lines[2].split()[-1].isdigit()
        assert lines[-1].startswith("# Ended (code 0)")


def test_a_failing_task_fails_the_step_and_names_its_log(slurm_cluster, tmp_path):
    out = launch(tmp_path, "JOB=1:3", "log/task.JOB.log", "exit $((JOB == 2))")
    assert out.returncode == 1
    assert "launch.py: 1 of 3 jobs failed; see log/task.2.log" in out.stderr
    assert (tmp_path / "log/task.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")


def test_scancel_fails_the_step_and_a_rerun_completes(slurm_cluster, tmp_path):
    step = subprocess.Popen([sys.executable, str(LAUNCH), "--backend", "slurm", "JOB=1:2", "log/task.JOB.log",
                             "sleep 120; echo done JOB"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not subprocess.run(["squeue", "-h", "-t", "R", "-n", "diffasr"], capture_output=True,
                             text=True).stdout.strip():
        assert time.monotonic() < deadline, "the array never started"
        time.sleep(0.5)
    subprocess.run(["scancel", "-n", "diffasr"], check=True)
    _, err = step.communicate(timeout=60)
    assert step.returncode == 1
    assert "launch.py: 2 of 2 jobs failed; see log/task.1.log, log/task.2.log" in err
    rerun = launch(tmp_path, "JOB=1:2", "log/task.JOB.log", "echo done JOB")
    assert rerun.returncode == 0, rerun.stderr
    assert "done 2" in (tmp_path / "log/task.2.log").read_text()
