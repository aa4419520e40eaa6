#!/usr/bin/env bash
# Single-speaker ASR on LibriSpeech: train-clean-100, validated on dev-clean, scored on
# test-clean and test-other (set LIBRISPEECH in db.sh). With LIBRISPEECH empty, the
# embedded synthetic corpus stands in under the same set names. No speaker encoder and no
# enrollment: stages 3-4 are skipped (--use_speaker false). CI scale:
#   ./run.sh --local_data_opts "--scale tiny" --overlay conf/tiny.yaml
# A GPU run on the real corpus (conf/tuning/*_ls100.yaml: ESPnet's LibriSpeech-100 size):
#   ./run.sh --ngpu 1 --asr_configs "conf/tuning/train_ar_conformer_ls100.yaml conf/tuning/train_diffusion_conformer_ls100.yaml"
set -euo pipefail

. ./db.sh

# The AR baseline comes first: a diffusion decode config deliberates its output.
asr_configs="conf/tuning/train_ar_whisper.yaml conf/tuning/train_diffusion_whisper.yaml"
inference_configs="conf/decode/decode_ar_beam1.yaml conf/decode/decode_ar_beam10.yaml"
for mode in 1step 8step 8step_block delib_ar_guided; do
  inference_configs+=" conf/decode/decode_diffusion_${mode}.yaml"
done
# ESPnet's LibriSpeech-100 vocabulary; the embedded corpus (1,440 sentences) is too small for it.
nbpe=100
[ -n "${LIBRISPEECH}" ] && nbpe=5000

./asr.sh \
  --use_speaker false \
  --train_set train_clean_100 \
  --valid_set dev_clean \
  --test_sets "test_clean test_other" \
  --nbpe "${nbpe}" \
  --bpemode unigram \
  --asr_configs "${asr_configs}" \
  --inference_configs "${inference_configs}" \
  --inference_model valid.loss.ave_2best.pth \
  "$@"
