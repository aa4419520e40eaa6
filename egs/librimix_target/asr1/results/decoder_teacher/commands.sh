#!/usr/bin/env bash
# One change over the demo's AR phase 2 (Whisper's decoder frozen, from the 1,242-update phase 1):
# + the decoder's teacher (KL to zero-shot Whisper's next-token distributions on the clean target), weight 1.0.
# Run from egs/librimix_target/asr1 after ./run.sh (stages 1-5).
set -euo pipefail
./run.sh --stage 5 --stop-stage 5 --teacher_phase false --swap_sets "" \
  --asr_configs conf/tuning/train_ar_whisper.yaml --asr_tag ar_whisper_dkl \
  --asr_args "--init_param exp/asr_teacher_phase/valid.loss.best.pth:encoder:encoder --model_conf decoder_teacher_weight=1.0"
./run.sh --stage 6 --stop-stage 7 --teacher_phase false --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_ar_whisper.yaml --asr_tag ar_whisper_dkl \
  --inference_configs conf/decode/decode_ar_beam1.yaml --test_sets "test test_clean"
. ./path.sh
python ../../../bench/heldout_voices.py --data_dir data/test_real --exp exp/asr_ar_whisper_dkl \
  --decode_config conf/decode/decode_ar_beam1.yaml --inference_model valid.loss.ave_2best.pth \
  --whisper_beam_sizes --output exp/test_real_dkl/heldout_voices.md
