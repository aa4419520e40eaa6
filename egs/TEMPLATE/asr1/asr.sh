#!/usr/bin/env bash
# diffasr's shared stage script (the role of ESPnet's egs2/TEMPLATE/asr1/asr.sh).
# Corpus recipes link to it and call it from run.sh with their own options:
#   ./asr.sh --stage 1 --stop-stage 7 --local_data_opts "--scale tiny"
# Stages:
#   1 data preparation (local/data.sh)         5 ASR training (collect stats, train)
#   2 SentencePiece BPE token list             6 decoding of every test set
#   3 speaker-encoder training (ECAPA)         7 sclite scoring and RESULTS.md
#   4 enrollment speaker embeddings            8 model packing (espnet2.bin.pack)
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() { local a b; a=$1; for b in "$@"; do [ "$b" -le "$a" ] && a=$b; done; echo "$a"; }
SECONDS=0
run_args=$(printf '%q ' "$0" "$@")

# General
stage=1                 # first stage to run
stop_stage=8            # last stage to run
nj=2                    # parallel jobs for data preparation, embedding and decoding
ngpu=0                  # GPUs per job (0: CPU)
python=python3          # the interpreter path.sh activates
skip_train=false        # skip stages 3-5 (use existing models)
expdir=exp              # experiments go here
dumpdir=dump            # features and statistics

# Data
local_data_opts=        # options passed to local/data.sh
train_set=train         # training mixtures
valid_set=dev           # validation mixtures
test_sets="test test_clean"  # decoded and scored sets

# Tokens (stage 2 writes both lists; a training config's token_type key picks one)
token_type=bpe          # default token type of configs that set none: bpe (SentencePiece) | whisper_en
nbpe=100                # SentencePiece vocabulary size
bpemode=unigram         # unigram | bpe | char

# Speaker encoder
use_speaker=true        # false: plain single-speaker ASR, no speaker encoder or enrollment (stages 3-4 skipped)
spk_config=conf/spk/ecapa_aam.yaml  # stage 3 config (AAM-softmax or triplet)
spk_exp=                # speaker experiment dir (default: exp/spk_<config name>)
presence_gate=true      # stage 4 chooses on ${valid_set} (if it has target-absent examples) a threshold on the
                        #   speaker encoder's similarity of the mixture's windows to the enrollment; stage 6
                        #   then leaves undecoded, with an empty hypothesis, an utterance whose voice it does not find
presence_max_lost=0.03  #   the largest share of ${valid_set}'s present targets the gate may empty

# ASR
asr_configs="conf/tuning/train_diffusion_conformer.yaml"  # one experiment per config
asr_variants=           # variants trained, decoded and scored after --asr_configs: tags of --asr_variants_file
asr_variants_file=conf/variants.txt  # lines '<tag> <config> <overrides>': a variant is a config + overrides, in exp/<prefix>_<tag>
asr_tag_prefix=asr      # experiment dirs are exp/<prefix>_<config name>
asr_tag=                # with one --asr_configs entry: its experiment is exp/<prefix>_<tag> (ESPnet's --asr_tag)
asr_args=               # extra arguments for every training run (after a variant's own overrides)
overlay=                # a size merged over every training and speaker config (e.g. conf/tiny.yaml, the CI's:
                        #   diffasr/overlay.py); each experiment dir gets the suffix _<overlay name>
train_num_threads=2     # torch threads of a training job (path.sh sets 1 for parallel jobs)
train_procs=1           # data-parallel training processes on CPU (torchrun, gloo); with --ngpu N>1, ESPnet starts one per GPU
feats_type=extracted    # raw: train on audio; extracted: configs with encoder: whisper train on a cache of their frozen encoder's output
teacher_phase=false     # stage 5, phase 1: first train the conditioned encoder alone on the clean-target teacher
                        #   (the first --asr_configs entry with model_conf teacher_weight > 0, + teacher_only, into
                        #   exp/<prefix>_teacher_phase); phase 2: each system with the same encoder starts from it
teacher_phase_args=     #   overrides of phase 1 only (e.g. "--max_epoch 4 --model_conf teacher_form=l1_cosine")
init_from_ar=false      # stage 5: diffusion systems start from ${ar_exp}'s decoder, and its encoder where they train the
                        #   same one (--init_param ${ar_exp}/${inference_model}:decoder:decoder ...)
distill_exp=            # stage 5: configs with model_conf distill_share > 0 train on this AR experiment's outputs on
                        #   ${train_set}, decoded once into ${dumpdir}/distill/<fingerprint>/ (default: ${ar_exp})
distill_model=          #   its model file (default: ${inference_model})
distill_config=conf/decode/decode_ar_beam10.yaml  # the decode config of those outputs
distill_audio=clean_target  # clean_target: each example's target source alone (mixture.jsonl); mixture: the
                        #   mixture itself (a target worth learning only once the AR system follows the target)
speech_fold_length=80000  # batch_type folded: utterances longer than this (samples) shrink the batch
cache_fold_length=500   # the same for cached encoder frames (20 ms each)
text_fold_length=150    # the same for transcripts (tokens)
inference_configs=      # decode configs, each used for the models of its type (decode_<type>_*.yaml); empty: all in conf/decode
inference_args=         # extra arguments for decoding (e.g. "--enrollment_override rotate")
inference_suffix=       # appended to decode dir names (decode_<config><suffix>), e.g. _rotate
rotate_configs=         # decode configs whose decodes of --rotate_sets are repeated with another test speaker's
rotate_sets=test        #   enrollment (--enrollment_override rotate) into decode_<config>_rotate: does the enrollment decide?
swap_sets=              # sets whose decodes with --rotate_configs are repeated with the enrollment of each mixture's
                        #   other talker (--enrollment_override swap; needs mix_setting each_target) into
                        #   decode_<config>_swap: a model that selects moves to the other talker (Follows other)
zero_shot_sets=         # sets that Whisper tiny.en as released also decodes (beam 5) and stage 7 scores, a RESULTS.md
                        #   row beside the trained systems (exp/whisper_tiny.en_zeroshot/decode_beam5/<set>)
long_form=false         # stage 6: split each recording at its pauses (silero-vad), decode the segments
inference_model=valid.loss.ave.pth  # checkpoint to decode (the average of the best by validation loss)
calibrate=true          # also decode the validation set; stage 7 fits the confidence temperature on it
ar_exp=                 # the AR experiment whose output decode configs deliberate ({ar_exp}); default: ${expdir}/${asr_tag_prefix}_ar_whisper
batch_size=8            # decoding batch size

. ./path.sh
. ./db.sh
. ./cmd.sh
. utils/parse_options.sh
want() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }

if [ $# -ne 0 ]; then
  log "Unexpected arguments: $*  (run $0 --help)"; exit 2
fi

# The experiments of stages 5-8, in this order: each --asr_configs entry, then each
# --asr_variants entry. Each is a dir, the config it trains and the overrides it trains with.
missing=()
overlay_suffix=
[ -n "${overlay}" ] && overlay_suffix=_$(basename "${overlay}" .yaml)
exp_dirs=() exp_configs=() exp_args=()
for config in ${asr_configs}; do
  name=$(basename "${config}" .yaml)
  exp_dirs+=("${expdir}/${asr_tag_prefix}_${asr_tag:-${name#train_}}${overlay_suffix}") exp_configs+=("${config}") exp_args+=("${asr_args}")
done
for variant in ${asr_variants}; do
  declared=false
  if [ -f "${asr_variants_file}" ]; then
    while read -r tag config overrides || [ -n "${tag}" ]; do
      [ "${tag}" = "${variant}" ] || continue
      exp_dirs+=("${expdir}/${asr_tag_prefix}_${variant}${overlay_suffix}") exp_configs+=("${config}")
      exp_args+=("${overrides}${asr_args:+ ${asr_args}}")
      declared=true
      break
    done <"${asr_variants_file}"
  fi
  ${declared} || missing+=("a line '${variant} <config> <overrides>' in ${asr_variants_file} (a variant named by --asr_variants)")
done

# What a recipe must add to the template (egs/TEMPLATE/asr1/setup.sh): run.sh, local/data.sh
# and conf/. Checked before any work for the stages asked for, so a new recipe hears
# everything it lacks at once.
want_any() { local s; for s in "$@"; do want "$s" && return 0; done; return 1; }
if want 1 && [ ! -x local/data.sh ]; then
  missing+=("local/data.sh (executable; stage 1: writes data/<set>/{wav.scp,text,utt2spk,spk2utt} for ${train_set} ${valid_set} ${test_sets})")
fi
if want_any 5 6 7 8; then
  for config in "${exp_configs[@]}"; do
    [ -f "${config}" ] || missing+=("${config} (a training config named by --asr_configs or a variant, e.g. conf/tuning/train_diffusion_whisper.yaml)")
  done
fi
if want_any 6 7; then
  if [ -n "${inference_configs}" ]; then
    for config in ${inference_configs}; do
      [ -f "${config}" ] || missing+=("${config} (a decode config named by --inference_configs)")
    done
  elif ! compgen -G "conf/decode/decode_*.yaml" >/dev/null; then
    missing+=("conf/decode/decode_<model type>_<name>.yaml (decode configs: decode_ar_*.yaml, decode_diffusion_*.yaml)")
  fi
fi
if ${use_speaker} && want 3 && ! ${skip_train} && [ ! -f "${spk_config}" ]; then
  missing+=("${spk_config} (the speaker-encoder config of stage 3; or --use_speaker false for plain ASR)")
fi
if [ -n "${asr_tag}" ] && [ "$(echo ${asr_configs} | wc -w)" -ne 1 ]; then
  missing+=("one --asr_configs entry for --asr_tag ${asr_tag} (got: ${asr_configs})")
fi
if [ -n "${overlay}" ] && [ ! -f "${overlay}" ]; then
  missing+=("${overlay} (the overlay named by --overlay, e.g. conf/tiny.yaml)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "This recipe ($(pwd)) lacks what stages ${stage}-${stop_stage} need:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  log "A recipe adds run.sh, local/data.sh and conf/ to egs/TEMPLATE/asr1/setup.sh's links (README: Adding a corpus)." >&2
  exit 1
fi

# With --overlay, every config is used as overlaid: written once per run under ${dumpdir}/configs/overlay.
sized() {  # sized <config> [train|speaker]: the config, or its overlaid copy
  [ -z "${overlay}" ] && { echo "$1"; return; }
  local out=${dumpdir}/configs/overlay/$(basename "$1" .yaml)${overlay_suffix}.yaml
  ${python} -m diffasr.bin.overlay_config --config "$1" --overlay "${overlay}" --output "${out}" --kind "${2:-train}" \
    || return 1
  echo "${out}"
}
if [ -n "${overlay}" ]; then
  for i in "${!exp_configs[@]}"; do
    exp_configs[i]=$(sized "${exp_configs[i]}") || exit 1
  done
  if ${use_speaker} && [ -f "${spk_config}" ]; then
    spk_config=$(sized "${spk_config}" speaker) || exit 1
  fi
fi

bpe_listdir=data/token_list/bpe_${bpemode}${nbpe}
whisper_listdir=data/token_list/whisper_en
bpemodel=${bpe_listdir}/bpe.model
[ -z "${spk_exp}" ] && spk_exp=${expdir}/spk_$(basename "${spk_config}" .yaml)
[ -z "${ar_exp}" ] && ar_exp=${expdir}/${asr_tag_prefix}_ar_whisper${overlay_suffix}
[ -z "${distill_exp}" ] && distill_exp=${ar_exp}
[ -z "${distill_model}" ] && distill_model=${inference_model}

training_config_of() {  # training_config_of <config> <exp> <overrides>: the config stage 5 trains:
  # the file, or with overrides ESPnet's merge of both
  local config=$1 exp=$2 overrides=$3 resolved
  if [ -z "${overrides}" ]; then echo "${config}"; return; fi
  resolved=${dumpdir}/configs/$(basename "${exp}").yaml
  mkdir -p "$(dirname "${resolved}")"
  # shellcheck disable=SC2086
  ${python} -m diffasr.bin.asr_train --print_config --config "${config}" ${overrides} >"${resolved}.tmp" 2>"${resolved}.log" \
    || { log "'${overrides}' do not apply to ${config} (${resolved}.log)" >&2; return 1; }
  mv "${resolved}.tmp" "${resolved}"
  echo "${resolved}"
}
resolved_config_of() {  # resolved_config_of <config> <exp> <overrides>: the config with its overrides as
  # ESPnet's parser resolves it (every option, defaults filled in), for comparing two experiments
  local resolved=${dumpdir}/configs/$(basename "$2").resolved.yaml
  mkdir -p "$(dirname "${resolved}")"
  # shellcheck disable=SC2086
  ${python} -m diffasr.bin.asr_train --print_config --config "$1" $3 >"${resolved}" 2>"${resolved}.log" \
    || { log "'$3' do not apply to $1 (${resolved}.log)" >&2; return 1; }
  echo "${resolved}"
}
trained_config_of() {  # trained_config_of <exp> <config>: what stages 6-8 read: the config ESPnet
  # saved when it trained the experiment
  if [ -f "$1/config.yaml" ]; then echo "$1/config.yaml"; else echo "$2"; fi
}
model_type_of() { ${python} utils/yaml_get.py "$1" model espnet; }
config_get() { ${python} utils/yaml_get.py "$@"; }  # config_get <config> <dotted key> <default>
token_args_of() {  # the token options of a training config
  local tt
  tt=$(config_get "$1" token_type "${token_type}")
  case "${tt}" in
    bpe) echo "--token_type bpe --token_list ${bpe_listdir}/tokens.txt --bpemodel ${bpemodel}" ;;
    whisper_en) echo "--token_type whisper_en --token_list ${whisper_listdir}/tokens.txt" ;;
    *) log "$1: token_type ${tt} is not wired through the stages (bpe or whisper_en)" >&2; return 1 ;;
  esac
}
distills() { awk "BEGIN { exit !($(config_get "$1" model_conf.distill_share 0) > 0) }"; }
trains_teacher() { awk "BEGIN { exit !($(config_get "$1" model_conf.teacher_weight 0) > 0) }"; }
reads_teacher() {  # the encoder's teacher loss or the decoder's (model_conf decoder_teacher_weight) reads the cache
  trains_teacher "$1" || awk "BEGIN { exit !($(config_get "$1" model_conf.decoder_teacher_weight 0) > 0) }"
}
same_encoder() {  # same_encoder <config> <config>: the same encoder class and options (compare configs
  # as training resolves them, defaults filled in: resolved_config_of)
  [ "$(config_get "$1" encoder none)" = "$(config_get "$2" encoder none)" ] \
    && [ "$(config_get "$1" encoder_conf '{}')" = "$(config_get "$2" encoder_conf '{}')" ]
}
reads_enrollment_audio() { [ "$(config_get "$1" encoder_conf.enrollment none)" != none ]; }
trains_activity() { awk "BEGIN { exit !($(config_get "$1" model_conf.activity_weight 0) > 0) }"; }
is_cacheable() { [ "${feats_type}" = extracted ] && [ "$(config_get "$1" encoder none)" = whisper ]; }
record_command() {
  # Every experiment dir keeps the command that made it (as ESPnet writes exp/*/run.sh).
  mkdir -p "$1"
  printf '#!/usr/bin/env bash\n# %s\ncd %q\n%s"$@"; exit $?\n' "$(date)" "$PWD" "${run_args}" >"$1/run.sh"
  chmod +x "$1/run.sh"
}
stage_begin() { log "Stage $1: $2"; stage_t0=${SECONDS}; }
inputs_changed() {  # inputs_changed <record> <file>...: prints the changed files; false if none or no record
  local rc=0 changed
  changed=$(${python} utils/stage_inputs.py check "$@") || rc=$?
  [ "${rc}" = 1 ] && echo "${changed}"
}
retire_if_stale() {  # retire_if_stale <exp> <file>...: an experiment trained on other inputs is moved
  # to ${expdir}/stale/ (not deleted), so that the stage trains again instead of resuming it
  local exp=$1 changed stale_dir
  shift
  if changed=$(inputs_changed "${exp}/inputs.json" "$@"); then
    stale_dir=${expdir}/stale/$(basename "${exp}").$(date +%Y%m%dT%H%M%S)
    log "${exp} was trained on other inputs (changed: ${changed}): moving it to ${stale_dir} and training again"
    mkdir -p "${expdir}/stale" && mv "${exp}" "${stale_dir}"
  fi
}
declare -A stage_seconds=()  # stage -> seconds, summed over its configs and sets
stage_end() {
  local took=$((SECONDS - stage_t0))
  stage_seconds[$1]=$(( ${stage_seconds[$1]:-0} + took ))
  log "Stage $1 done in ${took} s"
}
stage_times() {  # the table run.sh ends with: where the run's time went
  local stage total=0
  for stage in "${!stage_seconds[@]}"; do total=$((total + stage_seconds[${stage}])); done
  echo "| stage | seconds | minutes | share |"
  echo "|---|---:|---:|---:|"
  for stage in $(printf '%s\n' "${!stage_seconds[@]}" | sort -n); do
    awk -v s="${stage}" -v t="${stage_seconds[${stage}]}" -v all="${total}" \
      'BEGIN { printf "| %s | %d | %.1f | %.0f %% |\n", s, t, t / 60, all ? 100 * t / all : 0 }'
  done
  echo "| all | ${total} | $(awk -v t="${total}" 'BEGIN { printf "%.1f", t / 60 }') | |"
}

# ---------------------------------------------------------------------------
if want 1; then
  stage_begin 1 "Data preparation: local/data.sh ${local_data_opts}"
  # shellcheck disable=SC2086
  local/data.sh ${local_data_opts}
  # Whatever local/data.sh wrote, the later stages get consistent data dirs (or a message
  # naming the file and line) before anything trains.
  ${python} utils/validate_data_dir.py --require wav.scp text utt2spk spk2utt -- \
    $(printf 'data/%s ' ${train_set} ${valid_set} ${test_sets})
  stage_end 1
fi

# ---------------------------------------------------------------------------
if want 2; then
  stage_begin 2 "Token lists: SentencePiece ${bpemode} (nbpe=${nbpe}) -> ${bpe_listdir}; Whisper's -> ${whisper_listdir}"
  ${python} -m diffasr.bin.make_token_list --text "data/${train_set}/text" \
    --output_dir "${bpe_listdir}" --nbpe "${nbpe}" --bpemode "${bpemode}"
  ${python} -m diffasr.bin.make_token_list --token_type whisper_en --text "data/${train_set}/text" \
    --output_dir "${whisper_listdir}"
  for listdir in "${bpe_listdir}" "${whisper_listdir}"; do
    ${python} utils/stage_inputs.py record "${listdir}/inputs.json" "data/${train_set}/text"
  done
  stage_end 2
fi

# ---------------------------------------------------------------------------
if want 3 && ${use_speaker} && ! ${skip_train}; then
  stage_begin 3 "Speaker encoder training: ${spk_config} -> ${spk_exp}"
  # A killed run resumes from its checkpoints; one whose inputs changed trains again.
  spk_inputs="${spk_config}"
  for dset in ${train_set} ${valid_set}; do
    for file in wav.scp utt2spk; do spk_inputs+=" data/sources_${dset}/${file}"; done
  done
  # shellcheck disable=SC2086
  retire_if_stale "${spk_exp}" ${spk_inputs}
  record_command "${spk_exp}"
  # shellcheck disable=SC2086
  ${python} utils/stage_inputs.py record "${spk_exp}/inputs.json" ${spk_inputs}
  ${cuda_cmd} --gpu "${ngpu}" "${spk_exp}/train.log" \
    ${python} -m diffasr.bin.spk_train --config "${spk_config}" \
      --train_dir "data/sources_${train_set}" --valid_dir "data/sources_${valid_set}" \
      --output_dir "${spk_exp}" --ngpu "${ngpu}"
  ${python} -m diffasr.bin.spk_eval --model_dir "${spk_exp}" \
    --data_dirs "data/sources_${valid_set}" "data/sources_test" --output_dir "${spk_exp}"
  stage_end 3
fi

# ---------------------------------------------------------------------------
if want 4 && ${use_speaker}; then
  stage_begin 4 "Enrollment speaker embeddings with ${spk_exp}"
  # One process for all sets (the model is loaded once).
  sets=(${train_set} ${valid_set} ${test_sets})
  mkdir -p "${spk_exp}/embed"
  ${cuda_cmd} --gpu "${ngpu}" "${spk_exp}/embed/embed.log" \
    ${python} -m diffasr.bin.spk_embed --model_dir "${spk_exp}" --data_dir "${sets[@]/#/data/}" \
      --output_dir "${sets[@]/#/${spk_exp}/embed/}" --ngpu "${ngpu}"
  for dset in "${sets[@]}"; do
    ${python} utils/stage_inputs.py record "${spk_exp}/embed/${dset}/inputs.json" \
      "${spk_exp}/model.pt" "${spk_exp}/config.yaml" "data/${dset}/enroll.scp"
  done
  rm -f "${spk_exp}/presence.yaml"  # a gate chosen on other embeddings must not outlive them
  if ${presence_gate} && [ -n "$(${python} -m diffasr.bin.spk_presence absent --data_dir "data/${valid_set}")" ]; then
    sets=(${valid_set} ${test_sets})  # the sets stage 6 decodes
    mkdir -p "${spk_exp}/presence"
    ${cuda_cmd} --gpu "${ngpu}" "${spk_exp}/presence/embed.log" \
      ${python} -m diffasr.bin.spk_presence embed --model_dir "${spk_exp}" --data_dir "${sets[@]/#/data/}" \
        --output_dir "${sets[@]/#/${spk_exp}/presence/}" --ngpu "${ngpu}"
    ${python} -m diffasr.bin.spk_presence choose --model_dir "${spk_exp}" --data_dir "data/${valid_set}" \
      --max_lost "${presence_max_lost}"
  elif ${presence_gate}; then
    log "data/${valid_set} has no target-absent examples: no presence gate (stage 6 decodes every utterance)"
  fi
  stage_end 4
fi

# ---------------------------------------------------------------------------
# Arguments naming the inputs of a set, as espnet2's data loader reads them: the audio
# (or, with a cache dir, the frozen encoder's frames), the text, the enrollment
# embedding and, for configs that read it, the enrollment audio (or its cached frames).
data_args() {  # data_args <option> <set> <config> [with_text=true] [cache dir] [teacher cache dir] [distillation dir]
  local option=$1 dset=$2 config=$3 with_text=${4:-true} cache=${5:-} teacher=${6:-} distill=${7:-} args
  if [ -n "${cache}" ]; then
    args="${option} ${cache}/feats.scp,speech,kaldi_ark"
  else
    args="${option} data/${dset}/wav.scp,speech,sound"
  fi
  ${with_text} && args+=" ${option} data/${dset}/text,text,text"
  # stage 1's per-frame labels of the target's speech, for configs that learn them
  if ${with_text} && trains_activity "${config}"; then
    args+=" ${option} data/${dset}/target_activity.scp,target_activity,kaldi_ark"
  fi
  if [ -f "data/${dset}/enroll_embed.scp" ]; then
    args+=" ${option} data/${dset}/enroll_embed.scp,enroll_embed,kaldi_ark"
  fi
  if reads_enrollment_audio "${config}"; then
    if [ -n "${cache}" ]; then
      args+=" ${option} ${cache}/enroll_feats.scp,enroll_speech,kaldi_ark"
    else
      args+=" ${option} data/${dset}/enroll.scp,enroll_speech,sound"
    fi
  fi
  # the clean-target teacher (and on a validation set the interferers', for feature follows)
  if [ -n "${teacher}" ]; then
    args+=" ${option} ${teacher}/teacher.scp,teacher,kaldi_ark"
    [ -f "${teacher}/teacher_others.scp" ] && args+=" ${option} ${teacher}/teacher_others.scp,teacher_others,kaldi_ark"
  fi
  # the AR system's outputs, in place of the references where model_conf distill_share draws them
  if [ -n "${distill}" ]; then
    args+=" ${option} ${distill}/text,text_distill,text"
  fi
  echo "${args}"
}

# The frozen encoder's cache (feats_type extracted) is written once per frozen encoder
# and shared by every config that has the same one: dump/encoder_cache/<fingerprint>/<set>.
cache_root_of() {  # cache_root_of <config>
  echo "${dumpdir}/encoder_cache/$(${python} -m diffasr.bin.extract_encoder_cache --config "$1" --print_fingerprint)"
}

# train_experiment <exp> <config> <overrides> [more inputs]: one stage-5 training (cache,
# statistics, ESPnet's trainer), resumed when killed, trained again when its inputs changed.
train_experiment() {
    local asr_exp=$1 asr_config=$2 train_args=$3 more_inputs=${4:-}
    local stats_dir=${dumpdir}/stats_$(basename "$1") train_config token_args inputs dset file
    stage_begin 5 "ASR training: ${asr_config} ${train_args} -> ${asr_exp}"
    train_config=$(training_config_of "${asr_config}" "${asr_exp}" "${train_args}") || exit 1
    token_args=$(token_args_of "${train_config}") || exit 1
    # Sequence-level distillation (model_conf distill_share > 0): the AR system's outputs on the training set,
    # decoded once per AR model, decode config and audio (dump/distill/<fingerprint>/<set>), checked, and read
    # by training as text_distill
    local train_distill= distill_args
    if distills "${train_config}"; then
      distill_args="--ar_exp ${distill_exp} --ar_model ${distill_model} --decode_config ${distill_config} --audio ${distill_audio}"
      # shellcheck disable=SC2086
      train_distill=${dumpdir}/distill/$(${python} -m diffasr.bin.make_distillation ${distill_args} --print_fingerprint)/${train_set} \
        || exit 1
      log "The AR system's outputs on data/${train_set} (${distill_exp}/${distill_model}, ${distill_config}, ${distill_audio}) -> ${train_distill}"
      # shellcheck disable=SC2086
      ${python} -m diffasr.bin.make_distillation ${distill_args} --data_dir "data/${train_set}" \
        --output_dir "${train_distill}" --nj "${nj}" --batch_size "${batch_size}" --ngpu "${ngpu}"
    fi
    # What training reads; a rerun whose inputs changed since the experiment was trained
    # says so and trains again (the old experiment is moved to ${expdir}/stale/, not deleted).
    inputs="${train_config} $(echo "${token_args}" | sed 's/.*--token_list \([^ ]*\).*/\1/') ${more_inputs}"
    [ -n "${train_distill}" ] && inputs+=" ${train_distill}/text"
    for dset in ${train_set} ${valid_set}; do
      for file in wav.scp text enroll_embed.scp enroll.scp; do
        [ -f "data/${dset}/${file}" ] && inputs+=" data/${dset}/${file}"
      done
    done
    # shellcheck disable=SC2086
    retire_if_stale "${asr_exp}" ${inputs}
    record_command "${asr_exp}"
    # Recorded before training, so that a killed run is checked on its rerun too.
    # shellcheck disable=SC2086
    ${python} utils/stage_inputs.py record "${asr_exp}/inputs.json" ${inputs}
    common_args="${token_args} --use_preprocessor true --config ${asr_config} --ngpu ${ngpu}"
    train_cache= valid_cache= fold_length=${speech_fold_length}
    if is_cacheable "${train_config}"; then
      cache_root=$(cache_root_of "${train_config}") || exit 1
      train_cache=${cache_root}/${train_set} valid_cache=${cache_root}/${valid_set}
      fold_length=${cache_fold_length}
      for dset in ${train_set} ${valid_set}; do
        log "Frozen encoder cache of data/${dset} -> ${cache_root}/${dset}"
        ${python} -m diffasr.bin.extract_encoder_cache --config "${train_config}" --data_dir "data/${dset}" \
          --output_dir "${cache_root}/${dset}" --nj "${nj}"
      done
      stats_dir+=_extracted
    fi
    # The clean-target teacher (model_conf teacher_weight, decoder_teacher_weight): one cache per data dir, shared
    # by every config with the same Whisper (dump/teacher_cache/<fingerprint>/<set>).
    local train_teacher= valid_teacher=
    if reads_teacher "${train_config}"; then
      teacher_root=${dumpdir}/teacher_cache/$(${python} -m diffasr.bin.extract_teachers --config "${train_config}" --print_fingerprint) || exit 1
      train_teacher=${teacher_root}/${train_set} valid_teacher=${teacher_root}/${valid_set}
      for dset in ${train_set} ${valid_set}; do
        log "Clean-target teacher of data/${dset} -> ${teacher_root}/${dset}"
        ${python} -m diffasr.bin.extract_teachers --config "${train_config}" --data_dir "data/${dset}" \
          --output_dir "${teacher_root}/${dset}" --nj "${nj}" --with_others "$([ "${dset}" = "${valid_set}" ] && echo true || echo false)"
      done
    fi
    if [ -f "${stats_dir}/train/feats_stats.npz" ]; then
      # shellcheck disable=SC2086
      if stale=$(inputs_changed "${stats_dir}/inputs.json" ${inputs}); then
        log "${stats_dir} was collected from other inputs (changed: ${stale}): collecting again"
        rm -rf "${stats_dir}"
      fi
    fi
    if [ ! -f "${stats_dir}/train/feats_stats.npz" ]; then
      log "Collecting feature statistics into ${stats_dir}"
      # shellcheck disable=SC2046,SC2086
      ${train_cmd} "${stats_dir}/collect_stats.log" \
        ${python} -m diffasr.bin.asr_train --collect_stats true ${common_args} --ngpu 0 \
          $(data_args --train_data_path_and_name_and_type "${train_set}" "${train_config}" true "${train_cache}") \
          $(data_args --valid_data_path_and_name_and_type "${valid_set}" "${train_config}" true "${valid_cache}") \
          --train_shape_file "data/${train_set}/wav.scp" --valid_shape_file "data/${valid_set}/wav.scp" \
          --output_dir "${stats_dir}" ${train_args}
      # shellcheck disable=SC2086
      ${python} utils/stage_inputs.py record "${stats_dir}/inputs.json" ${inputs}
    fi
    # Global mean/variance normalisation of the features unless the config sets its own.
    normalize_args=
    if [ "$(config_get "${train_config}" normalize global_mvn)" = global_mvn ]; then
      normalize_args="--normalize global_mvn --normalize_conf stats_file=${stats_dir}/train/feats_stats.npz"
    fi
    # Data-parallel training through torch.distributed, as ESPnet runs it: one process per
    # GPU (ESPnet's --multiprocessing_distributed), or train_procs CPU processes started by
    # torchrun (gloo). ESPnet splits each batch between the processes: the same global batch.
    train_launch="${python} -m diffasr.bin.asr_train" dist_args=
    if [ "${ngpu}" -gt 1 ]; then
      dist_args="--multiprocessing_distributed true"
    elif [ "${train_procs}" -gt 1 ]; then
      train_launch="${python} -m torch.distributed.run --standalone --nproc_per_node ${train_procs} -m diffasr.bin.asr_train"
      dist_args="--multiprocessing_distributed false --dist_backend gloo"
    fi
    # shellcheck disable=SC2046,SC2086
    OMP_NUM_THREADS=${train_num_threads} ${cuda_cmd} --gpu "${ngpu}" "${asr_exp}/train.log" \
      ${train_launch} ${common_args} ${dist_args} \
        $(data_args --train_data_path_and_name_and_type "${train_set}" "${train_config}" true "${train_cache}" "${train_teacher}" "${train_distill}") \
        $(data_args --valid_data_path_and_name_and_type "${valid_set}" "${train_config}" true "${valid_cache}" "${valid_teacher}") \
        --train_shape_file "${stats_dir}/train/speech_shape" --train_shape_file "${stats_dir}/train/text_shape" \
        --valid_shape_file "${stats_dir}/valid/speech_shape" --valid_shape_file "${stats_dir}/valid/text_shape" \
        --fold_length "${fold_length}" --fold_length "${text_fold_length}" ${normalize_args} \
        --resume true --output_dir "${asr_exp}" ${train_args}
    stage_end 5
}

# Phase 1 (--teacher_phase true): the conditioned encoder alone, on the teacher loss.
teacher_exp=${expdir}/${asr_tag_prefix}_teacher_phase${overlay_suffix}
teacher_base=
if ${teacher_phase}; then
  for config in "${exp_configs[@]:0:$(echo ${asr_configs} | wc -w)}"; do  # the --asr_configs entries, as sized
    trains_teacher "${config}" && { teacher_base=${config}; break; }
  done
  [ -z "${teacher_base}" ] && log "--teacher_phase true, but no --asr_configs entry has model_conf teacher_weight > 0: no phase 1"
fi
teacher_args="--model_conf teacher_only=true ${teacher_phase_args}"

if want 5 && ! ${skip_train}; then
  if [ -n "${teacher_base}" ]; then
    train_experiment "${teacher_exp}" "${teacher_base}" "${teacher_args}"
    teacher_config=$(resolved_config_of "${teacher_base}" "${teacher_exp}" "${teacher_args}") || exit 1
  fi
  for i in "${!exp_dirs[@]}"; do
    # Phase 2 starts from phase 1's encoder where the system trains the same encoder (as resolved
    # with its overrides: a variant may change it).
    init_params=  # ESPnet's <file>:<from>:<to> entries, all in one --init_param (a second would replace the first)
    if [ -n "${teacher_base}" ]; then
      system_config=$(resolved_config_of "${exp_configs[i]}" "${exp_dirs[i]}" "${exp_args[i]}") || exit 1
      if same_encoder "${system_config}" "${teacher_config}"; then
        init_params="${teacher_exp}/valid.loss.best.pth:encoder:encoder"
      else
        log "${exp_dirs[i]} trains another encoder than phase 1's (${teacher_exp}): it does not start from phase 1"
      fi
    fi
    # --init_from_ar: a diffusion system starts from the AR system's decoder, and from its encoder where it
    # trains the same one (the AR system's, itself started from phase 1's; compared as resolved when the AR
    # system is one of this run's experiments)
    if ${init_from_ar} && [ "$(model_type_of "${exp_configs[i]}")" = diffusion ]; then
      ar_model=${ar_exp}/${inference_model}
      [ -f "${ar_model}" ] || { log "--init_from_ar: ${ar_model} does not exist: train the AR system first (its config earlier in --asr_configs)"; exit 1; }
      system_config=$(resolved_config_of "${exp_configs[i]}" "${exp_dirs[i]}" "${exp_args[i]}") || exit 1
      for j in "${!exp_dirs[@]}"; do
        [ "${exp_dirs[j]}" = "${ar_exp}" ] || continue
        ar_config=$(resolved_config_of "${exp_configs[j]}" "${exp_dirs[j]}" "${exp_args[j]}") || exit 1
        if same_encoder "${system_config}" "${ar_config}"; then
          init_params="${ar_model}:encoder:encoder"
        fi
      done
      [[ ${init_params} == "${ar_model}":* ]] \
        || log "${exp_dirs[i]} starts from ${ar_exp}'s decoder, not its encoder (another one, or not trained in this run)"
      init_params="${ar_model}:decoder:decoder${init_params:+ ${init_params}}"
    fi
    train_experiment "${exp_dirs[i]}" "${exp_configs[i]}" "${exp_args[i]}${init_params:+ --init_param ${init_params}}" \
      "$(echo "${init_params}" | sed 's/:[^ ]*//g')"
  done
fi

# ---------------------------------------------------------------------------
inference_configs_for() {  # the decode configs (decode_<model type>_*.yaml) that fit a training config
  local mtype configs=""
  mtype=$(model_type_of "$1")
  [ "${mtype}" = espnet ] && mtype=ar
  for config in ${inference_configs:-conf/decode/decode_${mtype}_*.yaml}; do
    [[ $(basename "${config}") == decode_${mtype}_* ]] && [ -f "${config}" ] && configs+=" ${config}"
  done
  if [ -z "${configs}" ]; then
    log "no decode config for model type '${mtype}' of $1 in: ${inference_configs:-conf/decode/} (decode_${mtype}_*.yaml)" >&2
    return 1
  fi
  echo "${configs}"
}

# A decode config may name a per-set file with {test_set} and {ar_exp} in a string value (e.g.
# the first-pass hypotheses that deliberation revises); it is rendered once per set.
render_inference_config() {  # render_inference_config <config> <set> <output>
  if ! grep -q '{test_set}\|{ar_exp}' "$1"; then cp "$1" "$3"; return; fi  # nothing to fill in
  ${python} utils/render_decode_config.py "$1" "$3" "test_set=$2" "ar_exp=${ar_exp}" || exit 1
  local hyp
  hyp=$(${python} utils/yaml_get.py "$3" deliberation_hyp "")
  if [ -n "${hyp}" ] && [ "${hyp}" != ctc ] && [ "${hyp}" != none ] && [ ! -f "${hyp}" ]; then
    log "$1 deliberates ${hyp}, which does not exist: decode that system first (list its config earlier in --asr_configs)"
    exit 1
  fi
}

decode_sets() { echo "${test_sets}"; ${calibrate} && echo "${valid_set}"; true; }
# Is a decode config one of --rotate_configs (compared by file name)?  Not in long form:
# it reads each recording's own enrollment audio, which has no rotated counterpart.
rotated() {
  local config
  ${long_form} && return 1
  for config in ${rotate_configs}; do [ "$(basename "${config}")" = "$(basename "$1")" ] && return 0; done
  return 1
}

# Is a set decoded through the presence gate (stage 4 chose one and embedded the set's windows)?
# Not in long form: the recipe has no window embeddings of a recording's segments.
gated() {
  ${presence_gate} && ${use_speaker} && ! ${long_form} && [ -f "${spk_exp}/presence.yaml" ] \
    && [ -f "data/$1/window_embed.scp" ]
}

# decode_set <exp> <its trained config> <decode config> <decode tag> <set> [asr_inference options]:
# one set decoded with nj jobs into <exp>/<decode tag>/<set>.
decode_set() {
  local asr_exp=$1 trained_config=$2 inference_config=$3 inference_tag=$4 dset=$5
  shift 5
  stage_begin 6 "Decoding data/${dset} with ${asr_exp} and ${inference_config}${*:+ ($*)}"
  local decode_dir=${asr_exp}/${inference_tag}/${dset}
  local logdir=${decode_dir}/logdir n
  # A rerun (maybe with another --nj) must not merge the outputs of an earlier one.
  rm -rf "${logdir}"/output.* "${logdir}"/keys.*.scp
  mkdir -p "${logdir}"
  render_inference_config "${inference_config}" "${dset}" "${logdir}/decode.yaml"
  local gate_args=()
  if gated "${dset}"; then
    gate_args=(--presence_gate "${spk_exp}/presence.yaml" --window_embed "data/${dset}/window_embed.scp")
  fi
  n=$(min "${nj}" "$(wc -l <"data/${dset}/wav.scp")")
  ${python} utils/split_scp.py "data/${dset}/wav.scp" "${logdir}" "${n}"
  # shellcheck disable=SC2046,SC2086
  ${decode_cmd} --gpu "${ngpu}" JOB=1:"${n}" "${logdir}/asr_inference.JOB.log" \
    ${python} -m diffasr.bin.asr_inference --ngpu "${ngpu}" --batch_size "${batch_size}" \
      --key_file "${logdir}/keys.JOB.scp" $(data_args --data_path_and_name_and_type "${dset}" "${trained_config}" false) \
      --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_model}" \
      --config "${logdir}/decode.yaml" --output_dir "${logdir}/output.JOB" \
      --utt2spk "data/${dset}/utt2spk" --long_form "${long_form}" "${gate_args[@]}" "$@"
  ${python} utils/merge_decode_outputs.py --output_dir "${decode_dir}" "${logdir}"/output.*
  # the options given over the decode config (--inference_args, --enrollment_override), beside its results
  echo "$*" >"${decode_dir}/overrides.txt"
  # shellcheck disable=SC2046
  ${python} utils/stage_inputs.py record "${decode_dir}/inputs.json" "${asr_exp}/config.yaml" \
    "${asr_exp}/${inference_model}" "${logdir}/decode.yaml" "${decode_dir}/overrides.txt" \
    $(ls "data/${dset}"/{wav,enroll,enroll_embed,window_embed}.scp 2>/dev/null) \
    $(gated "${dset}" && echo "${spk_exp}/presence.yaml")
  stage_end 6
}

if want 6; then
  if ${long_form} && [ -n "${rotate_configs}" ]; then
    log "--long_form true: no rotated-enrollment decodes (--rotate_configs ${rotate_configs} skipped)"
  fi
  for i in "${!exp_dirs[@]}"; do
    asr_exp=${exp_dirs[i]} asr_config=${exp_configs[i]}
    trained_config=$(trained_config_of "${asr_exp}" "${asr_config}")
    # (a failure inside $(...) would not stop the script; checked here)
    configs_of_model=$(inference_configs_for "${trained_config}") || exit 1
    if [ ! -f "${asr_exp}/${inference_model}" ]; then
      log "${asr_exp}/${inference_model} does not exist: train it (stage 5), or choose another with" \
          "--inference_model (the averages are named by keep_nbest_models in ${asr_config})"
      exit 1
    fi
    for inference_config in ${configs_of_model}; do
      inference_tag=$(basename "${inference_config}" .yaml)${inference_suffix}
      for dset in $(decode_sets); do
        decode_set "${asr_exp}" "${trained_config}" "${inference_config}" "${inference_tag}" "${dset}" ${inference_args}
      done
      if rotated "${inference_config}"; then
        for dset in ${rotate_sets}; do
          decode_set "${asr_exp}" "${trained_config}" "${inference_config}" "${inference_tag}_rotate" "${dset}" \
            ${inference_args} --enrollment_override rotate
        done
        for dset in ${swap_sets}; do
          decode_set "${asr_exp}" "${trained_config}" "${inference_config}" "${inference_tag}_swap" "${dset}" \
            ${inference_args} --enrollment_override swap
        done
      fi
    done
  done
fi

zero_shot_exp=${expdir}/whisper_tiny.en_zeroshot
if want 6; then
  for dset in ${zero_shot_sets}; do
    stage_begin 6 "Decoding data/${dset} with Whisper tiny.en zero-shot, beam 5"
    ${python} -m diffasr.bin.zero_shot_decode --data_dir "data/${dset}" --decode_dir "${zero_shot_exp}/decode_beam5/${dset}" \
      --beam_size 5 --num_threads "${OMP_NUM_THREADS:-1}"
    stage_end 6
  done
fi

# ---------------------------------------------------------------------------
if want 7; then
  stage_begin 7 "Scoring with sclite and writing ${expdir}/RESULTS.md"
  for i in "${!exp_dirs[@]}"; do
    asr_exp=${exp_dirs[i]}
    # (a failure inside $(...) would not stop the script; checked here)
    configs_of_model=$(inference_configs_for "$(trained_config_of "${asr_exp}" "${exp_configs[i]}")") || exit 1
    for inference_config in ${configs_of_model}; do
      inference_tag=$(basename "${inference_config}" .yaml)${inference_suffix}
      calib_args=
      if ${calibrate}; then
        calib_args="--calib_data_dir data/${valid_set} --calib_decode_dir ${asr_exp}/${inference_tag}/${valid_set}"
      fi
      for dset in ${test_sets}; do
        # shellcheck disable=SC2086
        ${python} -m diffasr.bin.score --data_dir "data/${dset}" \
          --decode_dir "${asr_exp}/${inference_tag}/${dset}" ${calib_args}
      done
      if rotated "${inference_config}"; then
        for dset in ${rotate_sets}; do
          ${python} -m diffasr.bin.score --data_dir "data/${dset}" --decode_dir "${asr_exp}/${inference_tag}_rotate/${dset}"
        done
        for dset in ${swap_sets}; do
          ${python} -m diffasr.bin.score --data_dir "data/${dset}" --decode_dir "${asr_exp}/${inference_tag}_swap/${dset}" \
            --enrollment_override swap
        done
      fi
    done
  done
  for dset in ${zero_shot_sets}; do
    ${python} -m diffasr.bin.score --data_dir "data/${dset}" --decode_dir "${zero_shot_exp}/decode_beam5/${dset}"
  done
  ${python} -m diffasr.bin.make_results --exp_dir "${expdir}" --output "${expdir}/RESULTS.md"
  cat "${expdir}/RESULTS.md"
  stage_end 7
fi

# ---------------------------------------------------------------------------
if want 8; then
  for asr_exp in "${exp_dirs[@]}"; do
    stats_dir=${dumpdir}/stats_$(basename "${asr_exp}")
    packed=${asr_exp}/packed/$(basename "${asr_exp}").zip
    stage_begin 8 "Packing ${asr_exp} with its tokens, statistics and speaker encoder -> ${packed}"
    # espnet2's packer stores the files and rewrites the paths in config.yaml to point inside the zip.
    # Whisper-based models need no BPE model, and neither statistics if trained on a cache.
    # What made the model travels with it: the code's commit and the hashes of its config and weights.
    provenance=${asr_exp}/provenance.json
    ${python} utils/stage_inputs.py provenance "${provenance}" "${asr_exp}/config.yaml" "${asr_exp}/${inference_model}"
    options=
    for file in "${provenance}" "${bpemodel}" "${stats_dir}/train/feats_stats.npz" "${spk_exp}/model.pt" "${spk_exp}/config.yaml" \
        "${spk_exp}/presence.yaml"; do
      [ -f "${file}" ] && options+=" --option ${file}"
    done
    # shellcheck disable=SC2086
    ${python} -m espnet2.bin.pack asr --asr_train_config "${asr_exp}/config.yaml" \
      --asr_model_file "${asr_exp}/${inference_model}" ${options} --outpath "${packed}"
    stage_end 8
  done
fi

if [ ${#stage_seconds[@]} -gt 0 ]; then
  log "Time per stage:"
  mkdir -p "${expdir}"  # stages 1-2 alone write nothing under exp/ before this
  stage_times | tee "${expdir}/stage_times.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
