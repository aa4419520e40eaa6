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
# and 0.9 0.8 0.6 through the benchmark:
python ../../../bench/wise_ft_curve.py --exp exp/asr_ar_whisper --model valid.loss.ave_2best.pth \
  --decode_config conf/decode/decode_ar_beam1.yaml --shares 0.9 0.8 0.6 --parts encoder \
  --output_dir exp/asr_ar_whisper/wise_ft_fine
# The diffusion system, 8 steps: the encoder alone, and the encoder and the decoder
python ../../../bench/wise_ft_curve.py --exp exp/asr_diffusion_whisper_nodistill --model valid.loss.ave_2best.pth \
  --decode_config conf/decode/decode_diffusion_8step.yaml --shares 0.9 0.75 --parts encoder \
  --output_dir exp/asr_diffusion_whisper_nodistill/wise_ft_encoder
python ../../../bench/wise_ft_curve.py --exp exp/asr_diffusion_whisper_nodistill --model valid.loss.ave_2best.pth \
  --decode_config conf/decode/decode_diffusion_8step.yaml --shares 0.75 --parts encoder decoder \
  --output_dir exp/asr_diffusion_whisper_nodistill/wise_ft_both
