#!/usr/bin/env bash
# Target-speaker ASR on LibriMix-style mixtures (embedded synthetic corpus by default;
# set LIBRISPEECH in db.sh for the real one). Demo: ./run.sh ; CI scale:
#   ./run.sh --local_data_opts "--scale tiny" --asr_configs "..._tiny.yaml" ...
# The default systems sit on a frozen Whisper tiny.en encoder and train from a cache of
# its output (feats_type extracted); the from-scratch conformer systems
# (conf/tuning/train_*_conformer.yaml) are for a GPU or a real corpus.
#   ./run.sh --with_ablation true   also trains the nospk control (no speaker input)
set -euo pipefail

with_ablation=false
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = --with_ablation ]; then with_ablation=$2; shift 2; else args+=("$1"); shift; fi
done

# The AR baseline comes first: a diffusion decode config deliberates its output.
asr_configs="conf/tuning/train_ar_whisper.yaml conf/tuning/train_diffusion_whisper.yaml"
${with_ablation} && asr_configs+=" conf/tuning/train_diffusion_whisper_nospk.yaml"
# The demo decodes these; --inference_configs "" decodes every conf/decode config (and
# bench/decode_benchmark.py runs every mode side by side).
inference_configs="conf/decode/decode_ar_beam1.yaml conf/decode/decode_ar_beam10.yaml"
for mode in 1step 8step 8step_block delib_ar_guided; do
  inference_configs+=" conf/decode/decode_diffusion_${mode}.yaml"
done

./asr.sh \
  --nbpe 100 \
  --bpemode unigram \
  --spk_config conf/spk/ecapa_aam.yaml \
  --asr_configs "${asr_configs}" \
  --inference_configs "${inference_configs}" \
  --ar_exp exp/asr_ar_whisper \
  --inference_model valid.loss.ave_2best.pth \
  --test_sets "test test_clean test_absent" \
  "${args[@]}"
