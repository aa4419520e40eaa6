# Sourced by every recipe script: activates diffasr's environment (tools/install.sh).
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
if [ ! -f "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
  echo "path.sh: ${MAIN_ROOT}/tools/venv is missing: run ${MAIN_ROOT}/tools/install.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "${MAIN_ROOT}/tools/venv/bin/activate"
export PATH=${MAIN_ROOT}/utils:/usr/lib/sctk/bin:${PATH}
export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export LC_ALL=C
