# WiSE-FT (issue #36, README section 9): the trained systems of the fresh run of section 3
# (commit e365267; the diffusion system is the references-alone control, exp/asr_diffusion_whisper_nodistill,
# today's default), decoded with Whisper's weights interpolated (decode options wise_ft_encoder,
# wise_ft_decoder), 2 cores shared between the runs (no times).
cd egs/librimix_target/asr1 && . ./path.sh
# The AR system (its decoder is frozen: Whisper's as released, so only the encoder moves), shares 0.75 0.5 0.25 0
# through the recipe's own stage 6-7 (decode_ar_beam1_wise<share>/; run with the first version of the tool, which
# wrote each interpolated model file for --inference_model: the same weights, as the AR decoder is Whisper's as released):
for s in 0.75 0.5 0.25 0.0; do
  ./run.sh --stage 6 --stop-stage 7 --swap_sets "" --zero_shot_sets "" --calibrate false --rotate_configs "" \
    --asr_configs conf/tuning/train_ar_whisper.yaml --inference_configs conf/decode/decode_ar_beam1.yaml \
    --test_sets "test_real test_clean test" --inference_args "--wise_ft_encoder $s" --inference_suffix "_wise$s"
done
# and 0.9 0.8 through the benchmark:
python ../../../bench/wise_ft_curve.py --exp exp/asr_ar_whisper --model valid.loss.ave_2best.pth \
  --decode_config conf/decode/decode_ar_beam1.yaml --shares 0.9 0.8 --parts encoder \
  --output_dir exp/asr_ar_whisper/wise_ft_fine
# The diffusion system, 8 steps: the encoder alone, and the encoder and the decoder
python ../../../bench/wise_ft_curve.py --exp exp/asr_diffusion_whisper_nodistill --model valid.loss.ave_2best.pth \
  --decode_config conf/decode/decode_diffusion_8step.yaml --shares 0.9 0.75 --parts encoder \
  --output_dir exp/asr_diffusion_whisper_nodistill/wise_ft_encoder
python ../../../bench/wise_ft_curve.py --exp exp/asr_diffusion_whisper_nodistill --model valid.loss.ave_2best.pth \
  --decode_config conf/decode/decode_diffusion_8step.yaml --shares 0.75 --parts encoder decoder \
  --output_dir exp/asr_diffusion_whisper_nodistill/wise_ft_both
# wise_ft.md / .json / .png: those decode dirs' metrics.json side by side (share 1: the systems' own decodes,
# decode_ar_beam1/ and decode_diffusion_8step/ of the run).
#
# Whisper's weights at a tenth of the rate in both phases (a new phase 1 and AR phase 2, data and caches of the
# same run; the row "--pretrained_lr_scale 0.1, both phases" of README section 9):
./run.sh --stage 5 --stop-stage 7 --asr_configs conf/tuning/train_ar_whisper.yaml \
  --teacher_phase_args "--num_iters_per_epoch 46 --max_epoch 27 --pretrained_lr_scale 0.1" \
  --asr_args "--pretrained_lr_scale 0.1" --inference_configs conf/decode/decode_ar_beam1.yaml \
  --rotate_configs "" --swap_sets "" --zero_shot_sets "" --calibrate false --test_sets "test test_clean test_real"
# (run before the AR decode config had wise_ft_encoder: decoded as trained)
# The same AR system without the teacher (no phase 1), decoded as trained (the last row of section 9's AR table):
./run.sh --stage 5 --stop-stage 7 --teacher_phase false --asr_configs conf/tuning/train_ar_whisper.yaml \
  --asr_tag ar_whisper_noteacher --asr_args "--model_conf teacher_weight=0" \
  --inference_configs conf/decode/decode_ar_beam1.yaml --rotate_configs "" --swap_sets "" --zero_shot_sets "" \
  --calibrate false --test_sets "test test_clean test_real"
