#!/usr/bin/env bash
# One change each over the demo's diffusion phase 2 (recipe README section 8): the same
# 1,242-update phase-1 encoder, the same data, 414 updates. Run from egs/librimix_target/asr1
# after ./run.sh (stages 1-7), 2 CPU cores. The variants are lines of conf/variants.txt;
# RESULTS.md gets their rows (copied to rows.md here).
set -euo pipefail
decode() {  # test, test_clean and test_real with 8 steps and 1 step
  ./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
    --asr_configs "" --asr_variants "$1" \
    --inference_configs "conf/decode/decode_diffusion_8step.yaml conf/decode/decode_diffusion_1step.yaml" \
    --test_sets "test test_clean test_real"
}
# The default's 1-step rows, its other decoding modes, and the AR system's beam 10 on test_clean:
./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_diffusion_whisper.yaml --inference_configs conf/decode/decode_diffusion_1step.yaml \
  --test_sets "test test_clean test_real"
./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_ar_whisper.yaml --inference_configs conf/decode/decode_ar_beam10.yaml --test_sets test_clean
./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_diffusion_whisper.yaml \
  --inference_configs "conf/decode/decode_diffusion_8step_random.yaml conf/decode/decode_diffusion_delib_ctc_guided.yaml" \
  --test_sets "test_clean test_real"
./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
  --asr_configs conf/tuning/train_diffusion_whisper.yaml \
  --inference_configs conf/decode/decode_diffusion_delib_ar_guided.yaml --test_sets test_clean

# Start from the AR system: its encoder and decoder (--init_from_ar gives these two --init_param
# entries where the AR system trains in the same run; measured as exp/asr_diffusion_whisper_initar,
# a variant line with them, trained with --teacher_phase false):
#   diffusion_whisper_initar conf/tuning/train_diffusion_whisper.yaml --init_param
#     exp/asr_ar_whisper/valid.loss.ave_2best.pth:encoder:encoder exp/asr_ar_whisper/valid.loss.ave_2best.pth:decoder:decoder

# The variants. Stage 5 decodes the AR system's outputs on the training set once, with beam 1
# (beam 10's length bonus inserts on this AR system: section 8), shared by both distill_share runs.
# They were measured with --teacher_phase false and the phase-1 encoder as an explicit --init_param
# (what run.sh's phase 1 gives each system with the default's encoder).
for v in diffusion_whisper_distill05 diffusion_whisper_distill10 diffusion_whisper_arw1 diffusion_whisper_plr01; do  # plr01 ran before the others
  ./run.sh --stage 5 --stop-stage 5 --swap_sets "" --asr_configs "" --asr_variants "$v" \
    --distill_config conf/decode/decode_ar_beam1.yaml
  decode "$v"
done
# The distill05, distill10 and arw1 runs (after plr01 and initar) also had stage 1's enrollment fix: one of the
# 2,200 training examples enrolled with a 4.8-s utterance instead of a 0.999-s one.
# The second run of distill_share 0.5: the variant's line with --seed 2 added (exp/asr_diffusion_whisper_distill05s2),
# decoded with 8 steps only.
#   diffusion_whisper_distill05s2 conf/tuning/train_diffusion_whisper.yaml --model_conf distill_share=0.5 --seed 2

# Distillation against its control (section 8): one fresh ./run.sh at commit e365267, where the diffusion
# system had model_conf distill_share 0.5 (exp/asr_diffusion_whisper), then at the same commit the control
# variant diffusion_whisper_nodistill (--model_conf distill_share=0) from the same phase 1, decoded with 8 steps:
#   ./run.sh
#   ./run.sh --stage 5 --stop-stage 5 --asr_variants diffusion_whisper_nodistill
#   ./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
#     --asr_configs "" --asr_variants diffusion_whisper_nodistill \
#     --inference_configs conf/decode/decode_diffusion_8step.yaml --test_sets "test test_clean test_real"
# Both rows are in results/RESULTS.md.
