#!/usr/bin/env bash
# Stage 1: single-speaker data dirs data/{train_clean_100,dev_clean,test_clean,test_other}.
# With db.sh's LIBRISPEECH set: ESPnet's LibriSpeech format (wav.scp -> flac, text as in
# the *.trans.txt files, utt2spk by reader-chapter). Empty: the embedded corpus, built
# offline from the flagship recipe's synthetic voices and sentences.
#   local/data.sh --scale tiny
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*"; }

. ./db.sh
. ./path.sh

output_dir=data                    # where the data dirs are written
corpus_dir=downloads/embedded      # cache of synthesized utterances (embedded corpus)
scale=default                      # embedded corpus size: tiny or default
seed=1                             # seed of every random draw
nj=2                               # parallel processes
text_file=                         # sentences for the embedded corpus, one per line (default: Debian packages)
librispeech_root=${LIBRISPEECH:-}  # LibriSpeech root (train-clean-100/ dev-clean/ ... below it); empty: embedded

. utils/parse_options.sh

opts=()
[ -n "${text_file}" ] && opts+=(--text_file "${text_file}")
[ -n "${librispeech_root}" ] && opts+=(--librispeech_root "${librispeech_root}")

log "python -m diffasr.bin.prepare_single_speaker_data --scale ${scale} ${opts[*]}"
python -m diffasr.bin.prepare_single_speaker_data --output_dir "${output_dir}" --corpus_dir "${corpus_dir}" \
  --scale "${scale}" --seed "${seed}" --nj "${nj}" "${opts[@]}"
log "done: ${output_dir}/corpus_stats.json"
