# Where real corpora live. Leave a path empty to use the recipe's embedded default
# corpus, which stage 1 builds offline.
LIBRISPEECH=${LIBRISPEECH:-}   # LibriSpeech root (SPEAKER/CHAPTER/*.flac + *.trans.txt below train-clean-100/ etc.)
LIBRIMIX=${LIBRIMIX:-}         # optional LibriMix metadata dir (pairs and gains of mixtures)
NOISE_ROOT=${NOISE_ROOT:-}     # optional dir of noise wavs (e.g. WHAM!); empty: synthesized noise
export LIBRISPEECH LIBRIMIX NOISE_ROOT
