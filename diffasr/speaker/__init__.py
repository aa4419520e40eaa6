"""Speaker encoder (recipe stages 3-4): SpeechBrain ECAPA-TDNN training with an
AAM-softmax or triplet objective, enrollment embeddings, and EER/minDCF scoring."""

from diffasr.speaker.audio import SpeakerDataError, read_audio
from diffasr.speaker.metrics import compute_eer, compute_min_dcf, make_trials
from diffasr.speaker.model import SpeakerEncoder, build_encoder, load_config, load_trained_encoder

__all__ = [
    "SpeakerDataError", "read_audio", "compute_eer", "compute_min_dcf", "make_trials",
    "SpeakerEncoder", "build_encoder", "load_config", "load_trained_encoder",
]
