#!/usr/bin/env bash
# Checks the Slurm backend against a real one-node cluster (tools/slurm/setup_one_node.sh):
#   1. failure paths of utils/launch.py --backend slurm: a failing array task fails the
#      step and names its log; scancel of the array fails the step; a rerun completes;
#   2. the tiny flagship recipe, stages 1-7, once with the local backend and once with
#      DIFFASR_CMD_BACKEND=slurm: the RESULTS.md rows must be the same apart from timings.
#
#   sudo tools/slurm/check_backend.sh [work_dir]     (default: a new temporary dir)
#
# Prints a summary and writes it to <work_dir>/summary.txt.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/diffasr_slurm.XXXXXX)}
mkdir -p "${work}"
summary=${work}/summary.txt
: >"${summary}"
say() { echo "$*" | tee -a "${summary}"; }

t0=${SECONDS}
"${top}/tools/slurm/setup_one_node.sh"
say "cluster up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %D %c %T')"

# ----------------------------------------------------------------- failure paths
cd "${work}"
launch="${top}/utils/launch.py --backend slurm"
mkdir -p fail
rc=0; ${launch} JOB=1:3 fail/t.JOB.log 'exit $((JOB == 2))' 2>fail/stderr || rc=$?
grep -q "1 of 3 jobs failed; see fail/t.2.log" fail/stderr && [ "${rc}" = 1 ] \
  || { cat fail/stderr; echo "FAIL: a failing array task was not reported" >&2; exit 1; }
say "ok: a failing array task fails the step: $(cat fail/stderr)"

mkdir -p cancel
( rc=0; ${launch} JOB=1:2 cancel/t.JOB.log 'sleep 120' 2>cancel/stderr || rc=$?; echo "${rc}" >cancel/rc ) &
for _ in $(seq 30); do squeue -h -n diffasr -t R | grep -q . && break; sleep 1; done
scancel -n diffasr
wait
[ "$(cat cancel/rc)" = 1 ] && grep -q "2 of 2 jobs failed" cancel/stderr \
  || { cat cancel/stderr; echo "FAIL: scancel did not fail the step" >&2; exit 1; }
say "ok: scancel of the array fails the step: $(cat cancel/stderr)"

${launch} JOB=1:2 cancel/t.JOB.log 'echo done JOB'
grep -q "done 2" cancel/t.2.log || { echo "FAIL: the rerun did not complete" >&2; exit 1; }
say "ok: the rerun completes"

# ----------------------------------------------------------------- the tiny recipe, both backends
recipe=${top}/egs/librimix_target/asr1
args=(--stage 1 --stop-stage 7 --local_data_opts "--scale tiny" --overlay conf/tiny.yaml
      --asr_configs "conf/tuning/train_ar_whisper.yaml conf/tuning/train_diffusion_whisper.yaml" --calibrate false
      --inference_configs "conf/decode/decode_ar_beam10.yaml conf/decode/decode_diffusion_8step.yaml conf/decode/decode_diffusion_delib_ar_guided.yaml")
for backend in local slurm; do
  dir=${work}/recipe_${backend}
  rm -rf "${dir}" && mkdir -p "${dir}"
  for name in run.sh asr.sh path.sh cmd.sh db.sh utils local; do ln -s "${recipe}/${name}" "${dir}/${name}"; done
  cp -r "${recipe}/conf" "${dir}/conf"
  t0=${SECONDS}
  (cd "${dir}" && env -u LIBRISPEECH -u LIBRIMIX -u NOISE_ROOT DIFFASR_CMD_BACKEND=${backend} \
     ./run.sh "${args[@]}" >run.log 2>&1) || { tail -30 "${dir}/run.log"; echo "FAIL: the ${backend} run" >&2; exit 1; }
  say "${backend}: stages 1-7 in $((SECONDS - t0)) s"
done
if "${top}/tools/venv/bin/python" "${top}/utils/compare_results.py" "${work}/recipe_local/exp/RESULTS.md" "${work}/recipe_slurm/exp/RESULTS.md" \
    >"${work}/rows.diff"; then
  say "ok: RESULTS.md of both backends: $(cat "${work}/rows.diff")"
else
  cat "${work}/rows.diff"; say "FAIL: RESULTS.md rows differ (${work}/rows.diff)"; exit 1
fi
say "slurm array jobs seen in the logs: $(ls "${work}"/recipe_slurm/exp/*/decode_*/*/logdir/asr_inference.*.log 2>/dev/null | wc -l) decode task logs"
cat "${summary}"
