#!/usr/bin/env bash
# One change each over the demo's diffusion phase 2 (recipe README section 8), from the same
# 1,242-update phase-1 encoder, the same data and 414 updates. Run from egs/librimix_target/asr1
# after ./run.sh (stages 1-7), on 2 CPU cores. The variants are lines of conf/variants.txt.
set -euo pipefail
decode() {  # test, test_clean and test_real, 8 steps and 1 step; RESULTS.md rows
  ./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
    --asr_configs "" --asr_variants "$1" \
    --inference_configs "conf/decode/decode_diffusion_8step.yaml conf/decode/decode_diffusion_1step.yaml" \
    --test_sets "test test_clean test_real"
}
# The baseline's 1-step rows and the AR system's beam 10 on test_clean:
./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_diffusion_whisper.yaml --inference_configs conf/decode/decode_diffusion_1step.yaml \
  --test_sets "test test_clean test_real"
./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_ar_whisper.yaml --inference_configs conf/decode/decode_ar_beam10.yaml --test_sets test_clean
# Start from the AR system (--init_from_ar: its encoder and its decoder, which the AR system keeps frozen):
./run.sh --stage 5 --stop-stage 5 --swap_sets "" --asr_configs conf/tuning/train_ar_whisper.yaml \
  --asr_variants diffusion_whisper_initar_flag --init_from_ar true  # (measured as the variant below)
# measured as: a variant line 'diffusion_whisper_initar conf/tuning/train_diffusion_whisper.yaml
#   --init_param exp/asr_ar_whisper/valid.loss.ave_2best.pth:encoder:encoder exp/asr_ar_whisper/valid.loss.ave_2best.pth:decoder:decoder'
#   trained with --teacher_phase false (the same two --init_param entries --init_from_ar gives)
# The others (run.sh's phase 1 gives each the phase-1 encoder; the AR outputs decoded with beam 1, as
# --distill_config conf/decode/decode_ar_beam1.yaml: beam 10 inserts on this AR system, see section 8):
for v in diffusion_whisper_distill05 diffusion_whisper_arw1 diffusion_whisper_arw0 diffusion_whisper_plr01; do
  ./run.sh --stage 5 --stop-stage 5 --swap_sets "" --asr_configs "" --asr_variants "$v" \
    --distill_config conf/decode/decode_ar_beam1.yaml
  decode "$v"
done
