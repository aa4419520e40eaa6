#!/usr/bin/env bash
# Target-speaker ASR on LibriMix-style mixtures (embedded synthetic corpus by default;
# set LIBRISPEECH in db.sh for the real one). Demo: ./run.sh ; CI scale:
#   ./run.sh --local_data_opts "--scale tiny" --asr_configs "..._tiny.yaml" ...
set -euo pipefail

# The AR baseline comes first: a diffusion decode config deliberates its output.
asr_configs="conf/tuning/train_ar_conformer.yaml conf/tuning/train_diffusion_conformer.yaml"

./asr.sh \
  --nbpe 100 \
  --bpemode unigram \
  --spk_config conf/spk/ecapa_aam.yaml \
  --asr_configs "${asr_configs}" \
  --test_sets "test test_clean" \
  "$@"
