# How stage jobs are launched (utils/launch.py). Pick a backend:
#   local: jobs run on this machine, at most max_jobs_run at a time
#   slurm: jobs are submitted with sbatch (add --partition/--mem/--time as needed)
cmd_backend=${DIFFASR_CMD_BACKEND:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="utils/launch.py --backend local"
    export cuda_cmd="utils/launch.py --backend local"
    export decode_cmd="utils/launch.py --backend local"
    ;;
  slurm)
    export train_cmd="utils/launch.py --backend slurm --mem 8G"
    export cuda_cmd="utils/launch.py --backend slurm --mem 16G"
    export decode_cmd="utils/launch.py --backend slurm --mem 4G"
    ;;
  *) echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2; return 1 ;;
esac
