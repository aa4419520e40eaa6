#!/usr/bin/env python3
"""Job launcher for recipes (the role of Kaldi/ESPnet's run.pl and slurm.pl).

    utils/launch.py [options] [JOB=1:N] LOG COMMAND...

With `JOB=1:N`, runs N copies of COMMAND with every `JOB` in LOG and COMMAND
replaced by the job index, each writing its own log; without it, one job.
COMMAND is run by bash, so quote pipes and redirections. Exits non-zero, naming
the failed logs, when any job fails. Recipes reach it through cmd.sh:

    ${decode_cmd} JOB=1:4 exp/decode/log/decode.JOB.log python -m ... --split JOB

Backends:
  local  jobs run as subprocesses here, at most --max_jobs_run at a time.
  slurm  one `sbatch --wait --array=1-N` submission; each array task runs the
         command with JOB = its SLURM_ARRAY_TASK_ID. --gpu/--mem/--time/
         --partition map to sbatch options.
Why not run.pl: ESPnet's launchers are Perl scripts vendored per recipe; this
keeps one small Python file with both backends and a tested JOB substitution.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

JOB_RANGE = re.compile(r"^(?P<var>[A-Za-z_][A-Za-z0-9_]*)=(?P<start>\d+):(?P<end>\d+)$")


def parse_args(argv: List[str]) -> Tuple[argparse.Namespace, Optional[Tuple[str, int, int]], str, List[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--max_jobs_run", type=int, default=os.cpu_count() or 1,
                        help="local backend: jobs running at once")
    parser.add_argument("--gpu", type=int, default=0, help="GPUs per job (slurm: --gres=gpu:N)")
    parser.add_argument("--mem", default=None, help="memory per job, e.g. 8G (slurm)")
    parser.add_argument("--time", default=None, help="time limit per job, e.g. 4:00:00 (slurm)")
    parser.add_argument("--partition", default=None, help="slurm partition")
    parser.add_argument("--num_threads", type=int, default=1, help="CPUs per job (slurm --cpus-per-task)")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = list(args.rest)
    job_range = None
    if rest and JOB_RANGE.match(rest[0]):
        m = JOB_RANGE.match(rest.pop(0))
        start, end = int(m["start"]), int(m["end"])
        if end < start:
            parser.error(f"empty job range {m['var']}={start}:{end}")
        job_range = (m["var"], start, end)
    if len(rest) < 2:
        parser.error("need LOG and COMMAND")
    log, command = rest[0], rest[1:]
    if job_range and job_range[0] not in log:
        parser.error(f"with {job_range[0]}={job_range[1]}:{job_range[2]}, the log name must contain "
                     f"{job_range[0]} so that jobs do not share a log: {log}")
    return args, job_range, log, command


def substitute(words: List[str], var: str, index: int) -> List[str]:
    """Replace the job variable as a whole token part, e.g. `split.JOB.scp` -> `split.3.scp`."""
    pattern = re.compile(rf"\b{re.escape(var)}\b")
    return [pattern.sub(str(index), w) for w in words]


def shell_line(command: List[str]) -> str:
    # A single argument is taken as a shell line (pipes, redirections); several are quoted words.
    return command[0] if len(command) == 1 else " ".join(shlex.quote(w) for w in command)


def run_local(log: Path, command: List[str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    line = shell_line(command)
    started = time.time()
    with open(log, "w") as f:
        f.write(f"# {line}\n# Started at {datetime.datetime.now():%c}\n#\n")
        f.flush()
        code = subprocess.call(["bash", "-c", line], stdout=f, stderr=subprocess.STDOUT)
        f.write(f"# Accounting: time={time.time() - started:.0f} threads=1\n")
        f.write(f"# Ended (code {code}) at {datetime.datetime.now():%c}, elapsed time "
                f"{time.time() - started:.0f} seconds\n")
    return code


def launch_local(args, job_range, log: str, command: List[str]) -> List[Path]:
    if job_range is None:
        return [Path(log)] if run_local(Path(log), command) else []
    var, start, end = job_range
    jobs = [(Path(substitute([log], var, i)[0]), substitute(command, var, i)) for i in range(start, end + 1)]
    with ThreadPoolExecutor(max_workers=max(1, args.max_jobs_run)) as pool:
        codes = list(pool.map(lambda job: run_local(*job), jobs))
    return [job_log for (job_log, _), code in zip(jobs, codes) if code != 0]


def launch_slurm(args, job_range, log: str, command: List[str]) -> List[Path]:
    var, start, end = job_range or ("JOB", 1, 1)
    # The array task substitutes its own index into the command; bash does it at run time.
    line = shell_line(command)
    task_line = line if job_range is None else re.sub(rf"\b{re.escape(var)}\b", "${SLURM_ARRAY_TASK_ID}", line)
    task_log = log if job_range is None else re.sub(rf"\b{re.escape(var)}\b", "%a", log)
    Path(task_log).parent.mkdir(parents=True, exist_ok=True)
    # The header names this task's command as the local backend's logs do.
    header = '"${SLURM_ARRAY_TASK_ID}"'.join(shlex.quote(part) for part in re.split(rf"\b{re.escape(var)}\b", line)) \
        if job_range else shlex.quote(line)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=Path(task_log).parent, delete=False) as f:
        f.write("#!/usr/bin/env bash\n")
        f.write(f"cd {shlex.quote(os.getcwd())}\n")
        f.write(f"echo '# '{header}\necho \"# Started at $(date)\"\n")
        # In a child shell, so that an `exit` in the command still reaches the end line.
        f.write(f"bash -c {shlex.quote(task_line)}\ncode=$?\necho \"# Ended (code $code) at $(date)\"\nexit $code\n")
        script = f.name
    sbatch = ["sbatch", "--wait", "--parsable", f"--array={start}-{end}", f"--output={task_log}",
              f"--cpus-per-task={args.num_threads}", "--job-name=diffasr"]
    if args.gpu:
        sbatch.append(f"--gres=gpu:{args.gpu}")
    for flag, value in (("--mem", args.mem), ("--time", args.time), ("--partition", args.partition)):
        if value:
            sbatch.append(f"{flag}={value}")
    try:
        submitted = subprocess.run(sbatch + [script], check=False, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("launch.py: sbatch not found; use --backend local (cmd.sh) on machines without Slurm")
    finally:
        os.unlink(script)
    if submitted.returncode != 0 and not submitted.stdout.strip():
        sys.exit(f"launch.py: sbatch refused the job: {submitted.stderr.strip()}")
    # sbatch --wait's exit code covers the whole array; read each log's end to name failures.
    failed = []
    for i in range(start, end + 1):
        job_log = Path(substitute([log], var, i)[0]) if job_range else Path(log)
        tail = job_log.read_text().splitlines()[-1:] if job_log.is_file() else []
        if not tail or "(code 0)" not in tail[0]:
            failed.append(job_log)
    return failed


def main(argv: Optional[List[str]] = None) -> int:
    args, job_range, log, command = parse_args(sys.argv[1:] if argv is None else argv)
    launch = launch_local if args.backend == "local" else launch_slurm
    failed = launch(args, job_range, log, command)
    if failed:
        n = (job_range[2] - job_range[1] + 1) if job_range else 1
        print(f"launch.py: {len(failed)} of {n} jobs failed; see {', '.join(map(str, failed[:5]))}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
