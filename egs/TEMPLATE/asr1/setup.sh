#!/usr/bin/env bash
# Create a new corpus recipe from this template:
#   egs/TEMPLATE/asr1/setup.sh egs/<corpus>/asr1
# It links the shared stage script, utilities, decode configs and the CI-size overlay
# (conf/decode, conf/tiny.yaml) and copies path.sh, cmd.sh and db.sh; the new recipe then
# adds run.sh, local/data.sh and its training configs (conf/tuning).
set -euo pipefail
[ $# -eq 1 ] || { echo "Usage: $0 egs/<corpus>/asr1" >&2; exit 2; }
target=$1
[ -e "${target}" ] && { echo "$0: ${target} exists" >&2; exit 1; }
template=$(cd "$(dirname "$0")" && pwd)
mkdir -p "${target}/local" "${target}/conf"
relpath() { python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "${target}"; }
ln -s "$(relpath "${template}/asr.sh")" "${target}/asr.sh"
ln -s "$(relpath "${template}/../../../utils")" "${target}/utils"
# (conf/ links are relative to conf/, one level deeper)
ln -s "../$(relpath "${template}/conf/decode")" "${target}/conf/decode"
ln -s "../$(relpath "${template}/conf/tiny.yaml")" "${target}/conf/tiny.yaml"
cp "${template}/path.sh" "${template}/cmd.sh" "${template}/db.sh" "${target}/"
# path.sh finds the repository root from its own location, three levels up.
echo "Created ${target}: add run.sh, local/data.sh and conf/tuning/"
