#!/usr/bin/env bash
# Stage 1: target-speaker data dirs (train dev test test_clean test_absent sources_{train,dev,test},
# test_real).
# With db.sh's LIBRISPEECH empty, builds the embedded synthetic corpus offline (and
# test_heldout: clean speech of voices no scale trains or tests on);
# otherwise mixes LibriSpeech (+ LIBRIMIX metadata, NOISE_ROOT noise when set).
#   local/data.sh --scale tiny --mix_setting hard
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*"; }

. ./db.sh
. ./path.sh

output_dir=data                          # where the data dirs are written
corpus_dir=downloads/embedded            # cache of synthesized clean utterances (embedded corpus)
scale=default                            # embedded corpus size: tiny, default or large (default + 10x training data)
mix_setting=each_target                  # each_target (two talkers, each the target in turn, SIR -10..10 dB, 10 % target-absent), default (the louder talker is the target, SIR 0..10 dB) or hard (SIR -20..5 dB)
seed=1                                   # seed of every random draw
nj=2                                     # parallel processes
text_file=                               # sentences for the embedded corpus, one per line (default: Debian packages)
librispeech_root=${LIBRISPEECH:-}        # LibriSpeech root; empty: embedded corpus
librimix_metadata=${LIBRIMIX:-}          # LibriMix metadata CSV dir (pairs and gains); optional
noise_root=${NOISE_ROOT:-}               # dir of noise wavs (e.g. WHAM!); empty: synthesized noise
train_mixtures=                          # embedded corpus: training mixtures instead of the scale's (same sources)
skip_real=${SKIP_REAL:-false}            # true: no test_real (real human speech from Debian packages; run.sh --skip_real)
real_dir=downloads/real                  # test_real's recordings, converted to 16-kHz WAV

. utils/parse_options.sh

opts=()
for name in text_file librispeech_root librimix_metadata noise_root train_mixtures; do
  [ -n "${!name}" ] && opts+=("--${name}" "${!name}")
done

log "python -m diffasr.bin.prepare_target_speaker_data --scale ${scale} --mix_setting ${mix_setting} ${opts[*]}"
python -m diffasr.bin.prepare_target_speaker_data --output_dir "${output_dir}" --corpus_dir "${corpus_dir}" \
  --scale "${scale}" --mix_setting "${mix_setting}" --seed "${seed}" --nj "${nj}" "${opts[@]}"

mixture_sets=("${output_dir}"/{train,dev,test,test_clean})
[ -d "${output_dir}/test_absent" ] && mixture_sets+=("${output_dir}/test_absent")  # mix settings with target-absent examples
[ -d "${output_dir}/test_heldout" ] && mixture_sets+=("${output_dir}/test_heldout")  # the embedded corpus
python utils/validate_data_dir.py --require wav.scp text utt2spk spk2utt utt2dur enroll.scp mixture.jsonl -- \
  "${mixture_sets[@]}"
python utils/validate_data_dir.py --require wav.scp text utt2spk spk2utt utt2dur -- \
  "${output_dir}"/sources_{train,dev,test}

# test_real: recordings of real people (Asterisk's prompts, CMU Sphinx's test data), each
# enrolled with another recording of the same person: does training keep Whisper's skill?
if ${skip_real}; then
  log "--skip_real true: no ${output_dir}/test_real"
else
  real_opts=()
  [ "${scale}" = tiny ] && real_opts+=(--max_per_speaker 2)
  python -m diffasr.bin.prepare_real_speech --output_dir "${output_dir}" --corpus_dir "${real_dir}" \
    --seed "${seed}" "${real_opts[@]}"
  python utils/validate_data_dir.py --require wav.scp text utt2spk spk2utt utt2dur enroll.scp mixture.jsonl -- \
    "${output_dir}/test_real"
fi
log "done: ${output_dir}/corpus_stats.json"
